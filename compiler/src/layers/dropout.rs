//! The dropout layer.
//!
//! In: a scope (its name seeds the masks) and the drop probability; then a tensor. Out: the
//! tensor with elements dropped while training, unchanged in eval mode.

use super::{Layer, Module, Scope};
use crate::error::Result;
use crate::graph::Tensor;

/// Inverted dropout: while the model trains, zeroes each element with probability `p` and
/// scales the rest by `1 / (1 - p)`; in eval mode, the identity.
///
/// The layer builds both behaviours into the graph and picks one at run time by the bool input
/// [`TRAINING_INPUT`](crate::graph::TRAINING_INPUT), so one graph (and one compiled function)
/// serves training and evaluation: the `Trainer` feeds true to its steps and false to
/// `Trainer::evaluate`, and other runs feed the graph's [`Mode`](crate::graph::Mode)
/// (`model.train()` / `model.eval()`). The mask comes from the graph's counter-based generator,
/// seeded by the layer's name and counted by the input
/// [`MODE_STEP_INPUT`](crate::graph::MODE_STEP_INPUT) (the trainer's step, a function's call
/// number), so each step draws a fresh mask and a rerun draws the same one.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f64,
    seed: u64,
}

impl Dropout {
    /// A dropout of probability `p` in `scope` (whose name seeds its masks).
    pub fn build(scope: &Scope<'_, '_>, p: f64) -> Dropout {
        // FNV-1a of the layer's name: two dropouts draw independent masks.
        let seed = crate::random::hash_name(scope.prefix());
        Dropout { p, seed }
    }

    /// Applies the dropout: while training, `x` with elements dropped; in eval mode, `x`
    /// itself (`p = 0` adds nothing to the graph).
    #[track_caller]
    pub fn forward<'g>(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        if self.p == 0.0 {
            return Ok(x);
        }
        let graph = x.graph();
        let mode = graph.mode_inputs()?;
        let keep = graph.random_uniform(x.shape(), self.seed, mode.step)?.ge(self.p)?;
        let dropped = keep.select(x.mul(1.0 / (1.0 - self.p))?, 0.0)?;
        mode.training.select(dropped, x)
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
