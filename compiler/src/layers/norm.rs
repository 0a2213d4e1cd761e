//! Layer normalisation.
//!
//! In: a scope and the normalised width; then a tensor `[..., dim]`. Out: the params `weight`
//! and `bias`, and the tensor normalised over its last axis, scaled and shifted.

use super::{Layer, Module, Scope};
use crate::error::Result;
use crate::graph::{Graph, Init, Tensor};

/// Layer normalisation over the last axis with params `{name}.weight` (ones) and
/// `{name}.bias` (zeros), as PyTorch's `nn.LayerNorm`.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm<'g> {
    /// The scale, `[dim]`.
    pub weight: Tensor<'g>,
    /// The shift, `[dim]`.
    pub bias: Tensor<'g>,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl<'g> LayerNorm<'g> {
    /// Declares the layer's params in `graph`, with `eps = 1e-5`.
    #[track_caller]
    pub fn new(graph: &'g Graph, name: &str, dim: usize) -> Result<LayerNorm<'g>> {
        Self::build(&Scope::with_prefix(graph, name), dim)
    }

    /// Declares the layer's params `weight` and `bias` in `scope`, with `eps = 1e-5`.
    #[track_caller]
    pub fn build(scope: &Scope<'g, '_>, dim: usize) -> Result<LayerNorm<'g>> {
        let weight = scope.param("weight", &[dim], Init::ONES)?;
        let bias = scope.param("bias", &[dim], Init::ZEROS)?;
        Ok(LayerNorm { weight, bias, eps: 1e-5 })
    }

    /// Applies the layer to `x` (`[..., dim]`).
    #[track_caller]
    pub fn forward(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        super::layer_norm_affine(x, self.weight, self.bias, self.eps)
    }
}

impl<'g> Module<'g> for LayerNorm<'g> {
    fn kind(&self) -> String {
        let dim = self.weight.shape().as_static().and_then(|d| d.first().copied()).unwrap_or(0);
        format!("LayerNorm(({dim},), eps={:e}, elementwise_affine=True)", self.eps)
    }

    fn own_parameters(&self) -> Vec<Tensor<'g>> {
        vec![self.weight, self.bias]
    }
}

impl<'g> Layer<'g> for LayerNorm<'g> {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.forward(x)
    }
}
