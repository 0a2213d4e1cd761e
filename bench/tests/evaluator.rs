//! Every workload's kernel program run by the kernel IR's reference evaluator, over a few
//! steps: its outputs and params match the reference interpreter's and the compiled
//! function's within the tolerance stated per workload (the compiled code may fuse multiply-
//! adds, call the tuned GEMM and sum in vector lanes, so it is not compared bit for bit).

use kiln::compiler::compile::lower_to_kernels;
use kiln::compiler::kernel::Evaluator;
use kiln::prelude::*;
use kiln_bench::Step;

/// Runs `steps` calls through the evaluator, the compiled function and the interpreter
/// (applying the updates by hand), comparing every output at every step and every param at
/// the end within `tolerance` (relative to the magnitude, absolute below 1).
fn compare(what: &str, g: &Graph, step: &Step, steps: usize, tolerance: f64) -> Result<()> {
    let mut compiled = step.compile(g)?;
    let program = lower_to_kernels(g, &step.outputs, &step.updates)?;
    let mut evaluator = Evaluator::new(&program, &compiled.params())?;
    let mut reference = compiled.params();
    let interpreter = Interpreter::new(g);
    let close = |a: f64, b: f64| (a - b).abs() <= tolerance * b.abs().max(1.0);
    for s in 0..steps {
        let values = step.feed.values(s);
        let jit = compiled.call(&values)?;
        let mut feeds = Feeds::new();
        for (input, value) in step.inputs.iter().zip(&values) {
            feeds.insert(&input.name().expect("inputs are named"), value.clone());
        }
        let evaluated = evaluator.run(&feeds)?;
        let mut wanted = step.outputs.clone();
        wanted.extend(step.updates.iter().map(|(_, value)| *value));
        let out = interpreter.run(&feeds, &reference, &wanted)?;
        // Counts, shapes and dtypes first: `zip` would pass a missing or short output unseen.
        assert_eq!((evaluated.len(), jit.len()), (step.outputs.len(), step.outputs.len()), "{what} step {s}: outputs");
        assert_eq!(out.len(), wanted.len(), "{what} step {s}: interpreter outputs");
        for (i, ((e, r), c)) in evaluated.iter().zip(&out).zip(&jit).enumerate() {
            assert_eq!(e.shape(), r.shape(), "{what} step {s}: output {i} shape");
            assert_eq!(c.shape(), r.shape(), "{what} step {s}: compiled output {i} shape");
            assert_eq!((e.dtype(), c.dtype()), (r.dtype(), r.dtype()), "{what} step {s}: output {i} dtype");
            for (k, ((x, z), y)) in e.to_f64_vec().iter().zip(r.to_f64_vec()).zip(c.to_f64_vec()).enumerate() {
                assert!(close(*x, z), "{what} step {s}: output {i} element {k}: evaluator {x}, interpreter {z}");
                assert!(close(*x, y), "{what} step {s}: output {i} element {k}: evaluator {x}, compiled {y}");
            }
        }
        for ((param, _), value) in step.updates.iter().zip(&out[step.outputs.len()..]) {
            reference.set(&param.name().expect("params are named"), value.clone());
        }
    }
    let (evaluated, jit) = (evaluator.params(), compiled.params());
    assert_eq!(evaluated.len(), reference.len(), "{what}: the same params");
    assert_eq!(jit.len(), reference.len(), "{what}: the same compiled params");
    for (name, value) in reference.iter() {
        let (e, c) = (evaluated.get(name).expect("the same params"), jit.get(name).expect("the same params"));
        assert_eq!((e.shape(), c.shape()), (value.shape(), value.shape()), "{what}: param {name} shape");
        let (e, c) = (e.to_f64_vec(), c.to_f64_vec());
        for (k, ((x, z), y)) in e.iter().zip(value.to_f64_vec()).zip(c).enumerate() {
            assert!(close(*x, z), "{what}: param {name}[{k}] after {steps} steps: evaluator {x}, interpreter {z}");
            assert!(close(*x, y), "{what}: param {name}[{k}] after {steps} steps: evaluator {x}, compiled {y}");
        }
    }
    Ok(())
}

#[test]
fn w1_evaluated_matches_the_interpreter_and_the_compiled_step() -> Result<()> {
    let g = Graph::new();
    compare("w1", &g, &kiln_bench::seed_mlp(&g, 10_000, false)?, 2, 1e-4)
}

/// Adam divides by the root of a tiny second moment early on, which amplifies rounding.
#[test]
fn w2_evaluated_matches_the_interpreter_and_the_compiled_step() -> Result<()> {
    let g = Graph::new();
    compare("w2", &g, &kiln_bench::seed_mlp(&g, 10_000, true)?, 2, 1e-3)
}

#[test]
fn w3_evaluated_matches_at_every_batch_size() -> Result<()> {
    for batch in [1, 7, 1000] {
        let g = Graph::new();
        compare("w3", &g, &kiln_bench::mlp_infer(&g, batch)?, 1, 1e-5)?;
    }
    Ok(())
}

#[test]
fn w4_evaluated_matches_the_interpreter_and_the_compiled_step() -> Result<()> {
    let g = Graph::new();
    compare("w4", &g, &kiln_bench::wide_mlp(&g)?, 2, 1e-4)
}

#[test]
fn w5_evaluated_matches_the_interpreter_and_the_compiled_step() -> Result<()> {
    let g = Graph::new();
    compare("w5", &g, &kiln_bench::char_title(&g)?, 2, 1e-3)
}
