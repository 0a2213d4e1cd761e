//! `kiln-bench export`: the exported MLP against the JIT, at one thread.
//!
//! In: the notebook's MLP, exported for two x86-64 targets and as C source. Out: one JSON line of
//! timings per build.
//!
//! Exports the notebook's MLP (2 → 20 → 20 → 2, ReLU; seeded random weights) as static
//! libraries for the x86-64 baseline (no FMA) and x86-64-v3 (AVX2 + FMA), links each into a C
//! benchmark compiled with `cc -O2`, and the portable C source of the same kernels built with
//! `cc -O3 -march=native`, and the native tier's vector C as a static library (the native-tier
//! artifact, built with `cc -O3 -march=native`), and times `<name>_infer`: the median over 101 samples of
//! 20000 calls at batch 1, and the median of 31 calls at batch 10000. The JIT (a `Function` at
//! one thread, default options: big matmuls in the tuned GEMM) is timed the same way through
//! `Function::call`, which also checks and copies its feed; and once more without the GEMM
//! (every matmul in the register tile, the artifact's algorithm). Prints one JSON line per
//! build, with its speed relative to the default JIT (`vs_jit_*` above 1: the artifact is
//! faster).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kiln::Tier;
use kiln::prelude::*;
use kiln_runtime::export::{Cpu, ExportOptions, Model, Target, c_compiler};

const C_BENCH: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "NAME.h"

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
static int compare(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(void) {
    enum { BIG = 10000, SAMPLES = 101, CALLS = 20000, BIG_SAMPLES = 31 };
    float *input = malloc(BIG * 2 * sizeof(float)), *output = malloc(BIG * 2 * sizeof(float));
    for (int i = 0; i < BIG * 2; i++) input[i] = (float)((i * 7919 % 2000) / 500.0 - 2.0);
    size_t scratch_len = NAME_scratch_bytes(BIG);
    void *scratch = malloc(scratch_len);
    double samples[SAMPLES], big[BIG_SAMPLES];
    int failed = 0;
    for (int s = 0; s < SAMPLES; s++) {
        double start = now();
        for (int c = 0; c < CALLS; c++) failed |= NAME_infer(input + 2 * (c & 1023), 2, 1, output, 2, scratch, scratch_len);
        samples[s] = (now() - start) / CALLS;
    }
    for (int s = 0; s < BIG_SAMPLES; s++) {
        double start = now();
        failed |= NAME_infer(input, BIG * 2, BIG, output, BIG * 2, scratch, scratch_len);
        big[s] = now() - start;
    }
    qsort(samples, SAMPLES, sizeof(double), compare);
    qsort(big, BIG_SAMPLES, sizeof(double), compare);
    printf("%.2f %.1f %d\n", samples[SAMPLES / 2], big[BIG_SAMPLES / 2], failed);
    return failed;
}
"#;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-bench-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Builds the C benchmark against `lib<name>.a` and returns (ns per call at batch 1, ns per
/// call at batch 10000).
fn time_artifact(dir: &std::path::Path, name: &str, flags: &[&str], link: &[&str]) -> Result<(f64, f64), String> {
    let source = format!("bench_{name}.c");
    std::fs::write(dir.join(&source), C_BENCH.replace("NAME", name)).map_err(|e| e.to_string())?;
    let binary = format!("bench_{name}");
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["-o", &binary, &source]);
    args.extend(link);
    let cc = c_compiler();
    let built = Command::new(&cc).current_dir(dir).args(&args).output().map_err(|e| format!("{cc}: {e}"))?;
    if !built.status.success() {
        return Err(format!("{cc} failed: {}", String::from_utf8_lossy(&built.stderr)));
    }
    let ran = Command::new(dir.join(&binary)).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&ran.stdout);
    let fields: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    match fields.as_slice() {
        [one, big, 0.0] => Ok((*one, *big)),
        _ => Err(format!("the benchmark printed `{text}` ({})", ran.status)),
    }
}

/// A runtime call on `tier` at one thread: (ns per call at batch 1, ns per call at batch 10000).
fn time_runtime(params: &ParamStore, tier: Tier, options: &kiln::compiler::codegen::Options) -> Result<(f64, f64)> {
    let g = Graph::new();
    let (x, y) = mlp(&g)?;
    let mut f = kiln_runtime::function_on(tier, &g, &[x], &[y], &[], options)?;
    f.set_threads(1);
    f.set_params(params)?;
    let values: Vec<f32> = (0..20_000).map(|i| ((i * 7919 % 2000) as f64 / 500.0 - 2.0) as f32).collect();
    let one = Value::f32([1, 2], values[..2].to_vec());
    let big = Value::f32([10_000, 2], values.clone());
    let (mut samples, mut big_samples) = (Vec::new(), Vec::new());
    for _ in 0..101 {
        let started = Instant::now();
        for _ in 0..2000 {
            f.call(std::slice::from_ref(&one))?;
        }
        samples.push(started.elapsed().as_secs_f64() * 1e9 / 2000.0);
    }
    for _ in 0..31 {
        let started = Instant::now();
        f.call(std::slice::from_ref(&big))?;
        big_samples.push(started.elapsed().as_secs_f64() * 1e9);
    }
    Ok((median(samples), median(big_samples)))
}

/// The notebook's MLP (the workloads' layer stack) and its input.
fn mlp(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>)> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    Ok((x, kiln_bench::mlp(g, x, &[2, 20, 20, 2])?))
}

fn line(build: &str, (one, big): (f64, f64), jit: (f64, f64)) {
    println!(
        r#"{{"bench":"export","build":"{build}","batch1_ns":{one:.1},"batch10000_us":{:.1},"rows_per_s":{:.0},"vs_jit_batch1":{:.2},"vs_jit_batch10000":{:.2}}}"#,
        big / 1e3,
        1e4 / (big / 1e9),
        jit.0 / one,
        jit.1 / big
    );
}

/// Runs the benchmark (see the module comment).
pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    let g = Graph::new();
    let (x, y) = mlp(&g)?;
    let params = ParamStore::init(&g, 1);
    let dir = temp_dir();
    let mut builds = vec![("mlp", Cpu::Baseline)];
    if Target::host().triple.starts_with("x86_64") {
        builds.push(("mlp_v3", Cpu::X86_64V3));
    }
    for (name, cpu) in &builds {
        let options = ExportOptions { name: name.to_string(), target: Target { cpu: *cpu, ..Target::host() } };
        Model::new(&g, x, y).export(&params, &options)?.write_static_library(&dir)?;
    }
    let jit = time_runtime(&params, Tier::Jit, &Default::default())?;
    // The JIT with the artifact's algorithm: every matmul in the register tile.
    let tile_only = kiln::compiler::codegen::Options { gemm: false, fma: true, ..Default::default() };
    let tile_only = time_runtime(&params, Tier::Jit, &tile_only)?;
    let mut runs = vec![("jit", jit), ("jit without gemm", tile_only)];
    if kiln::compiler::native::c_compiler().is_some() {
        runs.push(("native tier", time_runtime(&params, Tier::Native, &Default::default())?));
    }
    for (build, (one, big)) in runs {
        println!(
            r#"{{"bench":"export","build":"{build}","threads":1,"batch1_ns":{one:.1},"batch10000_us":{:.1},"rows_per_s":{:.0}}}"#,
            big / 1e3,
            1e4 / (big / 1e9)
        );
    }
    for (name, cpu) in &builds {
        let timing = time_artifact(&dir, name, &["-O2"], &["-L.", "-l", name])?;
        line(&format!("cranelift-object {cpu:?}"), timing, jit);
    }
    // The same kernels printed as C, built by the system compiler for this machine.
    let options = ExportOptions::new("mlp_c");
    Model::new(&g, x, y).export(&params, &options)?.write_c_source(&dir)?;
    let timing = time_artifact(&dir, "mlp_c", &["-O3", "-march=native"], &["mlp_c.c", "-lm"])?;
    line("c-source cc -O3 -march=native", timing, jit);
    // The native tier's vector C as a static library, built for this machine.
    let options = ExportOptions::new("mlp_native");
    Model::new(&g, x, y).export(&params, &options)?.write_native_static_library(&dir)?;
    let timing = time_artifact(&dir, "mlp_native", &["-O2"], &["-L.", "-l", "mlp_native"])?;
    line(&format!("native-tier vector C ({} lanes)", kiln::compiler::native::lanes()), timing, jit);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
