//! Train, then ship: the notebook's classifier as a native artifact that needs no Rust, no
//! kiln and no Cranelift to run.
//!
//! Trains the 2 → 20 → 20 → 2 ReLU MLP with Adam (lr 0.01) on fresh batches of normal points
//! (drawn inside the step graph from the step counter), target `y > sin(3x)`; then exports its
//! forward half and writes, into DIR:
//! - `mlp.o`: the object file (entry points `mlp_infer`, `mlp_scratch_bytes`, ...);
//! - `libmlp.a` and `mlp.h`: the static library and its C header;
//! - `mlp`: a standalone executable (linked with the system `cc`) that reads rows of
//!   `x, y` and prints the class and the two probabilities per row;
//! - `mlp.rs`: Rust bindings of `libmlp.a` with a safe `infer` (see the file's doc comment).
//!
//! Finally it runs `DIR/mlp` on a few rows and on 2000 held-out points, and prints what it said.
//!
//! Run: `cargo run --release --example export_classifier -- --out DIR [--steps N]`

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[path = "support/notebook.rs"]
mod notebook;

use kiln::prelude::*;
use notebook::{Mlp, objective};

const BATCH: usize = 1000;
const LEARNING_RATE: f64 = 0.01;

fn arguments() -> Result<(PathBuf, u64), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut out, mut steps) = (None, 500);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--steps" => steps = value.parse().map_err(|_| format!("--steps needs a number, got `{value}`"))?,
            _ => return Err(format!("usage: export_classifier --out DIR [--steps N], got {args:?}")),
        }
    }
    Ok((out.ok_or("usage: export_classifier --out DIR [--steps N]")?, steps))
}

/// Runs `program` with `input` on stdin; returns its stdout.
fn run(program: &std::path::Path, input: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut child = Command::new(program).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!("{} exited with {}", program.display(), output.status).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dir, steps) = arguments()?;
    std::fs::create_dir_all(&dir)?;

    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let adam = Adam::new();
    let settings = Settings { diagnose: |_| false, ..Settings::new(&adam, LEARNING_RATE) };
    let mut trainer = Trainer::new(&g, &objective(&g, &model, BATCH)?, &settings)?;
    let mut loss = f64::NAN;
    for step in 0..steps {
        loss = trainer.step(&[Value::i64([], vec![step as i64])])?.loss;
    }
    println!("trained {steps} steps of Adam (lr {LEARNING_RATE}, batch {BATCH}): loss {loss:.4}");

    // The forward half, over any batch, with the trained params.
    let artifact = model.export(&trainer.params(), &ExportOptions::new("mlp"))?;
    let written = [
        artifact.write_object(&dir)?,
        artifact.write_static_library(&dir)?,
        dir.join("mlp.h"),
        artifact.link_executable(&dir)?,
        artifact.write_rust_bindings(&dir)?,
    ];
    for path in &written {
        println!("wrote {} ({} bytes)", path.display(), std::fs::metadata(path)?.len());
    }

    let executable = dir.join("mlp");
    let rows = "0.0, 1.0\n0.0, -1.0\n1.0, 0.5\n-1.0, 0.5\n";
    println!("\n$ printf '{}' | {}", rows.replace('\n', "\\n"), executable.display());
    print!("{}", run(&executable, rows)?);

    // 2000 held-out points on [-2, 2]² through the executable.
    let mut state = 12345u64;
    let mut uniform = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        4.0 * ((state >> 11) as f64 / (1u64 << 53) as f64) - 2.0
    };
    let points: Vec<(f64, f64)> = (0..2000).map(|_| (uniform(), uniform())).collect();
    let text: String = points.iter().map(|(x, y)| format!("{x} {y}\n")).collect();
    let predictions = run(&executable, &text)?;
    let correct = predictions
        .lines()
        .zip(&points)
        .filter(|(line, (x, y))| line.starts_with(if *y > (3.0 * x).sin() { '1' } else { '0' }))
        .count();
    println!("\nthe executable agrees with y > sin(3x) on {correct} of 2000 points in [-2, 2]²");
    Ok(())
}
