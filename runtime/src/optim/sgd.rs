//! Stochastic gradient descent, PyTorch's `torch.optim.SGD`.
//!
//! In: a param, its gradient and the schedule. Out: the updates of its momentum (if any) and of the
//! param.

use kiln_compiler::{Graph, Result, Tensor};

use super::sparse::{RowRule, rules::sgd_rows};
use super::{Optimizer, Schedule, Update, name_of, state, with_l2};

/// SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay:
/// `g ← grad + wd·p`; with momentum `b ← μ·b + (1 - dampening)·g` (`b ← g` at the first
/// step), `g ← g + μ·b` (Nesterov) or `g ← b`; then `p ← p - lr·g`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sgd {
    /// Momentum factor μ (0: none).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Sgd {
    /// Plain SGD.
    pub fn new() -> Sgd {
        Sgd::default()
    }

    /// SGD with momentum μ.
    pub fn momentum(momentum: f64) -> Sgd {
        Sgd { momentum, ..Sgd::default() }
    }
}

impl Optimizer for Sgd {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let mut updates = Vec::new();
        let mut g = with_l2(grad, param, self.weight_decay)?;
        if self.momentum != 0.0 {
            let buffer = state(graph, &format!("sgd.momentum.{}", name_of(param)), param)?;
            let next = if self.dampening == 0.0 {
                // From a zero buffer the first step gives the gradient itself, as PyTorch's does.
                buffer.mul(self.momentum)?.add(g)?
            } else {
                // PyTorch starts the buffer at the first gradient, undamped.
                let running = buffer.mul(self.momentum)?.add(g.mul(1.0 - self.dampening)?)?;
                let first = schedule.first_step()?;
                first.mul(g)?.add(first.neg()?.add(1.0)?.mul(running)?)?
            };
            updates.push((buffer, next));
            g = if self.nesterov { g.add(next.mul(self.momentum)?)? } else { next };
        }
        updates.push((param, param.sub(g.mul(schedule.lr)?)?));
        Ok(updates)
    }

    #[track_caller]
    fn row_rule(&self, param: Tensor<'_>) -> Result<Box<dyn RowRule>> {
        sgd_rows(self, &name_of(param))
    }
}
