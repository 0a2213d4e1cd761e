//! Optimizers as graph update rules.
//!
//! In: a graph, its trainable params and their gradients (from `Graph::grad`). Out: updates,
//! `(param or state, new value)` pairs for `function`'s `updates`, so an optimizer's step is
//! part of the compiled training step and fuses with the backward pass. State (momentum
//! buffers, moment estimates) lives in non-trainable params named
//! `optimizer.<rule>.<state>.<param>` (`optimizer.adam.m.layer1.weight`, say), zero at first
//! and updated in place like the params.
//!
//! The learning rate and the step count are not constants of the graph but scalar inputs
//! ([`Schedule`]), fed at every call: a learning-rate schedule, or a changed learning rate,
//! never recompiles. Bias corrections are computed in the graph from the step.
//!
//! Every optimizer follows the semantics and defaults PyTorch documents; their trajectories on
//! a small problem are tested against optax (`tests/fixtures/optimizers.py`). To write your own
//! rule, implement [`Optimizer`] with graph ops; [`Ema`] helps build moment estimates.
//!
//! Sparse params (embeddings marked sparse) are updated row by row outside the graph, by each
//! optimizer's [`Optimizer::row_rule`]: see [`sparse`] for where and why.
//!
//! Around them: [`LrSchedule`] (the rate to feed at each step), gradient clipping
//! ([`clip_by_global_norm`], [`clip_by_value`]) and parameter groups ([`ParamGroup`],
//! [`split_for_weight_decay`] for the rule "no decay for biases, 1-D params and a skip list").

mod adagrad;
mod adam;
mod clip;
mod groups;
mod rmsprop;
mod schedules;
mod sgd;
pub mod sparse;

pub use adagrad::Adagrad;
pub use adam::Adam;
pub use clip::{clip_by_global_norm, clip_by_value};
pub use groups::{ParamGroup, WeightDecayGroups, group_updates, split_for_weight_decay};
pub use rmsprop::RmsProp;
pub use schedules::LrSchedule;
pub use sgd::Sgd;
pub use sparse::{RowRule, SparseAdam, SparseUpdates};

use kiln_compiler::{DType, Graph, Init, Location, Result, Shape, Tensor, Value};

/// `(param or optimizer state, its new value)`.
pub type Update<'g> = (Tensor<'g>, Tensor<'g>);

/// An update rule: appends the new value of every param, and of the optimizer's own state, to
/// the graph. A rule is written per param ([`Optimizer::param_updates`]); [`Optimizer::updates`]
/// applies it to every param.
pub trait Optimizer {
    /// The updates for one param whose gradient is `grad`: its state's new values, then its
    /// own.
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>>;

    /// The updates for `params`, whose gradients are `grads` (in the same order), at the
    /// learning rate and step of `schedule`.
    #[track_caller]
    fn updates<'g>(
        &self,
        graph: &'g Graph,
        params: &[Tensor<'g>],
        grads: &[Tensor<'g>],
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        check_pairs(params, grads)?;
        let mut updates = Vec::with_capacity(params.len() * 3);
        for (&param, &grad) in params.iter().zip(grads) {
            updates.extend(self.param_updates(graph, param, grad, schedule)?);
        }
        Ok(updates)
    }

    /// The rule that updates only the rows touched of the sparse param `param` (see
    /// [`sparse`]). Optimizers without a sparse form (Adam, RMSprop; as in PyTorch) refuse,
    /// naming the param and the rules that have one.
    #[track_caller]
    fn row_rule(&self, param: Tensor<'_>) -> Result<Box<dyn RowRule>> {
        let rule = std::any::type_name::<Self>().rsplit("::").next().unwrap_or("this optimizer");
        let name = name_of(param);
        let detail = format!(
            "param `{name}` is sparse (row-update gradients), and {rule} has no sparse form (nor has PyTorch's): \
             give sparse params SparseAdam, Adagrad or plain SGD (`Settings::sparse`), or make `{name}` dense"
        );
        Err(kiln_compiler::Error::Argument { op: "optimizer", detail, location: Location::caller() })
    }
}

/// The scalars an optimizer reads at each call: the learning rate and the step, counting from 1.
#[derive(Clone, Copy, Debug)]
pub struct Schedule<'g> {
    /// The learning rate (`f32` scalar input `optimizer.lr`).
    pub lr: Tensor<'g>,
    /// The step, from 1 (`f32` scalar input `optimizer.step`).
    pub step: Tensor<'g>,
}

impl<'g> Schedule<'g> {
    /// The inputs `optimizer.lr` and `optimizer.step` of `graph`, declared by the first call
    /// (a step compiled again on the same graph, after unfreezing, say, reads the same ones).
    #[track_caller]
    pub fn inputs(graph: &'g Graph) -> Result<Schedule<'g>> {
        let input = |name: &str| match graph.leaf(name) {
            Ok(existing) => Ok(existing),
            Err(_) => graph.input(name, Shape::scalar()),
        };
        Ok(Schedule { lr: input("optimizer.lr")?, step: input("optimizer.step")? })
    }

    /// The values to feed for learning rate `lr` at step `step` (from 1), in the order
    /// `[lr, step]`.
    pub fn values(lr: f64, step: u64) -> [Value; 2] {
        [Value::scalar(DType::F32, lr), Value::scalar(DType::F32, step as f64)]
    }

    /// `1 - beta^step`: the bias correction of an EMA with decay `beta` that started at zero.
    #[track_caller]
    pub fn bias_correction(&self, beta: f64) -> Result<Tensor<'g>> {
        self.step.mul(beta.ln())?.exp()?.neg()?.add(1.0)
    }

    /// 1 at the first step, 0 after it, as an `f32` scalar.
    #[track_caller]
    pub fn first_step(&self) -> Result<Tensor<'g>> {
        self.step.le(1.0)?.cast(DType::F32)
    }
}

/// An exponential moving average `s ← decay·s + (1 - decay)·x` kept in a state param, with
/// the bias correction of a zero start (the notebook builds Adam from two of these).
#[derive(Clone, Copy, Debug)]
pub struct Ema {
    /// The weight of the old average.
    pub decay: f64,
}

impl Ema {
    /// The state param `name` (shaped like `x`, zero at first) and its new value given `x`.
    #[track_caller]
    pub fn update<'g>(&self, graph: &'g Graph, name: &str, x: Tensor<'g>) -> Result<(Tensor<'g>, Tensor<'g>)> {
        let state = state(graph, name, x)?;
        Ok((state, state.mul(self.decay)?.add(x.mul(1.0 - self.decay)?)?))
    }

    /// `average / (1 - decay^step)`: the average without its bias towards zero.
    #[track_caller]
    pub fn debiased<'g>(&self, average: Tensor<'g>, schedule: &Schedule<'g>) -> Result<Tensor<'g>> {
        average.div(schedule.bias_correction(self.decay)?)
    }
}

/// The prefix of every optimizer state param's name (and of the schedule's inputs): what a
/// checkpoint keeps apart from the model's params.
pub const STATE_PREFIX: &str = "optimizer.";

/// The optimizer state param `optimizer.<name>` (by convention `<rule>.<state>.<param>`),
/// shaped like `like`, zero at first and never trained. If the graph has it already (an
/// optimizer applied again to the same graph), it is reused.
#[track_caller]
pub fn state<'g>(graph: &'g Graph, name: &str, like: Tensor<'g>) -> Result<Tensor<'g>> {
    let name = format!("{STATE_PREFIX}{name}");
    let name = name.as_str();
    match graph.leaf(name) {
        Ok(existing) if existing.shape() == like.shape() => Ok(existing),
        Ok(existing) => {
            let detail = format!("optimizer state `{name}` is {}, its param {}", existing.shape(), like.shape());
            Err(kiln_compiler::Error::Shape { op: "optimizer", detail, location: Location::caller() })
        }
        Err(_) => graph.param_with(name, like.shape(), Init::ZEROS, false),
    }
}

/// The name of `param`, for naming its state (`optimizer.<rule>.<state>.<param name>`).
fn name_of(param: Tensor<'_>) -> String {
    param.name().unwrap_or_else(|| format!("{}", param.id().map(|id| id.0).unwrap_or(0)))
}

/// `grad + weight_decay · param` (L2 decay, PyTorch's `weight_decay` of SGD, Adam, RMSprop
/// and Adagrad), or `grad` itself without decay.
fn with_l2<'g>(grad: Tensor<'g>, param: Tensor<'g>, weight_decay: f64) -> Result<Tensor<'g>> {
    if weight_decay == 0.0 { Ok(grad) } else { grad.add(param.mul(weight_decay)?) }
}

/// Checks that every param has a gradient of its shape.
#[track_caller]
fn check_pairs(params: &[Tensor<'_>], grads: &[Tensor<'_>]) -> Result<()> {
    let location = Location::caller();
    if params.len() != grads.len() {
        let detail = format!("{} params but {} gradients", params.len(), grads.len());
        return Err(kiln_compiler::Error::Argument { op: "optimizer", detail, location });
    }
    for (param, grad) in params.iter().zip(grads) {
        if param.shape() != grad.shape() {
            let detail =
                format!("param `{}` is {} but its gradient is {}", name_of(*param), param.shape(), grad.shape());
            return Err(kiln_compiler::Error::Shape { op: "optimizer", detail, location });
        }
    }
    Ok(())
}
