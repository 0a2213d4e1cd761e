//! kiln-compiler: the graph IR and its builder API, the op library and layers, reverse-mode
//! autodiff and the reference interpreter.
//!
//! The path of a model through this crate: build a [`Graph`] (by hand or through the layers
//! in [`layers`]), append gradients with [`Graph::grad`], and evaluate any of its nodes with
//! the [`Interpreter`], the oracle every compiled kernel is checked against.

#![warn(missing_docs)]

pub mod autodiff;
pub mod codegen;
pub mod compile;
pub mod dtype;
pub mod error;
pub mod export;
pub mod graph;
pub mod interp;
pub mod kernel;
pub mod layers;
pub mod native;
pub mod passes;
pub mod random;
pub mod settings;
pub mod value;

pub use autodiff::{GradientCheck, RowGradient, check_gradients};
pub use error::{Error, Location, Result};
pub use graph::{DType, Dim, Fan, Graph, Init, Node, NodeId, Op, OpKind, Shape, SparseParam, Tensor, gain};
pub use interp::{Interpreter, ParamStore, Precision};
pub use value::{Data, Value};

/// Everything a model author needs, in one import.
pub mod prelude {
    pub use crate::autodiff::{GradientCheck, check_gradients};
    pub use crate::error::{Error, Result};
    pub use crate::graph::build::Operand;
    pub use crate::graph::{DType, Dim, Fan, Graph, Init, Shape, Tensor};
    pub use crate::interp::{Feeds, Interpreter, ParamStore, Precision};
    pub use crate::layers;
    pub use crate::value::Value;
}
