//! kiln-bench: the workloads W1–W5 of the shared benchmark definition, built with kiln's
//! function API and timed.
//!
//! `cargo run --release -p kiln-bench -- <w1|w2|w3|w4|w5|all|matmul> [--threads N] [--repeat N]`
//!
//! `matmul` calibrates the GEMM threshold: every matmul shape of the workloads, timed in the
//! register tile and in the tuned GEMM.
//!
//! Prints one JSON line per workload and repeat:
//! `{"workload":"w1","threads":1,"compile_ms":..,"steps":..,"seconds":..,"steps_per_s":..,"quality":..}`
//! (W3: `latency_ns` at batch 1 and `samples_per_s` at batch 10000 instead of steps).

use std::time::Instant;

use kiln::compiler::random;
use kiln::prelude::*;

type Update<'g> = (Tensor<'g>, Tensor<'g>);

/// Layer sizes to a stack of `Linear` layers with ReLU between them; returns the logits.
fn mlp<'g>(g: &'g Graph, x: Tensor<'g>, sizes: &[usize]) -> Result<Tensor<'g>> {
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

/// Plain SGD: `p ← p - lr·g`.
fn sgd<'g>(params: &[Tensor<'g>], grads: &[Tensor<'g>], lr: f64) -> Result<Vec<Update<'g>>> {
    params.iter().zip(grads).map(|(p, g)| Ok((*p, p.sub(g.mul(lr)?)?))).collect()
}

/// SGD with momentum, PyTorch's form: `buf ← μ·buf + g`, `p ← p - lr·buf`.
fn sgd_momentum<'g>(
    g: &'g Graph,
    params: &[Tensor<'g>],
    grads: &[Tensor<'g>],
    lr: f64,
    momentum: f64,
) -> Result<Vec<Update<'g>>> {
    let mut updates = Vec::new();
    for (p, grad) in params.iter().zip(grads) {
        let name = p.name().expect("params are named");
        let buffer = g.param_with(&format!("momentum.{name}"), p.shape(), Init::ZEROS, false)?;
        let next = buffer.mul(momentum)?.add(*grad)?;
        updates.push((buffer, next));
        updates.push((*p, p.sub(next.mul(lr)?)?));
    }
    Ok(updates)
}

/// Adam with bias correction; `t` is the 1-based step as an f32 scalar input.
fn adam<'g>(
    g: &'g Graph,
    params: &[Tensor<'g>],
    grads: &[Tensor<'g>],
    t: Tensor<'g>,
    lr: f64,
) -> Result<Vec<Update<'g>>> {
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8);
    let correction1 = 1.0 - t.mul(beta1.ln())?.exp()?;
    let correction2 = 1.0 - t.mul(beta2.ln())?.exp()?;
    let mut updates = Vec::new();
    for (p, grad) in params.iter().zip(grads) {
        let name = p.name().expect("params are named");
        let m = g.param_with(&format!("adam.m.{name}"), p.shape(), Init::ZEROS, false)?;
        let v = g.param_with(&format!("adam.v.{name}"), p.shape(), Init::ZEROS, false)?;
        let m_next = m.mul(beta1)?.add(grad.mul(1.0 - beta1)?)?;
        let v_next = v.mul(beta2)?.add(grad.square()?.mul(1.0 - beta2)?)?;
        let step = m_next.div(correction1)?.div(v_next.div(correction2)?.sqrt()?.add(eps)?)?;
        updates.push((m, m_next));
        updates.push((v, v_next));
        updates.push((*p, p.sub(step.mul(lr)?)?));
    }
    Ok(updates)
}

/// The notebook's target: 1 where `y > sin(3x)`.
fn classify<'g>(points: Tensor<'g>, n: impl Into<Dim>) -> Result<Tensor<'g>> {
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([n.into()])
}

fn normal_values(n: usize, seed: u64) -> Vec<f32> {
    let key = random::draw_key(seed, 0);
    (0..n as u64).map(|i| random::normal(key, i) as f32).collect()
}

fn labels(n: usize, classes: u32, seed: u64) -> Vec<i64> {
    let key = random::draw_key(seed, 1);
    (0..n as u64).map(|i| i64::from(random::bits(key, i) % classes)).collect()
}

struct Run {
    workload: &'static str,
    compile_ms: f64,
    steps: usize,
    seconds: f64,
    quality: f64,
}

/// Compiles (timed with the first, warm-up call), runs `steps` timed calls, returns the result
/// of the last call.
fn train(
    f: &mut Function,
    compile_started: Instant,
    steps: usize,
    inputs: impl Fn(usize) -> Vec<Value>,
) -> Result<(f64, f64, Vec<Value>)> {
    f.call(&inputs(0))?;
    let compile_ms = compile_started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut last = Vec::new();
    for step in 1..=steps {
        last = f.call(&inputs(step))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(profile) = f.profile() {
        eprint!("{profile}");
    }
    Ok((compile_ms, seconds, last))
}

/// W1 and W2: the notebook's MLP on a batch of 10000 points drawn in the graph every step.
fn seed_mlp(adam_optimizer: bool) -> Result<Run> {
    const BATCH: usize = 10_000;
    let started = Instant::now();
    let g = Graph::new();
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let t = g.input("t", Shape::scalar())?;
    let points = g.random_normal([BATCH, 2], 1, step)?;
    let targets = classify(points, BATCH)?;
    let loss = layers::cross_entropy(mlp(&g, points, &[2, 20, 20, 2])?, targets)?;
    let params = trainable(&g);
    let grads = g.grad(loss, &params)?;
    let updates = if adam_optimizer { adam(&g, &params, &grads, t, 0.01)? } else { sgd(&params, &grads, 0.01)? };
    let mut f = function(&g, &[step, t], &[loss], &updates)?;
    let inputs = |s: usize| vec![Value::i64([], vec![s as i64]), Value::f32([], vec![(s + 1) as f32])];
    let (compile_ms, seconds, _) = train(&mut f, started, 1024, inputs)?;

    // Accuracy on 10000 held-out points drawn with another seed.
    let e = Graph::new();
    let x = e.input("x", [Dim::sym("N"), 2.into()])?;
    let logits = mlp(&e, x, &[2, 20, 20, 2])?;
    let predicted = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([Dim::sym("N")])?;
    let accuracy = layers::mean_all(predicted.eq(classify(x, "N")?)?.cast(DType::F32)?)?;
    let mut evaluate = function(&e, &[x], &[accuracy], &[])?;
    evaluate.set_params(&f.params())?;
    let held_out = Value::f32([BATCH, 2], normal_values(2 * BATCH, 99));
    let quality = evaluate.call(&[held_out])?[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: if adam_optimizer { "w2" } else { "w1" }, compile_ms, steps: 1024, seconds, quality })
}

/// W3: the W1 net's forward pass; batch-1 latency and batch-10000 throughput.
fn mlp_infer(threads: usize) {
    let run = || -> Result<String> {
        let started = Instant::now();
        let g = Graph::new();
        let x = g.input("x", [Dim::sym("B"), 2.into()])?;
        let logits = mlp(&g, x, &[2, 20, 20, 2])?;
        let mut f = function(&g, &[x], &[logits], &[])?;
        f.set_threads(threads);
        let one = [Value::f32([1, 2], vec![0.3, -0.7])];
        f.call(&one)?;
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut samples = Vec::new();
        for _ in 0..11 {
            let started = Instant::now();
            for _ in 0..10_000 {
                f.call(&one)?;
            }
            samples.push(started.elapsed().as_secs_f64() / 10_000.0);
        }
        samples.sort_by(f64::total_cmp);
        let latency_ns = samples[samples.len() / 2] * 1e9;
        let big = [Value::f32([10_000, 2], normal_values(20_000, 3))];
        let mut rates = Vec::new();
        for _ in 0..11 {
            let started = Instant::now();
            f.call(&big)?;
            rates.push(10_000.0 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let samples_per_s = rates[rates.len() / 2];
        Ok(format!(
            r#"{{"workload":"w3","threads":{threads},"compile_ms":{compile_ms:.2},"latency_ns":{latency_ns:.0},"samples_per_s":{samples_per_s:.0}}}"#
        ))
    };
    match run() {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("w3 failed: {e}"),
    }
}

/// W4: a wide MLP on 8 fixed batches of 128, SGD with momentum.
fn wide_mlp() -> Result<Run> {
    let started = Instant::now();
    let g = Graph::new();
    let x = g.input("x", [128, 784])?;
    let y = g.typed_input("labels", [128], DType::I64)?;
    let loss = layers::cross_entropy(mlp(&g, x, &[784, 256, 256, 10])?, y)?;
    let params = trainable(&g);
    let grads = g.grad(loss, &params)?;
    let updates = sgd_momentum(&g, &params, &grads, 0.01, 0.9)?;
    let mut f = function(&g, &[x, y], &[loss], &updates)?;
    let batches: Vec<[Value; 2]> = (0..8)
        .map(|b| [Value::f32([128, 784], normal_values(128 * 784, 10 + b)), Value::i64([128], labels(128, 10, 20 + b))])
        .collect();
    let (compile_ms, seconds, last) = train(&mut f, started, 300, |s| batches[s % 8].to_vec())?;
    let quality = last[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: "w4", compile_ms, steps: 300, seconds, quality })
}

/// W5: character ids, embeddings weighted by a sinusoidal position table, a small MLP, Adam.
fn char_title() -> Result<Run> {
    const BATCH: usize = 256;
    const LENGTH: usize = 48;
    const CHARS: usize = 100;
    const WIDTH: usize = 64;
    let started = Instant::now();
    let g = Graph::new();
    let ids = g.typed_input("ids", [BATCH, LENGTH], DType::I64)?;
    let y = g.typed_input("labels", [BATCH], DType::I64)?;
    let t = g.input("t", Shape::scalar())?;
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
    let loss = layers::cross_entropy(mlp(&g, features, &[WIDTH, 64, 8])?, y)?;
    let params = trainable(&g);
    let grads = g.grad(loss, &params)?;
    let updates = adam(&g, &params, &grads, t, 1e-3)?;
    let mut f = function(&g, &[ids, y, t], &[loss], &updates)?;
    let batches: Vec<[Value; 2]> = (0..16)
        .map(|b| {
            let ids = labels(BATCH * LENGTH, CHARS as u32, 40 + b);
            [Value::i64([BATCH, LENGTH], ids), Value::i64([BATCH], labels(BATCH, 8, 60 + b))]
        })
        .collect();
    let inputs = |s: usize| {
        let [ids, y] = batches[s % 16].clone();
        vec![ids, y, Value::f32([], vec![(s + 1) as f32])]
    };
    let (compile_ms, seconds, last) = train(&mut f, started, 300, inputs)?;
    let quality = last[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: "w5", compile_ms, steps: 300, seconds, quality })
}

/// Calibration of the GEMM threshold: each matmul shape of W1, W3 and W4 (and a few between)
/// timed in the register tile and in the tuned GEMM, medians of 15 calls.
fn matmul_paths(threads: usize) {
    let shapes: [(usize, usize, usize); 14] = [
        (1, 2, 20),
        (1, 20, 20),
        (16, 16, 16),
        (32, 32, 32),
        (64, 64, 64),
        (10_000, 2, 20),
        (10_000, 20, 20),
        (10_000, 20, 2),
        (20, 10_000, 20),
        (128, 784, 256),
        (128, 256, 256),
        (128, 256, 10),
        (256, 128, 784),
        (10, 128, 256),
    ];
    for (m, k, n) in shapes {
        let time = |min_work: i64| -> Result<f64> {
            // SAFETY: no other thread reads the environment while it is set.
            unsafe { std::env::set_var("KILN_GEMM_MIN_WORK", min_work.to_string()) };
            let g = Graph::new();
            let a = g.input("a", [m, k])?;
            let b = g.input("b", [k, n])?;
            let mut f = function(&g, &[a, b], &[a.matmul(b)?], &[])?;
            let values = [Value::f32([m, k], normal_values(m * k, 1)), Value::f32([k, n], normal_values(k * n, 2))];
            f.call(&values)?;
            let mut samples = Vec::new();
            for _ in 0..15 {
                let repeats = (2_000_000 / (m * k * n)).clamp(1, 1000);
                let started = Instant::now();
                for _ in 0..repeats {
                    f.call(&values)?;
                }
                samples.push(started.elapsed().as_secs_f64() * 1e6 / repeats as f64);
            }
            samples.sort_by(f64::total_cmp);
            Ok(samples[samples.len() / 2])
        };
        match (time(i64::MAX), time(0)) {
            (Ok(tile), Ok(gemm)) => println!(
                r#"{{"workload":"matmul","threads":{threads},"m":{m},"k":{k},"n":{n},"work":{},"tile_us":{tile:.2},"gemm_us":{gemm:.2}}}"#,
                m * k * n
            ),
            (Err(e), _) | (_, Err(e)) => eprintln!("matmul {m}x{k}x{n} failed: {e}"),
        }
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("KILN_GEMM_MIN_WORK") };
}

fn report(run: Result<Run>, threads: usize) {
    match run {
        Ok(r) => println!(
            r#"{{"workload":"{}","threads":{threads},"compile_ms":{:.2},"steps":{},"seconds":{:.4},"steps_per_s":{:.1},"quality":{:.6}}}"#,
            r.workload,
            r.compile_ms,
            r.steps,
            r.seconds,
            r.steps as f64 / r.seconds,
            r.quality
        ),
        Err(e) => eprintln!("workload failed: {e}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut workload = None;
    let mut threads = None;
    let mut repeat = 1;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => threads = args.get(i + 1).and_then(|v| v.parse().ok()),
            "--repeat" => repeat = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(1),
            name => {
                workload = Some(name.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let Some(workload) = workload else {
        eprintln!("usage: kiln-bench <w1|w2|w3|w4|w5|all|matmul> [--threads N] [--repeat N]");
        std::process::exit(2);
    };
    // Functions read KILN_THREADS when they are built.
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("KILN_THREADS", threads.to_string()) };
    let all = ["w1", "w2", "w3", "w4", "w5"];
    let selected: Vec<&str> = if workload == "all" { all.to_vec() } else { vec![workload.as_str()] };
    for name in selected {
        for _ in 0..repeat {
            match name {
                "w1" => report(seed_mlp(false), threads),
                "w2" => report(seed_mlp(true), threads),
                "w3" => mlp_infer(threads),
                "w4" => report(wide_mlp(), threads),
                "w5" => report(char_title(), threads),
                "matmul" => matmul_paths(threads),
                other => {
                    eprintln!("unknown workload `{other}`; expected w1..w5 or all");
                    std::process::exit(2);
                }
            }
        }
    }
}
