//! The workloads W1–W6 of the shared benchmark definition, as kiln graphs (W6, whose table is
//! updated sparsely, in [`w6`]).
//!
//! In: a graph (and for sharded runs, a shard). Out: each workload's step (inputs, outputs,
//! updates) and its data.
//!
//! Each builder returns a [`Step`]: the inputs, outputs and updates of one compiled call, and
//! the values to feed at step `s`. `main.rs` times them; `tests/` checks each compiled step
//! against the reference interpreter.

use kiln::compiler::random;
use kiln::prelude::*;

pub use kiln::optim::Update;

pub mod w6;

/// One training (or inference) call of a workload.
pub struct Step<'g> {
    /// The function's inputs, in feeding order.
    pub inputs: Vec<Tensor<'g>>,
    /// Its outputs; the loss first for training workloads.
    pub outputs: Vec<Tensor<'g>>,
    /// The optimizer's updates.
    pub updates: Vec<Update<'g>>,
    /// The values fed at each step.
    pub feed: Feed,
}

/// What a workload is fed at step `s` (0-based): batch `s mod n` of its fixed batches, held in
/// memory and handed to each call without a copy (as the anchors index a dataset on their
/// device), followed by the values drawn for the step (its learning rate and count, or data
/// made on the fly).
pub struct Feed {
    batches: Vec<Vec<Value>>,
    /// Values per fixed batch.
    width: usize,
    step_values: Box<dyn Fn(usize) -> Vec<Value>>,
}

impl Feed {
    /// Fixed `batches` (each of the same number of values), then `step_values(s)`.
    pub fn new(batches: Vec<Vec<Value>>, step_values: impl Fn(usize) -> Vec<Value> + 'static) -> Feed {
        let width = batches.first().map_or(0, Vec::len);
        assert!(batches.iter().all(|b| b.len() == width), "every fixed batch has {width} values");
        let batches = if batches.is_empty() { vec![Vec::new()] } else { batches };
        Feed { batches, width, step_values: Box::new(step_values) }
    }

    /// Only `step_values(s)`: no fixed data.
    pub fn drawn(step_values: impl Fn(usize) -> Vec<Value> + 'static) -> Feed {
        Feed::new(Vec::new(), step_values)
    }

    /// The values of step `s`, owned (for the reference interpreter).
    pub fn values(&self, s: usize) -> Vec<Value> {
        let mut values = self.batches[s % self.batches.len()].clone();
        values.extend((self.step_values)(s));
        values
    }

    /// The values of step `s`, to call with: the fixed batch in place, the step's values after it.
    pub fn at(&mut self, s: usize) -> &[Value] {
        let count = self.batches.len();
        let values = &mut self.batches[s % count];
        values.truncate(self.width);
        values.extend((self.step_values)(s));
        values
    }
}

impl<'g> Step<'g> {
    /// Compiles the step.
    pub fn compile(&self, graph: &'g Graph) -> Result<Function> {
        function(graph, &self.inputs, &self.outputs, &self.updates)
    }
}

/// Layer sizes to a stack of `Linear` layers (`layer1`, `layer2`, ...) with ReLU between them;
/// returns the logits.
pub fn mlp<'g>(g: &'g Graph, x: Tensor<'g>, sizes: &[usize]) -> Result<Tensor<'g>> {
    let mut h = x;
    for (i, pair) in sizes.windows(2).enumerate() {
        let layer = layers::Linear::new(g, &format!("layer{}", i + 1), pair[0], pair[1])?;
        h = layer.forward(h)?;
        if i + 2 < sizes.len() {
            h = layers::relu(h)?;
        }
    }
    Ok(h)
}

fn trainable(g: &Graph) -> Vec<Tensor<'_>> {
    g.params().into_iter().filter(|(_, _, trainable)| *trainable).map(|(t, _, _)| t).collect()
}

/// The updates of `optimizer` for every trainable param of `loss`'s graph, and the schedule
/// inputs they read.
fn train_with<'g>(
    g: &'g Graph,
    loss: Tensor<'g>,
    optimizer: &dyn Optimizer,
) -> Result<(Schedule<'g>, Vec<Update<'g>>)> {
    let (schedule, updates, _) = train_sharded(g, loss, optimizer)?;
    Ok((schedule, updates))
}

/// [`train_with`], and each trainable param's gradient by name: what a data-parallel step
/// sums across ranks.
fn train_sharded<'g>(g: &'g Graph, loss: Tensor<'g>, optimizer: &dyn Optimizer) -> Result<Sharded<'g>> {
    let params = trainable(g);
    let grads = g.grad(loss, &params)?;
    let schedule = Schedule::inputs(g)?;
    let updates = optimizer.updates(g, &params, &grads, &schedule)?;
    let names = g.params().into_iter().filter(|(_, _, trainable)| *trainable).map(|(_, name, _)| name);
    let gradients = names.zip(grads).map(|(name, grad)| (format!("the gradient of `{name}`"), grad)).collect();
    Ok((schedule, updates, gradients))
}

type Sharded<'g> = (Schedule<'g>, Vec<Update<'g>>, Vec<(String, Tensor<'g>)>);

/// One rank's part of a data-parallel workload: `rank` of `ranks`.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    /// This process's rank, from 0.
    pub rank: usize,
    /// How many processes share each step.
    pub ranks: usize,
}

/// The notebook's target: 1 where `y > sin(3x)`.
pub fn classify<'g>(points: Tensor<'g>, n: impl Into<Dim>) -> Result<Tensor<'g>> {
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([n.into()])
}

/// `n` standard-normal `f32` values, reproducible from `seed`.
pub fn normal_values(n: usize, seed: u64) -> Vec<f32> {
    let key = random::draw_key(seed, 0);
    (0..n as u64).map(|i| random::normal(key, i) as f32).collect()
}

/// `n` labels uniform in `0..classes`, reproducible from `seed`.
pub fn labels(n: usize, classes: u32, seed: u64) -> Vec<i64> {
    let key = random::draw_key(seed, 1);
    (0..n as u64).map(|i| i64::from(random::bits(key, i) % classes)).collect()
}

/// W1 (SGD) and W2 (Adam): the notebook's MLP on `batch` points drawn in the graph at every
/// step (W1 and W2 use 10000).
pub fn seed_mlp(g: &Graph, batch: usize, adam_optimizer: bool) -> Result<Step<'_>> {
    Ok(seed_mlp_shard(g, batch, adam_optimizer, Shard { rank: 0, ranks: 1 })?.0)
}

/// One rank's part of W1/W2 across `shard.ranks` processes: `batch / ranks` points drawn in
/// the graph per step, the rank in the draw's counter (`step · ranks + rank`, so ranks draw
/// different points), and the gradients to sum across ranks.
pub fn seed_mlp_shard(
    g: &Graph,
    batch: usize,
    adam_optimizer: bool,
    shard: Shard,
) -> Result<(Step<'_>, Vec<(String, Tensor<'_>)>)> {
    let local = batch / shard.ranks;
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([local, 2], 1, step)?;
    let targets = classify(points, local)?;
    let loss = layers::cross_entropy(mlp(g, points, &[2, 20, 20, 2])?, targets)?;
    let optimizer: &dyn Optimizer = if adam_optimizer { &Adam::new() } else { &Sgd::new() };
    let (schedule, updates, gradients) = train_sharded(g, loss, optimizer)?;
    let feed = Feed::drawn(move |s: usize| {
        let [lr, t] = Schedule::values(0.01, s as u64 + 1);
        vec![Value::i64([], vec![(s * shard.ranks + shard.rank) as i64]), lr, t]
    });
    Ok((Step { inputs: vec![step, schedule.lr, schedule.step], outputs: vec![loss], updates, feed }, gradients))
}

/// The accuracy of the notebook's MLP (params by the same names) on points `x: [N, 2]`.
pub fn seed_mlp_accuracy(g: &Graph) -> Result<Step<'_>> {
    let x = g.input("x", [Dim::sym("N"), 2.into()])?;
    let logits = mlp(g, x, &[2, 20, 20, 2])?;
    let predicted = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([Dim::sym("N")])?;
    let accuracy = layers::mean_all(predicted.eq(classify(x, "N")?)?)?;
    let feed = Feed::new(vec![vec![Value::f32([10_000, 2], normal_values(20_000, 99))]], |_| Vec::new());
    Ok(Step { inputs: vec![x], outputs: vec![accuracy], updates: vec![], feed })
}

/// W3: the W1 net's forward pass on `x: [B, 2]`; fed a batch of `batch` points.
pub fn mlp_infer(g: &Graph, batch: usize) -> Result<Step<'_>> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let logits = mlp(g, x, &[2, 20, 20, 2])?;
    let feed = Feed::drawn(move |s: usize| vec![Value::f32([batch, 2], normal_values(2 * batch, 3 + s as u64))]);
    Ok(Step { inputs: vec![x], outputs: vec![logits], updates: vec![], feed })
}

/// W4: a wide MLP on 8 fixed batches of 128, SGD with momentum.
pub fn wide_mlp(g: &Graph) -> Result<Step<'_>> {
    Ok(wide_mlp_shard(g, Shard { rank: 0, ranks: 1 })?.0)
}

/// One rank's part of W4 across `shard.ranks` processes: rows `rank · 128/ranks ..` of each
/// of the 8 batches of 128, and the gradients to sum across ranks.
pub fn wide_mlp_shard(g: &Graph, shard: Shard) -> Result<(Step<'_>, Vec<(String, Tensor<'_>)>)> {
    let local = 128 / shard.ranks;
    let x = g.input("x", [local, 784])?;
    let y = g.typed_input("labels", [local], DType::I64)?;
    let loss = layers::cross_entropy(mlp(g, x, &[784, 256, 256, 10])?, y)?;
    let (schedule, updates, gradients) = train_sharded(g, loss, &Sgd::momentum(0.9))?;
    let rows = shard.rank * local..(shard.rank + 1) * local;
    let batches: Vec<Vec<Value>> = (0..8)
        .map(|b| {
            let x = normal_values(128 * 784, 10 + b)[rows.start * 784..rows.end * 784].to_vec();
            let y = labels(128, 10, 20 + b)[rows.clone()].to_vec();
            vec![Value::f32([local, 784], x), Value::i64([local], y)]
        })
        .collect();
    let feed = Feed::new(batches, |s| Schedule::values(0.01, s as u64 + 1).to_vec());
    Ok((Step { inputs: vec![x, y, schedule.lr, schedule.step], outputs: vec![loss], updates, feed }, gradients))
}

/// W5: character ids, embeddings weighted by a sinusoidal position table, a small MLP, Adam.
pub fn char_title(g: &Graph) -> Result<Step<'_>> {
    const BATCH: usize = 256;
    const LENGTH: usize = 48;
    const CHARS: usize = 100;
    const WIDTH: usize = 64;
    let ids = g.typed_input("ids", [BATCH, LENGTH], DType::I64)?;
    let y = g.typed_input("labels", [BATCH], DType::I64)?;
    let embedding = g.param("embedding", [CHARS, WIDTH], Init::Normal { mean: 0.0, std: 1.0 })?;
    let mut table = Vec::with_capacity(LENGTH * WIDTH);
    for p in 0..LENGTH {
        for i in 0..WIDTH {
            let angle = p as f64 / 10_000f64.powf((2 * (i / 2)) as f64 / WIDTH as f64);
            table.push(if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    let positions = g.constant(Value::f32([LENGTH, WIDTH], table));
    let features = embedding.gather(ids)?.mul(positions)?.sum(&[1], false)?;
    let loss = layers::cross_entropy(mlp(g, features, &[WIDTH, 64, 8])?, y)?;
    let (schedule, updates) = train_with(g, loss, &Adam::new())?;
    let batches: Vec<Vec<Value>> = (0..16)
        .map(|b| {
            let ids = labels(BATCH * LENGTH, CHARS as u32, 40 + b);
            vec![Value::i64([BATCH, LENGTH], ids), Value::i64([BATCH], labels(BATCH, 8, 60 + b))]
        })
        .collect();
    let feed = Feed::new(batches, |s| Schedule::values(1e-3, s as u64 + 1).to_vec());
    Ok(Step { inputs: vec![ids, y, schedule.lr, schedule.step], outputs: vec![loss], updates, feed })
}
