//! The gradient-scales notebook's training loop, in kiln.
//!
//! A 2 → 20 → 20 → 2 ReLU MLP learns whether a point (x, y) lies above `y = sin(3x)`. As in
//! the notebook, the params start from a deliberately poor rule (`linspace(0, i % 3 - 1)` for
//! the i-th param) and train with plain SGD (lr 0.01) on fresh batches of 10000 normal points.
//!
//! The whole step is one graph: the batch is drawn inside it from a counter-based generator
//! (the step number is the counter), and kiln's `Trainer` adds the gradients and the SGD
//! updates as graph nodes, compiles the step once to native code and runs it 1024 times,
//! with the gradient diagnostics at the notebook's occasional iterations.
//!
//! At iterations 0, 1, 3, 7, ... it prints the loss, the accuracy and a log10 histogram of
//! |gradient| over all params; at the end, pictures of the target and of what the network
//! learned, in the terminal and as `gradient_scales.png` (with the last histogram below), and
//! the loss and accuracy curves as `gradient_scales_curves.png`.
//!
//! Run: `cargo run --release --example gradient_scales [-- --steps N]`

use kiln::prelude::*;

const BATCH: usize = 10_000;
const LEARNING_RATE: f64 = 0.01;
const DATA_SEED: u64 = 2024;

/// The notebook's `classify_target`: 1 where `y > sin(3x)`, as i64 labels of shape `[n]`.
fn classify_target<'g>(points: Tensor<'g>, n: impl Into<Dim>) -> Result<Tensor<'g>> {
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([n.into()])
}

/// The notebook's MLP; `layer1.weight` ... `layer3.bias`, initialised as the notebook does.
fn mlp<'g>(g: &'g Graph, x: Tensor<'g>) -> Result<Tensor<'g>> {
    let sizes = [(2, 20), (20, 20), (20, 2)];
    let mut h = x;
    for (layer, &(inputs, outputs)) in sizes.iter().enumerate() {
        // The notebook: p.data[...] = torch.linspace(0, i % 3 - 1, p.numel()) for the i-th param.
        let end = |i: usize| (i % 3) as f64 - 1.0;
        let weight = Init::Linspace { start: 0.0, end: end(2 * layer) };
        let bias = Init::Linspace { start: 0.0, end: end(2 * layer + 1) };
        let linear = layers::Linear::with_init(g, &format!("layer{}", layer + 1), inputs, outputs, weight, bias)?;
        h = linear.forward(h)?;
        if layer + 1 < sizes.len() {
            h = layers::relu(h)?;
        }
    }
    Ok(h)
}

/// What to train: the loss on a batch drawn inside the graph from the step counter (the
/// notebook draws `randn` at every step), and the accuracy on that batch.
fn objective(g: &Graph) -> Result<Objective<'_>> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([BATCH, 2], DATA_SEED, step)?;
    let labels = classify_target(points, BATCH)?;
    let logits = mlp(g, points)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let predicted_one = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([BATCH])?;
    let accuracy = layers::mean_all(predicted_one.eq(labels)?.cast(DType::F32)?)?;
    Ok(Objective { loss, inputs: vec![step], metrics: vec![("accuracy".into(), accuracy)] })
}

/// Draws a function on [-2, 2]² as text: `#` for class 1, `.` for class 0.
fn picture(classify: &[bool], width: usize) -> String {
    let rows: Vec<String> =
        classify.chunks(width).map(|row| row.iter().map(|&c| if c { '#' } else { '.' }).collect()).collect();
    rows.join("\n")
}

/// The grid of the notebook's pictures: `width × height` points on [-2, 2]², top row first.
fn grid(width: usize, height: usize) -> Value {
    let mut values = Vec::with_capacity(width * height * 2);
    for row in 0..height {
        for column in 0..width {
            values.push((-2.0 + 4.0 * column as f64 / (width - 1) as f64) as f32);
            values.push((2.0 - 4.0 * row as f64 / (height - 1) as f64) as f32);
        }
    }
    Value::f32([width * height, 2], values)
}

fn show_what_was_learned(params: &ParamStore, histogram: Option<&Histogram>) -> Result<()> {
    let (width, height) = (64, 24);
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("N"), 2.into()])?;
    let target = classify_target(x, "N")?.cast(DType::F32)?;
    let score = layers::softmax(mlp(&g, x)?, 1)?.slice(1, 1, 2)?;
    let feeds = Feeds::from([("x", grid(width, height))]);
    let out = Interpreter::new(&g).run(&feeds, params, &[target, score])?;
    let target: Vec<bool> = out[0].to_f64_vec().iter().map(|&t| t > 0.5).collect();
    let learned: Vec<bool> = out[1].to_f64_vec().iter().map(|&p| p > 0.5).collect();
    let agree = target.iter().zip(&learned).filter(|(a, b)| a == b).count();
    println!("\ntarget (# where y > sin(3x)), x and y in [-2, 2]:\n{}", picture(&target, width));
    println!("\nnetwork output (# where p(class 1) > 0.5):\n{}", picture(&learned, width));
    println!("\nthe pictures agree on {:.1}% of the grid", 100.0 * agree as f64 / target.len() as f64);
    let path = std::path::Path::new("gradient_scales.png");
    kiln::plot::save_picture(&target, &learned, (width, height), histogram, path)?;
    println!("picture of the target, the network's output and the last gradient histogram: {}", path.display());
    Ok(())
}

fn steps_from_args() -> Result<u64, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(1024),
        [flag, n] if flag == "--steps" => n.parse().map_err(|_| format!("--steps needs a number, got `{n}`")),
        _ => Err(format!("usage: gradient_scales [--steps N], got {args:?}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps = steps_from_args()?;
    let g = Graph::new();
    let objective = objective(&g)?;
    let sgd = Sgd::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, LEARNING_RATE))?;
    let step = trainer.function();
    println!(
        "training step: {} graph nodes, compiled to {} kernels in {:.1} ms ({} threads)",
        g.len(),
        step.kernel_count(),
        step.compile_time().as_secs_f64() * 1e3,
        step.threads()
    );
    let (mut losses, mut accuracies, mut last_histogram) = (Vec::new(), Vec::new(), None);
    for iteration in 0..steps {
        let report = trainer.step(&[Value::i64([], vec![iteration as i64])])?;
        let accuracy = report.metrics[0].1;
        losses.push(report.loss);
        accuracies.push(accuracy);
        if let Some(diagnostics) = report.diagnostics {
            println!("Iteration {iteration} loss {:.4} accuracy: {accuracy:.4}", report.loss);
            print!("  log10 |gradient| over all params:\n{}", diagnostics.histogram);
            last_histogram = Some(diagnostics.histogram);
        }
    }
    println!("{steps} steps at {:.0} steps/s", trainer.steps_per_second());
    let curves = std::path::Path::new("gradient_scales_curves.png");
    kiln::plot::save_curves(&[("loss", &losses), ("accuracy", &accuracies)], curves)?;
    println!("loss and accuracy curves: {}", curves.display());
    show_what_was_learned(&trainer.params(), last_histogram.as_ref())?;
    Ok(())
}
