//! Data-parallel training on 2 ranks under `mpirun` (built with `--features mpi`).
//!
//! This test is its own MPI program: run by `cargo test`, it launches itself under
//! `mpirun -np 2` once per scenario and checks what the ranks print and how they end; run by
//! `mpirun` (which sets `OMPI_COMM_WORLD_SIZE`), it plays the scenario named by its argument.
//!
//! - `equality`: a W4-like MLP trained on 2 ranks, each fed half of every global batch, ends
//!   within 1e-5 (relative to each param's largest magnitude) of the same MLP trained in one
//!   process on the whole global batches; the gradients' sums add the two halves in another
//!   order than one process does, so bits may differ, but by rounding only. The params are
//!   identical on both ranks, bit for bit, after every step.
//! - `resume`: 10 steps, a checkpoint written by rank 0, 10 more steps after every rank loads
//!   it, equal bit for bit to 20 uninterrupted steps.
//! - `mismatch`: rank 1 builds a wider hidden layer; both ranks stop at start, rank 1's error
//!   naming the param.
//! - `failure`: rank 1's step fails (a batch of the wrong shape); it stops the run, and rank 0,
//!   waiting in the gradient sum, stops with it, well within the timeout.
//! - `hang`: rank 1 stops answering; rank 0 stops the run when its 2-second timeout passes.
//! - `die`: rank 1's process exits in the middle of training; rank 0 does not finish its steps
//!   and the run stops within the timeout.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln::compiler::random;
use kiln::distributed::Ranks;
use kiln::prelude::*;
use kiln::{ShardedSampler, Trainer};

const FEATURES: usize = 64;
const CLASSES: usize = 10;
const EXAMPLES: usize = 512;
const GLOBAL_BATCH: usize = 64;
/// Relative distance allowed between 2-rank and 1-process params (see the module comment).
const TOLERANCE: f64 = 1e-5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() {
        let scenario = args.get(1).map(String::as_str).unwrap_or_default();
        let ranks = Ranks::init().unwrap_or_else(|e| panic!("MPI did not start: {e}"));
        match play(&ranks, scenario, args.get(2).map(Path::new)) {
            Ok(()) => {}
            Err(error) => {
                println!("rank {} error: {error}", ranks.rank());
                std::process::exit(3);
            }
        }
        return;
    }
    let directory = std::env::temp_dir().join(format!("kiln-data-parallel-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("a temporary directory");
    let checks: [(&str, Check); 6] = [
        ("equality", |o| {
            o.expect_success();
            o.expect("rank 0: params identical on every rank after every step: true");
            o.expect("rank 0: two ranks equal one process within tolerance: true");
        }),
        ("resume", |o| {
            o.expect_success();
            o.expect("rank 0: resumed equals uninterrupted bit for bit: true");
            o.expect("rank 1: resumed equals uninterrupted bit for bit: true");
        }),
        ("mismatch", |o| {
            o.expect_failure(Duration::from_secs(60));
            o.expect("rank 1 error: rank 1: the ranks built different graphs: param `layer1.bias`");
            o.expect("rank 0 error: rank 0: the ranks built different graphs: rank(s) [1]");
        }),
        ("failure", |o| {
            o.expect_failure(Duration::from_secs(30));
            o.expect("kiln: rank 1 of 2 failed, stopping every rank: bad value for input `x`");
        }),
        ("hang", |o| {
            o.expect_failure(Duration::from_secs(30));
            o.expect("kiln: rank 0 of 2: the sum of the gradient of");
            o.expect("did not complete within 2s");
        }),
        ("die", |o| {
            o.expect_failure(Duration::from_secs(30));
            assert!(!o.output.contains("rank 0: every step ran"), "rank 0 trained on without rank 1");
            o.expect("exited with non-zero status");
        }),
    ];
    let mut failed = 0;
    for (scenario, check) in checks {
        let outcome = launch(scenario, &directory);
        match std::panic::catch_unwind(|| check(&outcome)) {
            Ok(()) => println!("test data_parallel::{scenario} ... ok"),
            Err(_) => {
                println!("test data_parallel::{scenario} ... FAILED\n{}", outcome.output);
                failed += 1;
            }
        }
    }
    std::fs::remove_dir_all(&directory).ok();
    if failed > 0 {
        std::process::exit(1);
    }
}

/// What a scenario's run must show.
type Check = fn(&Outcome);

/// How a 2-rank run of a scenario ended.
struct Outcome {
    success: bool,
    elapsed: Duration,
    /// Standard output, then standard error, of every rank.
    output: String,
}

impl Outcome {
    fn expect(&self, line: &str) {
        assert!(self.output.contains(line), "expected `{line}` in the output");
    }

    fn expect_success(&self) {
        assert!(self.success, "mpirun failed");
    }

    fn expect_failure(&self, within: Duration) {
        assert!(!self.success, "mpirun succeeded");
        assert!(self.elapsed < within, "the ranks took {:?} to stop (limit {within:?})", self.elapsed);
    }
}

/// Runs this program as 2 ranks playing `scenario`, killed after 5 minutes at most.
fn launch(scenario: &str, directory: &Path) -> Outcome {
    let program = std::env::current_exe().expect("the test's own path");
    let started = Instant::now();
    let mut child = Command::new("mpirun")
        .args(["-np", "2", "--allow-run-as-root", "--oversubscribe"])
        .arg(&program)
        .arg(scenario)
        .arg(directory)
        .env("KILN_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun (install openmpi-bin) to start");
    loop {
        if child.try_wait().expect("waiting for mpirun").is_some() || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    let elapsed = started.elapsed();
    let finished = child.wait_with_output().expect("mpirun's output");
    let output = format!("{}{}", String::from_utf8_lossy(&finished.stdout), String::from_utf8_lossy(&finished.stderr));
    Outcome { success: finished.status.success(), elapsed, output }
}

/// Examples whose label is the largest of ten fixed random projections of their features.
struct Data {
    features: Vec<f32>,
    labels: Vec<i64>,
}

impl Data {
    fn new() -> Data {
        let key = random::draw_key(5, 0);
        let features: Vec<f32> = (0..EXAMPLES * FEATURES).map(|i| random::normal(key, i as u64) as f32).collect();
        let projection: Vec<f32> =
            (0..FEATURES * CLASSES).map(|i| random::normal(random::draw_key(6, 0), i as u64) as f32).collect();
        let labels = (0..EXAMPLES)
            .map(|e| {
                let score =
                    |c: usize| (0..FEATURES).map(|f| features[e * FEATURES + f] * projection[f * CLASSES + c]).sum();
                (0..CLASSES).map(|c| (c, score(c))).max_by(|a, b| f32::total_cmp(&a.1, &b.1)).map_or(0, |(c, _)| c)
                    as i64
            })
            .collect();
        Data { features, labels }
    }

    /// The inputs of a step on examples `indices`.
    fn batch(&self, indices: &[usize]) -> Vec<Value> {
        let x = indices.iter().flat_map(|&i| self.features[i * FEATURES..(i + 1) * FEATURES].iter().copied());
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        vec![Value::f32([indices.len(), FEATURES], x.collect()), Value::i64([indices.len()], labels)]
    }
}

/// A W4-like MLP (`FEATURES`-`hidden`-32-10, ReLU), cross-entropy on a symbolic batch.
fn objective(g: &Graph, hidden: usize) -> Result<Objective<'_>> {
    let x = g.input("x", [Dim::sym("B"), FEATURES.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let first = layers::Linear::new(g, "layer1", FEATURES, hidden)?;
    let second = layers::Linear::new(g, "layer2", hidden, 32)?;
    let third = layers::Linear::new(g, "layer3", 32, CLASSES)?;
    let h = layers::relu(second.forward(layers::relu(first.forward(x)?)?)?)?;
    let loss = layers::cross_entropy(third.forward(h)?, labels)?;
    Ok(Objective { loss, inputs: vec![x, labels], metrics: vec![] })
}

fn play(ranks: &Ranks, scenario: &str, directory: Option<&Path>) -> Result<()> {
    let rank = ranks.rank();
    let data = Data::new();
    let sgd = Sgd::momentum(0.9);
    let settings = Settings::new(&sgd, 0.05);
    let shards = ShardedSampler::new(EXAMPLES, GLOBAL_BATCH, rank, ranks.size(), 11)?;
    let g = Graph::new();
    match scenario {
        "equality" => {
            let objective = objective(&g, 32)?;
            let mut parallel = Trainer::data_parallel(&g, &objective, &settings, ranks)?;
            let mut single = Trainer::new(&g, &objective, &settings)?;
            let whole = ShardedSampler::new(EXAMPLES, GLOBAL_BATCH, 0, 1, 11)?;
            let mut identical = true;
            let mut loss_gap: f64 = 0.0;
            for step in 0..40 {
                let report = parallel.step(&data.batch(&shards.batch(step)))?;
                let reference = single.step(&data.batch(&whole.batch(step)))?;
                loss_gap = loss_gap.max((report.loss - reference.loss).abs() / reference.loss.abs());
                identical &= parallel.params_identical_across_ranks()?;
            }
            let distance = relative_distance(&parallel.params(), &single.params());
            println!("rank {rank}: largest relative distance from one process: {distance:e}; loss {loss_gap:e}");
            println!("rank {rank}: params identical on every rank after every step: {identical}");
            let within = distance <= TOLERANCE && loss_gap <= TOLERANCE;
            println!("rank {rank}: two ranks equal one process within tolerance: {within}");
        }
        "resume" => {
            let path = directory.expect("a directory for the checkpoint").join("resume.safetensors");
            let objective = objective(&g, 32)?;
            let mut uninterrupted = Trainer::data_parallel(&g, &objective, &settings, ranks)?;
            for step in 0..20 {
                uninterrupted.step(&data.batch(&shards.batch(step)))?;
            }
            let mut first = Trainer::data_parallel(&g, &objective, &settings, ranks)?;
            for step in 0..10 {
                first.step(&data.batch(&shards.batch(step)))?;
            }
            first.save(&path, serde_json::json!({}))?;
            let mut resumed = Trainer::data_parallel(&g, &objective, &settings, ranks)?;
            resumed.load(&path)?;
            for step in resumed.steps()..20 {
                resumed.step(&data.batch(&shards.batch(step)))?;
            }
            let equal =
                same_bits(&resumed.params(), &uninterrupted.params()) && resumed.params_identical_across_ranks()?;
            println!("rank {rank}: resumed equals uninterrupted bit for bit: {equal}");
        }
        "mismatch" => {
            let objective = objective(&g, if rank == 1 { 33 } else { 32 })?;
            Trainer::data_parallel(&g, &objective, &settings, ranks)?;
            println!("rank {rank}: the mismatch went unnoticed");
        }
        "failure" | "hang" | "die" => {
            let mut ranks = ranks.clone();
            ranks.set_timeout(Duration::from_secs(2));
            let objective = objective(&g, 32)?;
            let mut trainer = Trainer::data_parallel(&g, &objective, &settings, &ranks)?;
            for step in 0..10 {
                let mut inputs = data.batch(&shards.batch(step));
                if rank == 1 && step == 3 {
                    match scenario {
                        "hang" => std::thread::sleep(Duration::from_secs(20)),
                        "die" => std::process::exit(5),
                        _ => {}
                    }
                    inputs[0] = Value::f32([1, 3], vec![0.0; 3]);
                }
                if let Err(error) = trainer.step(&inputs) {
                    ranks.abort(&error);
                }
            }
            println!("rank {rank}: every step ran");
        }
        other => panic!("unknown scenario `{other}`"),
    }
    Ok(())
}

/// The largest `|a - b| / max |b|` over the params (each param scaled by its own largest).
fn relative_distance(a: &ParamStore, b: &ParamStore) -> f64 {
    let mut largest: f64 = 0.0;
    for (name, value) in b.iter() {
        let theirs = value.to_f64_vec();
        let ours = a.get(name).map(Value::to_f64_vec).unwrap_or_default();
        let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        let gap = ours.iter().zip(&theirs).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        largest = largest.max(if ours.len() == theirs.len() { gap / scale } else { f64::INFINITY });
    }
    largest
}

/// True if both stores hold the same params with the same bits.
fn same_bits(a: &ParamStore, b: &ParamStore) -> bool {
    let bits = |store: &ParamStore| -> Vec<(String, Vec<u32>)> {
        store
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_f32_vec().iter().map(|v| v.to_bits()).collect()))
            .collect()
    };
    bits(a) == bits(b)
}
