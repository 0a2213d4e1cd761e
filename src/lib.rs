//! kiln: a static model compiler for Rust.
//!
//! Declare a model once as a symbolic [`Graph`] (by hand or with [`model!`]); kiln derives its
//! gradients symbolically ([`Graph::grad`]), evaluates it with a reference [`Interpreter`],
//! compiles it to native code ([`function`], on Cranelift or as vector C), trains it
//! ([`Trainer`] with the optimizers in [`optim`]) and ships its forward half as a standalone
//! artifact ([`export`]).
//!
//! In: nothing of its own; this crate re-exports `kiln-compiler` (graph to native code),
//! `kiln-runtime` (running, training, packaging) and `kiln-macros` (`model!`). Out: the one
//! import a user needs, `kiln::prelude::*`.
//!
//! ```
//! use kiln::prelude::*;
//!
//! let g = Graph::new();
//! let x = g.input("x", [Dim::sym("B"), 2.into()])?;
//! let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
//! let layer = layers::Linear::new(&g, "layer1", 2, 2)?;
//! let loss = layers::cross_entropy(layer.forward(x)?, labels)?;
//! let grads = g.grad(loss, &[layer.weight, layer.bias])?;
//!
//! let params = ParamStore::init(&g, 0);
//! let feeds = Feeds::from([
//!     ("x", Value::f32([3, 2], vec![0.5, -1.0, 2.0, 0.0, -0.3, 0.8])),
//!     ("labels", Value::i64([3], vec![0, 1, 1])),
//! ]);
//! let out = Interpreter::new(&g).run(&feeds, &params, &[loss, grads[0]])?;
//! assert_eq!(out[1].shape(), &[2, 2]);
//! # Ok::<(), kiln::Error>(())
//! ```

#![warn(missing_docs)]

pub use kiln_compiler as compiler;
pub use kiln_compiler::Feeds;
pub use kiln_compiler::{
    DType, Data, Dim, Error, Fan, GradientCheck, Graph, Init, Interpreter, Location, MODE_STEP_INPUT, Mode, Node,
    NodeId, Op, OpKind, ParamStore, Precision, Result, RowGradient, Shape, SparseParam, TRAINING_INPUT, Tensor, Value,
    check_gradients, gain, layers, random,
};

/// Code generator options for [`function_with`] (`kiln::codegen::Options`).
pub use kiln_compiler::codegen;
/// The code generator tiers (Cranelift, native vector C, or both).
pub use kiln_compiler::codegen::Tier;
pub use kiln_runtime::{AUTO_START_CALL, AUTO_SWITCH_CALL, DEFAULT_SPLIT_THRESHOLD, function_reducing, function_with};
pub use kiln_runtime::{
    Checkpoint, Diagnostics, Function, Histogram, IfDiverged, Objective, ParamScale, Report, Settings, ShardedSampler,
    Trainer, function, function_on,
};
pub use kiln_runtime::{export, occasionally, optim, plot, reduce, text};

/// Data-parallel training over MPI: `Ranks` and the collectives (the `mpi` feature).
#[cfg(feature = "mpi")]
pub use kiln_runtime::distributed;

pub use kiln_macros::model;

/// Everything a model author needs, in one import: `use kiln::prelude::*;`.
pub mod prelude {
    pub use kiln_compiler::prelude::*;
    pub use kiln_macros::model;
    pub use kiln_runtime::export::ExportOptions;
    pub use kiln_runtime::optim::{
        Adagrad, Adam, Ema, LrSchedule, Optimizer, ParamGroup, RmsProp, Schedule, Sgd, SparseAdam, SparseUpdates,
        WeightDecayGroups,
    };
    pub use kiln_runtime::text::{Format, Specials, Vocab, WordVectors};
    pub use kiln_runtime::{Function, Histogram, Objective, Settings, Trainer, function};
}

/// The README's code, compiled and run as a doctest so the tour cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
