//! The dropout layer.
//!
//! In: a scope (its name seeds the masks) and the drop probability; then a tensor. Out: the
//! tensor with elements dropped while training, unchanged in eval mode.

use std::cell::Cell;
use std::rc::Rc;

use super::{Layer, Module, Scope};
use crate::error::Result;
use crate::graph::{DType, Shape, Tensor};

/// Inverted dropout: while the model trains, zeroes each element with probability `p` and
/// scales the rest by `1 / (1 - p)`; in eval mode, the identity.
///
/// The mask comes from the graph's counter-based generator, seeded by the layer's name and
/// counted by the scalar input `optimizer.step` (which the `Trainer` feeds at every step), so
/// each step draws a fresh mask and a rerun draws the same one.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f64,
    seed: u64,
    training: Rc<Cell<bool>>,
}

impl Dropout {
    /// A dropout of probability `p` in `scope` (which provides its seed and its mode).
    pub fn build(scope: &Scope<'_, '_>, p: f64) -> Dropout {
        // FNV-1a of the layer's name: two dropouts draw independent masks.
        let seed = crate::random::hash_name(scope.prefix());
        Dropout { p, seed, training: scope.training() }
    }

    /// Applies the dropout (the identity in eval mode or for `p = 0`).
    #[track_caller]
    pub fn forward<'g>(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        if !self.training.get() || self.p == 0.0 {
            return Ok(x);
        }
        let graph = x.graph();
        let step = match graph.leaf("optimizer.step") {
            Ok(step) => step,
            Err(_) => graph.input("optimizer.step", Shape::scalar())?,
        };
        let keep = graph.random_uniform(x.shape(), self.seed, step.cast(DType::I64)?)?.ge(self.p)?;
        keep.select(x.mul(1.0 / (1.0 - self.p))?, 0.0)
    }
}

impl<'g> Module<'g> for Dropout {
    fn kind(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

impl<'g> Layer<'g> for Dropout {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.forward(x)
    }
}
