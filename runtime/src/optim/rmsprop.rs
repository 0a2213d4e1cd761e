//! RMSprop, PyTorch's `torch.optim.RMSprop` (not centered).
//!
//! In: a param, its gradient and the schedule. Out: the updates of its average of squares and of
//! the param.

use kiln_compiler::{Graph, Result, Tensor};

use super::{Ema, Optimizer, Schedule, Update, name_of, state, with_l2};

/// RMSprop: `v ← αv + (1-α)g²`, `u ← g/(√v + ε)`; with momentum `b ← μb + u`, `u ← b`;
/// then `p ← p - lr·u`. L2 weight decay is added to the gradient first.
#[derive(Clone, Copy, Debug)]
pub struct RmsProp {
    /// Decay α of the squared-gradient average.
    pub alpha: f64,
    /// Added to the root of the average.
    pub eps: f64,
    /// Momentum factor μ (0: none).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

impl Default for RmsProp {
    /// PyTorch's defaults: alpha 0.99, eps 1e-8, no momentum, no weight decay.
    fn default() -> RmsProp {
        RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0, weight_decay: 0.0 }
    }
}

impl Optimizer for RmsProp {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let average = Ema { decay: self.alpha };
        let mut updates = Vec::new();
        let name = name_of(param);
        let g = with_l2(grad, param, self.weight_decay)?;
        let (v, v_next) = average.update(graph, &format!("rmsprop.square_avg.{name}"), g.square()?)?;
        updates.push((v, v_next));
        let mut step = g.div(v_next.sqrt()?.add(self.eps)?)?;
        if self.momentum != 0.0 {
            let buffer = state(graph, &format!("rmsprop.momentum.{name}"), param)?;
            let next = buffer.mul(self.momentum)?.add(step)?;
            updates.push((buffer, next));
            step = next;
        }
        updates.push((param, param.sub(step.mul(schedule.lr)?)?));
        Ok(updates)
    }
}
