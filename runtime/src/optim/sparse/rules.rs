//! The row rules: SGD, Adagrad and SparseAdam on coalesced row gradients, in PyTorch's order of
//! `f32` operations (so trajectories match its own to rounding).
//!
//! In: a table's coalesced row gradient and its state rows. Out: the new rows of the table and its
//! state.

use kiln_compiler::{Error, Graph, Location, Result, Tensor};

use super::{RowRule, RowUpdates, weight_decay_error};
use crate::optim::{Adagrad, Optimizer, Schedule, Sgd, Update, name_of};

/// PyTorch's `torch.optim.SparseAdam`: Adam with lazy moments. Only the rows in the step's
/// gradient move, and so do only their moments: `m ← m + (1-β₁)(g - m)`,
/// `v ← v + (1-β₂)(g² - v)`, `p ← p - lr·√(1-β₂ᵗ)/(1-β₁ᵗ) · m/(√v + ε)`, with `t` the global
/// step (as PyTorch's, which counts the optimizer's steps, not the row's). It updates sparse
/// params only; dense ones are an error (use [`super::super::Adam`]).
#[derive(Clone, Copy, Debug)]
pub struct SparseAdam {
    /// `(β₁, β₂)`, the decays of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
}

impl Default for SparseAdam {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    fn default() -> SparseAdam {
        SparseAdam { betas: (0.9, 0.999), eps: 1e-8 }
    }
}

impl SparseAdam {
    /// SparseAdam with PyTorch's defaults.
    pub fn new() -> SparseAdam {
        SparseAdam::default()
    }
}

impl Optimizer for SparseAdam {
    #[track_caller]
    fn param_updates<'g>(
        &self,
        _graph: &'g Graph,
        param: Tensor<'g>,
        _grad: Tensor<'g>,
        _schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let name = name_of(param);
        let detail = format!(
            "SparseAdam updates sparse params only (as PyTorch's), but `{name}` is dense: \
             use Adam for it, or make it sparse (`Embedding::sparse`)"
        );
        Err(Error::Argument { op: "SparseAdam", detail, location: Location::caller() })
    }

    fn row_rule(&self, _param: Tensor<'_>) -> Result<Box<dyn RowRule>> {
        Ok(Box::new(*self))
    }
}

impl RowRule for SparseAdam {
    fn state_names(&self, param: &str) -> Vec<String> {
        vec![format!("optimizer.sparse_adam.m.{param}"), format!("optimizer.sparse_adam.v.{param}")]
    }

    fn apply(&self, table: &mut [f32], state: &mut [Vec<f32>], updates: &RowUpdates, lr: f64, step: u64) {
        let [m, v] = state else { unreachable!("bug in kiln: SparseAdam has two state tables") };
        let (beta1, beta2) = self.betas;
        let correction1 = 1.0 - beta1.powf(step as f64);
        let correction2 = 1.0 - beta2.powf(step as f64);
        let step_size = (lr * correction2.sqrt() / correction1) as f32;
        let (keep1, keep2, eps) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32, self.eps as f32);
        let dim = updates.dim;
        for (k, &id) in updates.ids.iter().enumerate() {
            let range = id * dim..(id + 1) * dim;
            let (p, m, v) = (&mut table[range.clone()], &mut m[range.clone()], &mut v[range]);
            for (j, &g) in updates.row(k).iter().enumerate() {
                let first = (g - m[j]) * keep1;
                let second = (g * g - v[j]) * keep2;
                let numerator = first + m[j];
                let denominator = (second + v[j]).sqrt() + eps;
                m[j] += first;
                v[j] += second;
                p[j] += -step_size * (numerator / denominator);
            }
        }
    }
}

/// Plain SGD on rows: `p ← p - lr·g` for the rows touched.
#[derive(Clone, Copy, Debug)]
struct SgdRows;

impl RowRule for SgdRows {
    fn state_names(&self, _param: &str) -> Vec<String> {
        Vec::new()
    }

    fn apply(&self, table: &mut [f32], _state: &mut [Vec<f32>], updates: &RowUpdates, lr: f64, _step: u64) {
        let (lr, dim) = (lr as f32, updates.dim);
        for (k, &id) in updates.ids.iter().enumerate() {
            let row = &mut table[id * dim..(id + 1) * dim];
            row.iter_mut().zip(updates.row(k)).for_each(|(p, g)| *p += -lr * g);
        }
    }
}

/// Adagrad on rows, PyTorch's sparse branch: `s ← s + g²`, `p ← p - lr·g/(√s + ε)` for the
/// rows touched.
#[derive(Clone, Copy, Debug)]
struct AdagradRows {
    eps: f64,
}

impl RowRule for AdagradRows {
    fn state_names(&self, param: &str) -> Vec<String> {
        vec![format!("optimizer.adagrad.sum.{param}")]
    }

    fn apply(&self, table: &mut [f32], state: &mut [Vec<f32>], updates: &RowUpdates, lr: f64, _step: u64) {
        let [sum] = state else { unreachable!("bug in kiln: Adagrad has one state table") };
        let (lr, eps, dim) = (lr as f32, self.eps as f32, updates.dim);
        for (k, &id) in updates.ids.iter().enumerate() {
            let range = id * dim..(id + 1) * dim;
            let (p, s) = (&mut table[range.clone()], &mut sum[range]);
            for (j, &g) in updates.row(k).iter().enumerate() {
                s[j] += g * g;
                p[j] += -lr * (g / (s[j].sqrt() + eps));
            }
        }
    }
}

/// The row rule of SGD: plain SGD only.
#[track_caller]
pub(crate) fn sgd_rows(sgd: &Sgd, param: &str) -> Result<Box<dyn RowRule>> {
    if sgd.weight_decay != 0.0 {
        return Err(weight_decay_error(param, "SGD", sgd.weight_decay));
    }
    if sgd.momentum != 0.0 {
        let detail = format!(
            "param `{param}` is sparse, and SGD with momentum {} has no row-local form: PyTorch's momentum \
             buffer on a sparse gradient keeps moving every row it ever saw, at every step. Use plain SGD, \
             Adagrad or SparseAdam for `{param}` (`Settings::sparse`), or make it dense",
            sgd.momentum
        );
        return Err(Error::Argument { op: "optimizer", detail, location: Location::caller() });
    }
    Ok(Box::new(SgdRows))
}

/// The row rule of Adagrad.
#[track_caller]
pub(crate) fn adagrad_rows(adagrad: &Adagrad, param: &str) -> Result<Box<dyn RowRule>> {
    if adagrad.weight_decay != 0.0 {
        return Err(weight_decay_error(param, "Adagrad", adagrad.weight_decay));
    }
    Ok(Box::new(AdagradRows { eps: adagrad.eps }))
}
