//! The reference notebook's MLP (2 → 20 → 20 → 2, ReLU, cross-entropy on the target
//! `y > sin(3x)`), built with the graph API and run in the reference interpreter.
//!
//! Prints the graph listing, the loss on a batch, the gradient norm of every param, and a
//! check of the symbolic gradients against finite differences in f64.
//!
//! Run: `cargo run --release --example graph_basics`

use kiln::prelude::*;

/// Builds the data graph: `points` normal points and their labels, drawn from a counter-based
/// generator so each `step` gives a fresh, reproducible batch.
fn sample_batch(points: usize, seed: u64, step: i64) -> Result<(Value, Value)> {
    let g = Graph::new();
    let counter = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let xy = g.random_normal([points, 2], seed, counter)?;
    let (x, y) = (xy.slice(1, 0, 1)?, xy.slice(1, 1, 2)?);
    let labels = y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([points])?;
    let feeds = Feeds::from([("step", Value::i64([], vec![step]))]);
    let mut out = Interpreter::new(&g).run_without_params(&feeds, &[xy, labels])?;
    let labels = out.pop().expect("two outputs");
    Ok((out.pop().expect("two outputs"), labels))
}

fn main() -> Result<()> {
    let g = Graph::new();
    let batch = Dim::sym("B");
    let x = g.input("x", [batch.clone(), 2.into()])?;
    let labels = g.typed_input("labels", [batch], DType::I64)?;

    let layer1 = layers::Linear::new(&g, "layer1", 2, 20)?;
    let layer2 = layers::Linear::new(&g, "layer2", 20, 20)?;
    let layer3 = layers::Linear::new(&g, "layer3", 20, 2)?;
    let h1 = layers::relu(layer1.forward(x)?)?.named("h1");
    let h2 = layers::relu(layer2.forward(h1)?)?.named("h2");
    let logits = layer3.forward(h2)?.named("logits");
    let loss = layers::cross_entropy(logits, labels)?.named("loss");

    println!("== the model and its loss ({} nodes)", g.len());
    print!("{}", g.listing());

    let params: Vec<Tensor> = g.params().into_iter().map(|(tensor, _, _)| tensor).collect();
    let names: Vec<String> = g.params().into_iter().map(|(_, name, _)| name).collect();
    let forward_nodes = g.len();
    let grads = g.grad(loss, &params)?;
    println!("\n== gradients: {} nodes appended by autodiff", g.len() - forward_nodes);

    let values = ParamStore::init(&g, 0);
    let (xs, ys) = sample_batch(10_000, 1, 0)?;
    let feeds = Feeds::from([("x", xs), ("labels", ys)]);
    let mut wanted = vec![loss];
    wanted.extend(&grads);
    let out = Interpreter::new(&g).run(&feeds, &values, &wanted)?;
    println!("loss on a batch of 10000 points: {:.6}", out[0].item().expect("scalar loss"));
    for (name, grad) in names.iter().zip(&out[1..]) {
        let norm = grad.to_f64_vec().iter().map(|v| v * v).sum::<f64>().sqrt();
        println!("  |grad {name:<14}| = {norm:.3e}");
    }

    // Finite differences cost two evaluations per element: check on a smaller batch.
    let (xs, ys) = sample_batch(256, 2, 0)?;
    let feeds = Feeds::from([("x", xs), ("labels", ys)]);
    let check = check_gradients(&g, loss, &params, &feeds, &values, 1e-6)?;
    println!("\n== analytic vs central finite differences (f64), {} elements", check.elements);
    if let Some((name, index)) = &check.worst {
        println!("worst element: {name}[{index}]");
    }
    println!("max gradient error: {:.3e}", check.max_error);
    Ok(())
}
