//! Layers: params declared under a dotted name prefix, plus the function that applies them.

use super::Scope;
use crate::error::Result;
use crate::graph::{Graph, Init, Tensor};

/// A fully connected layer, `x · weightᵀ + bias`, with params `{name}.weight` (`[out, in]`)
/// and `{name}.bias` (`[out]`), initialised as PyTorch's `nn.Linear`: both uniform on
/// `±1/sqrt(in)`.
///
/// ```
/// use kiln_compiler::prelude::*;
/// let g = Graph::new();
/// let x = g.input("x", [Dim::sym("B"), 2.into()])?;
/// let layer = layers::Linear::new(&g, "layer1", 2, 20)?;
/// assert_eq!(layer.forward(x)?.shape(), Shape::of([Dim::sym("B"), 20.into()]));
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Linear<'g> {
    /// `[out, in]`.
    pub weight: Tensor<'g>,
    /// `[out]`.
    pub bias: Tensor<'g>,
}

impl<'g> Linear<'g> {
    /// Declares the layer's params in `graph`.
    #[track_caller]
    pub fn new(graph: &'g Graph, name: &str, inputs: usize, outputs: usize) -> Result<Linear<'g>> {
        Self::build(&Scope::with_prefix(graph, name), inputs, outputs)
    }

    /// Declares the layer's params `weight` and `bias` in `scope`.
    #[track_caller]
    pub fn build(scope: &Scope<'g, '_>, inputs: usize, outputs: usize) -> Result<Linear<'g>> {
        let bound = 1.0 / (inputs.max(1) as f64).sqrt();
        let init = Init::Uniform { low: -bound, high: bound };
        let weight = scope.param("weight", &[outputs, inputs], init.clone())?;
        let bias = scope.param("bias", &[outputs], init)?;
        Ok(Linear { weight, bias })
    }

    /// Declares the layer's params with chosen initializers.
    #[track_caller]
    pub fn with_init(
        graph: &'g Graph,
        name: &str,
        inputs: usize,
        outputs: usize,
        weight: Init,
        bias: Init,
    ) -> Result<Linear<'g>> {
        let weight = graph.param(&format!("{name}.weight"), [outputs, inputs], weight)?;
        let bias = graph.param(&format!("{name}.bias"), [outputs], bias)?;
        Ok(Linear { weight, bias })
    }

    /// Applies the layer to `x` (`[..., in]` to `[..., out]`).
    #[track_caller]
    pub fn forward(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        super::linear(x, self.weight, Some(self.bias))
    }
}

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
