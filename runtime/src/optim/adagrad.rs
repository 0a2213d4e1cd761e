//! Adagrad, PyTorch's `torch.optim.Adagrad` (no learning-rate decay).
//!
//! In: a param, its gradient and the schedule. Out: the updates of its sum of squares and of the
//! param.

use kiln_compiler::{Graph, Result, Tensor};

use super::sparse::{RowRule, rules::adagrad_rows};
use super::{Optimizer, Schedule, Update, name_of, state, with_l2};

/// Adagrad: `s ← s + g²`, `p ← p - lr·g/(√s + ε)`, the sum starting at zero. L2 weight decay
/// is added to the gradient first.
#[derive(Clone, Copy, Debug)]
pub struct Adagrad {
    /// Added to the root of the sum.
    pub eps: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for Adagrad {
    /// PyTorch's defaults: eps 1e-10, no weight decay.
    fn default() -> Adagrad {
        Adagrad { eps: 1e-10, weight_decay: 0.0 }
    }
}

impl Optimizer for Adagrad {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let mut updates = Vec::new();
        let g = with_l2(grad, param, self.weight_decay)?;
        let sum = state(graph, &format!("adagrad.sum.{}", name_of(param)), param)?;
        let sum_next = sum.add(g.square()?)?;
        updates.push((sum, sum_next));
        let step = g.div(sum_next.sqrt()?.add(self.eps)?)?;
        updates.push((param, param.sub(step.mul(schedule.lr)?)?));
        Ok(updates)
    }

    #[track_caller]
    fn row_rule(&self, param: Tensor<'_>) -> Result<Box<dyn RowRule>> {
        adagrad_rows(self, &name_of(param))
    }
}
