//! Every workload's compiled step against the reference interpreter: the same outputs and the
//! same params after a few steps, within the tolerance stated per workload.

use kiln::prelude::*;
use kiln_bench::Step;

/// Runs `steps` calls compiled and the same steps in the interpreter (applying the updates
/// by hand), comparing every output and, at the end, every param within `tolerance`
/// (relative to the magnitude, absolute below 1).
fn compare(what: &str, g: &Graph, step: &Step, steps: usize, tolerance: f64) -> Result<()> {
    let mut f = step.compile(g)?;
    let mut reference = f.params();
    let interpreter = Interpreter::new(g);
    let close = |a: f64, b: f64| (a - b).abs() <= tolerance * b.abs().max(1.0);
    for s in 0..steps {
        let values = step.feed.values(s);
        let compiled = f.call(&values)?;
        let mut feeds = Feeds::new();
        for (input, value) in step.inputs.iter().zip(&values) {
            feeds.insert(&input.name().expect("inputs are named"), value.clone());
        }
        let mut wanted = step.outputs.clone();
        wanted.extend(step.updates.iter().map(|(_, value)| *value));
        let out = interpreter.run(&feeds, &reference, &wanted)?;
        // `zip` stops at the shorter side, so a missing output or a short one would pass
        // unseen: the counts, shapes and dtypes are compared before the elements.
        assert_eq!(compiled.len(), step.outputs.len(), "{what} step {s}: compiled output count");
        assert_eq!(out.len(), wanted.len(), "{what} step {s}: interpreter output count");
        for (i, (c, r)) in compiled.iter().zip(&out).enumerate() {
            assert_same_layout(&format!("{what} step {s}: output {i}"), c, r);
            for (k, (a, b)) in c.to_f64_vec().iter().zip(r.to_f64_vec()).enumerate() {
                assert!(close(*a, b), "{what} step {s}: output {i} element {k}: compiled {a}, interpreter {b}");
            }
        }
        for ((param, _), value) in step.updates.iter().zip(&out[step.outputs.len()..]) {
            reference.set(&param.name().expect("params are named"), value.clone());
        }
    }
    let compiled = f.params();
    assert_eq!(compiled.len(), reference.len(), "{what}: param count");
    for (name, value) in reference.iter() {
        let got = compiled.get(name).expect("the same params");
        assert_same_layout(&format!("{what}: param {name}"), got, value);
        for (k, (a, b)) in got.to_f64_vec().iter().zip(value.to_f64_vec()).enumerate() {
            assert!(close(*a, b), "{what}: param {name}[{k}] after {steps} steps: compiled {a}, interpreter {b}");
        }
    }
    Ok(())
}

/// The compiled value has the reference's shape and dtype (so it has as many elements).
fn assert_same_layout(what: &str, compiled: &Value, reference: &Value) {
    assert_eq!(compiled.shape(), reference.shape(), "{what}: shape");
    assert_eq!(compiled.dtype(), reference.dtype(), "{what}: dtype");
}

#[test]
fn w1_the_notebook_mlp_with_sgd() -> Result<()> {
    let g = Graph::new();
    compare("w1", &g, &kiln_bench::seed_mlp(&g, 10_000, false)?, 3, 1e-4)
}

/// Adam divides by the root of a tiny second moment early on, which amplifies rounding: the
/// params are compared at 1e-3.
#[test]
fn w2_the_notebook_mlp_with_adam() -> Result<()> {
    let g = Graph::new();
    compare("w2", &g, &kiln_bench::seed_mlp(&g, 10_000, true)?, 3, 1e-3)
}

/// One compiled forward pass serves every batch size.
#[test]
fn w3_inference_at_every_batch_size() -> Result<()> {
    for batch in [1, 7, 10_000] {
        let g = Graph::new();
        compare("w3", &g, &kiln_bench::mlp_infer(&g, batch)?, 2, 1e-5)?;
    }
    Ok(())
}

#[test]
fn w4_the_wide_mlp_with_momentum() -> Result<()> {
    let g = Graph::new();
    compare("w4", &g, &kiln_bench::wide_mlp(&g)?, 2, 1e-4)
}

#[test]
fn w5_character_titles_with_adam() -> Result<()> {
    let g = Graph::new();
    compare("w5", &g, &kiln_bench::char_title(&g)?, 2, 1e-3)
}

/// The notebook's step compiled once with a symbolic batch serves B = 1, 7 and 10000.
#[test]
fn one_compilation_serves_every_batch_size() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = kiln_bench::classify(x, "B")?;
    let loss = layers::cross_entropy(kiln_bench::mlp(&g, x, &[2, 20, 20, 2])?, labels)?;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &params)?;
    let schedule = Schedule::inputs(&g)?;
    let updates = Sgd::new().updates(&g, &params, &grads, &schedule)?;
    let sizes = [1usize, 7, 10_000];
    let step = Step {
        inputs: vec![x, schedule.lr, schedule.step],
        outputs: vec![loss],
        updates,
        feed: kiln_bench::Feed::drawn(move |s| {
            let [lr, t] = Schedule::values(0.1, s as u64 + 1);
            vec![Value::f32([sizes[s], 2], kiln_bench::normal_values(2 * sizes[s], s as u64)), lr, t]
        }),
    };
    compare("symbolic batch", &g, &step, 3, 1e-4)
}
