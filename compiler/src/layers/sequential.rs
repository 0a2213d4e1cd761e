//! The sequential container.
//!
//! In: layers. Out: one layer applying them in turn, with parts named `0`, `1`, ...

use std::fmt;

use super::{Layer, Module, summary};
use crate::error::Result;
use crate::graph::Tensor;

/// Layers applied one after the other; its parts are named `0`, `1`, ... as in PyTorch's
/// `nn.Sequential`.
pub struct Sequential<'g> {
    layers: Vec<Box<dyn Layer<'g> + 'g>>,
}

impl<'g> Sequential<'g> {
    /// The chain of `layers`.
    pub fn new(layers: Vec<Box<dyn Layer<'g> + 'g>>) -> Sequential<'g> {
        Sequential { layers }
    }

    /// Applies every layer in turn.
    #[track_caller]
    pub fn forward(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.layers.iter().try_fold(x, |h, layer| layer.apply(h))
    }
}

impl fmt::Debug for Sequential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&summary(self))
    }
}

impl<'g> Module<'g> for Sequential<'g> {
    fn kind(&self) -> String {
        "Sequential".into()
    }

    fn children(&self) -> Vec<(String, &dyn Module<'g>)> {
        let mut children: Vec<(String, &dyn Module<'g>)> = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            children.push((i.to_string(), &**layer));
        }
        children
    }
}

impl<'g> Layer<'g> for Sequential<'g> {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.forward(x)
    }
}
