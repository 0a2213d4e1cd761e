//! The op library: composite ops and layers, built from primitives only.
//!
//! In: tensors. Out: tensors made of primitive nodes, so autodiff, the interpreter and every
//! later pass see through them and no stage below the graph needs to know they exist. Each
//! composite uses the numerically stable form (max-shifted softmax, `exp(-|x|)` in sigmoid,
//! softplus and the logistic loss), so neither its value nor its gradient overflows.

mod bag;
mod functional;
mod module;
mod modules;

pub use bag::{BagMode, EmbeddingBag};
pub use functional::{
    binary_cross_entropy_with_logits, cross_entropy, layer_norm, layer_norm_affine, linear, log_softmax, mean,
    mean_all, mse, positional_encoding, relu, sigmoid, softmax, softplus, var,
};
pub use module::{
    Activation, DeclaredDim, Dropout, Embedding, InitRule, Layer, Module, ParamSpec, Scope, Sequential, ShapeCheck,
    Summary, named_parameters, parameter_counts, summary,
};
pub use modules::{LayerNorm, Linear};
