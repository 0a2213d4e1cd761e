//! Activations as layers.
//!
//! In: a tensor. Out: the activation applied elementwise, as a [`Layer`] a [`Sequential`](super::Sequential)
//! can chain.

use super::{Layer, Module};
use crate::error::Result;
use crate::graph::Tensor;

/// An activation as a layer, for [`Sequential`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    ReLU,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `log(1 + e^x)`.
    Softplus,
}

impl<'g> Module<'g> for Activation {
    fn kind(&self) -> String {
        format!("{self:?}()")
    }
}

impl<'g> Layer<'g> for Activation {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        match self {
            Activation::ReLU => super::relu(x),
            Activation::Sigmoid => super::sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Softplus => super::softplus(x),
        }
    }
}
