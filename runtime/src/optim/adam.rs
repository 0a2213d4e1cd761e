//! Adam and AdamW, PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`.
//!
//! In: a param, its gradient and the schedule. Out: the updates of its two moments and of the
//! param.

use kiln_compiler::{Graph, Result, Tensor};

use super::{Ema, Optimizer, Schedule, Update, name_of, with_l2};

/// Adam with bias correction: `m ← β₁m + (1-β₁)g`, `v ← β₂v + (1-β₂)g²`,
/// `p ← p - lr·m̂/(√v̂ + ε)`. Weight decay is L2 (added to the gradient) for Adam and decoupled
/// (`p ← p - lr·wd·p`) for AdamW.
#[derive(Clone, Copy, Debug)]
pub struct Adam {
    /// `(β₁, β₂)`, the decays of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW) instead of L2.
    pub decoupled: bool,
}

impl Default for Adam {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    fn default() -> Adam {
        Adam { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

impl Adam {
    /// Adam with PyTorch's defaults.
    pub fn new() -> Adam {
        Adam::default()
    }

    /// AdamW with decoupled weight decay `weight_decay` (PyTorch's default is 0.01).
    pub fn adamw(weight_decay: f64) -> Adam {
        Adam { weight_decay, decoupled: true, ..Adam::default() }
    }
}

impl Optimizer for Adam {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let (first, second) = (Ema { decay: self.betas.0 }, Ema { decay: self.betas.1 });
        let mut updates = Vec::new();
        let name = name_of(param);
        let g = if self.decoupled { grad } else { with_l2(grad, param, self.weight_decay)? };
        let (m, m_next) = first.update(graph, &format!("adam.m.{name}"), g)?;
        let (v, v_next) = second.update(graph, &format!("adam.v.{name}"), g.square()?)?;
        let step = first.debiased(m_next, schedule)?.div(second.debiased(v_next, schedule)?.sqrt()?.add(self.eps)?)?;
        let decayed = if self.decoupled && self.weight_decay != 0.0 {
            param.sub(param.mul(schedule.lr)?.mul(self.weight_decay)?)?
        } else {
            param
        };
        updates.push((m, m_next));
        updates.push((v, v_next));
        updates.push((param, decayed.sub(step.mul(schedule.lr)?)?));
        Ok(updates)
    }
}
