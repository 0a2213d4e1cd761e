//! The notebook's `MyOptimizer`: plain gradient descent written by the user, then turned into
//! Adam step by step, as its exercises go:
//!
//! 1. our own gradient descent, `p ← p - lr·g`;
//! 2. a simple EMA function, kept in a state param;
//! 3. an EMA of the gradient (momentum);
//! 4. an EMA of the squared gradient, to divide by its root (RMS);
//! 5. both together: Adam;
//! 6. the EMA fixed: divided by `1 - β^step`, so its zero start does not shrink the first steps.
//!
//! Each stage trains the notebook's MLP from its poor `linspace` initialization for 1024 steps
//! and prints how far the first update moved the weights (mean of `‖Δp‖/‖p‖` over the params)
//! and the batch accuracy reached. A user
//! optimizer is an ordinary `Optimizer`: its rule is graph ops, so it is differentiated,
//! fused and compiled with the rest of the step.
//!
//! Run: `cargo run --release --example custom_optimizer`

#[path = "support/notebook.rs"]
mod notebook;

use kiln::optim::{Schedule, Update, state};
use kiln::prelude::*;
use notebook::{Mlp, objective};

/// How far along the exercises the optimizer is.
#[derive(Clone, Copy, Debug)]
enum Stage {
    GradientDescent,
    Momentum,
    Rms,
    AdamUnfixed,
    Adam,
}

/// The notebook's `MyOptimizer`, at some stage of the exercises.
struct MyOptimizer {
    stage: Stage,
}

/// Step 2: `s ← decay·s + (1 - decay)·x`, with `s` a state param that starts at zero.
fn ema<'g>(graph: &'g Graph, name: &str, x: Tensor<'g>, decay: f64) -> Result<(Tensor<'g>, Tensor<'g>)> {
    let average = state(graph, name, x)?;
    Ok((average, average * decay + x * (1.0 - decay)))
}

/// Step 6: an EMA that started at zero is too small by `1 - decay^step`; divide it out.
fn fixed<'g>(average: Tensor<'g>, decay: f64, schedule: &Schedule<'g>) -> Result<Tensor<'g>> {
    Ok(average / schedule.bias_correction(decay)?)
}

impl Optimizer for MyOptimizer {
    fn param_updates<'g>(
        &self,
        graph: &'g Graph,
        p: Tensor<'g>,
        g: Tensor<'g>,
        schedule: &Schedule<'g>,
    ) -> Result<Vec<Update<'g>>> {
        let (lr, name) = (schedule.lr, p.name().unwrap_or_default());
        let (beta1, beta2, eps) = (0.9, 0.999, 1e-8);
        let mut updates = Vec::new();
        let momentum = |updates: &mut Vec<Update<'g>>| -> Result<Tensor<'g>> {
            let (m, m_next) = ema(graph, &format!("mine.m.{name}"), g, beta1)?;
            updates.push((m, m_next));
            Ok(m_next)
        };
        let step = match self.stage {
            Stage::GradientDescent => g,
            Stage::Momentum => momentum(&mut updates)?,
            Stage::Rms | Stage::AdamUnfixed | Stage::Adam => {
                let (v, v_next) = ema(graph, &format!("mine.v.{name}"), g.square()?, beta2)?;
                updates.push((v, v_next));
                let (top, rms) = match self.stage {
                    Stage::Rms => (g, v_next),
                    Stage::AdamUnfixed => (momentum(&mut updates)?, v_next),
                    _ => (fixed(momentum(&mut updates)?, beta1, schedule)?, fixed(v_next, beta2, schedule)?),
                };
                top / (rms.sqrt()? + eps)
            }
        };
        updates.push((p, p - lr * step));
        Ok(updates)
    }
}

const BATCH: usize = 10_000;

fn main() -> Result<()> {
    println!("{:<16} {:>24} {:>16}", "stage", "first step ‖Δp‖/‖p‖", "accuracy @1024");
    for stage in [Stage::GradientDescent, Stage::Momentum, Stage::Rms, Stage::AdamUnfixed, Stage::Adam] {
        let g = Graph::new();
        let model =
            Mlp::with_init(&g, |param| Some(Init::Linspace { start: 0.0, end: (param.index % 3) as f64 - 1.0 }))?;
        let optimizer = MyOptimizer { stage };
        let mut trainer = Trainer::new(&g, &objective(&g, &model, BATCH)?, &Settings::new(&optimizer, 0.01))?;
        let (mut first_move, mut accuracy) = (0.0, 0.0);
        for step in 0..1024 {
            let report = trainer.step(&[Value::i64([], vec![step])])?;
            if let (0, Some(diagnostics)) = (step, &report.diagnostics) {
                // Params the linspace rule starts at zero have no finite ratio.
                let ratios: Vec<f64> =
                    diagnostics.params.iter().map(|p| p.update_ratio).filter(|r| r.is_finite()).collect();
                first_move = ratios.iter().sum::<f64>() / ratios.len() as f64;
            }
            accuracy = report.metrics[0].1;
        }
        println!("{:<16} {first_move:>24.2e} {accuracy:>16.4}", format!("{stage:?}"));
    }
    println!(
        "\nstarted at zero, the EMAs are 0.1·g and 0.001·g² after one step, so without the fix the first \
         steps are too large: RMS alone divides by √0.001 (~32× lr), unfixed Adam ~3.2× lr; fixed, Adam's \
         first step is lr·g/|g|"
    );
    Ok(())
}
