//! First values of params, from their [`Init`] rules.

use crate::graph::{DType, Init};
use crate::random;
use crate::value::{Data, Value};

/// `(fan_in, fan_out)` of a param shape, as PyTorch computes them.
pub(crate) fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, input, kernel @ ..] => {
            let receptive: usize = kernel.iter().product();
            (input * receptive, out * receptive)
        }
    }
}

/// The initial `f32` value of a param called `name` of `shape`.
pub(crate) fn initial_value(init: &Init, shape: &[usize], seed: u64, name: &str) -> Value {
    let n: usize = shape.iter().product();
    let key = random::draw_key(seed, random::hash_name(name));
    let uniform = |bound: f64| (0..n as u64).map(|i| (2.0 * random::uniform(key, i) - 1.0) * bound).collect();
    let normal = |mean: f64, std: f64| (0..n as u64).map(|i| mean + std * random::normal(key, i)).collect();
    let (fan_in, fan_out) = fans(shape);
    let values: Vec<f64> = match init {
        Init::Constant(value) => vec![*value; n],
        Init::Uniform { low, high } => (0..n as u64).map(|i| low + (high - low) * random::uniform(key, i)).collect(),
        Init::Normal { mean, std } => normal(*mean, *std),
        Init::KaimingUniform => uniform((6.0 / fan_in as f64).sqrt()),
        Init::KaimingNormal => normal(0.0, (2.0 / fan_in as f64).sqrt()),
        Init::XavierUniform => uniform((6.0 / (fan_in + fan_out) as f64).sqrt()),
        Init::XavierNormal => normal(0.0, (2.0 / (fan_in + fan_out) as f64).sqrt()),
        Init::Linspace { start, end } => {
            let step = if n > 1 { (end - start) / (n - 1) as f64 } else { 0.0 };
            (0..n).map(|i| start + step * i as f64).collect()
        }
        Init::Values(value) => return value.cast(DType::F32),
    };
    Value::new(shape.to_vec(), Data::F64(values).cast(DType::F32)).expect("bug in kiln: init produced the wrong count")
}
