//! kiln-compiler: the graph IR and its builder API, the op library and layers, reverse-mode
//! autodiff, the reference interpreter, the graph passes, the kernel IR, code generation
//! (Cranelift, and vector C for the native tier) and the compiler's half of export (the
//! artifact plan, the entry points and object files, the portable C source).
//!
//! The path of a model through this crate: build a [`Graph`] (by hand or through the layers
//! in [`layers`]), append gradients with [`Graph::grad`], and evaluate any of its nodes with
//! the [`Interpreter`], the oracle every compiled kernel is checked against. [`compile`] runs
//! the [`passes`], lowers to the [`kernel`] program and generates code ([`codegen`],
//! [`native`]). Imports run one way, down graph → autodiff → passes → kernel → codegen
//! (`tests/module_graph.rs` checks it).
//!
//! In: a graph, its outputs and updates, and [`settings`]. Out: values (interpreter), kernel
//! programs, compiled programs, artifact objects and C source.

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
pub use graph::{
    DType, Dim, Fan, Graph, Init, MODE_STEP_INPUT, Mode, Node, NodeId, Op, OpKind, Shape, SparseParam, TRAINING_INPUT,
    Tensor, gain,
};
pub use interp::{Interpreter, Precision};
pub use value::{Data, Feeds, ParamStore, Value};

/// Everything a model author needs, in one import.
pub mod prelude {
    pub use crate::autodiff::{GradientCheck, check_gradients};
    pub use crate::error::{Error, Result};
    pub use crate::graph::build::Operand;
    pub use crate::graph::{DType, Dim, Fan, Graph, Init, Mode, Shape, Tensor};
    pub use crate::interp::{Interpreter, Precision};
    pub use crate::layers;
    pub use crate::value::{Feeds, ParamStore, Value};
}
