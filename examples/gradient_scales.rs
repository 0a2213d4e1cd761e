//! The gradient-scales notebook's training loop, in kiln.
//!
//! A 2 → 20 → 20 → 2 ReLU MLP learns whether a point (x, y) lies above `y = sin(3x)`. As in
//! the notebook, the params start from a deliberately poor rule (`linspace(0, i % 3 - 1)` for
//! the i-th param) and train with plain SGD (lr 0.01) on fresh batches of 10000 normal points.
//!
//! The whole step is one graph: the batch is drawn inside it from a counter-based generator
//! (the step number is the counter), and the SGD updates are graph nodes too. kiln compiles
//! it once to native code and calls it 1024 times.
//!
//! At iterations 0, 1, 3, 7, ... it prints the loss, the accuracy and a log10 histogram of
//! |gradient| over all params; at the end, pictures of the target and of what the network
//! learned.
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

/// One training step as a graph: draw a batch, compute the loss and accuracy, and the SGD
/// update of every param.
struct TrainStep<'g> {
    loss: Tensor<'g>,
    accuracy: Tensor<'g>,
    grads: Vec<Tensor<'g>>,
    updated: Vec<(String, Tensor<'g>)>,
}

fn build_train_step(g: &Graph) -> Result<TrainStep<'_>> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([BATCH, 2], DATA_SEED, step)?;
    let labels = classify_target(points, BATCH)?;
    let logits = mlp(g, points)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let predicted_one = logits.slice(1, 1, 2)?.gt(logits.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([BATCH])?;
    let accuracy = layers::mean_all(predicted_one.eq(labels)?.cast(DType::F32)?)?;

    let params = g.params();
    let handles: Vec<Tensor> = params.iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &handles)?;
    let mut updated = Vec::new();
    for ((param, name, _), grad) in params.iter().zip(&grads) {
        updated.push((name.clone(), param.sub(grad.mul(LEARNING_RATE)?)?));
    }
    Ok(TrainStep { loss, accuracy, grads, updated })
}

/// The notebook's `ocassional`: iterations 0, 1, 3, 7, 15, ...
fn occasional(iteration: u64) -> bool {
    (iteration + 1).is_power_of_two()
}

/// A text histogram of log10 |gradient| over all params, one line per decade. As in the
/// notebook, magnitudes are clamped at 1e-9, so exact zeros land in the lowest decade.
fn gradient_histogram(grads: &[Value]) -> String {
    let decades: Vec<i32> =
        grads.iter().flat_map(Value::to_f64_vec).map(|g| g.abs().max(1e-9).log10().floor() as i32).collect();
    let (Some(&lowest), Some(&highest)) = (decades.iter().min(), decades.iter().max()) else {
        return String::new();
    };
    let counts: Vec<usize> = (lowest..=highest).map(|d| decades.iter().filter(|&&x| x == d).count()).collect();
    let largest = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut text = String::new();
    for (decade, count) in (lowest..=highest).zip(counts) {
        let bar = "#".repeat((count * 50).div_ceil(largest));
        let range = format!("[1e{decade}, 1e{})", decade + 1);
        text.push_str(&format!("    {range:<13} {count:>5} {bar}\n"));
    }
    text
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

fn show_what_was_learned(params: &ParamStore) -> Result<()> {
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
    let train = build_train_step(&g)?;
    let step_input = g.leaf("step")?;
    let mut outputs = vec![train.loss, train.accuracy];
    outputs.extend(&train.grads);
    let updates: Vec<(Tensor, Tensor)> =
        train.updated.iter().map(|(name, value)| Ok((g.leaf(name)?, *value))).collect::<Result<_>>()?;
    let mut step = function(&g, &[step_input], &outputs, &updates)?;
    println!(
        "training step: {} graph nodes, compiled to {} kernels in {:.1} ms ({} threads)",
        g.len(),
        step.kernel_count(),
        step.compile_time().as_secs_f64() * 1e3,
        step.threads()
    );

    let started = std::time::Instant::now();
    for iteration in 0..steps {
        let out = step.call(&[Value::i64([], vec![iteration as i64])])?;
        if occasional(iteration) || iteration + 1 == steps {
            let (loss, accuracy) = (out[0].item().unwrap_or(f64::NAN), out[1].item().unwrap_or(f64::NAN));
            println!("Iteration {iteration} loss {loss:.4} accuracy: {accuracy:.4}");
            print!("  log10 |gradient| over all params:\n{}", gradient_histogram(&out[2..]));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{steps} steps in {seconds:.2} s ({:.0} steps/s)", steps as f64 / seconds);
    show_what_was_learned(&step.params())?;
    Ok(())
}
