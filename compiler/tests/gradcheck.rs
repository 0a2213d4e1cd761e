//! Table-driven gradient checks: every primitive op (one case per [`OpKind`], chosen by an
//! exhaustive `match`, so a new op without a case does not compile) and every composite of
//! `layers`, each over several shapes drawn deterministically from a seed, against central
//! finite differences in `f64`. Then second-order gradients (grad of grad, a Hessian-vector
//! product) and frozen params.
//!
//! Every case builds a graph of `f32` nodes in which the op takes part in the scalar loss
//! `sum(output * r)`, `r` a random constant, and `check_gradients` evaluates it under
//! `Precision::F64`.

use std::collections::{HashMap, HashSet};

use kiln_compiler::prelude::*;
use kiln_compiler::{Data, Node, NodeId, OpKind, random};

/// The finite-difference step.
const STEP: f64 = 1e-6;
/// The largest accepted error (absolute below 1, relative above).
const TOLERANCE: f64 = 1e-6;
/// The seed every shape, value and weight is drawn from.
const SEED: u64 = 0x6b69_6c6e;

// ---- deterministic randomness ----------------------------------------------------------

/// A stream of numbers from kiln's own counter-based generator.
struct Rng {
    key: u32,
    next: u64,
}

impl Rng {
    fn new(stream: u64) -> Rng {
        Rng { key: random::draw_key(SEED, stream), next: 0 }
    }

    /// Uniform on `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        let u = random::uniform(self.key, self.next);
        self.next += 1;
        u
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform on `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }

    /// Uniform on `low..=high`.
    fn int(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    fn coin(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A shape of rank `ranks` with dims in `dims`.
    fn shape(&mut self, ranks: (usize, usize), dims: (usize, usize)) -> Vec<usize> {
        let rank = self.int(ranks.0, ranks.1);
        (0..rank).map(|_| self.int(dims.0, dims.1)).collect()
    }

    /// A non-empty, sorted subset of `0..rank`.
    fn axes(&mut self, rank: usize) -> Vec<usize> {
        loop {
            let axes: Vec<usize> = (0..rank).filter(|_| self.coin(0.5)).collect();
            if !axes.is_empty() {
                return axes;
            }
        }
    }

    /// A shape that broadcasts to `out`: some leading dims dropped, some others set to 1.
    fn broadcast_operand(&mut self, out: &[usize]) -> Vec<usize> {
        let dropped = if self.coin(0.5) { 0 } else { self.int(0, out.len()) };
        out[dropped..].iter().map(|&d| if self.coin(0.35) { 1 } else { d }).collect()
    }
}

/// How the elements of a leaf are drawn.
#[derive(Clone, Copy, Debug)]
enum Dist {
    /// Normal with this standard deviation.
    Normal(f64),
    /// Uniform on `[low, high)` (positive ranges for log, sqrt, fractional powers).
    Uniform(f64, f64),
    /// Magnitude uniform on `[low, high)`, random sign: away from zero (recip, div).
    Away(f64, f64),
    /// Distinct values in `(-2, 2)`, at least 0.006 apart from every other distinct value of
    /// the same case and 0.003 from zero: no ties for max, min, reduce_max and comparisons,
    /// no kink of abs or relu (the finite-difference step is 1e-6).
    Distinct,
    /// These exact values.
    Exact(&'static [f64]),
    /// In `(-1.5, 1.5)`, with twice each value at least 0.2 away from an integer (for
    /// truncating casts of `2y`).
    OffInteger,
}

// ---- one gradient check ----------------------------------------------------------------

/// What a case builds its graph with: leaves that are fed (and recorded for the report), the
/// leaves to differentiate, and the values of everything.
struct Setup<'g> {
    g: &'g Graph,
    rng: Rng,
    feeds: Feeds,
    params: ParamStore,
    wrt: Vec<Tensor<'g>>,
    symbols: HashMap<String, usize>,
    notes: Vec<String>,
    /// Grid points already taken by `Dist::Distinct` values.
    taken: HashSet<i64>,
}

impl<'g> Setup<'g> {
    fn new(g: &'g Graph, stream: u64) -> Setup<'g> {
        Setup {
            g,
            rng: Rng::new(stream),
            feeds: Feeds::new(),
            params: ParamStore::new(),
            wrt: Vec::new(),
            symbols: HashMap::new(),
            notes: Vec::new(),
            taken: HashSet::new(),
        }
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn values(&mut self, n: usize, dist: Dist) -> Vec<f64> {
        match dist {
            Dist::Normal(std) => (0..n).map(|_| std * self.rng.normal()).collect(),
            Dist::Uniform(low, high) => (0..n).map(|_| self.rng.between(low, high)).collect(),
            Dist::Away(low, high) => (0..n)
                .map(|_| {
                    let sign = if self.rng.coin(0.5) { 1.0 } else { -1.0 };
                    sign * self.rng.between(low, high)
                })
                .collect(),
            Dist::Distinct => {
                assert!(self.taken.len() + n <= 400, "a case asks for more than 400 distinct values");
                (0..n)
                    .map(|_| {
                        loop {
                            let k = self.rng.below(400) as i64 - 200;
                            if self.taken.insert(k) {
                                break (k as f64 + 0.5) * 0.01 + self.rng.between(-0.002, 0.002);
                            }
                        }
                    })
                    .collect()
            }
            Dist::OffInteger => {
                (0..n).map(|_| (self.rng.int(0, 5) as f64 - 3.0 + self.rng.between(0.2, 0.8)) / 2.0).collect()
            }
            Dist::Exact(values) => {
                assert_eq!(values.len(), n, "exact values for {n} elements");
                values.to_vec()
            }
        }
    }

    /// An `f32` input of a static shape, fed `f64` values and differentiated.
    fn input(&mut self, name: &str, shape: &[usize], dist: Dist) -> Result<Tensor<'g>> {
        let dims: Vec<Dim> = shape.iter().map(|&d| d.into()).collect();
        self.input_dims(name, &dims, shape, DType::F32, dist)
    }

    /// An input of possibly symbolic dims (`concrete` gives their sizes for this run) and a
    /// float dtype, differentiated.
    fn input_dims(
        &mut self,
        name: &str,
        dims: &[Dim],
        concrete: &[usize],
        dtype: DType,
        dist: Dist,
    ) -> Result<Tensor<'g>> {
        let x = self.g.typed_input(name, Shape(dims.to_vec()), dtype)?;
        for (dim, &size) in dims.iter().zip(concrete) {
            if let Dim::Sym(symbol) = dim {
                self.symbols.insert(symbol.clone(), size);
            }
        }
        let values = self.values(concrete.iter().product(), dist);
        self.feeds.insert(name, Value::f64(concrete.to_vec(), values));
        self.wrt.push(x);
        self.note(format!("{name}: {dtype}{}", Shape(dims.to_vec())));
        Ok(x)
    }

    /// A trainable param, differentiated.
    fn param(&mut self, name: &str, shape: &[usize], dist: Dist) -> Result<Tensor<'g>> {
        let p = self.g.param(name, shape.to_vec(), Init::ZEROS)?;
        let values = self.values(shape.iter().product(), dist);
        self.params.set(name, Value::f64(shape.to_vec(), values));
        self.wrt.push(p);
        self.note(format!("param {name}: {shape:?}"));
        Ok(p)
    }

    /// Gives random values to every param declared (by a layer) but not yet valued, and
    /// differentiates them.
    fn adopt_params(&mut self, dist: Dist) {
        for (p, name, _) in self.g.params() {
            if self.params.get(&name).is_none() {
                let shape = p.shape().as_static().expect("params are static");
                let values = self.values(shape.iter().product(), dist);
                self.params.set(&name, Value::f64(shape.clone(), values));
                self.wrt.push(p);
                self.note(format!("param {name}: {shape:?}"));
            }
        }
    }

    /// Integer indices in `0..rows`, with a repeat whenever there are two or more.
    fn indices(&mut self, name: &str, shape: &[usize], rows: usize, dtype: DType) -> Result<Tensor<'g>> {
        let dims: Vec<Dim> = shape.iter().map(|&d| d.into()).collect();
        self.indices_dims(name, &dims, shape, rows, dtype)
    }

    /// Integer indices of possibly symbolic dims (`concrete` gives their sizes).
    fn indices_dims(
        &mut self,
        name: &str,
        dims: &[Dim],
        shape: &[usize],
        rows: usize,
        dtype: DType,
    ) -> Result<Tensor<'g>> {
        let t = self.g.typed_input(name, Shape(dims.to_vec()), dtype)?;
        let n: usize = shape.iter().product();
        // Every row in turn from a random start, shuffled, so rows repeat once there are more
        // indices than rows; and the last index repeats the first in any case.
        let start = self.rng.below(rows);
        let mut values: Vec<i64> = (0..n).map(|i| ((start + i) % rows) as i64).collect();
        self.rng.shuffle(&mut values);
        if n >= 2 {
            values[n - 1] = values[0];
        }
        self.note(format!("{name}: {dtype}{} = {values:?}", Shape(dims.to_vec())));
        let value = Value::i64(shape.to_vec(), values).cast(dtype);
        self.feeds.insert(name, value);
        Ok(t)
    }

    /// A fed bool mask.
    fn mask(&mut self, name: &str, shape: &[usize]) -> Result<Tensor<'g>> {
        let t = self.g.typed_input(name, shape.to_vec(), DType::Bool)?;
        let values: Vec<bool> = (0..shape.iter().product()).map(|_| self.rng.coin(0.5)).collect();
        self.note(format!("{name}: bool{shape:?}"));
        self.feeds.insert(name, Value::new(shape.to_vec(), Data::Bool(values)).expect("mask size"));
        Ok(t)
    }

    /// An `f32` constant.
    fn constant(&mut self, shape: &[usize], dist: Dist) -> Tensor<'g> {
        let values = self.values(shape.iter().product(), dist);
        self.note(format!("constant {shape:?}"));
        self.g.constant(Value::f32(shape.to_vec(), values.iter().map(|&v| v as f32).collect()))
    }

    /// `sum(out * r)` for a random constant `r` of `out`'s shape (a fed input when the shape
    /// is symbolic), checked against finite differences with respect to every recorded leaf.
    fn check(mut self, out: Tensor<'g>, order: Order) -> Result<Outcome> {
        let kinds: HashSet<OpKind> = self.g.nodes().iter().map(|node| node.op.kind()).collect();
        let shape = out.shape();
        let concrete: Vec<usize> = shape
            .dims()
            .iter()
            .map(|dim| match dim {
                Dim::Static(n) => *n,
                Dim::Sym(symbol) => self.symbols[symbol],
            })
            .collect();
        let weights: Vec<f64> = (0..concrete.iter().product()).map(|_| self.rng.between(-1.5, 1.5)).collect();
        let r = if shape.as_static().is_some() {
            match out.dtype() {
                DType::F64 => self.g.constant(Value::f64(concrete.clone(), weights)),
                _ => self.g.constant(Value::f32(concrete.clone(), weights.iter().map(|&w| w as f32).collect())),
            }
        } else {
            let r = self.g.typed_input("r", shape.clone(), out.dtype())?;
            self.feeds.insert("r", Value::f64(concrete.clone(), weights));
            r
        };
        self.note(format!("output: {}{shape}", out.dtype()));
        let mut loss = out.mul(r)?.sum_all()?;
        if order == Order::Second {
            // The gradient graph is itself differentiated: sum_i <grad_i, v_i>, with random
            // constants v_i, whose gradient is a Hessian-vector product.
            let grads = self.g.grad(loss, &self.wrt)?;
            let mut total: Option<Tensor<'g>> = None;
            for grad in grads {
                let shape = grad.shape().as_static().unwrap_or_default();
                let values: Vec<f64> = (0..shape.iter().product()).map(|_| self.rng.between(-1.5, 1.5)).collect();
                let v = match grad.dtype() {
                    DType::F64 => self.g.constant(Value::f64(shape, values)),
                    _ => self.g.constant(Value::f32(shape, values.iter().map(|&v| v as f32).collect())),
                };
                let term = grad.mul(v)?.sum_all()?.cast(DType::F64)?;
                total = Some(match total {
                    Some(total) => total.add(term)?,
                    None => term,
                });
            }
            loss = total.expect("every case differentiates some leaf");
        }
        let check = check_gradients(self.g, loss, &self.wrt, &self.feeds, &self.params, STEP)?;
        Ok(Outcome { desc: self.notes.join(", "), check, kinds })
    }
}

/// Whether a case checks its gradient, or the gradient of (a projection of) its gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    First,
    Second,
}

/// The result of one check.
struct Outcome {
    /// The leaves' shapes and the case's attributes.
    desc: String,
    check: GradientCheck,
    /// The kinds of the forward graph's nodes.
    kinds: HashSet<OpKind>,
}

/// Builds the op's output in a fresh graph; the `usize` is the trial number.
type Build = Box<dyn for<'g> Fn(&mut Setup<'g>, usize) -> Result<Tensor<'g>>>;

/// A case: a graph builder run over `trials` shapes.
struct Case {
    trials: usize,
    build: Build,
}

impl Case {
    fn new(trials: usize, build: impl for<'g> Fn(&mut Setup<'g>, usize) -> Result<Tensor<'g>> + 'static) -> Case {
        Case { trials, build: Box::new(build) }
    }

    /// Runs trial `trial` in a fresh graph. The error carries what had been built.
    fn run(&self, stream: u64, trial: usize, order: Order) -> Result<Outcome, String> {
        let g = Graph::new();
        let mut setup = Setup::new(&g, stream);
        let out = match (self.build)(&mut setup, trial) {
            Ok(out) => out,
            Err(error) => return Err(format!("{} -- building failed: {error}", setup.notes.join(", "))),
        };
        let desc = setup.notes.join(", ");
        setup.check(out, order).map_err(|error| format!("{desc} -- checking failed: {error}"))
    }
}

/// Runs every trial of a case and returns one line per failure.
fn run_case(label: &str, stream: u64, case: &Case, must_contain: Option<OpKind>, order: Order) -> Vec<String> {
    let mut failures = Vec::new();
    let label = match order {
        Order::First => label.to_string(),
        Order::Second => format!("{label} (second order)"),
    };
    for trial in 0..case.trials {
        let outcome = match case.run(stream * 1000 + trial as u64, trial, order) {
            Ok(outcome) => outcome,
            Err(error) => {
                failures.push(format!("{label} trial {trial}: {error}"));
                continue;
            }
        };
        let Outcome { desc, check, kinds } = outcome;
        if let Some(kind) = must_contain
            && !kinds.contains(&kind)
        {
            failures.push(format!("{label} trial {trial} ({desc}): the graph has no `{kind}` node"));
        }
        if check.elements == 0 {
            failures.push(format!("{label} trial {trial} ({desc}): no element was checked"));
        }
        // NaN fails too.
        if check.max_error.is_nan() || check.max_error >= TOLERANCE {
            failures.push(format!(
                "{label} trial {trial} ({desc}): max gradient error {:.3e} at {:?} over {} elements",
                check.max_error, check.worst, check.elements
            ));
        }
    }
    failures
}

// ---- the cases of the primitive ops ----------------------------------------------------

type UnaryFn = for<'a> fn(Tensor<'a>) -> Result<Tensor<'a>>;
type BinaryFn = for<'a> fn(Tensor<'a>, Tensor<'a>) -> Result<Tensor<'a>>;

/// Shape pairs every binary op and comparison is checked on, before random ones.
const BROADCAST_PAIRS: &[(&[usize], &[usize])] = &[
    (&[3, 1], &[4]),
    (&[2, 3, 4], &[3, 1]),
    (&[], &[2, 3]),
    (&[2, 3], &[]),
    (&[2, 1, 3], &[4, 1]),
    (&[2, 3], &[2, 3]),
];
const RANDOM_PAIRS: usize = 6;

/// A broadcast pair of shapes: a fixed one for early trials, then random ones.
fn broadcast_pair(rng: &mut Rng, trial: usize) -> (Vec<usize>, Vec<usize>) {
    match BROADCAST_PAIRS.get(trial) {
        Some((a, b)) => (a.to_vec(), b.to_vec()),
        None => {
            let out = rng.shape((1, 3), (2, 4));
            (rng.broadcast_operand(&out), rng.broadcast_operand(&out))
        }
    }
}

/// An elementwise op of one operand over random shapes.
fn unary_case(f: UnaryFn, dist: Dist) -> Case {
    Case::new(8, move |s, trial| {
        let shape = if trial == 0 { vec![] } else { s.rng.shape((1, 3), (1, 4)) };
        let x = s.input("x", &shape, dist)?;
        f(x)
    })
}

/// An elementwise op of two operands over broadcast shape pairs.
fn binary_case(f: BinaryFn, a_dist: Dist, b_dist: Dist) -> Case {
    Case::new(BROADCAST_PAIRS.len() + RANDOM_PAIRS, move |s, trial| {
        let (a_shape, b_shape) = broadcast_pair(&mut s.rng, trial);
        let a = s.input("a", &a_shape, a_dist)?;
        let b = s.input("b", &b_shape, b_dist)?;
        f(a, b)
    })
}

/// A comparison steering a select between differentiable branches:
/// `select(cmp(x, y), x, 2y)`, broadcast.
fn compare_case(cmp: BinaryFn) -> Case {
    Case::new(BROADCAST_PAIRS.len() + RANDOM_PAIRS, move |s, trial| {
        let (x_shape, y_shape) = broadcast_pair(&mut s.rng, trial);
        let x = s.input("x", &x_shape, Dist::Distinct)?;
        let y = s.input("y", &y_shape, Dist::Distinct)?;
        cmp(x, y)?.select(x, y.mul(2.0)?)
    })
}

/// Equality cannot hold between two perturbed floats without breaking the finite
/// differences, so `eq` and `ne` are checked where equality is stable: an element against its
/// row's maximum (which moves with it), and integer labels against a class.
fn eq_case(cmp: BinaryFn) -> Case {
    Case::new(5, move |s, trial| match trial % 2 {
        0 => {
            let shape = s.rng.shape((2, 3), (2, 4));
            let axis = s.rng.below(shape.len());
            s.note(format!("x against max(x, axis={axis})"));
            let x = s.input("x", &shape, Dist::Distinct)?;
            let is_max = cmp(x, x.max(&[axis], true)?)?;
            is_max.select(x.mul(3.0)?, x.sin()?)
        }
        _ => {
            let rows = s.rng.int(3, 5);
            let cols = s.rng.int(1, 4);
            let labels = s.indices("labels", &[rows, 1], 3, DType::I64)?;
            let x = s.input("x", &[rows, cols], Dist::Normal(1.0))?;
            let y = s.input("y", &[cols], Dist::Normal(1.0))?;
            s.note("labels against 1");
            let class = s.g.typed_scalar(1.0, DType::I64);
            cmp(labels, class)?.select(x, y.mul(2.0)?)
        }
    })
}

fn input_case() -> Case {
    Case::new(4, |s, trial| match trial {
        0 => s.input("x", &[], Dist::Normal(1.0)),
        1 => {
            let shape = s.rng.shape((1, 3), (1, 4));
            s.input("x", &shape, Dist::Normal(1.0))
        }
        2 => {
            // The same input used three times.
            let shape = s.rng.shape((1, 3), (1, 4));
            let x = s.input("x", &shape, Dist::Normal(1.0))?;
            x.mul(x)?.add(x)
        }
        _ => {
            let batch = s.rng.int(1, 4);
            s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))
        }
    })
}

fn param_case() -> Case {
    Case::new(3, |s, _| {
        let (rows, inner, outer) = (s.rng.int(1, 4), s.rng.int(1, 4), s.rng.int(1, 4));
        let x = s.input("x", &[rows, inner], Dist::Normal(1.0))?;
        let w = s.param("w", &[inner, outer], Dist::Normal(0.7))?;
        let b = s.param("b", &[outer], Dist::Normal(0.5))?;
        x.matmul(w)?.add(b)?.tanh()
    })
}

fn constant_case() -> Case {
    Case::new(4, |s, _| {
        let out = s.rng.shape((1, 3), (1, 4));
        let x = s.input("x", &out, Dist::Normal(1.0))?;
        let (c_shape, d_shape) = (s.rng.broadcast_operand(&out), s.rng.broadcast_operand(&out));
        let c = s.constant(&c_shape, Dist::Normal(1.0));
        let d = s.constant(&d_shape, Dist::Normal(1.0));
        x.mul(c)?.sin()?.add(d)?.mul(x)
    })
}

/// Trial 0: a symbolic batch `[B, 3]` (B drawn); later trials: a random static shape.
fn symbolic_batch_or_random_shape(s: &mut Setup<'_>, trial: usize) -> (Vec<Dim>, Vec<usize>) {
    if trial == 0 {
        let batch = s.rng.int(1, 4);
        return (vec![Dim::sym("B"), 3.into()], vec![batch, 3]);
    }
    let shape = s.rng.shape((1, 3), (1, 4));
    (shape.iter().map(|&d| d.into()).collect(), shape)
}

fn fill_case() -> Case {
    Case::new(4, |s, trial| {
        let (dims, concrete) = symbolic_batch_or_random_shape(s, trial);
        let x = s.input_dims("x", &dims, &concrete, DType::F32, Dist::Normal(1.0))?;
        let last = concrete.last().copied().unwrap_or(1);
        let scale = s.g.fill(x.shape(), DType::F32, 2.5);
        let shift = s.g.ones([last]);
        let zeros = s.g.zeros([1, last]);
        x.mul(scale)?.add(shift)?.mul(x)?.add(zeros)
    })
}

fn dim_size_case() -> Case {
    Case::new(4, |s, trial| {
        let batch = s.rng.int(1, 4);
        match trial {
            0 => {
                let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
                s.note("x / dim_size(B)");
                x.div(s.g.dim_size(&[Dim::sym("B")], DType::F32)?)
            }
            1 => {
                let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
                s.note("sum(x) / dim_size(B)");
                x.sum_all()?.div(s.g.dim_size(&[Dim::sym("B")], DType::F32)?)
            }
            2 => {
                let width = s.rng.int(1, 4);
                let dims = [Dim::sym("B"), Dim::sym("W")];
                let x = s.input_dims("x", &dims, &[batch, width], DType::F32, Dist::Normal(1.0))?;
                s.note("sin(x) * dim_size(B, W)");
                x.sin()?.mul(s.g.dim_size(&dims, DType::F32)?)
            }
            _ => {
                let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
                s.note("x^2 / dim_size(B, 3)");
                x.square()?.div(s.g.dim_size(&[Dim::sym("B"), 3.into()], DType::F32)?)
            }
        }
    })
}

fn random_case(normal: bool) -> Case {
    Case::new(4, move |s, trial| {
        let counter = s.g.typed_input("step", Shape::scalar(), DType::I64)?;
        s.feeds.insert("step", Value::i64([], vec![trial as i64]));
        let (dims, concrete) = symbolic_batch_or_random_shape(s, trial);
        let x = s.input_dims("x", &dims, &concrete, DType::F32, Dist::Normal(1.0))?;
        // The draw covers the trailing dims only (broadcast over the rest) in odd trials.
        let draw_dims = if trial % 2 == 1 { dims[dims.len().min(1)..].to_vec() } else { dims };
        let draw = match normal {
            true => s.g.random_normal(Shape(draw_dims), 7 + trial as u64, counter)?,
            false => s.g.random_uniform(Shape(draw_dims), 7 + trial as u64, counter)?,
        };
        x.mul(draw)?.add(x.sin()?.mul(draw)?)
    })
}

fn pow_case() -> Case {
    const EXPONENTS: &[f64] = &[2.0, 3.0, 0.5, -1.5, 2.7, -1.0, 1.0, 0.0];
    Case::new(EXPONENTS.len(), |s, trial| {
        let exponent = EXPONENTS[trial];
        let shape = s.rng.shape((0, 3), (1, 4));
        let dist = if exponent.fract() == 0.0 { Dist::Away(0.3, 2.0) } else { Dist::Uniform(0.3, 2.5) };
        s.note(format!("exponent {exponent}"));
        s.input("x", &shape, dist)?.powf(exponent)
    })
}

fn select_case() -> Case {
    const TRIPLES: &[(&[usize], &[usize], &[usize])] =
        &[(&[3, 1], &[4], &[]), (&[], &[2, 3], &[3]), (&[2, 3, 4], &[3, 1], &[4]), (&[2, 3], &[2, 3], &[2, 3])];
    Case::new(TRIPLES.len() + 4, |s, trial| {
        let (mask, a, b) = match TRIPLES.get(trial) {
            Some((m, a, b)) => (m.to_vec(), a.to_vec(), b.to_vec()),
            None => {
                let out = s.rng.shape((1, 3), (2, 4));
                (s.rng.broadcast_operand(&out), s.rng.broadcast_operand(&out), s.rng.broadcast_operand(&out))
            }
        };
        let m = s.mask("mask", &mask)?;
        let a = s.input("a", &a, Dist::Normal(1.0))?;
        if trial == TRIPLES.len() {
            s.note("on_false = 0.5");
            return m.select(a.sin()?, 0.5);
        }
        let b = s.input("b", &b, Dist::Normal(1.0))?;
        m.select(a.sin()?, b.mul(b)?)
    })
}

fn cast_case() -> Case {
    Case::new(5, |s, trial| {
        let shape = s.rng.shape((1, 3), (1, 4));
        match trial {
            0 => {
                s.note("f32 -> f64");
                let x = s.input("x", &shape, Dist::Normal(1.0))?;
                x.cast(DType::F64)?.sin()
            }
            1 => {
                s.note("f64 -> f32");
                let dims: Vec<Dim> = shape.iter().map(|&d| d.into()).collect();
                let x = s.input_dims("x", &dims, &shape, DType::F64, Dist::Normal(1.0))?;
                let y = s.input("y", &shape, Dist::Normal(1.0))?;
                x.square()?.cast(DType::F32)?.mul(y)
            }
            2 | 3 => {
                // Truncation to an integer: no gradient through y, which stays away from
                // integers so the finite differences see no step either.
                let int = if trial == 2 { DType::I64 } else { DType::I32 };
                s.note(format!("f32 -> {int} -> f32"));
                let x = s.input("x", &shape, Dist::Normal(1.0))?;
                let y = s.input("y", &shape, Dist::OffInteger)?;
                x.mul(y.mul(2.0)?.cast(int)?.cast(DType::F32)?)?.add(y.sin()?)
            }
            _ => {
                s.note("bool -> f32");
                let x = s.input("x", &shape, Dist::Distinct)?;
                let y = s.input("y", &shape, Dist::Distinct)?;
                x.mul(x.gt(y)?.cast(DType::F32)?)?.add(y.mul(y.lt(x)?.cast(DType::F32)?)?)
            }
        }
    })
}

/// A random split of `n` into dims.
fn factorization(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut dims = Vec::new();
    let mut rest = n;
    while rest > 1 && dims.len() < 3 && rng.coin(0.7) {
        let divisors: Vec<usize> = (2..=rest).filter(|&d| rest.is_multiple_of(d)).collect();
        let d = rng.pick(&divisors);
        dims.push(d);
        rest /= d;
    }
    dims.push(rest);
    rng.shuffle(&mut dims);
    dims
}

fn reshape_case() -> Case {
    const FIXED: &[(&[usize], &[usize])] =
        &[(&[2, 3, 4], &[6, 4]), (&[24], &[2, 3, 4]), (&[3, 4], &[4, 3]), (&[], &[1, 1])];
    Case::new(FIXED.len() + 4, |s, trial| {
        if trial == FIXED.len() {
            // Symbolic dims carry through: [B, 4, 5] -> [B, 20].
            let batch = s.rng.int(1, 3);
            let dims = [Dim::sym("B"), 4.into(), 5.into()];
            let x = s.input_dims("x", &dims, &[batch, 4, 5], DType::F32, Dist::Normal(1.0))?;
            s.note("to [B, 20]");
            return x.sin()?.reshape([Dim::sym("B"), 20.into()]);
        }
        let (from, to) = match FIXED.get(trial) {
            Some((from, to)) => (from.to_vec(), to.to_vec()),
            None => {
                let from = s.rng.shape((1, 3), (1, 4));
                let to = factorization(&mut s.rng, from.iter().product());
                (from, to)
            }
        };
        s.note(format!("to {to:?}"));
        let x = s.input("x", &from, Dist::Normal(1.0))?;
        // The sine makes the gradient depend on where each element lands.
        x.reshape(to)?.sin()
    })
}

fn permute_case() -> Case {
    const PERMS: &[&[usize]] = &[&[0, 1, 2], &[0, 2, 1], &[1, 0, 2], &[1, 2, 0], &[2, 0, 1], &[2, 1, 0], &[1, 0]];
    Case::new(PERMS.len() + 2, |s, trial| {
        let perm: Vec<usize> = match PERMS.get(trial) {
            Some(perm) => perm.to_vec(),
            None => {
                let mut perm: Vec<usize> = (0..4).collect();
                s.rng.shuffle(&mut perm);
                perm
            }
        };
        let shape: Vec<usize> = (0..perm.len()).map(|_| s.rng.int(2, 4)).collect();
        s.note(format!("perm {perm:?}"));
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        let y = s.input("y", &shape, Dist::Normal(1.0))?;
        // The product with the unpermuted y ties each element to where it moves.
        let moved = x.permute(&perm)?;
        let back: Vec<usize> =
            (0..perm.len()).map(|i| perm.iter().position(|&p| p == i).expect("a permutation")).collect();
        moved.sin()?.permute(&back)?.mul(y)
    })
}

fn broadcast_to_case() -> Case {
    const PAIRS: &[(&[usize], &[usize])] = &[
        (&[3, 1], &[2, 3, 4]),
        (&[], &[2, 3]),
        (&[4], &[3, 4]),
        (&[1, 1], &[2, 3]),
        (&[2, 1, 3], &[2, 4, 3]),
        (&[1], &[5]),
    ];
    Case::new(PAIRS.len() + 3, |s, trial| {
        if trial == PAIRS.len() {
            let batch = s.rng.int(1, 4);
            let x = s.input("x", &[3], Dist::Normal(1.0))?;
            let y = s.input_dims("y", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
            s.note("x to [B, 3]");
            return x.broadcast_to([Dim::sym("B"), 3.into()])?.mul(y);
        }
        let (from, to) = match PAIRS.get(trial) {
            Some((from, to)) => (from.to_vec(), to.to_vec()),
            None => {
                let to = s.rng.shape((1, 3), (2, 4));
                let mut from = s.rng.broadcast_operand(&to);
                if from == to {
                    from.remove(0);
                }
                (from, to)
            }
        };
        s.note(format!("to {to:?}"));
        let x = s.input("x", &from, Dist::Normal(1.0))?;
        x.broadcast_to(to)?.sin()
    })
}

fn slice_case() -> Case {
    Case::new(10, |s, trial| {
        let mut shape = s.rng.shape((1, 3), (1, 3));
        let axis = s.rng.below(shape.len());
        shape[axis] = s.rng.int(3, 5);
        let size = shape[axis];
        let (start, end) = match trial % 5 {
            0 => (0, s.rng.int(1, size - 1)),    // at the start
            1 => (s.rng.int(1, size - 1), size), // at the end
            2 => (1, size - 1),                  // in the middle
            3 => (0, size),                      // everything
            _ => {
                let i = s.rng.int(1, size - 2);
                (i, i + 1) // one element in the middle
            }
        };
        s.note(format!("axis {axis}, {start}..{end}"));
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        x.sin()?.slice(axis, start, end)
    })
}

fn concat_case() -> Case {
    Case::new(6, |s, _| {
        let shape = s.rng.shape((1, 3), (1, 3));
        let axis = s.rng.below(shape.len());
        s.note(format!("axis {axis}"));
        let mut parts = Vec::new();
        for name in ["a", "b", "c"] {
            let mut part = shape.clone();
            part[axis] = s.rng.int(1, 3);
            let x = s.input(name, &part, Dist::Normal(1.0))?;
            parts.push(x);
        }
        parts[1] = parts[1].sin()?;
        Tensor::concat(&parts, axis)
    })
}

fn reduce_case(is_max: bool) -> Case {
    Case::new(10, move |s, trial| {
        let shape = s.rng.shape((1, 4), (1, 4));
        let axes = if trial == 0 { (0..shape.len()).collect() } else { s.rng.axes(shape.len()) };
        let keepdims = trial % 2 == 1;
        s.note(format!("axes {axes:?}{}", if keepdims { " keepdims" } else { "" }));
        let dist = if is_max { Dist::Distinct } else { Dist::Normal(1.0) };
        let x = s.input("x", &shape, dist)?;
        match is_max {
            true => x.max(&axes, keepdims),
            false => x.sum(&axes, keepdims),
        }
    })
}

/// A sum over a symbolic axis.
fn sum_symbolic_case() -> Case {
    Case::new(2, |s, trial| {
        let batch = s.rng.int(1, 4);
        let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
        let keepdims = trial == 1;
        s.note(format!("axes [0]{}", if keepdims { " keepdims" } else { "" }));
        x.sin()?.sum(&[0], keepdims)
    })
}

fn matmul_case() -> Case {
    const PAIRS: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4, 5], &[5, 2]),
        (&[1, 3, 4], &[2, 4, 6]),
        (&[3, 4], &[4, 2]),
        (&[2, 3, 4], &[2, 4, 5]),
        (&[4, 5], &[2, 5, 3]),
        (&[2, 1, 3, 2], &[4, 2, 3]),
        (&[1, 1], &[1, 1]),
    ];
    Case::new(PAIRS.len() + 4, |s, trial| {
        if trial == PAIRS.len() {
            let batch = s.rng.int(1, 4);
            let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
            let w = s.input("w", &[3, 2], Dist::Normal(1.0))?;
            return x.matmul(w);
        }
        let (a, b) = match PAIRS.get(trial) {
            Some((a, b)) => (a.to_vec(), b.to_vec()),
            None => {
                let batch = s.rng.shape((0, 2), (2, 3));
                let (m, k, n) = (s.rng.int(1, 4), s.rng.int(1, 4), s.rng.int(1, 4));
                let mut a = s.rng.broadcast_operand(&batch);
                let mut b = s.rng.broadcast_operand(&batch);
                a.extend([m, k]);
                b.extend([k, n]);
                (a, b)
            }
        };
        let a = s.input("a", &a, Dist::Normal(1.0))?;
        let b = s.input("b", &b, Dist::Normal(1.0))?;
        a.matmul(b)
    })
}

fn gather_case() -> Case {
    // (table, indices, index dtype)
    const FIXED: &[(&[usize], &[usize], DType)] = &[
        (&[5, 3], &[7], DType::I64),
        (&[4], &[2, 3], DType::I32),
        (&[3, 2, 2], &[4], DType::I64),
        (&[6, 2], &[], DType::I64),
        (&[2, 3], &[3, 2], DType::I32),
    ];
    Case::new(FIXED.len(), |s, trial| {
        let (table, indices, dtype) = FIXED[trial];
        let t = s.input("table", table, Dist::Normal(1.0))?;
        let i = s.indices("indices", indices, table[0], dtype)?;
        t.sin()?.gather(i)
    })
}

fn scatter_add_case() -> Case {
    // (indices, updates, rows, index dtype)
    const FIXED: &[(&[usize], &[usize], usize, DType)] = &[
        (&[6], &[6, 3], 4, DType::I64),
        (&[2, 3], &[2, 3, 2], 3, DType::I64),
        (&[5], &[5], 7, DType::I32),
        (&[4], &[4, 2, 2], 2, DType::I32),
    ];
    Case::new(FIXED.len(), |s, trial| {
        let (indices, updates, rows, dtype) = FIXED[trial];
        let i = s.indices("indices", indices, rows, dtype)?;
        let u = s.input("updates", updates, Dist::Normal(1.0))?;
        // The table the rows are added into: its gradient is checked too.
        let table_shape: Vec<usize> = std::iter::once(rows).chain(updates[indices.len()..].iter().copied()).collect();
        let table = s.input("table", &table_shape, Dist::Normal(1.0))?;
        s.note(format!("rows {rows}"));
        let scattered = table.scatter_add(i, u)?;
        // Squaring makes each row's gradient depend on every update summed into it.
        scattered.mul(scattered)
    })
}

fn one_hot_case() -> Case {
    // (labels, depth, x, label dtype)
    const FIXED: &[(&[usize], usize, &[usize], DType)] =
        &[(&[5], 3, &[5, 3], DType::I64), (&[2, 3], 4, &[4], DType::I64), (&[], 3, &[3], DType::I32)];
    Case::new(FIXED.len(), |s, trial| {
        let (labels, depth, x_shape, dtype) = FIXED[trial];
        let labels = s.indices("labels", labels, depth, dtype)?;
        let x = s.input("x", x_shape, Dist::Normal(1.0))?;
        s.note(format!("depth {depth}"));
        labels.one_hot(depth)?.mul(x.sin()?)?.add(x)
    })
}

/// The gradient-check case of every primitive op. No wildcard: a new `OpKind` without a case
/// does not compile.
fn case(kind: OpKind) -> Case {
    match kind {
        OpKind::Input => input_case(),
        OpKind::Param => param_case(),
        OpKind::Constant => constant_case(),
        OpKind::Fill => fill_case(),
        OpKind::DimSize => dim_size_case(),
        OpKind::RandomUniform => random_case(false),
        OpKind::RandomNormal => random_case(true),
        OpKind::Neg => unary_case(|x| x.neg(), Dist::Normal(1.0)),
        OpKind::Exp => unary_case(|x| x.exp(), Dist::Normal(1.0)),
        OpKind::Log => unary_case(|x| x.log(), Dist::Uniform(0.2, 3.0)),
        OpKind::Sqrt => unary_case(|x| x.sqrt(), Dist::Uniform(0.2, 3.0)),
        OpKind::Sin => unary_case(|x| x.sin(), Dist::Normal(2.0)),
        OpKind::Cos => unary_case(|x| x.cos(), Dist::Normal(2.0)),
        OpKind::Tanh => unary_case(|x| x.tanh(), Dist::Normal(1.5)),
        OpKind::Abs => unary_case(|x| x.abs(), Dist::Distinct),
        OpKind::Recip => unary_case(|x| x.recip(), Dist::Away(0.3, 2.0)),
        OpKind::Pow => pow_case(),
        OpKind::Add => binary_case(|a, b| a.add(b), Dist::Normal(1.0), Dist::Normal(1.0)),
        OpKind::Sub => binary_case(|a, b| a.sub(b), Dist::Normal(1.0), Dist::Normal(1.0)),
        OpKind::Mul => binary_case(|a, b| a.mul(b), Dist::Normal(1.0), Dist::Normal(1.0)),
        OpKind::Div => binary_case(|a, b| a.div(b), Dist::Normal(1.0), Dist::Away(0.4, 2.0)),
        OpKind::Max => binary_case(|a, b| a.maximum(b), Dist::Distinct, Dist::Distinct),
        OpKind::Min => binary_case(|a, b| a.minimum(b), Dist::Distinct, Dist::Distinct),
        OpKind::Lt => compare_case(|a, b| a.lt(b)),
        OpKind::Le => compare_case(|a, b| a.le(b)),
        OpKind::Gt => compare_case(|a, b| a.gt(b)),
        OpKind::Ge => compare_case(|a, b| a.ge(b)),
        OpKind::Eq => eq_case(|a, b| a.eq(b)),
        OpKind::Select => select_case(),
        OpKind::Cast => cast_case(),
        OpKind::Reshape => reshape_case(),
        OpKind::Permute => permute_case(),
        OpKind::BroadcastTo => broadcast_to_case(),
        OpKind::Slice => slice_case(),
        OpKind::Concat => concat_case(),
        OpKind::Sum => reduce_case(false),
        OpKind::ReduceMax => reduce_case(true),
        OpKind::MatMul => matmul_case(),
        OpKind::Gather => gather_case(),
        OpKind::ScatterAdd => scatter_add_case(),
        OpKind::OneHot => one_hot_case(),
        OpKind::Ne => eq_case(|a, b| a.ne(b)),
    }
}

/// Runs the case of every primitive op, in `OpKind::ALL` order.
fn check_every_primitive(order: Order) {
    let mut failures = Vec::new();
    for (index, &kind) in OpKind::ALL.iter().enumerate() {
        failures.extend(run_case(kind.name(), index as u64, &case(kind), Some(kind), order));
    }
    failures.extend(run_case("sum (symbolic axis)", 900, &sum_symbolic_case(), Some(OpKind::Sum), order));
    assert!(failures.is_empty(), "{} failing gradient checks:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_primitive_op_matches_finite_differences() {
    check_every_primitive(Order::First);
}

/// The gradient graphs built by each op's rule are differentiated again (every rule is made
/// of primitives, so this must work for all of them).
#[test]
fn every_primitive_op_has_correct_second_order_gradients() {
    check_every_primitive(Order::Second);
}

// ---- the composites of `layers` --------------------------------------------------------

/// Inputs far out on both tails, where a naive sigmoid or softplus overflows.
const TAILS: &[f64] = &[-50.0, -30.0, -4.0, -0.7, 0.4, 3.0, 30.0, 50.0];
/// The same and zero, where the functions built with `|x|` (sigmoid, softplus, the logistic
/// loss) are smooth but `|x|` is not.
const TAILS_AND_ZERO: &[f64] = &[-50.0, -30.0, -4.0, -0.7, 0.0, 0.4, 3.0, 30.0, 50.0];

/// An elementwise composite over `exact` values, then over random shapes.
fn activation_case(f: UnaryFn, exact: &'static [f64], dist: Dist) -> Case {
    Case::new(4, move |s, trial| {
        let x = match trial {
            0 => s.input("x", &[exact.len()], Dist::Exact(exact))?,
            _ => {
                let shape = s.rng.shape((0, 3), (1, 4));
                s.input("x", &shape, dist)?
            }
        };
        f(x)
    })
}

/// `f(x, axis)` over a random axis of a random shape.
fn axis_case(f: for<'a> fn(Tensor<'a>, usize) -> Result<Tensor<'a>>) -> Case {
    Case::new(5, move |s, _| {
        let shape = s.rng.shape((1, 3), (1, 4));
        let axis = s.rng.below(shape.len());
        s.note(format!("axis {axis}"));
        let x = s.input("x", &shape, Dist::Normal(2.0))?;
        f(x, axis)
    })
}

/// `f(x, axes, keepdims)` over random axes, then over a symbolic one.
fn axes_case(f: for<'a> fn(Tensor<'a>, &[usize], bool) -> Result<Tensor<'a>>) -> Case {
    Case::new(6, move |s, trial| {
        let keepdims = trial % 2 == 1;
        if trial >= 4 {
            let batch = s.rng.int(2, 4);
            let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
            s.note(format!("axes [0]{}", if keepdims { " keepdims" } else { "" }));
            return f(x, &[0], keepdims);
        }
        let shape = s.rng.shape((1, 3), (2, 4));
        let axes = s.rng.axes(shape.len());
        s.note(format!("axes {axes:?}{}", if keepdims { " keepdims" } else { "" }));
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        f(x, &axes, keepdims)
    })
}

fn cross_entropy_case() -> Case {
    Case::new(4, |s, trial| {
        let classes = s.rng.int(2, 4);
        let (logits, labels) = match trial {
            0 => {
                let rows = s.rng.int(2, 5);
                let labels = s.indices("labels", &[rows], classes, DType::I64)?;
                (s.input("logits", &[rows, classes], Dist::Normal(2.0))?, labels)
            }
            1 => {
                let labels = s.indices("labels", &[2, 3], classes, DType::I32)?;
                (s.input("logits", &[2, 3, classes], Dist::Normal(2.0))?, labels)
            }
            2 => {
                let batch = s.rng.int(2, 4);
                let labels = s.indices_dims("labels", &[Dim::sym("B")], &[batch], classes, DType::I64)?;
                let dims = [Dim::sym("B"), classes.into()];
                (s.input_dims("logits", &dims, &[batch, classes], DType::F32, Dist::Normal(2.0))?, labels)
            }
            _ => {
                let labels = s.indices("labels", &[4], 2, DType::I64)?;
                (s.input("logits", &[4, 2], Dist::Exact(TAILS))?, labels)
            }
        };
        layers::cross_entropy(logits, labels)
    })
}

fn bce_case() -> Case {
    Case::new(4, |s, trial| {
        let shape = if trial == 0 { vec![TAILS_AND_ZERO.len()] } else { s.rng.shape((1, 3), (1, 4)) };
        let dist = if trial == 0 { Dist::Exact(TAILS_AND_ZERO) } else { Dist::Normal(2.0) };
        let logits = s.input("logits", &shape, dist)?;
        let targets = s.input("targets", &shape, Dist::Uniform(0.0, 1.0))?;
        layers::binary_cross_entropy_with_logits(logits, targets)
    })
}

fn mse_case() -> Case {
    Case::new(4, |s, trial| {
        if trial == 3 {
            let batch = s.rng.int(2, 4);
            let dims = [Dim::sym("B"), 2.into()];
            let p = s.input_dims("prediction", &dims, &[batch, 2], DType::F32, Dist::Normal(1.0))?;
            let t = s.input_dims("target", &dims, &[batch, 2], DType::F32, Dist::Normal(1.0))?;
            return layers::mse(p, t);
        }
        let shape = s.rng.shape((0, 3), (1, 4));
        let p = s.input("prediction", &shape, Dist::Normal(1.0))?;
        let t = s.input("target", &shape, Dist::Normal(1.0))?;
        layers::mse(p, t)
    })
}

fn mean_all_case() -> Case {
    Case::new(4, |s, trial| {
        if trial == 3 {
            let batch = s.rng.int(2, 4);
            let x = s.input_dims("x", &[Dim::sym("B"), 3.into()], &[batch, 3], DType::F32, Dist::Normal(1.0))?;
            return layers::mean_all(x.sin()?);
        }
        let shape = s.rng.shape((0, 3), (1, 4));
        layers::mean_all(s.input("x", &shape, Dist::Normal(1.0))?.sin()?)
    })
}

fn layer_norm_case() -> Case {
    Case::new(4, |s, _| {
        let mut shape = s.rng.shape((1, 2), (1, 3));
        let features = s.rng.int(2, 5);
        shape.push(features);
        let x = s.input("x", &shape, Dist::Normal(1.5))?;
        let gamma = s.input("gamma", &[features], Dist::Normal(1.0))?;
        let beta = s.input("beta", &[features], Dist::Normal(1.0))?;
        layers::layer_norm_affine(x, gamma, beta, 1e-5)
    })
}

fn plain_layer_norm_case() -> Case {
    Case::new(4, |s, _| {
        let mut shape = s.rng.shape((1, 2), (1, 3));
        shape.push(s.rng.int(2, 5));
        layers::layer_norm(s.input("x", &shape, Dist::Normal(1.5))?, 1e-5)
    })
}

/// A strided slice over one to three leading axes, steps 1 to 3, ranges anywhere inside each
/// axis (so both the grouped and the grouped-plus-last-element forms appear).
fn slice_nd_case() -> Case {
    Case::new(8, |s, trial| {
        let shape = s.rng.shape((1, 3), (1, 7));
        let axes = s.rng.int(1, shape.len());
        let mut ranges = Vec::new();
        for &size in &shape[..axes] {
            let start = s.rng.int(0, size - 1);
            let end = s.rng.int(start + 1, size);
            ranges.push((start, end, s.rng.int(1, 3)));
        }
        if trial == 0 {
            ranges[0] = Tensor::WHOLE_AXIS;
        }
        s.note(format!("ranges {ranges:?}"));
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        x.slice_nd(&ranges)?.sin()
    })
}

/// The minimum over axes (`-max(-x)`), distinct inputs so no ties.
fn reduce_min_case() -> Case {
    Case::new(4, |s, trial| {
        let shape = s.rng.shape((1, 3), (1, 4));
        let axes = if trial == 0 { (0..shape.len()).collect() } else { s.rng.axes(shape.len()) };
        s.note(format!("axes {axes:?}"));
        s.input("x", &shape, Dist::Distinct)?.min(&axes, trial % 2 == 1)
    })
}

/// numpy's `transpose(perm)` of a rank-3 tensor, and `t()` of it.
fn transpose_case() -> Case {
    Case::new(2, |s, trial| {
        let shape = s.rng.shape((3, 3), (1, 4));
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        let perm: &[usize] = if trial == 0 { &[2, 0, 1] } else { &[1, 2, 0] };
        s.note(format!("perm {perm:?}"));
        x.transpose(perm)?.t()?.sin()
    })
}

fn linear_case() -> Case {
    Case::new(4, |s, trial| {
        let (inputs, outputs) = (s.rng.int(1, 4), s.rng.int(1, 4));
        let mut shape = s.rng.shape((1, 2), (1, 3));
        shape.push(inputs);
        let x = s.input("x", &shape, Dist::Normal(1.0))?;
        let w = s.input("weight", &[outputs, inputs], Dist::Normal(1.0))?;
        if trial % 2 == 1 {
            s.note("no bias");
            return layers::linear(x, w, None);
        }
        let b = s.input("bias", &[outputs], Dist::Normal(1.0))?;
        layers::linear(x, w, Some(b))
    })
}

fn linear_module_case() -> Case {
    Case::new(3, |s, _| {
        let (inputs, outputs) = (s.rng.int(1, 4), s.rng.int(1, 4));
        let batch = s.rng.int(1, 4);
        let x = s.input_dims("x", &[Dim::sym("B"), inputs.into()], &[batch, inputs], DType::F32, Dist::Normal(1.0))?;
        let layer = layers::Linear::new(s.g, "layer", inputs, outputs)?;
        s.adopt_params(Dist::Normal(0.8));
        layer.forward(x)?.tanh()
    })
}

fn layer_norm_module_case() -> Case {
    Case::new(3, |s, _| {
        let features = s.rng.int(2, 5);
        let rows = s.rng.int(1, 3);
        let x = s.input("x", &[rows, features], Dist::Normal(1.5))?;
        let norm = layers::LayerNorm::new(s.g, "norm", features)?;
        s.adopt_params(Dist::Normal(1.0));
        norm.forward(x)
    })
}

fn composite_cases() -> Vec<(&'static str, Case)> {
    vec![
        // relu has a kink at 0, so its exact inputs avoid it.
        ("relu", activation_case(|x| layers::relu(x), TAILS, Dist::Distinct)),
        ("sigmoid", activation_case(|x| layers::sigmoid(x), TAILS_AND_ZERO, Dist::Normal(3.0))),
        ("softplus", activation_case(|x| layers::softplus(x), TAILS_AND_ZERO, Dist::Normal(3.0))),
        ("softmax", axis_case(|x, axis| layers::softmax(x, axis))),
        ("log_softmax", axis_case(|x, axis| layers::log_softmax(x, axis))),
        ("cross_entropy", cross_entropy_case()),
        ("binary_cross_entropy_with_logits", bce_case()),
        ("mse", mse_case()),
        ("mean", axes_case(|x, axes, keepdims| layers::mean(x, axes, keepdims))),
        ("mean_all", mean_all_case()),
        ("var", axes_case(|x, axes, keepdims| layers::var(x, axes, keepdims))),
        ("layer_norm", layer_norm_case()),
        ("linear", linear_case()),
        ("Linear", linear_module_case()),
        ("LayerNorm", layer_norm_module_case()),
        ("layer_norm without scale and shift", plain_layer_norm_case()),
        ("slice_nd", slice_nd_case()),
        ("min over axes", reduce_min_case()),
        ("transpose(perm) then t()", transpose_case()),
    ]
}

#[test]
fn every_composite_matches_finite_differences() {
    let mut failures = Vec::new();
    for (index, (name, case)) in composite_cases().iter().enumerate() {
        failures.extend(run_case(name, 500 + index as u64, case, None, Order::First));
    }
    assert!(failures.is_empty(), "{} failing gradient checks:\n{}", failures.len(), failures.join("\n"));
}

/// Far out on both tails, sigmoid's and softplus's values and gradients stay finite (and
/// right), in `f32` and in `f64`.
#[test]
fn sigmoid_and_softplus_gradients_stay_finite_at_large_inputs() -> Result<()> {
    check_sigmoid_and_softplus(&[-1000.0, -100.0, -50.0, -30.0, -1.0, 1.0, 30.0, 50.0, 100.0, 1000.0])
}

/// Sigmoid and softplus are smooth at 0: their gradients there are 1/4 and 1/2, whatever
/// subgradient `|x|` (which they are built from) takes at 0.
#[test]
fn sigmoid_and_softplus_gradients_are_right_at_zero() -> Result<()> {
    check_sigmoid_and_softplus(&[0.0])
}

/// The logistic loss at a zero logit (a zero-initialised output layer gives exactly that):
/// d/dx [softplus(x) - x·t] = sigmoid(0) - t = 1/2 - t.
#[test]
fn logistic_loss_gradient_is_right_at_zero_logits() -> Result<()> {
    let g = Graph::new();
    let logits = g.input("logits", [4])?;
    let targets = g.input("targets", [4])?;
    let loss = layers::binary_cross_entropy_with_logits(logits, targets)?;
    let grad = g.grad(loss, &[logits])?[0];
    let t = [0.0, 1.0, 0.25, 0.5];
    let feeds = Feeds::from([("logits", Value::f32([4], vec![0.0; 4])), ("targets", Value::f64([4], t.to_vec()))]);
    let out = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &ParamStore::new(), &[grad])?;
    let got = out[0].to_f64_vec();
    for (i, &t) in t.iter().enumerate() {
        let want = (0.5 - t) / 4.0;
        assert!(
            (got[i] - want).abs() < 1e-12,
            "d loss / d logit {i} at logit 0, target {t}: got {}, expected {want}",
            got[i]
        );
    }
    Ok(())
}

fn check_sigmoid_and_softplus(xs: &[f64]) -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [xs.len()])?;
    let s = layers::sigmoid(x)?;
    let p = layers::softplus(x)?;
    let ds = g.grad(s.sum_all()?, &[x])?[0];
    let dp = g.grad(p.sum_all()?, &[x])?[0];
    for precision in [Precision::Declared, Precision::F64] {
        let feeds = Feeds::from([("x", Value::f64([xs.len()], xs.to_vec()).cast(DType::F32))]);
        let out = Interpreter::new(&g).precision(precision).run(&feeds, &ParamStore::new(), &[s, ds, p, dp])?;
        let [s, ds, p, dp] = [0, 1, 2, 3].map(|i| out[i].to_f64_vec());
        for (i, &x) in xs.iter().enumerate() {
            let sigmoid = 1.0 / (1.0 + (-x).exp());
            let softplus = x.max(0.0) + (-x.abs()).exp().ln_1p();
            let tolerance = if precision == Precision::F64 { 1e-12 } else { 1e-6 };
            let close = |got: f64, want: f64| got.is_finite() && (got - want).abs() <= tolerance * want.abs().max(1.0);
            let at = format!("at x = {x} ({precision:?})");
            assert!(close(s[i], sigmoid), "sigmoid {at}: got {}, expected {sigmoid}", s[i]);
            let slope = sigmoid * (1.0 - sigmoid);
            assert!(close(ds[i], slope), "sigmoid' {at}: got {}, expected {slope}", ds[i]);
            assert!(close(p[i], softplus), "softplus {at}: got {}, expected {softplus}", p[i]);
            assert!(close(dp[i], sigmoid), "softplus' {at}: got {}, expected {sigmoid}", dp[i]);
        }
    }
    Ok(())
}

/// Where an op has a kink, finite differences say nothing, so the documented subgradients
/// are pinned here: `|x|` and relu have slope 0 at 0, max and min send a tie's gradient to
/// their first operand, and reduce_max shares it equally among the elements that attain it.
#[test]
fn subgradients_at_kinks_are_the_documented_ones() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4])?;
    let y = g.input("y", [4])?;
    let r = g.constant(Value::f32([4], vec![1.0, 2.0, 3.0, 4.0]));
    let abs = g.grad(x.abs()?.mul(r)?.sum_all()?, &[x])?;
    let relu = g.grad(layers::relu(x)?.mul(r)?.sum_all()?, &[x])?;
    let max = g.grad(x.maximum(y)?.mul(r)?.sum_all()?, &[x, y])?;
    let min = g.grad(x.minimum(y)?.mul(r)?.sum_all()?, &[x, y])?;
    let reduce_max = g.grad(x.max(&[0], false)?.mul(5.0)?, &[x])?;
    let feeds = Feeds::from([
        ("x", Value::f64([4], vec![0.0, 1.0, -1.0, 1.0])),
        ("y", Value::f64([4], vec![0.0, 1.0, -1.0, -2.0])),
    ]);
    let outputs = [abs[0], relu[0], max[0], max[1], min[0], min[1], reduce_max[0]];
    let out = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &ParamStore::new(), &outputs)?;
    let expected: [(&str, [f64; 4]); 7] = [
        ("d|x|", [0.0, 2.0, -3.0, 4.0]),
        ("d relu(x)", [0.0, 2.0, 0.0, 4.0]),
        ("d max(x, y) / dx", [1.0, 2.0, 3.0, 4.0]),
        ("d max(x, y) / dy", [0.0, 0.0, 0.0, 0.0]),
        ("d min(x, y) / dx", [1.0, 2.0, 3.0, 0.0]),
        ("d min(x, y) / dy", [0.0, 0.0, 0.0, 4.0]),
        ("d reduce_max(x)", [0.0, 2.5, 0.0, 2.5]),
    ];
    for ((what, want), got) in expected.iter().zip(&out) {
        assert_eq!(got.to_f64_vec(), want.to_vec(), "{what} at x = [0, 1, -1, 1], y = [0, 1, -1, -2]");
    }
    Ok(())
}

// ---- higher order ----------------------------------------------------------------------

/// d/dx sin = cos, d²/dx² sin = -sin, d³/dx³ sin = -cos: gradients of gradients, evaluated by
/// the interpreter.
#[test]
fn derivatives_of_sin_up_to_third_order() -> Result<()> {
    const XS: [f64; 8] = [-3.0, -1.7, -0.4, 0.0, 0.3, 1.1, 2.2, 3.1];
    let g = Graph::new();
    let x = g.input("x", [XS.len()])?;
    let d1 = g.grad(x.sin()?.sum_all()?, &[x])?[0];
    let d2 = g.grad(d1.sum_all()?, &[x])?[0];
    let d3 = g.grad(d2.sum_all()?, &[x])?[0];
    let feeds = Feeds::from([("x", Value::f64([XS.len()], XS.to_vec()))]);
    let out = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &ParamStore::new(), &[d1, d2, d3])?;
    let (d1, d2, d3) = (out[0].to_f64_vec(), out[1].to_f64_vec(), out[2].to_f64_vec());
    for (i, &x) in XS.iter().enumerate() {
        assert!((d1[i] - x.cos()).abs() < 1e-12, "sin' at {x}: got {}, expected {}", d1[i], x.cos());
        assert!((d2[i] + x.sin()).abs() < 1e-12, "sin'' at {x}: got {}, expected {}", d2[i], -x.sin());
        assert!((d3[i] + x.cos()).abs() < 1e-12, "sin''' at {x}: got {}, expected {}", d3[i], -x.cos());
    }
    Ok(())
}

/// A Hessian-vector product of a small MLP's loss, `grad(<grad(loss, w), v>, w)`, against
/// central differences of the gradient along `v`.
#[test]
fn hessian_vector_product_of_an_mlp_matches_finite_differences() -> Result<()> {
    let mut rng = Rng::new(7_000);
    let g = Graph::new();
    let x = g.input("x", [5, 3])?;
    let labels = g.typed_input("labels", [5], DType::I64)?;
    let layer1 = layers::Linear::new(&g, "layer1", 3, 4)?;
    let layer2 = layers::Linear::new(&g, "layer2", 4, 2)?;
    let logits = layer2.forward(layer1.forward(x)?.tanh()?)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let params = [layer1.weight, layer1.bias, layer2.weight, layer2.bias];
    let names = ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"];
    let grads = g.grad(loss, &params)?;

    // v, one random direction per param (f32-representable, as the constants hold f32).
    let mut directions = Vec::new();
    let mut projection: Option<Tensor> = None;
    for (p, grad) in params.iter().zip(&grads) {
        let shape = p.shape().as_static().expect("static params");
        let v: Vec<f32> = (0..shape.iter().product()).map(|_| rng.between(-1.0, 1.0) as f32).collect();
        let term = grad.mul(g.constant(Value::f32(shape.clone(), v.clone())))?.sum_all()?;
        projection = Some(match projection {
            Some(total) => total.add(term)?,
            None => term,
        });
        directions.push(v.into_iter().map(f64::from).collect::<Vec<f64>>());
    }
    let projection = projection.expect("four params");
    let hvp = g.grad(projection, &params)?;

    let xs: Vec<f64> = (0..15).map(|_| rng.normal()).collect();
    let feeds = Feeds::from([("x", Value::f64([5, 3], xs)), ("labels", Value::i64([5], vec![0, 1, 1, 0, 1]))]);
    let mut store = ParamStore::new();
    for (p, name) in params.iter().zip(names) {
        let shape = p.shape().as_static().expect("static params");
        store.set(name, Value::f64(shape.clone(), (0..shape.iter().product()).map(|_| rng.normal()).collect()));
    }
    let interpreter = Interpreter::new(&g).precision(Precision::F64);
    let analytic = interpreter.run(&feeds, &store, &hvp)?;

    // Central differences of the gradient along v.
    let eps = 1e-5;
    let moved = |sign: f64| -> Result<Vec<Value>> {
        let mut store = store.clone();
        for (name, v) in names.iter().zip(&directions) {
            let value = store.get(name).expect("set above");
            let data = value.to_f64_vec().iter().zip(v).map(|(w, v)| w + sign * eps * v).collect();
            store.set(name, Value::f64(value.shape().to_vec(), data));
        }
        interpreter.run(&feeds, &store, &grads)
    };
    let (plus, minus) = (moved(1.0)?, moved(-1.0)?);
    let mut norm = 0.0;
    for (i, name) in names.iter().enumerate() {
        let (a, p, m) = (analytic[i].to_f64_vec(), plus[i].to_f64_vec(), minus[i].to_f64_vec());
        for (j, &a) in a.iter().enumerate() {
            let numeric = (p[j] - m[j]) / (2.0 * eps);
            let error = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1.0);
            assert!(error < 1e-6, "(Hv) of {name}[{j}]: analytic {a}, finite differences {numeric}");
            norm += a * a;
        }
    }
    assert!(norm.sqrt() > 1e-2, "the Hessian-vector product is trivially small: |Hv| = {}", norm.sqrt());

    // And the projected gradient's own gradient, element by element.
    let check = check_gradients(&g, projection, &params, &feeds, &store, STEP)?;
    assert!(check.max_error < TOLERANCE, "grad of <grad loss, v>: {check:?}");
    Ok(())
}

// ---- frozen params ---------------------------------------------------------------------

/// How layer 1 of the test MLP is frozen, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freeze {
    No,
    /// Declared trainable, then frozen with `Graph::set_trainable`.
    SetTrainable,
    /// Declared frozen with `Graph::param_with(..., false)`.
    ParamWith,
}

/// `x[B, 3] -> layer1 (4) -> tanh -> layer2 (2) -> cross-entropy`.
struct Mlp<'g> {
    x: Tensor<'g>,
    layer1: layers::Linear<'g>,
    layer2: layers::Linear<'g>,
    /// Layer 1's output after tanh: what layer 2 reads.
    hidden: Tensor<'g>,
    loss: Tensor<'g>,
}

fn mlp(g: &Graph, freeze: Freeze) -> Result<Mlp<'_>> {
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let layer1 = match freeze {
        Freeze::ParamWith => {
            // The initializer of `Linear::new`, so every variant starts from the same values.
            let bound = 1.0 / 3f64.sqrt();
            let init = Init::Uniform { low: -bound, high: bound };
            layers::Linear {
                weight: g.param_with("layer1.weight", [4, 3], init.clone(), false)?,
                bias: g.param_with("layer1.bias", [4], init, false)?,
            }
        }
        _ => layers::Linear::new(g, "layer1", 3, 4)?,
    };
    if freeze == Freeze::SetTrainable {
        g.set_trainable("layer1.weight", false)?;
        g.set_trainable("layer1.bias", false)?;
    }
    let layer2 = layers::Linear::new(g, "layer2", 4, 2)?;
    let hidden = layer1.forward(x)?.tanh()?;
    let loss = layers::cross_entropy(layer2.forward(hidden)?, labels)?;
    Ok(Mlp { x, layer1, layer2, hidden, loss })
}

fn mlp_feeds() -> Feeds {
    let mut rng = Rng::new(8_000);
    let xs: Vec<f64> = (0..18).map(|_| rng.normal()).collect();
    Feeds::from([("x", Value::f64([6, 3], xs)), ("labels", Value::i64([6], vec![0, 1, 1, 0, 1, 0]))])
}

/// The gradients of every trainable param, and the nodes `grad` appended for them.
fn trainable_grads<'g>(g: &'g Graph, loss: Tensor<'g>) -> Result<(Vec<String>, Vec<Tensor<'g>>, Vec<Node>)> {
    let (tensors, names): (Vec<Tensor>, Vec<String>) =
        g.params().into_iter().filter(|(_, _, trainable)| *trainable).map(|(t, name, _)| (t, name)).unzip();
    let before = g.len();
    let grads = g.grad(loss, &tensors)?;
    let appended = g.nodes()[before..].to_vec();
    Ok((names, grads, appended))
}

fn describe(nodes: &[Node]) -> String {
    let lines: Vec<String> =
        nodes.iter().map(|n| format!("{} {:?} {} {}", n.op.name(), n.inputs, n.shape, n.dtype)).collect();
    lines.join("\n")
}

/// Freezing layer 1 (either way) cuts its whole backward pass out of the gradient graph:
/// fewer nodes than with layer 1 trainable, none of its weight's shape (or the transpose), none
/// reading its leaves or its transposed weight, and the trainable params' gradients unchanged.
#[test]
fn a_frozen_layer_gets_no_gradient_nodes() -> Result<()> {
    let feeds = mlp_feeds();
    let full = Graph::new();
    let model = mlp(&full, Freeze::No)?;
    let (names, full_grads, full_appended) = trainable_grads(&full, model.loss)?;
    assert_eq!(names, ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"]);
    let weight_shape = model.layer1.weight.shape();
    assert!(
        full_appended.iter().any(|n| n.shape == weight_shape),
        "with layer 1 trainable, its weight gradient has the weight's shape {weight_shape}"
    );
    let values = ParamStore::init(&full, 3);
    let full_values = Interpreter::new(&full).precision(Precision::F64).run(&feeds, &values, &full_grads)?;

    for freeze in [Freeze::SetTrainable, Freeze::ParamWith] {
        let g = Graph::new();
        let model = mlp(&g, freeze)?;
        let (names, grads, appended) = trainable_grads(&g, model.loss)?;
        assert_eq!(names, ["layer2.weight", "layer2.bias"], "{freeze:?}");
        assert!(
            appended.len() < full_appended.len(),
            "{freeze:?}: {} gradient nodes with layer 1 frozen, {} with it trainable",
            appended.len(),
            full_appended.len()
        );
        let transposed = Shape::of([3, 4]);
        for node in &appended {
            assert!(
                node.shape != weight_shape && node.shape != transposed,
                "{freeze:?}: an appended node has the frozen weight's shape: {} {:?} {}\nappended:\n{}",
                node.op.name(),
                node.inputs,
                node.shape,
                describe(&appended)
            );
        }
        // The leaves of layer 1 and every node between them and the activation: the backward
        // pass of layer 1 would read them, nothing else needs to.
        let hidden = model.hidden.id()?;
        let inside: Vec<NodeId> = {
            let nodes = g.nodes();
            let leaves = [model.x.id()?, model.layer1.weight.id()?, model.layer1.bias.id()?];
            let mut inside: Vec<NodeId> = leaves.to_vec();
            for (i, node) in nodes.iter().enumerate().take(hidden.0) {
                if node.inputs.iter().any(|input| inside.contains(input)) {
                    inside.push(NodeId(i));
                }
            }
            inside
        };
        for node in &appended {
            let read: Vec<&NodeId> = node.inputs.iter().filter(|input| inside.contains(input)).collect();
            assert!(
                read.is_empty(),
                "{freeze:?}: an appended `{}` node reads layer 1's forward nodes {read:?}\nappended:\n{}",
                node.op.name(),
                describe(&appended)
            );
        }
        // Same values of the params (each param's stream depends only on its name and the seed).
        let values = ParamStore::init(&g, 3);
        let got = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &values, &grads)?;
        for (i, name) in names.iter().enumerate() {
            let (a, b) = (got[i].to_f64_vec(), full_values[2 + i].to_f64_vec());
            let same = a.iter().zip(&b).all(|(a, b)| (a - b).abs() < 1e-12);
            assert!(same, "{freeze:?}: grad of {name} is {a:?} with layer 1 frozen, {b:?} with it trainable");
        }
        let check = check_gradients(&g, model.loss, &[model.layer2.weight, model.layer2.bias], &feeds, &values, STEP)?;
        assert!(check.max_error < TOLERANCE, "{freeze:?}: {check:?}");
    }
    Ok(())
}

/// The backward pass stops where the frozen layer begins: no adjoint of the frozen layer's
/// output (shape `[B, 4]`, which no gradient of layer 2 needs) is appended.
#[test]
fn a_frozen_layer_gets_no_adjoint_of_its_output() -> Result<()> {
    for freeze in [Freeze::SetTrainable, Freeze::ParamWith] {
        let g = Graph::new();
        let model = mlp(&g, freeze)?;
        let (_, _, appended) = trainable_grads(&g, model.loss)?;
        let hidden_shape = model.hidden.shape();
        let adjoints: Vec<&Node> = appended.iter().filter(|n| n.shape == hidden_shape).collect();
        assert!(
            adjoints.is_empty(),
            "{freeze:?}: {} appended nodes have layer 1's output shape {hidden_shape}, \
             though only layer 2 is trainable:\n{}",
            adjoints.len(),
            describe(&appended)
        );
    }
    Ok(())
}

/// Asking for the gradient of a frozen param is an error naming it; unfreezing it lifts that.
#[test]
fn the_gradient_of_a_frozen_param_is_an_error_naming_it() -> Result<()> {
    for freeze in [Freeze::SetTrainable, Freeze::ParamWith] {
        let g = Graph::new();
        let model = mlp(&g, freeze)?;
        for (frozen, name) in [(model.layer1.weight, "layer1.weight"), (model.layer1.bias, "layer1.bias")] {
            let Err(error) = g.grad(model.loss, &[model.layer2.weight, frozen]) else {
                panic!("{freeze:?}: grad with respect to frozen `{name}` succeeded");
            };
            let message = error.to_string();
            assert!(
                matches!(error, Error::Grad { .. })
                    && message.contains(&format!("`{name}`"))
                    && message.contains("frozen"),
                "{freeze:?}: the error does not name frozen `{name}`: {message}"
            );
            let values = ParamStore::init(&g, 0);
            let check = check_gradients(&g, model.loss, &[frozen], &mlp_feeds(), &values, STEP);
            assert!(check.is_err(), "{freeze:?}: check_gradients with respect to frozen `{name}` succeeded");
        }
        g.set_trainable("layer1.weight", true)?;
        let grads = g.grad(model.loss, &[model.layer1.weight])?;
        assert_eq!(grads[0].shape(), model.layer1.weight.shape());
    }
    Ok(())
}

// ---- masks as numbers and f64 graphs ---------------------------------------------------

/// Gradients through a mask promoted to a float (`mask * x`, `x * mask`), a number mask in
/// `select` and `f64` one-hot rows, in an `f64` graph with exact constants: none flows into a
/// mask, and the rest match finite differences.
#[test]
fn masks_used_as_numbers_have_the_gradients_of_their_float_forms() -> Result<()> {
    let g = Graph::new();
    let x = g.input_of("x", [2, 3], DType::F64)?;
    let y = g.input_of("y", [3], DType::F64)?;
    let labels = g.constant(Value::i64([2], vec![2, 0]));
    let positive = x.gt(0.1)?;
    let keep = (y + 1e-5).sin()? * x.lt(0.0)?; // a float mask of the branch's choosing
    let picked = keep.select(x.square()?, y)?;
    let weighted = labels.one_hot_of(3, DType::F64)? * x;
    let loss = (positive * x.exp()? + x.le(0.1)? * y + picked + weighted).sum_all()?;
    let feeds = Feeds::from([
        ("x", Value::f64([2, 3], vec![0.7, -0.4, 1.3, -1.1, 0.5, -0.2])),
        ("y", Value::f64([3], vec![0.3, -0.8, 1.6])),
    ]);
    let check = check_gradients(&g, loss, &[x, y], &feeds, &ParamStore::new(), STEP)?;
    assert!(check.max_error < TOLERANCE, "{check:?}");
    Ok(())
}
