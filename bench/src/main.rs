//! kiln-bench: the workloads W1–W6 of the shared benchmark definition, built with kiln's
//! function API and timed.
//!
//! In: the command line (workload, threads, tier). Out: JSON lines of timings, one per workload and
//! setting.
//!
//! `cargo run --release -p kiln-bench -- <w1|w2|w3|w4|w5|w6|all|matmul|compile> [--threads N] [--repeat N]
//! [--tier jit|native|auto]`
//!
//! `--tier` picks the code generator of the workloads (as `KILN_TIER` does; default `auto`,
//! which switches to the native tier after 64 steps). `compile` prints each workload's compile
//! time on each tier: the JIT, the native tier cold (an empty cache folder) and from the cache.
//!
//! `w6` prints two lines: W6 (`"workload":"w6"`, a 100,000-row table) and the same model with a
//! 1,000,000-row table (`"workload":"w6-1m"`); a sparse step's cost follows the rows touched, so
//! the two should run at about the same rate.
//!
//! `export` times the exported MLP (a static library linked into a C benchmark) against the
//! JIT at one thread (see `export.rs`).
//!
//! Built with `--features mpi` and launched by `mpirun -np N`, `w1` and `w4` run as N
//! data-parallel ranks (see `scale_out.rs`), and rank 0 prints the JSON line with `"ranks":N`.
//!
//! `matmul` calibrates the GEMM threshold: every matmul shape of the workloads, timed in the
//! register tile and in the tuned GEMM. A contraction shorter than `GEMM_MIN_K` always runs
//! in the tile, so for those shapes the GEMM column is `null` (there is no GEMM to time). It
//! then times W4's forward products in the GEMM with the weight stored `[k, n]` and stored
//! `[n, k]` as a linear layer stores it (`matmul-layout` lines).
//!
//! Prints one JSON line per workload and repeat:
//! `{"workload":"w1","threads":1,"compile_ms":..,"steps":..,"seconds":..,"steps_per_s":..,"quality":..}`
//! (W3: `latency_ns` at batch 1 and `samples_per_s` at batch 10000 instead of steps).

use std::time::Instant;

mod export;
#[cfg(feature = "mpi")]
mod scale_out;

use kiln::Tier;
use kiln::prelude::*;
use kiln_bench as workloads;
use kiln_bench::normal_values;

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
    feed: &mut workloads::Feed,
) -> Result<(f64, f64, Vec<Value>)> {
    f.call(feed.at(0))?;
    let compile_ms = compile_started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut last = Vec::new();
    for step in 1..=steps {
        last = f.call(feed.at(step))?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(profile) = f.profile() {
        eprint!("{profile}");
    }
    Ok((compile_ms, seconds, last))
}

/// W1 and W2: the notebook's MLP on a batch of 10000 points drawn in the graph every step.
fn seed_mlp(adam_optimizer: bool) -> Result<Run> {
    let started = Instant::now();
    let g = Graph::new();
    let mut step = workloads::seed_mlp(&g, 10_000, adam_optimizer)?;
    let mut f = step.compile(&g)?;
    let (compile_ms, seconds, _) = train(&mut f, started, 1024, &mut step.feed)?;
    // Accuracy on 10000 held-out points drawn with another seed.
    let e = Graph::new();
    let mut accuracy = workloads::seed_mlp_accuracy(&e)?;
    let mut evaluate = accuracy.compile(&e)?;
    evaluate.set_params(&f.params())?;
    let quality = evaluate.call(accuracy.feed.at(0))?[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: if adam_optimizer { "w2" } else { "w1" }, compile_ms, steps: 1024, seconds, quality })
}

/// W3: the W1 net's forward pass; batch-1 latency and batch-10000 throughput.
fn mlp_infer(threads: usize) {
    let run = || -> Result<String> {
        let started = Instant::now();
        let g = Graph::new();
        let mut f = workloads::mlp_infer(&g, 1)?.compile(&g)?;
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
    let mut step = workloads::wide_mlp(&g)?;
    let mut f = step.compile(&g)?;
    let (compile_ms, seconds, last) = train(&mut f, started, 300, &mut step.feed)?;
    let quality = last[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: "w4", compile_ms, steps: 300, seconds, quality })
}

/// W5: character ids, embeddings weighted by a sinusoidal position table, a small MLP, Adam.
fn char_title() -> Result<Run> {
    let started = Instant::now();
    let g = Graph::new();
    let mut step = workloads::char_title(&g)?;
    let mut f = step.compile(&g)?;
    let (compile_ms, seconds, last) = train(&mut f, started, 300, &mut step.feed)?;
    let quality = last[0].item().unwrap_or(f64::NAN);
    Ok(Run { workload: "w5", compile_ms, steps: 300, seconds, quality })
}

/// W6 word-tags with a table of `vocabulary` rows: 300 counted steps after a first one (which
/// carries the compilation), the final training loss as quality.
fn word_tags(workload: &'static str, vocabulary: usize) -> Result<Run> {
    let started = Instant::now();
    let g = Graph::new();
    let mut w6 = workloads::w6::word_tags(&g, vocabulary)?;
    let mut f = w6.step.compile(&g)?;
    w6.run(&mut f, 0)?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut quality = f64::NAN;
    for step in 1..=300 {
        quality = w6.run(&mut f, step)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(profile) = f.profile() {
        eprint!("{profile}");
    }
    Ok(Run { workload, compile_ms, steps: 300, seconds, quality })
}

/// The median over `samples` of the time per call of `f` on `values` (µs), each sample
/// `repeats` calls, after one call to warm up.
fn median_call_us(f: &mut kiln::Function, values: &[Value], samples: usize, repeats: usize) -> Result<f64> {
    f.call(values)?;
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        for _ in 0..repeats {
            f.call(values)?;
        }
        times.push(started.elapsed().as_secs_f64() * 1e6 / repeats as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Calibration of the GEMM threshold: each matmul shape of W1, W3 and W4 (and a few between)
/// timed in the register tile and in the tuned GEMM, medians of 15 calls. Generated code sends
/// a product with `k < GEMM_MIN_K` to the tile whatever `KILN_GEMM_MIN_WORK` says, so such a
/// shape prints `"gemm_us":null` rather than a second timing of the tile.
fn matmul_paths(threads: usize) {
    let min_k = kiln::compiler::codegen::gemm::GEMM_MIN_K as usize;
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
            let mut options = kiln::compiler::codegen::Options::default();
            options.settings.gemm_min_work = Some(min_work);
            let g = Graph::new();
            let a = g.input("a", [m, k])?;
            let b = g.input("b", [k, n])?;
            let mut f = kiln::function_with(&g, &[a, b], &[a.matmul(b)?], &[], &options)?;
            let values = [Value::f32([m, k], normal_values(m * k, 1)), Value::f32([k, n], normal_values(k * n, 2))];
            median_call_us(&mut f, &values, 15, (2_000_000 / (m * k * n)).clamp(1, 1000))
        };
        let gemm = if k < min_k { Ok(None) } else { time(0).map(Some) };
        match (time(i64::MAX), gemm) {
            (Ok(tile), Ok(gemm)) => {
                let gemm = gemm.map_or("null".to_string(), |us| format!("{us:.2}"));
                println!(
                    r#"{{"workload":"matmul","threads":{threads},"m":{m},"k":{k},"n":{n},"work":{},"tile_us":{tile:.2},"gemm_us":{gemm}}}"#,
                    m * k * n
                )
            }
            (Err(e), _) | (_, Err(e)) => eprintln!("matmul {m}x{k}x{n} failed: {e}"),
        }
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("KILN_GEMM_MIN_WORK") };
    // W4's forward products as a linear layer computes them (`x · Wᵀ`, W stored `[n, k]`: the
    // right operand read down its columns) against the same product with W stored `[k, n]`,
    // both in the GEMM: what the weights' layout costs.
    for (m, k, n) in [(128usize, 784usize, 256usize), (128, 256, 256)] {
        let time = |transposed: bool| -> Result<f64> {
            let mut options = kiln::compiler::codegen::Options::default();
            options.settings.gemm_min_work = Some(0);
            options.settings.threads = Some(threads);
            let g = Graph::new();
            let x = g.input("x", [m, k])?;
            let stored = if transposed { [n, k] } else { [k, n] };
            let w = g.input("w", stored)?;
            let product = if transposed { x.matmul(w.t()?)? } else { x.matmul(w)? };
            let mut f = kiln::function_on(Tier::Jit, &g, &[x, w], &[product], &[], &options)?;
            let values = [Value::f32([m, k], normal_values(m * k, 1)), Value::f32(stored, normal_values(k * n, 2))];
            median_call_us(&mut f, &values, 31, 20)
        };
        match (time(false), time(true)) {
            (Ok(rows), Ok(columns)) => println!(
                r#"{{"workload":"matmul-layout","threads":{threads},"m":{m},"k":{k},"n":{n},"gemm_b_k_by_n_us":{rows:.2},"gemm_b_transposed_us":{columns:.2}}}"#
            ),
            (Err(e), _) | (_, Err(e)) => eprintln!("matmul layout {m}x{k}x{n} failed: {e}"),
        }
    }
}

/// Compile time of each workload's step on each tier: the JIT, the native tier cold (in an
/// empty cache folder) and cached (the same program again).
fn compile_times() -> Result<()> {
    type Build = for<'g> fn(&'g Graph) -> Result<workloads::Step<'g>>;
    let cache = std::env::temp_dir().join(format!("kiln-bench-cache-{}", std::process::id()));
    // SAFETY: no other thread reads the environment while it is set.
    unsafe { std::env::set_var("KILN_CACHE", &cache) };
    let steps: [(&str, Build); 5] = [
        ("w1", |g| workloads::seed_mlp(g, 10_000, false)),
        ("w2", |g| workloads::seed_mlp(g, 10_000, true)),
        ("w3", |g| workloads::mlp_infer(g, 10_000)),
        ("w4", workloads::wide_mlp),
        ("w5", workloads::char_title),
    ];
    for (name, build) in steps {
        for (tier, label) in [(Tier::Jit, "jit"), (Tier::Native, "native_cold"), (Tier::Native, "native_cached")] {
            let g = Graph::new();
            let step = build(&g)?;
            let started = Instant::now();
            let options = kiln::compiler::codegen::Options::default();
            let f = kiln::function_on(tier, &g, &step.inputs, &step.outputs, &step.updates, &options)?;
            let compile_ms = started.elapsed().as_secs_f64() * 1e3;
            println!(
                r#"{{"workload":"compile","step":"{name}","tier":"{label}","compile_ms":{compile_ms:.1},"kernels":{},"running":"{:?}"}}"#,
                f.kernel_count(),
                f.tier()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
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
    let mut tier = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => threads = args.get(i + 1).and_then(|v| v.parse().ok()),
            "--repeat" => repeat = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(1),
            "--tier" => tier = args.get(i + 1).cloned(),
            name => {
                workload = Some(name.to_string());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let Some(workload) = workload else {
        eprintln!(
            "usage: kiln-bench <w1|w2|w3|w4|w5|w6|all|matmul|export|compile> [--threads N] [--repeat N] [--tier jit|native|auto]"
        );
        std::process::exit(2);
    };
    if let Some(tier) = &tier {
        if !["jit", "native", "auto"].contains(&tier.as_str()) {
            eprintln!("unknown tier `{tier}`; expected jit, native or auto");
            std::process::exit(2);
        }
        // SAFETY: set before any other thread exists; functions read it when they are built.
        unsafe { std::env::set_var("KILN_TIER", tier) };
    }
    // Functions read KILN_THREADS when they are built.
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // SAFETY: set before any other thread exists.
    unsafe { std::env::set_var("KILN_THREADS", threads.to_string()) };
    #[cfg(feature = "mpi")]
    if scale_out::launched_by_mpirun() {
        if let Err(e) = scale_out::run(&workload, threads) {
            eprintln!("{workload} across ranks failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let all = ["w1", "w2", "w3", "w4", "w5", "w6"];
    let selected: Vec<&str> = if workload == "all" { all.to_vec() } else { vec![workload.as_str()] };
    for name in selected {
        for _ in 0..repeat {
            match name {
                "w1" => report(seed_mlp(false), threads),
                "w2" => report(seed_mlp(true), threads),
                "w3" => mlp_infer(threads),
                "w4" => report(wide_mlp(), threads),
                "w5" => report(char_title(), threads),
                "w6" => {
                    report(word_tags("w6", 100_000), threads);
                    report(word_tags("w6-1m", 1_000_000), threads);
                }
                "matmul" => matmul_paths(threads),
                "compile" => {
                    if let Err(e) = compile_times() {
                        eprintln!("compile benchmark failed: {e}");
                        std::process::exit(1);
                    }
                }
                "export" => {
                    if let Err(e) = export::run() {
                        eprintln!("export benchmark failed: {e}");
                        std::process::exit(1);
                    }
                }
                other => {
                    eprintln!("unknown workload `{other}`; expected w1..w6 or all");
                    std::process::exit(2);
                }
            }
        }
    }
}
