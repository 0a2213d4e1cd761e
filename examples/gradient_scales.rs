//! The gradient-scales notebook, end to end, in kiln.
//!
//! A 2 → 20 → 20 → 2 ReLU MLP learns whether a point (x, y) lies above `y = sin(3x)`, from
//! fresh batches of 10000 standard normal points at every step, for 1024 steps. The notebook's
//! lesson: started from its deliberately poor `linspace` initialization, plain SGD barely
//! moves, because the gradients of different params differ by orders of magnitude; a good
//! initialization, or an optimizer that rescales each param's step (momentum, RMSprop, Adam),
//! fixes it. The example first trains every optimizer from both initializations and prints
//! their held-out accuracies side by side, then trains one configuration in detail:
//!
//! - at iterations 0, 1, 3, 7, ... (the notebook's `ocassional`) the loss, the accuracy and a
//!   log10 histogram of |gradient| over all params;
//! - pictures of the target and of what the network learned, in the terminal and as
//!   `gradient_scales.png` (with the last histogram below), the loss (log scale) and accuracy
//!   curves as `gradient_scales_curves.png`, and the last histogram of each param (weights and
//!   biases of each layer) as `gradient_scales_by_param.png`;
//! - last line: `held-out accuracy: <value>` on 10000 points never trained on.
//!
//! One optimizer is written here, as the notebook asks its reader to: Adam built from two
//! exponential moving averages, with the bias correction that makes their early values right.
//!
//! Each step is one compiled graph: the batch is drawn inside it from a counter-based
//! generator (the step number is the counter), and the `Trainer` adds the gradients and the
//! optimizer's updates as graph nodes, so a step is a handful of fused native kernels.
//!
//! Run: `cargo run --release --example gradient_scales [-- --optimizer adam --init linspace
//! --steps 1024 --lr 0.01 --seed 0 --no-compare]`

#[path = "support/notebook.rs"]
mod notebook;

use kiln::optim::{Schedule, Update};
use kiln::plot::Curve;
use kiln::prelude::*;
use notebook::{Mlp, accuracy, classify_target, objective};

const BATCH: usize = 10_000;
const HELD_OUT: usize = 10_000;
const HELD_OUT_SEED: u64 = 99;

/// How the params start.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    /// The notebook's: `linspace(0, i % 3 - 1)` over the i-th param.
    Linspace,
    /// PyTorch's default for `nn.Linear`: uniform on `±1/sqrt(fan_in)`.
    Default,
    /// He et al. for ReLU nets: uniform on `±sqrt(6/fan_in)` for weights, zero biases.
    Kaiming,
}

/// The optimizers compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Choice {
    Sgd,
    Momentum,
    RmsProp,
    Adam,
    /// [`EmaAdam`], written below.
    MyAdam,
}

impl Choice {
    const ALL: [Choice; 5] = [Choice::Sgd, Choice::Momentum, Choice::RmsProp, Choice::Adam, Choice::MyAdam];

    fn name(self) -> &'static str {
        match self {
            Choice::Sgd => "sgd",
            Choice::Momentum => "momentum",
            Choice::RmsProp => "rmsprop",
            Choice::Adam => "adam",
            Choice::MyAdam => "my-adam",
        }
    }

    fn optimizer(self) -> Box<dyn Optimizer> {
        match self {
            Choice::Sgd => Box::new(Sgd::new()),
            Choice::Momentum => Box::new(Sgd::momentum(0.9)),
            Choice::RmsProp => Box::new(RmsProp::default()),
            Choice::Adam => Box::new(Adam::new()),
            Choice::MyAdam => Box::new(EmaAdam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }),
        }
    }
}

/// Adam as the notebook builds it: an EMA of the gradient (momentum), an EMA of its square
/// (the RMS), each divided by `1 - beta^step` so that their zero start does not shrink the
/// first steps (the "fix the EMA" exercise), and a step of `lr · m / (sqrt(v) + eps)`.
struct EmaAdam {
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Optimizer for EmaAdam {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        param: Tensor<'g>,
        grad: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let name = param.name().unwrap_or_default();
        let (momentum, rms) = (Ema { decay: self.beta1 }, Ema { decay: self.beta2 });
        let (m, m_next) = momentum.update(graph, &format!("my_adam.m.{name}"), grad)?;
        let (v, v_next) = rms.update(graph, &format!("my_adam.v.{name}"), grad.square()?)?;
        let m_hat = momentum.debiased(m_next, schedule)?;
        let v_hat = rms.debiased(v_next, schedule)?;
        let step = m_hat / (v_hat.sqrt()? + self.eps) * schedule.lr;
        Ok(vec![(m, m_next), (v, v_next), (param, param - step)])
    }
}

/// The model, its params started as `start` says.
fn mlp(g: &Graph, start: Start) -> Result<Mlp<'_>> {
    Mlp::with_init(g, |param| match start {
        // The notebook: p.data[...] = torch.linspace(0, i % 3 - 1, p.numel()) for the i-th param.
        Start::Linspace => Some(Init::Linspace { start: 0.0, end: (param.index % 3) as f64 - 1.0 }),
        Start::Default => None,
        Start::Kaiming if param.shape.len() == 1 => Some(Init::ZEROS),
        Start::Kaiming => Some(Init::KaimingUniform),
    })
}

struct Options {
    optimizer: Choice,
    start: Start,
    steps: u64,
    lr: f64,
    seed: u64,
    compare: bool,
}

/// What one training run gives.
struct Run {
    held_out: f64,
    params: ParamStore,
    losses: Vec<f64>,
    accuracies: Vec<f64>,
    histogram: Option<Histogram>,
    /// The last diagnosed step's histogram of each param.
    param_histograms: Vec<(String, Histogram)>,
}

fn train(choice: Choice, start: Start, options: &Options, verbose: bool) -> Result<Run> {
    let g = Graph::new();
    let model = mlp(&g, start)?;
    let objective = objective(&g, &model, BATCH)?;
    let optimizer = choice.optimizer();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&*optimizer, options.lr))?;
    trainer.set_params(&ParamStore::init(&g, options.seed))?;
    if verbose {
        println!("{model}");
        let step = trainer.function();
        println!(
            "training step: {} graph nodes, compiled to {} kernels in {:.1} ms ({} threads)",
            g.len(),
            step.kernel_count(),
            step.compile_time().as_secs_f64() * 1e3,
            step.threads()
        );
    }
    let (mut losses, mut accuracies, mut histogram, mut param_histograms) = (Vec::new(), Vec::new(), None, Vec::new());
    for iteration in 0..options.steps {
        let report = trainer.step(&[Value::i64([], vec![iteration as i64])])?;
        let accuracy = report.metrics[0].1;
        losses.push(report.loss);
        accuracies.push(accuracy);
        if let Some(diagnostics) = report.diagnostics {
            if verbose {
                println!("Iteration {iteration} loss {:.4} accuracy: {accuracy:.4}", report.loss);
                print!("  log10 |gradient| over all params:\n{}", diagnostics.histogram);
            }
            histogram = Some(diagnostics.histogram);
            param_histograms = diagnostics.params.into_iter().map(|p| (p.name, p.histogram)).collect();
        }
    }
    if verbose {
        println!("{} steps at {:.0} steps/s", options.steps, trainer.steps_per_second());
    }
    let params = trainer.params();
    Ok(Run { held_out: held_out_accuracy(&params)?, params, losses, accuracies, histogram, param_histograms })
}

/// Accuracy on 10000 points drawn once, apart from every training batch.
fn held_out_accuracy(params: &ParamStore) -> Result<f64> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let points = g.random_normal([HELD_OUT, 2], HELD_OUT_SEED, g.typed_scalar(0.0, DType::I64))?;
    let labels = classify_target(points, HELD_OUT)?;
    let accuracy = accuracy(model.forward(points)?, labels, HELD_OUT)?;
    let mut evaluate = function(&g, &[], &[accuracy], &[])?;
    evaluate.set_params(params)?;
    Ok(evaluate.call(&[])?[0].to_f64_vec()[0])
}

/// Every optimizer from the notebook's initialization and from a good one, side by side.
fn compare(options: &Options) -> Result<()> {
    println!("held-out accuracy after {} steps at lr {} (seed {}):", options.steps, options.lr, options.seed);
    println!("  {:<10} {:>10} {:>14}", "optimizer", "linspace", "default init");
    for choice in Choice::ALL {
        let bad = train(choice, Start::Linspace, options, false)?.held_out;
        let good = train(choice, Start::Default, options, false)?.held_out;
        println!("  {:<10} {bad:>10.4} {good:>14.4}", choice.name());
    }
    println!();
    Ok(())
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

/// The notebook's `visualize_net`: the target and the network's output over a grid, through
/// the model's interpreter twin (`Mlp::run`).
fn show_what_was_learned(params: &ParamStore, histogram: Option<&Histogram>) -> Result<()> {
    let (width, height) = (64, 24);
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let points = grid(width, height);
    let logits = model.run(params, [points.clone()])?.to_f64_vec();
    let learned: Vec<bool> = logits.chunks(2).map(|l| l[1] > l[0]).collect();
    let x = g.input("x", [width * height, 2])?;
    let target = classify_target(x, width * height)?;
    let target = Interpreter::new(&g).run(&Feeds::from([("x", points)]), params, &[target])?;
    let target: Vec<bool> = target[0].to_f64_vec().iter().map(|&t| t > 0.5).collect();
    let agree = target.iter().zip(&learned).filter(|(a, b)| a == b).count();
    println!("\ntarget (# where y > sin(3x)), x and y in [-2, 2]:\n{}", picture(&target, width));
    println!("\nnetwork output (# where it predicts class 1):\n{}", picture(&learned, width));
    println!("\nthe pictures agree on {:.1}% of the grid", 100.0 * agree as f64 / target.len() as f64);
    let path = std::path::Path::new("gradient_scales.png");
    kiln::plot::save_picture(&target, &learned, (width, height), [-2.0, 2.0, -2.0, 2.0], histogram, path)?;
    println!("picture of the target, the network's output and the last gradient histogram: {}", path.display());
    Ok(())
}

const USAGE: &str = "usage: gradient_scales [--optimizer sgd|momentum|rmsprop|adam|my-adam] \
    [--init linspace|default|kaiming] [--steps N] [--lr RATE] [--seed N] [--no-compare]";

fn parse_options() -> Result<Options, String> {
    let mut options =
        Options { optimizer: Choice::Adam, start: Start::Linspace, steps: 1024, lr: 0.01, seed: 0, compare: true };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-compare" {
            options.compare = false;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| format!("{flag} needs {what}, got `{value}`");
        match flag.as_str() {
            "--optimizer" => {
                options.optimizer = Choice::ALL
                    .into_iter()
                    .find(|c| c.name() == value)
                    .ok_or_else(|| format!("unknown optimizer `{value}`\n{USAGE}"))?;
            }
            "--init" => {
                options.start = match value.as_str() {
                    "linspace" => Start::Linspace,
                    "default" => Start::Default,
                    "kaiming" => Start::Kaiming,
                    _ => return Err(format!("unknown init `{value}`\n{USAGE}")),
                };
            }
            "--steps" => options.steps = value.parse().map_err(|_| number("a number of steps"))?,
            "--lr" => options.lr = value.parse().map_err(|_| number("a learning rate"))?,
            "--seed" => options.seed = value.parse().map_err(|_| number("a seed"))?,
            _ => return Err(format!("unknown flag `{flag}`\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options()?;
    if options.compare {
        compare(&options)?;
    }
    let (choice, start) = (options.optimizer, options.start);
    println!("training with {} from the {start:?} initialization, lr {}:", choice.name(), options.lr);
    let run = train(choice, start, &options, true)?;
    let curves = std::path::Path::new("gradient_scales_curves.png");
    let series = [Curve::log("loss", &run.losses), Curve::linear("accuracy", &run.accuracies)];
    kiln::plot::save_curves(&series, curves)?;
    println!("loss and accuracy curves: {}", curves.display());
    let by_param = std::path::Path::new("gradient_scales_by_param.png");
    let histograms: Vec<(&str, &Histogram)> = run.param_histograms.iter().map(|(n, h)| (n.as_str(), h)).collect();
    kiln::plot::save_histograms(&histograms, by_param)?;
    println!("the last gradient histogram of each param: {}", by_param.display());
    show_what_was_learned(&run.params, run.histogram.as_ref())?;
    println!("held-out accuracy: {:.4}", run.held_out);
    Ok(())
}
