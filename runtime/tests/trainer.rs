//! The trainer: a whole training run of the notebook's MLP, diagnostics at the notebook's
//! occasional steps, schedules, the same params as a plain compiled step, and the stop when
//! numbers go bad.

use kiln_compiler::prelude::*;
use kiln_runtime::optim::{LrSchedule, Optimizer, Schedule, Sgd};
use kiln_runtime::{Objective, Settings, Trainer, function};

/// The notebook's MLP on a batch drawn in the graph from the step counter, with accuracy.
fn notebook(g: &Graph) -> Result<Objective<'_>> {
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([500, 2], 7, step)?;
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    let labels = y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([500])?;
    let mut h = points;
    for (i, (inputs, outputs)) in [(2, 20), (20, 20), (20, 2)].into_iter().enumerate() {
        h = layers::Linear::new(g, &format!("layer{}", i + 1), inputs, outputs)?.forward(h)?;
        if i < 2 {
            h = layers::relu(h)?;
        }
    }
    let loss = layers::cross_entropy(h, labels)?;
    let predicted = h.slice(1, 1, 2)?.gt(h.slice(1, 0, 1)?)?.cast(DType::I64)?.reshape([500])?;
    let accuracy = layers::mean_all(predicted.eq(labels)?)?;
    Ok(Objective { loss, inputs: vec![step], metrics: vec![("accuracy".into(), accuracy)] })
}

fn counter(s: u64) -> Vec<Value> {
    vec![Value::i64([], vec![s as i64])]
}

#[test]
fn training_the_notebook_mlp_lowers_the_loss_and_diagnoses_occasionally() -> Result<()> {
    let g = Graph::new();
    let objective = notebook(&g)?;
    let sgd = Sgd::momentum(0.9);
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.05))?;
    let mut reports = Vec::new();
    for s in 0..64 {
        reports.push(trainer.step(&counter(s))?);
    }
    let early: f64 = reports[..8].iter().map(|r| r.loss).sum::<f64>() / 8.0;
    let late: f64 = reports[56..].iter().map(|r| r.loss).sum::<f64>() / 8.0;
    assert!(late < early * 0.9, "loss {early} -> {late}");
    let diagnosed: Vec<u64> = reports.iter().filter(|r| r.diagnostics.is_some()).map(|r| r.iteration).collect();
    assert_eq!(diagnosed, [0, 1, 3, 7, 15, 31, 63]);
    let diagnostics = reports[31].diagnostics.as_ref().expect("diagnosed");
    let names: Vec<&str> = diagnostics.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "layer3.weight", "layer3.bias"]);
    assert!(diagnostics.params.iter().all(|p| p.grad_norm > 0.0 && p.weight_norm > 0.0 && p.update_ratio > 0.0));
    // Every trainable element is counted once, in the whole histogram and in its param's.
    assert_eq!(diagnostics.histogram.counts.iter().sum::<usize>(), 40 + 20 + 400 + 20 + 40 + 2);
    let per_param: Vec<usize> = diagnostics.params.iter().map(|p| p.histogram.counts.iter().sum()).collect();
    assert_eq!(per_param, [40, 20, 400, 20, 40, 2]);
    assert_eq!(reports[5].metrics[0].0, "accuracy");
    assert!(trainer.steps_per_second() > 0.0 && trainer.steps() == 64);

    // Evaluation on held-out points, forward only, with the trained params.
    let e = Graph::new();
    let held_out = notebook(&e)?;
    let accuracy = held_out.metrics[0].1;
    let mut evaluation = function(&e, &held_out.inputs, &[held_out.loss, accuracy], &[])?;
    let out = trainer.evaluate(&mut evaluation, &counter(1_000_000))?;
    let (loss, accuracy) = (out[0].item().expect("loss"), out[1].item().expect("accuracy"));
    assert!(loss < early && accuracy > 0.6, "held out: loss {loss}, accuracy {accuracy}");
    assert_eq!(trainer.steps(), 64, "evaluation does not train");
    Ok(())
}

/// Switching between the lean and the diagnostic step keeps one set of params: the trainer
/// ends where a single compiled step run by hand ends.
#[test]
fn the_trainer_ends_where_a_hand_run_step_ends() -> Result<()> {
    let g = Graph::new();
    let objective = notebook(&g)?;
    let sgd = Sgd::momentum(0.9);
    let settings = Settings { schedule: LrSchedule::Step { every: 5, gamma: 0.5 }, ..Settings::new(&sgd, 0.1) };
    let mut trainer = Trainer::new(&g, &objective, &settings)?;
    let params: Vec<Tensor> = g.params().into_iter().filter(|(_, _, t)| *t).map(|(t, _, _)| t).collect();
    let grads = g.grad(objective.loss, &params)?;
    let schedule = Schedule::inputs(&g)?;
    let updates = sgd.updates(&g, &params, &grads, &schedule)?;
    let mut by_hand = function(&g, &[objective.inputs[0], schedule.lr, schedule.step], &[objective.loss], &updates)?;
    for s in 0..12u64 {
        let report = trainer.step(&counter(s))?;
        assert_eq!(report.lr, 0.1 * 0.5f64.powi((s / 5) as i32));
        let [lr, t] = Schedule::values(report.lr, s + 1);
        let loss = by_hand.call(&[counter(s).remove(0), lr, t])?[0].item().expect("loss");
        assert!((loss - report.loss).abs() < 1e-6, "step {s}: {loss} vs {}", report.loss);
    }
    let (a, b) = (trainer.params(), by_hand.params());
    for (name, value) in a.iter() {
        let (x, y) = (value.to_f64_vec(), b.get(name).expect("same params").to_f64_vec());
        assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-6), "{name} differs");
    }
    Ok(())
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_the_param() -> Result<()> {
    let g = Graph::new();
    let p = g.param("p", [3], Init::Values(Value::f32([3], vec![1.0, -2.0, 0.5])))?;
    let loss = p.square()?.sum_all()?;
    let objective = Objective { loss, inputs: vec![], metrics: vec![] };
    let sgd = Sgd::new();
    // Each step multiplies p by 1 - 2·lr = -19: the loss (sum of squares) leaves f32's range
    // first, at step 16, while p is still finite; that step is refused, p stays as after 15.
    let settings = Settings { diagnose: |_| false, ..Settings::new(&sgd, 10.0) };
    let mut trainer = Trainer::new(&g, &objective, &settings)?;
    let mut last_good = trainer.params();
    let error = (0..100)
        .find_map(|_| match trainer.step(&[]) {
            Ok(_) => {
                last_good = trainer.params();
                None
            }
            Err(error) => Some(error),
        })
        .expect("diverges");
    let message = error.to_string();
    assert!(
        matches!(error, Error::Diverged { step: 16, .. }) && message.contains("the loss went bad first"),
        "{message}"
    );
    assert_eq!(trainer.params(), last_good);
    assert_eq!(trainer.steps(), 15);
    Ok(())
}

/// `fit` runs the steps, hands each report over, and reports progress (plain lines here,
/// where stdout is not a terminal).
#[test]
fn fit_runs_the_steps_and_hands_every_report_over() -> Result<()> {
    let g = Graph::new();
    let objective = notebook(&g)?;
    let sgd = Sgd::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.05))?;
    let mut seen = Vec::new();
    trainer.fit(16, counter, |report, println| {
        seen.push(report.iteration);
        if report.diagnostics.is_some() {
            println(&format!("diagnosed {}", report.iteration));
        }
    })?;
    assert_eq!(seen, (0..16).collect::<Vec<u64>>());
    assert_eq!(trainer.steps(), 16);
    Ok(())
}

/// The same seed gives the same bits on one thread or two (every kernel that can split does,
/// however small: split threshold 0).
#[test]
fn training_is_reproducible_across_thread_counts() -> Result<()> {
    let run = |threads: usize| -> Result<ParamStore> {
        let g = Graph::new();
        let objective = notebook(&g)?;
        let sgd = Sgd::momentum(0.9);
        let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.05))?;
        trainer.set_threads(threads);
        trainer.set_split_threshold(0);
        for s in 0..10 {
            trainer.step(&counter(s))?;
        }
        Ok(trainer.params())
    };
    let (one, two) = (run(1)?, run(2)?);
    for (name, value) in one.iter() {
        let bits = |v: &Value| v.to_f64_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(value), bits(two.get(name).expect("same params")), "{name}");
    }
    Ok(())
}
