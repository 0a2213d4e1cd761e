//! Training: one compiled step (forward, backward, optimizer update), run step after step,
//! with gradient-scale diagnostics now and then and a stop when numbers go bad.
//!
//! In: a graph, an [`Objective`] and [`Settings`]. Out: a [`Trainer`] whose steps return
//! [`Report`]s.
//!
//! The trainer compiles the step twice from one graph: the lean step it runs every time, and
//! a diagnostic step that also returns every gradient, run at occasional steps (by default the
//! notebook's rule: iterations 0, 1, 3, 7, 15, ...). Both hold the same params; the trainer
//! moves them across when it switches, which is rare.
//!
//! Every step also checks that the numbers it is about to commit are finite: the step program
//! returns, beside the loss, one scalar per gradient and per update value, `sum(x * 0)`, which
//! is 0 exactly when every element of `x` is finite (NaN or an infinity makes it NaN). These
//! are reductions the compiler fuses with the kernels that produce the values. A step whose
//! loss or checks are not finite is refused: the function puts back the params and optimizer
//! state it updated in place and skips the other updates, so the trainer holds the last good
//! step, and the error says whether an input, the loss or a gradient went bad first.

#[cfg(feature = "mpi")]
mod data_parallel;
mod progress;

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_compiler::{DType, Error, Graph, Mode, ParamStore, Result, Tensor, Value};

use crate::checkpoint::{Checkpoint, IfDiverged};
use crate::function::{Function, build_function};
use crate::optim::{LrSchedule, Optimizer, Schedule, SparseUpdates};
use kiln_compiler::Location;
use kiln_compiler::codegen::{Options, Tier};
use progress::Progress;

/// What to train: the loss, what to feed, and metrics to report along (accuracy, say).
pub struct Objective<'g> {
    /// The scalar loss.
    pub loss: Tensor<'g>,
    /// The inputs fed at every step, in order.
    pub inputs: Vec<Tensor<'g>>,
    /// Scalars computed with the loss and reported by name.
    pub metrics: Vec<(String, Tensor<'g>)>,
}

/// How to train: the optimizer, the learning rate and its schedule, and when to diagnose.
pub struct Settings<'o> {
    /// The update rule.
    pub optimizer: &'o dyn Optimizer,
    /// The base learning rate.
    pub lr: f64,
    /// How the rate moves with the step.
    pub schedule: LrSchedule,
    /// At which iterations (from 0) to compute diagnostics.
    pub diagnose: fn(u64) -> bool,
    /// The rule for sparse params (`SparseAdam`, say), as PyTorch's second optimizer for
    /// them; `None`: `optimizer`'s own sparse form ([`Optimizer::row_rule`]).
    pub sparse: Option<&'o dyn Optimizer>,
}

impl<'o> Settings<'o> {
    /// `optimizer` at a constant rate `lr`, diagnosed at iterations 0, 1, 3, 7, ...
    pub fn new(optimizer: &'o dyn Optimizer, lr: f64) -> Settings<'o> {
        Settings { optimizer, lr, schedule: LrSchedule::Constant, diagnose: occasionally, sparse: None }
    }
}

/// The notebook's `occasional`: iterations 0, 1, 3, 7, 15, ...
pub fn occasionally(iteration: u64) -> bool {
    (iteration + 1).is_power_of_two()
}

/// The gradient scales of one param at a diagnosed step.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamScale {
    /// The param's name.
    pub name: String,
    /// L2 norm of its gradient.
    pub grad_norm: f64,
    /// L2 norm of its value after the step.
    pub weight_norm: f64,
    /// `‖Δp‖ / ‖p‖` of the step: how far the update moved it, relative to its size.
    pub update_ratio: f64,
    /// log10 |gradient| over its elements (`plot::save_histograms` draws them side by side).
    pub histogram: Histogram,
}

/// What a diagnosed step shows about the gradient scales.
#[derive(Clone, Debug)]
pub struct Diagnostics {
    /// Per trainable param.
    pub params: Vec<ParamScale>,
    /// log10 |gradient| over every element of every trainable param.
    pub histogram: Histogram,
}

/// The result of one step.
#[derive(Clone, Debug)]
pub struct Report {
    /// The step's iteration, from 0.
    pub iteration: u64,
    /// The learning rate it used.
    pub lr: f64,
    /// The loss before the update.
    pub loss: f64,
    /// The objective's metrics, by name.
    pub metrics: Vec<(String, f64)>,
    /// Present at diagnosed steps.
    pub diagnostics: Option<Diagnostics>,
}

/// Counts of log10 |x| by decade, magnitudes clamped at 1e-9 (as the notebook does, so exact
/// zeros land in the lowest decade).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// The decade of the first count (`[1e{lowest}, 1e{lowest + 1})`).
    pub lowest: i32,
    /// One count per decade, upwards.
    pub counts: Vec<usize>,
}

impl Histogram {
    /// The histogram of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Histogram {
        let decades: Vec<i32> = values.into_iter().map(|v| v.abs().max(1e-9).log10().floor() as i32).collect();
        let (Some(&lowest), Some(&highest)) = (decades.iter().min(), decades.iter().max()) else {
            return Histogram { lowest: 0, counts: vec![] };
        };
        let mut counts = vec![0; (highest - lowest + 1) as usize];
        for decade in decades {
            counts[(decade - lowest) as usize] += 1;
        }
        Histogram { lowest, counts }
    }
}

impl std::fmt::Display for Histogram {
    /// One line per decade: its range, its count and a bar of up to 50 `#`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let largest = self.counts.iter().copied().max().unwrap_or(1).max(1);
        for (i, &count) in self.counts.iter().enumerate() {
            let decade = self.lowest + i as i32;
            let bar = "#".repeat((count * 50).div_ceil(largest));
            let range = format!("[1e{decade}, 1e{})", decade + 1);
            writeln!(f, "    {range:<13} {count:>5} {bar}")?;
        }
        Ok(())
    }
}

/// A compiled training step and its state.
pub struct Trainer {
    pub(crate) lean: Function,
    pub(crate) diagnostic: Function,
    /// Where the params live now: true after a diagnosed step, until the next lean one.
    in_diagnostic: bool,
    /// The dense trainable params (their gradients are the diagnostic step's last outputs).
    trainable: Vec<String>,
    /// The sparse params' row updates and optimizer state.
    sparse: SparseUpdates,
    metrics: Vec<String>,
    /// The objective's inputs' names, in order (to say which one was not finite).
    inputs: Vec<String>,
    /// What each finite check output covers, in order: `the gradient of `w``, say.
    checks: Vec<String>,
    lr: f64,
    schedule: LrSchedule,
    diagnose: fn(u64) -> bool,
    pub(crate) iteration: u64,
    /// True if the graph has mode inputs (dropout), which every step feeds: training, step.
    feeds_mode: bool,
    busy: Duration,
    /// The other processes of a data-parallel run (see `Trainer::data_parallel`).
    #[cfg(feature = "mpi")]
    pub(crate) ranks: Option<crate::distributed::Ranks>,
}

impl Trainer {
    /// Builds the training step of `objective` (gradients of every trainable param, the
    /// optimizer's updates) and compiles it. Sparse params (`Graph::set_sparse`) get row
    /// gradients and the row rule of `settings.sparse` (or of the optimizer); diagnostics
    /// cover the dense params only, since a sparse param's gradient is never a whole table.
    /// It compiles on the tier `KILN_TIER` names (read once, `kiln_compiler::settings`), else
    /// [`Tier::Auto`] (see [`Trainer::new_on`]). Its steps run in training mode (dropout drops,
    /// with the masks of the step) whatever the graph's [`Mode`]; [`Trainer::evaluate`] runs in
    /// eval mode.
    #[track_caller]
    pub fn new<'g>(graph: &'g Graph, objective: &Objective<'g>, settings: &Settings<'_>) -> Result<Trainer> {
        Trainer::new_on(kiln_compiler::settings::Settings::current().tier, graph, objective, settings)
    }

    /// [`Trainer::new`] on `tier`. On [`Tier::Auto`] the step switches to the native tier
    /// when it is ready; the steps that also compute diagnostics stay on the JIT.
    #[track_caller]
    pub fn new_on<'g>(
        tier: Tier,
        graph: &'g Graph,
        objective: &Objective<'g>,
        settings: &Settings<'_>,
    ) -> Result<Trainer> {
        Trainer::build(tier, graph, objective, settings, false)
    }

    /// [`Trainer::new_on`]; with `reduce_gradients`, each gradient is computed into a buffer of
    /// its own that a data-parallel run replaces by its mean across processes before the
    /// update reads it.
    #[track_caller]
    pub(crate) fn build<'g>(
        tier: Tier,
        graph: &'g Graph,
        objective: &Objective<'g>,
        settings: &Settings<'_>,
        reduce_gradients: bool,
    ) -> Result<Trainer> {
        if !(settings.lr.is_finite() && settings.lr >= 0.0) {
            let detail = format!("the learning rate must be a finite number >= 0, got {}", settings.lr);
            return Err(Error::Argument { op: "Trainer", detail, location: kiln_compiler::Location::caller() });
        }
        let (sparse, trainable): (Vec<_>, Vec<_>) = graph
            .params()
            .into_iter()
            .filter(|(_, _, trainable)| *trainable)
            .map(|(t, name, _)| (t, name))
            .partition(|(_, name)| graph.sparse(name).is_some());
        let location = kiln_compiler::Location::caller();
        for (name, metric) in &objective.metrics {
            if metric.shape().dims().iter().any(|dim| *dim != kiln_compiler::Dim::Static(1)) {
                let detail =
                    format!("metric `{name}` must be a scalar (one element), but its shape is {}", metric.shape());
                return Err(Error::Shape { op: "Trainer::new", detail, location });
            }
        }
        let params: Vec<Tensor<'g>> = trainable.iter().map(|(t, _)| *t).collect();
        let sparse: Vec<Tensor<'g>> = sparse.iter().map(|(t, _)| *t).collect();
        let (grads, row_grads) = graph.grad_rows(objective.loss, &params, &sparse)?;
        let schedule = Schedule::inputs(graph)?;
        let updates = settings.optimizer.updates(graph, &params, &grads, &schedule)?;
        let sparse = SparseUpdates::new(graph, &row_grads, settings.sparse.unwrap_or(settings.optimizer))?;
        let mut inputs = objective.inputs.clone();
        inputs.extend([schedule.lr, schedule.step]);
        // A graph with dropout reads its mode: the steps feed it themselves (training, counted
        // by the step), so the masks follow the step count through checkpoints and tiers.
        let feeds_mode = graph.has_mode_inputs();
        if feeds_mode {
            let mode = graph.mode_inputs()?;
            inputs.extend([mode.training, mode.step]);
        }
        let mut outputs = vec![objective.loss];
        outputs.extend(objective.metrics.iter().map(|(_, metric)| *metric));
        let mut checks = Vec::with_capacity(grads.len() + updates.len());
        for ((_, name), grad) in trainable.iter().zip(&grads) {
            outputs.push(grad.mul(0.0)?.sum_all()?);
            checks.push(format!("the gradient of `{name}`"));
        }
        let names = graph.params();
        for (param, value) in &updates {
            outputs.push(value.mul(0.0)?.sum_all()?);
            let name = names.iter().find(|(t, _, _)| t.id().ok() == param.id().ok()).map_or("?", |(_, name, _)| name);
            checks.push(format!("the update of `{name}`"));
        }
        let input_names = objective
            .inputs
            .iter()
            .map(|input| match input.id().map(|id| graph.node(id).op) {
                Ok(kiln_compiler::Op::Input { name }) => name,
                _ => "?".to_string(),
            })
            .collect();
        outputs.extend(sparse.outputs(&row_grads));
        let reduced: Vec<(String, Tensor<'g>)> = match reduce_gradients {
            true => trainable
                .iter()
                .zip(&grads)
                .map(|((_, name), &grad)| (format!("the gradient of `{name}`"), grad))
                .collect(),
            false => Vec::new(),
        };
        let (options, location) = (Options::default(), Location::caller());
        let lean = build_function(tier, graph, &inputs, &outputs, &updates, &reduced, &options, location)?;
        outputs.extend(&grads);
        let diagnostic_tier = if tier == Tier::Auto { Tier::Jit } else { tier };
        let diagnostic =
            build_function(diagnostic_tier, graph, &inputs, &outputs, &updates, &reduced, &options, location)?;
        Ok(Trainer {
            lean,
            diagnostic,
            in_diagnostic: false,
            trainable: trainable.into_iter().map(|(_, name)| name).collect(),
            sparse,
            metrics: objective.metrics.iter().map(|(name, _)| name.clone()).collect(),
            inputs: input_names,
            checks,
            lr: settings.lr,
            schedule: settings.schedule,
            diagnose: settings.diagnose,
            iteration: 0,
            feeds_mode,
            busy: Duration::ZERO,
            #[cfg(feature = "mpi")]
            ranks: None,
        })
    }

    /// Runs one step on `inputs` (the objective's inputs, in order). A step whose loss, or any
    /// gradient or update, is not finite is refused with [`Error::Diverged`]: the params and
    /// the optimizer's state stay those of the last good step, and the error names the step,
    /// what went bad first (an input, the loss or a gradient) and the first param concerned.
    /// An error found while running (a label out of range) names the caller's line.
    #[track_caller]
    pub fn step(&mut self, inputs: &[Value]) -> Result<Report> {
        let started = Instant::now();
        let iteration = self.iteration;
        let lr = self.schedule.at(self.lr, iteration + 1);
        let mut values = inputs.to_vec();
        values.extend(Schedule::values(lr, iteration + 1));
        if self.feeds_mode {
            let step = i64::try_from(iteration + 1).unwrap_or(i64::MAX);
            values.extend([Value::scalar(DType::Bool, 1.0), Value::i64([], vec![step])]);
        }
        let diagnosed = (self.diagnose)(iteration);
        let before = diagnosed.then(|| self.current().params());
        if diagnosed != self.in_diagnostic {
            let params = self.current().params();
            self.in_diagnostic = diagnosed;
            self.current_mut().set_params(&params)?;
        }
        let checks = 1 + self.metrics.len()..1 + self.metrics.len() + self.checks.len();
        let rows = checks.end..checks.end + self.sparse.output_count();
        // The row gradients of sparse tables are checked with the dense ones: a refused step
        // moves no row either.
        let finite = |out: &[Value]| {
            out[0].item().is_some_and(f64::is_finite)
                && out[checks.clone()].iter().all(|c| c.item().is_some_and(f64::is_finite))
                && out[rows.clone()].iter().all(all_finite)
        };
        let (out, accepted) = self.current_mut().call_checked(&values, finite)?;
        let step = iteration + 1;
        if !accepted {
            return Err(Error::Diverged { step, detail: self.refusal(inputs, &out) });
        }
        let function = if self.in_diagnostic { &mut self.diagnostic } else { &mut self.lean };
        self.sparse.apply_to_function(function, &out[rows.clone()], lr, step)?;
        self.iteration += 1;
        let loss = out[0].item().unwrap_or(f64::NAN);
        let metrics: Vec<(String, f64)> =
            self.metrics.iter().zip(&out[1..]).map(|(name, v)| (name.clone(), v.item().unwrap_or(f64::NAN))).collect();
        #[cfg(feature = "mpi")]
        let (loss, metrics) = self.after_data_parallel_step(loss, metrics)?;
        let diagnostics = match before {
            Some(before) => Some(self.diagnostics(&before, &out[rows.end..], step)?),
            None => None,
        };
        self.busy += started.elapsed();
        Ok(Report { iteration, lr, loss, metrics, diagnostics })
    }

    /// Why a step was refused: the first of the fed inputs, the loss and the checks (gradients,
    /// then updates) that is not finite, and the first param whose gradient or update is not.
    fn refusal(&self, inputs: &[Value], out: &[Value]) -> String {
        let checks = &out[1 + self.metrics.len()..1 + self.metrics.len() + self.checks.len()];
        let first_check = self.checks.iter().zip(checks).find(|(_, c)| !c.item().is_some_and(f64::is_finite));
        let param = match first_check {
            Some((what, _)) => format!("{what} is the first that is not finite"),
            None => "every gradient and update is finite".to_string(),
        };
        let loss = out[0].item().unwrap_or(f64::NAN);
        let bad_input = self.inputs.iter().zip(inputs).find_map(|(name, value)| {
            let is_float = matches!(value.dtype(), kiln_compiler::DType::F32 | kiln_compiler::DType::F64);
            let at = if is_float { value.to_f64_vec().iter().position(|v| !v.is_finite()) } else { None };
            at.map(|at| (name, at))
        });
        let first = match bad_input {
            Some((name, at)) => {
                format!("input `{name}` went bad first (element {at} is not finite); the loss is {loss}")
            }
            None if !loss.is_finite() => format!("the loss went bad first (it is {loss}; every input is finite)"),
            None => format!("a gradient went bad first (the loss {loss} and every input are finite)"),
        };
        format!(
            "{first}; {param}. The step was not committed: the params and the optimizer's state are those of step {}",
            self.iteration
        )
    }

    fn diagnostics(&self, before: &ParamStore, grads: &[Value], step: u64) -> Result<Diagnostics> {
        let after = self.current().params();
        let mut params = Vec::with_capacity(self.trainable.len());
        for (name, grad) in self.trainable.iter().zip(grads) {
            if !all_finite(grad) {
                return Err(Error::Diverged { step, detail: format!("the gradient of `{name}` is not finite") });
            }
            let (old, new) = (before.get(name), after.get(name));
            let (Some(old), Some(new)) = (old, new) else { return Err(Error::MissingParam { name: name.clone() }) };
            let (old, new) = (old.to_f64_vec(), new.to_f64_vec());
            let (weight_norm, old_norm) = (norm(new.iter().copied()), norm(old.iter().copied()));
            let moved = norm(old.iter().zip(&new).map(|(a, b)| b - a));
            // A param that starts at zero moves infinitely far relative to its size.
            let update_ratio = match (old_norm > 0.0, moved > 0.0) {
                (true, _) => moved / old_norm,
                (false, true) => f64::INFINITY,
                (false, false) => 0.0,
            };
            let grad = grad.to_f64_vec();
            params.push(ParamScale {
                name: name.clone(),
                grad_norm: norm(grad.iter().copied()),
                weight_norm,
                update_ratio,
                histogram: Histogram::of(grad),
            });
        }
        let histogram = Histogram::of(grads.iter().flat_map(Value::to_f64_vec));
        Ok(Diagnostics { params, histogram })
    }

    pub(crate) fn current(&self) -> &Function {
        if self.in_diagnostic { &self.diagnostic } else { &self.lean }
    }

    pub(crate) fn current_mut(&mut self) -> &mut Function {
        if self.in_diagnostic { &mut self.diagnostic } else { &mut self.lean }
    }

    /// The current value of every param (optimizer state included, the sparse rules' too).
    pub fn params(&self) -> ParamStore {
        let mut params = self.current().params();
        for (name, value) in self.sparse.state().iter() {
            params.set(name, value.clone());
        }
        params
    }

    /// Sets the params named in `store` (pre-trained weights, or a fresh initialisation from
    /// another seed); every other param and the optimizer's state keep their values. Each name
    /// must be a param of the step, with its shape; otherwise nothing changes. In a
    /// data-parallel run, set the same values on every rank (or load a checkpoint).
    #[track_caller]
    pub fn set_params(&mut self, store: &ParamStore) -> Result<()> {
        let mut params = self.params();
        for (name, value) in store.iter() {
            if params.get(name).is_none() {
                let detail = format!("the training step has no param `{name}`");
                return Err(Error::Name { detail, location: kiln_compiler::Location::caller() });
            }
            params.set(name, value.clone());
        }
        self.sparse.check_state(&params)?;
        self.current_mut().set_params(&params)?;
        self.sparse.set_state(&params)
    }

    /// Runs `steps` steps, feeding `inputs(iteration)` at each, with a progress bar on a
    /// terminal (plain lines at the diagnosed steps otherwise), and hands every report to
    /// `on_report`, which may print through the `println` it is given without breaking the bar.
    /// A step's error names the line that called `fit`.
    #[track_caller]
    pub fn fit(
        &mut self,
        steps: u64,
        mut inputs: impl FnMut(u64) -> Vec<Value>,
        mut on_report: impl FnMut(&Report, &dyn Fn(&str)),
    ) -> Result<()> {
        let progress = Progress::new(self.iteration + steps);
        for _ in 0..steps {
            let report = match self.step(&inputs(self.iteration)) {
                Ok(report) => report,
                Err(error) => {
                    progress.finish();
                    return Err(error);
                }
            };
            progress.update(&report, self.steps_per_second());
            on_report(&report, &|line: &str| progress.println(line));
        }
        progress.finish();
        Ok(())
    }

    /// Runs `evaluation` (a function compiled without updates, on held-out data say, whose
    /// params are named as this trainer's) on `inputs` with the trainer's current params, in
    /// eval mode: its dropout passes its input through, whatever the graph's mode. It may be
    /// compiled from the trainer's own graph (the model's forward, say).
    #[track_caller]
    pub fn evaluate(&self, evaluation: &mut Function, inputs: &[Value]) -> Result<Vec<Value>> {
        evaluation.set_params(&self.params())?;
        evaluation.call_in(Mode::Eval, inputs)
    }

    /// Writes a checkpoint to `path`: the params and the optimizer's state (safetensors), the
    /// step count and `config` (JSON), atomically. Params holding a NaN or an infinity (set by
    /// the caller) do not replace a good checkpoint; see [`Trainer::save_with`].
    ///
    /// In a data-parallel run, rank 0 writes and every rank returns once it is written.
    pub fn save(&self, path: &Path, config: serde_json::Value) -> Result<()> {
        self.save_with(path, config, IfDiverged::KeepGood)
    }

    /// [`Trainer::save`], saying whether non-finite params may replace a good checkpoint.
    pub fn save_with(&self, path: &Path, config: serde_json::Value, if_diverged: IfDiverged) -> Result<()> {
        let checkpoint = Checkpoint { params: self.params(), step: self.iteration, config };
        #[cfg(feature = "mpi")]
        if let Some(ranks) = &self.ranks {
            if ranks.rank() == 0 {
                checkpoint.save_with(path, if_diverged)?;
            }
            return ranks.barrier("waiting for rank 0 to write the checkpoint");
        }
        checkpoint.save_with(path, if_diverged)
    }

    /// Restores the params, the optimizer's state and the step count from the checkpoint at
    /// `path` and returns its config. The checkpoint must have exactly this trainer's params
    /// (names, shapes, dtypes); otherwise the error lists every mismatch and nothing changes.
    /// Training on from step k then gives the same bits as a run never interrupted.
    ///
    /// In a data-parallel run every rank loads the same file (rank 0's, on a shared file
    /// system), and the ranks check that they now hold the same params.
    pub fn load(&mut self, path: &Path) -> Result<serde_json::Value> {
        let checkpoint = Checkpoint::load(path)?;
        checkpoint.check_against(path, &self.params())?;
        self.sparse.check_state(&checkpoint.params)?;
        self.current_mut().set_params(&checkpoint.params)?;
        self.sparse.set_state(&checkpoint.params)?;
        self.iteration = checkpoint.step;
        #[cfg(feature = "mpi")]
        self.check_identical_across_ranks("after loading the checkpoint")?;
        Ok(checkpoint.config)
    }

    /// Runs the compiled steps on `threads` threads from now on (results do not depend on it).
    pub fn set_threads(&mut self, threads: usize) {
        self.lean.set_threads(threads);
        self.diagnostic.set_threads(threads);
    }

    /// Splits every compiled kernel touching at least `elements` elements across the threads
    /// (see [`Function::set_split_threshold`](crate::Function::set_split_threshold); `0` splits
    /// every kernel that can be split, for tests of thread counts on small models).
    pub fn set_split_threshold(&mut self, elements: i64) {
        self.lean.set_split_threshold(elements);
        self.diagnostic.set_split_threshold(elements);
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.iteration
    }

    /// Steps per second so far, diagnosed steps included.
    pub fn steps_per_second(&self) -> f64 {
        self.iteration as f64 / self.busy.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The lean step, compiled (for its listing, kernel count and compile time).
    pub fn function(&self) -> &Function {
        &self.lean
    }
}

fn norm(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn all_finite(value: &Value) -> bool {
    value.to_f64_vec().iter().all(|v| v.is_finite())
}
