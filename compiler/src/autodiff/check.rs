//! Gradient checking: analytic gradients (from [`Graph::grad`]) against central finite
//! differences, both evaluated in `f64` by the interpreter.
//!
//! In: a graph, a scalar loss, the params to check and feeds. Out: a [`GradientCheck`] per param
//! (largest errors, pass or fail).

use crate::error::{Error, Location, Result};
use crate::graph::{Graph, Op, Tensor};
use crate::interp::{Interpreter, Precision};
use crate::value::Value;
use crate::value::{Feeds, ParamStore};

/// The outcome of [`check_gradients`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradientCheck {
    /// The largest error over all checked elements, each measured as
    /// `|analytic - numeric| / max(1, |analytic|, |numeric|)`: absolute for small gradients,
    /// relative for large ones.
    pub max_error: f64,
    /// Where `max_error` occurred: leaf name and flat element index.
    pub worst: Option<(String, usize)>,
    /// How many elements were checked.
    pub elements: usize,
}

/// Compares the gradient of the scalar `loss` with respect to each leaf in `wrt` (inputs or
/// params) with central differences of step `step`, element by element, all in `f64`.
///
/// Appends the gradient nodes to `graph`. Costs two evaluations of the loss per element, so
/// keep the leaves small.
#[track_caller]
pub fn check_gradients<'g>(
    graph: &'g Graph,
    loss: Tensor<'g>,
    wrt: &[Tensor<'g>],
    feeds: &Feeds,
    params: &ParamStore,
    step: f64,
) -> Result<GradientCheck> {
    let location = Location::caller();
    let leaves = wrt.iter().map(|&t| leaf_name(graph, t, location)).collect::<Result<Vec<_>>>()?;
    let grads = graph.grad(loss, wrt)?;
    let interpreter = Interpreter::new(graph).precision(Precision::F64);
    let analytic = interpreter.run(feeds, params, &grads)?;

    let mut feeds = feeds.clone();
    let mut params = params.clone();
    let mut report = GradientCheck { max_error: 0.0, worst: None, elements: 0 };
    for ((name, is_param), analytic) in leaves.iter().zip(&analytic) {
        let original = match is_param {
            true => params.get(name).ok_or_else(|| Error::MissingParam { name: name.clone() })?,
            false => feeds.get(name).ok_or_else(|| Error::MissingInput { name: name.clone() })?,
        }
        .clone();
        let base = original.to_f64_vec();
        let analytic = analytic.to_f64_vec();
        for (index, &analytic) in analytic.iter().enumerate() {
            let mut loss_at = |delta: f64| -> Result<f64> {
                let mut values = base.clone();
                values[index] += delta;
                let value = Value::f64(original.shape().to_vec(), values);
                match is_param {
                    true => params.set(name, value),
                    false => feeds.insert(name, value),
                }
                let out = interpreter.run(&feeds, &params, &[loss])?;
                Ok(out[0].item().expect("bug in kiln: the loss was checked to be a scalar"))
            };
            let numeric = (loss_at(step)? - loss_at(-step)?) / (2.0 * step);
            let error = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
            report.elements += 1;
            if error > report.max_error || error.is_nan() {
                report.max_error = error;
                report.worst = Some((name.clone(), index));
            }
        }
        match is_param {
            true => params.set(name, original),
            false => feeds.insert(name, original),
        }
    }
    Ok(report)
}

/// The name of an input or param leaf, and whether it is a param.
fn leaf_name(graph: &Graph, tensor: Tensor<'_>, location: Location) -> Result<(String, bool)> {
    match graph.node(tensor.id()?).op {
        Op::Input { name } => Ok((name, false)),
        Op::Param { name, .. } => Ok((name, true)),
        op => {
            let detail = format!("finite differences perturb inputs or params, not a `{}` node", op.name());
            Err(Error::Grad { detail, location })
        }
    }
}
