//! Parameter groups: different optimizer settings for different params, chosen by name.
//!
//! In: params by name and two optimizers. Out: each param's updates from the optimizer of its
//! group.

use kiln_compiler::{Error, Graph, Location, Result, Tensor};

use super::{Optimizer, RowRule, Schedule, Update};

/// Some params with their own optimizer (its weight decay, say) and a learning-rate factor.
pub struct ParamGroup<'g> {
    /// The params of the group.
    pub params: Vec<Tensor<'g>>,
    /// The update rule for them.
    pub optimizer: Box<dyn Optimizer>,
    /// The group's learning rate, as a factor of the schedule's.
    pub lr_scale: f64,
}

/// Splits `params` by the common weight-decay rule: biases, every 1-D param (norm layers'
/// scales and shifts) and every param whose name contains one of `skip` (`embedding`, say)
/// get no decay. Returns `(decayed, not decayed)`, each in the order given.
pub fn split_for_weight_decay<'g>(params: &[Tensor<'g>], skip: &[&str]) -> (Vec<Tensor<'g>>, Vec<Tensor<'g>>) {
    params.iter().partition(|param| {
        let name = param.name().unwrap_or_default();
        let bias = name == "bias" || name.ends_with(".bias");
        let skipped = skip.iter().any(|s| name.contains(s));
        param.rank() >= 2 && !bias && !skipped
    })
}

/// The updates of every group: each param's gradient is found in `grads` by its place in
/// `params` (as `Graph::grad` returns them), and each group's optimizer runs at the
/// schedule's rate times the group's factor. A param in no group is an error, and so is one in
/// two.
#[track_caller]
pub fn group_updates<'g>(
    graph: &'g Graph,
    groups: &[ParamGroup<'g>],
    params: &[Tensor<'g>],
    grads: &[Tensor<'g>],
    schedule: &Schedule<'g>,
) -> Result<Vec<Update<'g>>> {
    let location = Location::caller();
    let ids = params.iter().map(|p| p.id()).collect::<Result<Vec<_>>>()?;
    let mut seen = vec![false; params.len()];
    let mut updates = Vec::new();
    for group in groups {
        let mut group_grads = Vec::with_capacity(group.params.len());
        for param in &group.params {
            let id = param.id()?;
            let name = param.name().unwrap_or_default();
            let Some(place) = ids.iter().position(|&i| i == id) else {
                let detail = format!("param `{name}` of a group has no gradient among the params given");
                return Err(Error::Argument { op: "group_updates", detail, location });
            };
            if std::mem::replace(&mut seen[place], true) {
                let detail = format!("param `{name}` is in two groups");
                return Err(Error::Argument { op: "group_updates", detail, location });
            }
            group_grads.push(grads[place]);
        }
        let lr = if group.lr_scale == 1.0 { schedule.lr } else { schedule.lr.mul(group.lr_scale)? };
        let scaled = Schedule { lr, step: schedule.step };
        updates.extend(group.optimizer.updates(graph, &group.params, &group_grads, &scaled)?);
    }
    if let Some(place) = seen.iter().position(|&s| !s) {
        let detail = format!("param `{}` is in no group", params[place].name().unwrap_or_default());
        return Err(Error::Argument { op: "group_updates", detail, location });
    }
    Ok(updates)
}

/// The weight-decay rule as one optimizer, ready for a `Trainer`: each param that
/// [`split_for_weight_decay`] decays is updated by `decayed` (AdamW with decay, say), every
/// other one by `not_decayed` (the same rule without decay). This is the practitioners'
/// `add_weight_decay(net, l2_value, skip_list)`: no decay for biases, for 1-D params (norm
/// layers), or for any param whose name contains an entry of `skip`.
pub struct WeightDecayGroups {
    /// The rule for weights.
    pub decayed: Box<dyn Optimizer>,
    /// The rule for biases, 1-D params and skipped names.
    pub not_decayed: Box<dyn Optimizer>,
    /// Parts of names that never decay (`embed`, say).
    pub skip: Vec<String>,
}

impl WeightDecayGroups {
    /// The groups of `decayed` and `not_decayed`, skipping names that contain any of `skip`.
    pub fn new(decayed: impl Optimizer + 'static, not_decayed: impl Optimizer + 'static, skip: &[&str]) -> Self {
        let skip = skip.iter().map(|s| s.to_string()).collect();
        WeightDecayGroups { decayed: Box::new(decayed), not_decayed: Box::new(not_decayed), skip }
    }

    /// True if `param` is in the decayed group.
    pub fn decays(&self, param: Tensor<'_>) -> bool {
        let skip: Vec<&str> = self.skip.iter().map(String::as_str).collect();
        !split_for_weight_decay(&[param], &skip).0.is_empty()
    }
}

impl Optimizer for WeightDecayGroups {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let rule = if self.decays(param) { &self.decayed } else { &self.not_decayed };
        rule.param_updates(graph, param, grad, schedule)
    }

    #[track_caller]
    fn row_rule(&self, param: Tensor<'_>) -> Result<Box<dyn RowRule>> {
        let rule = if self.decays(param) { &self.decayed } else { &self.not_decayed };
        rule.row_rule(param)
    }
}
