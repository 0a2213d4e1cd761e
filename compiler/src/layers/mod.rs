//! The op library: composite ops and layers, built from primitives only.
//!
//! In: tensors. Out: tensors made of primitive nodes, so autodiff, the interpreter and every
//! later pass see through them and no stage below the graph needs to know they exist. Each
//! composite uses the numerically stable form (max-shifted softmax, `exp(-|x|)` in sigmoid,
//! softplus and the logistic loss), so neither its value nor its gradient overflows.

mod activation;
mod bag;
mod dropout;
mod embedding;
mod functional;
mod linear;
mod module;
mod norm;
mod scope;
mod sequential;
mod shape_check;

pub use activation::Activation;
pub use bag::{BagMode, EmbeddingBag};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use functional::{
    binary_cross_entropy_with_logits, cross_entropy, layer_norm, layer_norm_affine, linear, log_softmax, mean,
    mean_all, mse, positional_encoding, relu, sigmoid, softmax, softplus, var,
};
pub use linear::Linear;
pub use module::{Layer, Module, Summary, named_parameters, parameter_counts, summary};
pub use norm::LayerNorm;
pub use scope::{InitRule, ParamSpec, Scope};
pub use sequential::Sequential;
pub use shape_check::{DeclaredDim, ShapeCheck};
