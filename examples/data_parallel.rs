//! Data-parallel training over MPI: W4's wide MLP (784-256-256-10, SGD with momentum) on
//! every rank, each fed its shard of every global batch of 128, gradients averaged across the
//! ranks inside the compiled step.
//!
//! ```text
//! cargo build --release --features mpi --example data_parallel
//! mpirun -np 2 target/release/examples/data_parallel
//! ```
//!
//! Rank 0 prints the loss (the mean over ranks) now and then, and as its last line
//! `ranks: <N>; params identical on every rank: <true|false>; final loss: <value>`.
//! A rank whose step fails stops every rank with its error.

use kiln::distributed::Ranks;
use kiln::prelude::*;
use kiln::random;
use kiln::{ShardedSampler, Trainer};

const FEATURES: usize = 784;
const CLASSES: usize = 10;
const EXAMPLES: usize = 4096;
const GLOBAL_BATCH: usize = 128;
const STEPS: u64 = 200;

fn main() {
    let ranks = match Ranks::init() {
        Ok(ranks) => ranks,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = run(&ranks) {
        ranks.abort(&error);
    }
}

fn run(ranks: &Ranks) -> Result<()> {
    let (features, labels) = data();
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), FEATURES.into()])?;
    let y = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let mut h = x;
    for (i, pair) in [FEATURES, 256, 256, CLASSES].windows(2).enumerate() {
        h = layers::Linear::new(&g, &format!("layer{}", i + 1), pair[0], pair[1])?.forward(h)?;
        if i < 2 {
            h = layers::relu(h)?;
        }
    }
    let loss = layers::cross_entropy(h, y)?;
    let objective = Objective { loss, inputs: vec![x, y], metrics: vec![] };
    let sgd = Sgd::momentum(0.9);
    let settings = Settings { diagnose: |_| false, ..Settings::new(&sgd, 0.01) };
    let mut trainer = Trainer::data_parallel(&g, &objective, &settings, ranks)?;
    let shards = ShardedSampler::new(EXAMPLES, GLOBAL_BATCH, ranks.rank(), ranks.size(), 0)?;
    let mut last = f64::NAN;
    for step in 0..STEPS {
        let indices = shards.batch(step);
        let x = indices.iter().flat_map(|&i| features[i * FEATURES..(i + 1) * FEATURES].iter().copied());
        let batch = [
            Value::f32([indices.len(), FEATURES], x.collect()),
            Value::i64([indices.len()], indices.iter().map(|&i| labels[i]).collect()),
        ];
        last = trainer.step(&batch)?.loss;
        if ranks.rank() == 0 && (step % 40 == 0 || step + 1 == STEPS) {
            println!("step {step:>4}: loss {last:.4}");
        }
    }
    let identical = trainer.params_identical_across_ranks()?;
    if ranks.rank() == 0 {
        println!("ranks: {}; params identical on every rank: {identical}; final loss: {last:.6}", ranks.size());
    }
    Ok(())
}

/// Standard-normal features, each labelled by the largest of ten fixed random projections.
fn data() -> (Vec<f32>, Vec<i64>) {
    let key = random::draw_key(1, 0);
    let features: Vec<f32> = (0..EXAMPLES * FEATURES).map(|i| random::normal(key, i as u64) as f32).collect();
    let key = random::draw_key(2, 0);
    let projection: Vec<f32> = (0..FEATURES * CLASSES).map(|i| random::normal(key, i as u64) as f32).collect();
    let labels = features
        .chunks(FEATURES)
        .map(|example| {
            let score =
                |c: usize| example.iter().enumerate().map(|(f, v)| v * projection[f * CLASSES + c]).sum::<f32>();
            (0..CLASSES).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0) as i64
        })
        .collect();
    (features, labels)
}
