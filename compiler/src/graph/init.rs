//! First values of params, from their [`Init`] rules.
//!
//! In: a graph's params (shape, name, [`Init`]) and a seed. Out: their first values, as a
//! [`ParamStore`] (`ParamStore::init`) or one [`Value`] at a time.

use crate::graph::{DType, Fan, Graph, Init, Op};
use crate::random;
use crate::value::{Data, ParamStore, Value};

impl ParamStore {
    /// Values for every param of `graph`, drawn from each param's initializer. Each param's
    /// stream depends only on `seed` and its name, so adding a param changes no other.
    pub fn init(graph: &Graph, seed: u64) -> ParamStore {
        let mut store = ParamStore::new();
        for node in graph.nodes().iter() {
            if let Op::Param { name, init, .. } = &node.op {
                let shape = node.shape.as_static().expect("bug in kiln: params have static shapes");
                store.set(name, initial_value(init, &shape, seed, name));
            }
        }
        store
    }
}

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
        Init::Kaiming { normal: is_normal, fan, gain } => {
            let fan = if *fan == Fan::In { fan_in } else { fan_out } as f64;
            if *is_normal { normal(0.0, gain / fan.sqrt()) } else { uniform(gain * (3.0 / fan).sqrt()) }
        }
        Init::Orthogonal { gain } => orthogonal(shape, normal(0.0, 1.0), *gain),
        Init::Linspace { start, end } => {
            let step = if n > 1 { (end - start) / (n - 1) as f64 } else { 0.0 };
            (0..n).map(|i| start + step * i as f64).collect()
        }
        Init::Values(value) => return value.cast(DType::F32),
    };
    Value::new(shape.to_vec(), Data::F64(values).cast(DType::F32)).expect("bug in kiln: init produced the wrong count")
}

/// A (semi-)orthogonal matrix of `shape` viewed as `[rows, columns]` from the normal draws
/// `draws`, times `gain`: the draws' orthonormalised columns if it is tall, rows if it is wide
/// (modified Gram–Schmidt, signs as QR with a positive diagonal of R gives them).
fn orthogonal(shape: &[usize], draws: Vec<f64>, gain: f64) -> Vec<f64> {
    let rows = shape.first().copied().unwrap_or(1);
    let columns = draws.len() / rows.max(1);
    // Work on the tall orientation: `vectors` vectors of length `length`.
    let (vectors, length) = if rows >= columns { (columns, rows) } else { (rows, columns) };
    let at = |v: usize, i: usize| if rows >= columns { i * columns + v } else { v * columns + i };
    let mut basis: Vec<Vec<f64>> = (0..vectors).map(|v| (0..length).map(|i| draws[at(v, i)]).collect()).collect();
    for v in 0..vectors {
        let (done, rest) = basis.split_at_mut(v);
        let current = &mut rest[0];
        for earlier in done.iter() {
            let dot: f64 = current.iter().zip(earlier).map(|(x, y)| x * y).sum();
            current.iter_mut().zip(earlier).for_each(|(x, y)| *x -= dot * y);
        }
        let norm = current.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        current.iter_mut().for_each(|x| *x /= norm);
    }
    let mut out = vec![0.0; draws.len()];
    for (v, vector) in basis.iter().enumerate() {
        for (i, x) in vector.iter().enumerate() {
            out[at(v, i)] = gain * x;
        }
    }
    out
}
