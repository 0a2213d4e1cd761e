//! Every optimizer's trajectory on a small least-squares problem against optax's, from the
//! fixture `fixtures/optimizers.json` (made by `fixtures/optimizers.py`).

use kiln_compiler::prelude::*;
use kiln_runtime::function;
use kiln_runtime::optim::{Adagrad, Adam, Optimizer, RmsProp, Schedule, Sgd};
use serde_json::Value as Json;

fn matrix(json: &Json) -> (Vec<usize>, Vec<f32>) {
    match json {
        Json::Array(rows) if rows.first().is_some_and(Json::is_array) => {
            let parts: Vec<(Vec<usize>, Vec<f32>)> = rows.iter().map(matrix).collect();
            let mut shape = vec![rows.len()];
            shape.extend(&parts[0].0);
            (shape, parts.into_iter().flat_map(|(_, v)| v).collect())
        }
        Json::Array(values) => {
            (vec![values.len()], values.iter().map(|v| v.as_f64().expect("a number") as f32).collect())
        }
        other => panic!("not a matrix: {other}"),
    }
}

fn value(json: &Json) -> Value {
    let (shape, data) = matrix(json);
    Value::f32(shape, data)
}

/// Runs `optimizer` on the fixture's problem and compares every step with case `case`.
fn check(case: &str, optimizer: &dyn Optimizer) -> Result<()> {
    let fixture: Json = serde_json::from_str(include_str!("fixtures/optimizers.json")).expect("valid JSON");
    let expected = &fixture["cases"][case];
    let lr = expected["lr"].as_f64().expect("lr");
    let g = Graph::new();
    let x = g.input("x", [4, 2])?;
    let y = g.input("y", [4, 3])?;
    let w = g.param("w", [2, 3], Init::Values(value(&fixture["w0"])))?;
    let b = g.param("b", [3], Init::Values(value(&fixture["b0"])))?;
    let loss = layers::mse(x.matmul(w)? + b, y)?;
    let grads = g.grad(loss, &[w, b])?;
    let schedule = Schedule::inputs(&g)?;
    let updates = optimizer.updates(&g, &[w, b], &grads, &schedule)?;
    let mut f = function(&g, &[x, y, schedule.lr, schedule.step], &[loss], &updates)?;
    for (step, want) in expected["trajectory"].as_array().expect("steps").iter().enumerate() {
        let [lr, t] = Schedule::values(lr, step as u64 + 1);
        f.call(&[value(&fixture["x"]), value(&fixture["y"]), lr, t])?;
        let params = f.params();
        for name in ["w", "b"] {
            let got = params.get(name).expect("trained").to_f64_vec();
            let (_, reference) = matrix(&want[name]);
            for (k, (a, r)) in got.iter().zip(&reference).enumerate() {
                let r = f64::from(*r);
                assert!(
                    (a - r).abs() <= 2e-6 * r.abs().max(1.0),
                    "{case} step {}: {name}[{k}] = {a}, optax {r}",
                    step + 1
                );
            }
        }
    }
    Ok(())
}

#[test]
fn every_optimizer_follows_optax() -> Result<()> {
    let cases: Vec<(&str, Box<dyn Optimizer>)> = vec![
        ("sgd", Box::new(Sgd::new())),
        ("sgd_momentum", Box::new(Sgd::momentum(0.9))),
        (
            "sgd_nesterov_weight_decay",
            Box::new(Sgd { momentum: 0.9, nesterov: true, weight_decay: 0.01, ..Sgd::new() }),
        ),
        ("adam", Box::new(Adam::new())),
        ("adam_weight_decay", Box::new(Adam { weight_decay: 0.01, ..Adam::new() })),
        ("adamw", Box::new(Adam::adamw(0.01))),
        ("rmsprop", Box::new(RmsProp::default())),
        ("rmsprop_momentum", Box::new(RmsProp { momentum: 0.9, ..RmsProp::default() })),
        ("adagrad", Box::new(Adagrad::default())),
    ];
    for (case, optimizer) in &cases {
        check(case, optimizer.as_ref())?;
    }
    Ok(())
}

/// Dampening (which optax's SGD does not have) against the rule worked by hand: the buffer
/// starts at the first gradient, undamped, then `b ← μb + (1 - d)g`.
#[test]
fn sgd_dampening_follows_pytorch() -> Result<()> {
    let g = Graph::new();
    let p = g.param("p", [1], Init::Values(Value::f32([1], vec![1.0])))?;
    let loss = (p * 3.0).sum_all()?; // gradient 3 at every step
    let grads = g.grad(loss, &[p])?;
    let schedule = Schedule::inputs(&g)?;
    let sgd = Sgd { momentum: 0.5, dampening: 0.25, ..Sgd::new() };
    let updates = sgd.updates(&g, &[p], &grads, &schedule)?;
    let mut f = function(&g, &[schedule.lr, schedule.step], &[loss], &updates)?;
    let (mut param, mut buffer) = (1.0f64, 0.0f64);
    for step in 1..=4u64 {
        f.call(&Schedule::values(0.1, step))?;
        buffer = if step == 1 { 3.0 } else { 0.5 * buffer + 0.75 * 3.0 };
        param -= 0.1 * buffer;
        let got = f.params().get("p").expect("p").to_f64_vec()[0];
        assert!((got - param).abs() < 1e-6, "step {step}: {got}, by hand {param}");
    }
    Ok(())
}

/// The learning rate is fed, not compiled in: changing it between calls takes effect at once.
#[test]
fn the_learning_rate_changes_without_recompiling() -> Result<()> {
    let g = Graph::new();
    let p = g.param("p", [1], Init::Values(Value::f32([1], vec![0.0])))?;
    let loss = (p * -1.0).sum_all()?; // gradient -1: each step adds lr
    let grads = g.grad(loss, &[p])?;
    let schedule = Schedule::inputs(&g)?;
    let updates = Sgd::new().updates(&g, &[p], &grads, &schedule)?;
    let mut f = function(&g, &[schedule.lr, schedule.step], &[loss], &updates)?;
    for (step, lr) in [0.5, 0.25, 1.0].iter().enumerate() {
        f.call(&Schedule::values(*lr, step as u64 + 1))?;
    }
    assert_eq!(f.params().get("p").expect("p").to_f64_vec(), vec![1.75]);
    Ok(())
}

/// Mismatched params and gradients are errors that say what is wrong.
#[test]
fn mismatched_gradients_are_errors() -> Result<()> {
    let g = Graph::new();
    let p = g.param("p", [2], Init::ZEROS)?;
    let q = g.param("q", [3], Init::ZEROS)?;
    let schedule = Schedule::inputs(&g)?;
    let error = Adam::new().updates(&g, &[p, q], &[p], &schedule).expect_err("one gradient short");
    assert!(error.to_string().contains("2 params but 1 gradients"), "{error}");
    let error = Adam::new().updates(&g, &[p], &[q], &schedule).expect_err("wrong shape");
    assert!(error.to_string().contains("param `p` is [2] but its gradient is [3]"), "{error}");
    Ok(())
}
