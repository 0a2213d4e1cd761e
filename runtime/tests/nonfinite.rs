//! Non-finite numbers: ReLU propagates NaN in the interpreter and in compiled code alike, and
//! the Trainer refuses to commit a step that would write a non-finite param.

use kiln_compiler::prelude::*;
use kiln_runtime::function;

/// ReLU of NaN is NaN, in the interpreter and in the compiled function, and the slope there is 1:
/// both as PyTorch's `relu` and its backward (`x <= 0 ? 0 : grad`). Finite values keep
/// `max(x, 0)` with slope 0 at 0.
#[test]
fn relu_propagates_nan_in_interpreter_and_compiled_code() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B")])?;
    let y = layers::relu(x)?;
    let grad = g.grad(y.sum_all()?, &[x])?[0];
    let fed = Value::f32([5], vec![f32::NAN, -2.0, 0.0, 3.0, f32::NEG_INFINITY]);
    let interpreted = Interpreter::new(&g).run(&Feeds::from([("x", fed.clone())]), &ParamStore::new(), &[y, grad])?;
    let compiled = function(&g, &[x], &[y, grad], &[])?.call(&[fed])?;
    for out in [&interpreted, &compiled] {
        let (value, slope) = (out[0].to_f64_vec(), out[1].to_f64_vec());
        assert!(value[0].is_nan(), "relu(NaN) = {}", value[0]);
        assert_eq!(&value[1..], &[0.0, 0.0, 3.0, 0.0]);
        assert_eq!(slope, [1.0, 0.0, 0.0, 1.0, 0.0]);
        assert!(value[1..].iter().filter(|v| **v == 0.0).all(|v| v.to_bits() == 0), "zeros are +0: {value:?}");
    }
    Ok(())
}

mod trainer {
    use kiln_compiler::prelude::*;
    use kiln_runtime::optim::Adam;
    use kiln_runtime::{Objective, Settings, Trainer};

    /// A linear model with Adam on fed rows; diagnosed only at iteration 0.
    fn model(g: &Graph) -> Result<(Trainer, Tensor<'_>)> {
        let x = g.input("x", [Dim::sym("B"), 3.into()])?;
        let y = g.input("y", [Dim::sym("B"), 1.into()])?;
        let hidden = layers::Linear::new(g, "hidden", 3, 4)?;
        let out = layers::Linear::new(g, "out", 4, 1)?;
        let loss = layers::mse(out.forward(layers::relu(hidden.forward(x)?)?)?, y)?;
        let adam = Adam::new();
        let settings = Settings { diagnose: |i| i == 0, ..Settings::new(&adam, 0.01) };
        Ok((Trainer::new(g, &Objective { loss, inputs: vec![x, y], metrics: vec![] }, &settings)?, x))
    }

    fn batch(step: usize, poison: f32) -> Vec<Value> {
        let x: Vec<f32> = (0..24).map(|i| ((i * 7 + step * 3) % 11) as f32 / 11.0 - 0.5).collect();
        let mut x = x;
        x[5] = if poison.is_nan() || poison.is_infinite() { poison } else { x[5] };
        let y: Vec<f32> = (0..8).map(|i| (i % 3) as f32 - 1.0).collect();
        vec![Value::f32([8, 3], x), Value::f32([8, 1], y)]
    }

    /// A NaN input at a step that is not diagnosed is refused at that very step: the error
    /// names the step and the input, the params and Adam's state are bit for bit those of
    /// the last good step, and training goes on from there with good input.
    #[test]
    fn a_nan_input_is_refused_at_its_step_and_the_params_stay_those_of_the_last_good_step() -> Result<()> {
        let g = Graph::new();
        let (mut trainer, _) = model(&g)?;
        for step in 0..5 {
            trainer.step(&batch(step, 0.0))?;
        }
        let good = trainer.params();
        let error = trainer.step(&batch(5, f32::NAN)).expect_err("a NaN input");
        let message = error.to_string();
        assert!(matches!(error, Error::Diverged { step: 6, .. }), "{message}");
        assert!(message.contains("input `x` went bad first (element 5"), "{message}");
        assert!(message.contains("the gradient of `hidden.weight` is the first that is not finite"), "{message}");
        let bits = |store: &ParamStore| -> Vec<(String, Vec<u64>)> {
            let mut all: Vec<_> = store
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_f64_vec().iter().map(|x| x.to_bits()).collect()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(bits(&trainer.params()), bits(&good), "a refused step changed the params or the optimizer state");
        assert_eq!(trainer.steps(), 5);
        let report = trainer.step(&batch(5, 0.0))?;
        assert!(report.loss.is_finite() && report.iteration == 5);
        Ok(())
    }

    /// An infinite gradient with a finite loss and finite inputs (`sqrt` at 0) is refused,
    /// naming the gradient and its param.
    #[test]
    fn an_infinite_gradient_with_a_finite_loss_is_refused_naming_the_param() -> Result<()> {
        let g = Graph::new();
        let w = g.param("w", [2], Init::ZEROS)?;
        let loss = w.sqrt()?.sum_all()?;
        let sgd = kiln_runtime::optim::Sgd::new();
        let settings = Settings { diagnose: |_| false, ..Settings::new(&sgd, 0.1) };
        let mut trainer = Trainer::new(&g, &Objective { loss, inputs: vec![], metrics: vec![] }, &settings)?;
        let error = trainer.step(&[]).expect_err("an infinite gradient");
        let message = error.to_string();
        assert!(message.contains("a gradient went bad first"), "{message}");
        assert!(message.contains("the gradient of `w` is the first that is not finite"), "{message}");
        assert_eq!(trainer.params().get("w").expect("w").to_f64_vec(), [0.0, 0.0]);
        Ok(())
    }

    /// A metric that is not a scalar is an error of `Trainer::new` naming the metric.
    #[test]
    fn a_non_scalar_metric_is_an_error_naming_it() -> Result<()> {
        let g = Graph::new();
        let x = g.input("x", [Dim::sym("B"), 3.into()])?;
        let w = g.param("w", [3, 1], Init::ONES)?;
        let prediction = x.matmul(w)?;
        let loss = prediction.square()?.sum_all()?;
        let sgd = kiln_runtime::optim::Sgd::new();
        let objective = Objective { loss, inputs: vec![x], metrics: vec![("per row".to_string(), prediction)] };
        let error = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.1)).err().expect("a non-scalar metric");
        let message = error.to_string();
        assert!(message.contains("metric `per row` must be a scalar") && message.contains("[B, 1]"), "{message}");
        Ok(())
    }
}
