//! The meaning of each primitive op on concrete values.
//!
//! Float math runs in `f64` and integer math in `i64` (wrapping); the result is then rounded
//! or wrapped to the node's dtype. Data movement (broadcast, permute, slice, concat, gather,
//! select) is expressed as a list of source offsets, one per output element, so it works for
//! every dtype through one function, [`take`].
//!
//! In: an op and the values of its operands. Out: the op's value, or an error naming the op
//! (an index outside its table, an empty maximum).

use std::collections::HashMap;

use crate::graph::{Binary, Compare, DType, Distribution, Op, Unary};
use crate::random;
use crate::value::{Data, Value};

/// What an op needs beyond its operands: the output's concrete shape and effective dtype.
pub(crate) struct Context<'a> {
    /// Sizes of the symbolic dims.
    pub symbols: &'a HashMap<String, usize>,
    /// The output's dtype, as computed (`f64` for `f32` nodes under `Precision::F64`).
    pub dtype: DType,
    /// The output's concrete shape.
    pub shape: Vec<usize>,
    /// The operands' names (for errors: the indices of a gather, its table).
    pub names: Vec<Option<String>>,
}

/// Evaluates one non-leaf op. Errors are plain descriptions; the caller adds the node.
pub(crate) fn evaluate(op: &Op, inputs: &[&Value], cx: &Context<'_>) -> Result<Value, String> {
    let n: usize = cx.shape.iter().product();
    let data = match op {
        Op::Input { .. } | Op::Param { .. } => unreachable!("bug in kiln: leaves are fed, not evaluated"),
        Op::Constant(value) => value.data().cast(cx.dtype),
        Op::Fill(value) => Data::filled(cx.dtype, n, *value),
        Op::DimSize(dims) => {
            let sizes = super::resolve_shape(&crate::graph::Shape(dims.clone()), cx.symbols)?;
            Data::filled(cx.dtype, 1, sizes.iter().product::<usize>() as f64)
        }
        Op::Random { seed, distribution } => {
            let key = random::draw_key(*seed, inputs[0].data().get_i64(0) as u64);
            let draw = match distribution {
                Distribution::Uniform => random::uniform,
                Distribution::Normal => random::normal,
            };
            floats_to(cx.dtype, (0..n as u64).map(|i| draw(key, i)).collect())
        }
        Op::Unary(unary) => unary_op(*unary, inputs[0], cx.dtype),
        Op::PowScalar(exponent) => floats_to(cx.dtype, map_floats(inputs[0], |x| x.powf(*exponent))),
        Op::Binary(binary) => binary_op(*binary, inputs[0], inputs[1], cx)?,
        Op::Compare(compare) => compare_op(*compare, inputs[0], inputs[1], &cx.shape),
        Op::Select => select(inputs, &cx.shape),
        Op::Cast(_) => inputs[0].data().cast(cx.dtype),
        Op::Reshape => inputs[0].data().clone(),
        Op::Permute(perm) => {
            let strides = row_major_strides(inputs[0].shape());
            let permuted: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
            take(inputs[0].data(), &strided_offsets(&cx.shape, &permuted, 0))
        }
        Op::BroadcastTo => take(inputs[0].data(), &broadcast_offsets(inputs[0].shape(), &cx.shape)),
        Op::Slice { axis, start, .. } => {
            let strides = row_major_strides(inputs[0].shape());
            take(inputs[0].data(), &strided_offsets(&cx.shape, &strides, start * strides[*axis]))
        }
        Op::Concat { axis } => concat(inputs, *axis),
        Op::Sum { axes, .. } => reduce(inputs[0], axes, &cx.shape, cx.dtype, false),
        Op::ReduceMax { axes, .. } => {
            // As the builder refuses a static empty axis, a symbolic one may not be empty either.
            if let Some(axis) = axes.iter().find(|&&axis| inputs[0].shape()[axis] == 0) {
                return Err(format!("axis {axis} of {:?} is empty; its maximum is undefined", inputs[0].shape()));
            }
            reduce(inputs[0], axes, &cx.shape, cx.dtype, true)
        }
        Op::MatMul => matmul(inputs[0], inputs[1], &cx.shape, cx.dtype),
        Op::Gather => gather(inputs[0], inputs[1], cx)?,
        Op::ScatterAdd => scatter_add(inputs[0], inputs[1], cx)?,
        Op::OneHot { depth } => one_hot(inputs[0], *depth, cx)?,
    };
    Value::new(cx.shape.clone(), data).ok_or_else(|| "bug in kiln: result has the wrong element count".to_string())
}

fn floats_to(dtype: DType, values: Vec<f64>) -> Data {
    match dtype {
        DType::F64 => Data::F64(values),
        _ => Data::F64(values).cast(dtype),
    }
}

fn ints_to(dtype: DType, values: Vec<i64>) -> Data {
    match dtype {
        DType::I64 => Data::I64(values),
        _ => Data::I64(values).cast(dtype),
    }
}

fn ints(value: &Value) -> Vec<i64> {
    (0..value.numel()).map(|i| value.data().get_i64(i)).collect()
}

fn map_floats(value: &Value, f: impl Fn(f64) -> f64) -> Vec<f64> {
    value.to_f64_vec().into_iter().map(f).collect()
}

fn unary_op(unary: Unary, x: &Value, dtype: DType) -> Data {
    if dtype.is_int() {
        let f = match unary {
            Unary::Neg => i64::wrapping_neg,
            Unary::Abs => i64::wrapping_abs,
            _ => unreachable!("bug in kiln: integer {unary:?} passed the builder's checks"),
        };
        return ints_to(dtype, ints(x).into_iter().map(f).collect());
    }
    let f: fn(f64) -> f64 = match unary {
        Unary::Neg => |x| -x,
        Unary::Exp => f64::exp,
        Unary::Log => f64::ln,
        Unary::Sqrt => f64::sqrt,
        Unary::Sin => f64::sin,
        Unary::Cos => f64::cos,
        Unary::Tanh => f64::tanh,
        Unary::Abs => f64::abs,
        Unary::Recip => f64::recip,
    };
    floats_to(dtype, map_floats(x, f))
}

/// The larger of two floats, NaN if either is NaN (numpy's `maximum`).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

/// The smaller of two floats, NaN if either is NaN (numpy's `minimum`).
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

fn binary_op(binary: Binary, a: &Value, b: &Value, cx: &Context<'_>) -> Result<Data, String> {
    let a_offsets = broadcast_offsets(a.shape(), &cx.shape);
    let b_offsets = broadcast_offsets(b.shape(), &cx.shape);
    if cx.dtype.is_float() {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let f: fn(f64, f64) -> f64 = match binary {
            Binary::Add => |x, y| x + y,
            Binary::Sub => |x, y| x - y,
            Binary::Mul => |x, y| x * y,
            Binary::Div => |x, y| x / y,
            Binary::Max => nan_max,
            Binary::Min => nan_min,
        };
        let out = a_offsets.iter().zip(&b_offsets).map(|(&i, &j)| f(a[i], b[j])).collect();
        return Ok(floats_to(cx.dtype, out));
    }
    let (a, b) = (ints(a), ints(b));
    let mut out = Vec::with_capacity(a_offsets.len());
    for (&i, &j) in a_offsets.iter().zip(&b_offsets) {
        let (x, y) = (a[i], b[j]);
        out.push(match binary {
            Binary::Add => x.wrapping_add(y),
            Binary::Sub => x.wrapping_sub(y),
            Binary::Mul => x.wrapping_mul(y),
            Binary::Div if y == 0 => return Err(format!("integer division by zero ({x} / 0)")),
            Binary::Div => x.wrapping_div(y),
            Binary::Max => x.max(y),
            Binary::Min => x.min(y),
        });
    }
    Ok(ints_to(cx.dtype, out))
}

fn compare_op(compare: Compare, a: &Value, b: &Value, shape: &[usize]) -> Data {
    let a_offsets = broadcast_offsets(a.shape(), shape);
    let b_offsets = broadcast_offsets(b.shape(), shape);
    let pairs = a_offsets.iter().zip(&b_offsets);
    let out = if a.dtype().is_float() {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        pairs.map(|(&i, &j)| compare.apply(a[i], b[j])).collect()
    } else {
        let (a, b) = (ints(a), ints(b));
        pairs.map(|(&i, &j)| compare.apply(a[i], b[j])).collect()
    };
    Data::Bool(out)
}

/// `mask ? a : b`: picks from `a` and `b` laid end to end.
fn select(inputs: &[&Value], shape: &[usize]) -> Data {
    let (mask, a, b) = (inputs[0], inputs[1], inputs[2]);
    let Data::Bool(mask_data) = mask.data() else { unreachable!("bug in kiln: select mask is not bool") };
    let mask_offsets = broadcast_offsets(mask.shape(), shape);
    let a_offsets = broadcast_offsets(a.shape(), shape);
    let b_offsets = broadcast_offsets(b.shape(), shape);
    let offsets: Vec<usize> = (0..mask_offsets.len())
        .map(|i| if mask_data[mask_offsets[i]] { a_offsets[i] } else { a.numel() + b_offsets[i] })
        .collect();
    take(&join(&[a.data(), b.data()]), &offsets)
}

fn concat(inputs: &[&Value], axis: usize) -> Data {
    let outer: usize = inputs[0].shape()[..axis].iter().product();
    let blocks: Vec<usize> = inputs.iter().map(|v| v.shape()[axis..].iter().product()).collect();
    let mut offsets = Vec::with_capacity(outer * blocks.iter().sum::<usize>());
    for o in 0..outer {
        let mut base = 0;
        for (input, &block) in inputs.iter().zip(&blocks) {
            offsets.extend((0..block).map(|k| base + o * block + k));
            base += input.numel();
        }
    }
    let parts: Vec<&Data> = inputs.iter().map(|v| v.data()).collect();
    take(&join(&parts), &offsets)
}

/// Sum or max over `axes`; `out_shape` may or may not keep the reduced dims.
fn reduce(x: &Value, axes: &[usize], out_shape: &[usize], dtype: DType, is_max: bool) -> Data {
    let out_len: usize = out_shape.iter().product();
    // Output strides over the input's dims, zero along reduced axes: the input element at
    // multi-index i lands at Σ i_d · stride_d.
    let kept: Vec<usize> = (0..x.shape().len()).map(|d| if axes.contains(&d) { 1 } else { x.shape()[d] }).collect();
    let mut strides = row_major_strides(&kept);
    for &axis in axes {
        strides[axis] = 0;
    }
    let targets = strided_offsets(x.shape(), &strides, 0);
    if dtype.is_float() {
        let init = if is_max { f64::NEG_INFINITY } else { 0.0 };
        let mut out = vec![init; out_len];
        for (value, &t) in x.to_f64_vec().into_iter().zip(&targets) {
            out[t] = if is_max { nan_max(out[t], value) } else { out[t] + value };
        }
        floats_to(dtype, out)
    } else {
        let mut out = vec![if is_max { i64::MIN } else { 0 }; out_len];
        for (value, &t) in ints(x).into_iter().zip(&targets) {
            out[t] = if is_max { out[t].max(value) } else { out[t].wrapping_add(value) };
        }
        ints_to(dtype, out)
    }
}

fn matmul(a: &Value, b: &Value, out_shape: &[usize], dtype: DType) -> Data {
    let (ra, rb, ro) = (a.shape().len(), b.shape().len(), out_shape.len());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch_shape = &out_shape[..ro - 2];
    let a_batches = broadcast_offsets(&a.shape()[..ra - 2], batch_shape);
    let b_batches = broadcast_offsets(&b.shape()[..rb - 2], batch_shape);
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let mut out = vec![0.0; a_batches.len() * m * n];
    for (batch, (&ab, &bb)) in a_batches.iter().zip(&b_batches).enumerate() {
        let (a, b) = (&a[ab * m * k..], &b[bb * k * n..]);
        let out = &mut out[batch * m * n..];
        for i in 0..m {
            for p in 0..k {
                let a_ip = a[i * k + p];
                for j in 0..n {
                    out[i * n + j] += a_ip * b[p * n + j];
                }
            }
        }
    }
    floats_to(dtype, out)
}

/// Checks every index against `rows` and returns them as `usize`. The message names the
/// indices (`name`) when they have a name, as compiled functions word it too.
fn checked_indices(indices: &Value, name: Option<&String>, rows: usize, what: &str) -> Result<Vec<usize>, String> {
    let of = name.map(|name| format!(" of `{name}`")).unwrap_or_default();
    ints(indices)
        .into_iter()
        .enumerate()
        .map(|(position, index)| {
            usize::try_from(index)
                .ok()
                .filter(|&i| i < rows)
                .ok_or_else(|| format!("index {index} at position {position}{of} is out of range for {rows} {what}"))
        })
        .collect()
}

fn gather(table: &Value, indices: &Value, cx: &Context<'_>) -> Result<Data, String> {
    let rows = table.shape()[0];
    let row_len: usize = table.shape()[1..].iter().product();
    let what = match &cx.names[0] {
        Some(table) => format!("rows of `{table}`"),
        None => "rows".to_string(),
    };
    let indices = checked_indices(indices, cx.names[1].as_ref(), rows, &what)?;
    let offsets: Vec<usize> = indices.iter().flat_map(|&row| row * row_len..(row + 1) * row_len).collect();
    Ok(take(table.data(), &offsets))
}

fn scatter_add(indices: &Value, updates: &Value, cx: &Context<'_>) -> Result<Data, String> {
    let (out_shape, dtype) = (&cx.shape, cx.dtype);
    let row_len: usize = out_shape[1..].iter().product();
    let indices = checked_indices(indices, cx.names[0].as_ref(), out_shape[0], "rows")?;
    let out_len = out_shape.iter().product();
    if dtype.is_float() {
        let (updates, mut out) = (updates.to_f64_vec(), vec![0.0; out_len]);
        for (position, &row) in indices.iter().enumerate() {
            for j in 0..row_len {
                out[row * row_len + j] += updates[position * row_len + j];
            }
        }
        Ok(floats_to(dtype, out))
    } else {
        let (updates, mut out) = (ints(updates), vec![0i64; out_len]);
        for (position, &row) in indices.iter().enumerate() {
            for j in 0..row_len {
                out[row * row_len + j] = out[row * row_len + j].wrapping_add(updates[position * row_len + j]);
            }
        }
        Ok(ints_to(dtype, out))
    }
}

fn one_hot(indices: &Value, depth: usize, cx: &Context<'_>) -> Result<Data, String> {
    let dtype = cx.dtype;
    let indices = checked_indices(indices, cx.names[0].as_ref(), depth, "classes")?;
    let mut out = vec![0.0; indices.len() * depth];
    for (position, &class) in indices.iter().enumerate() {
        out[position * depth + class] = 1.0;
    }
    Ok(floats_to(dtype, out))
}

/// Row-major strides of a shape.
fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// For each element of `shape` in row-major order, `base + Σ index_d · strides_d`.
fn strided_offsets(shape: &[usize], strides: &[usize], base: usize) -> Vec<usize> {
    let total: usize = shape.iter().product();
    let mut offsets = Vec::with_capacity(total);
    let mut index = vec![0; shape.len()];
    let mut offset = base;
    for _ in 0..total {
        offsets.push(offset);
        // Odometer increment, keeping `offset` in step with `index`.
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            offset += strides[d];
            if index[d] < shape[d] {
                break;
            }
            offset -= strides[d] * shape[d];
            index[d] = 0;
        }
    }
    offsets
}

/// For each element of `to`, the offset of the element of a `from`-shaped tensor that numpy
/// broadcasting maps to it.
fn broadcast_offsets(from: &[usize], to: &[usize]) -> Vec<usize> {
    if from == to {
        return (0..from.iter().product()).collect();
    }
    let from_strides = row_major_strides(from);
    let extra = to.len() - from.len();
    let strides: Vec<usize> = (0..to.len())
        .map(|d| match d.checked_sub(extra) {
            Some(f) if from[f] == to[d] => from_strides[f],
            _ => 0,
        })
        .collect();
    strided_offsets(to, &strides, 0)
}

/// The data of several tensors of one dtype, laid end to end.
fn join(parts: &[&Data]) -> Data {
    macro_rules! join_as {
        ($variant:ident) => {{
            let mut out = Vec::new();
            for part in parts {
                let Data::$variant(values) = part else { unreachable!("bug in kiln: joined data of mixed dtypes") };
                out.extend_from_slice(values);
            }
            Data::$variant(out)
        }};
    }
    match parts[0] {
        Data::F32(_) => join_as!(F32),
        Data::F64(_) => join_as!(F64),
        Data::I32(_) => join_as!(I32),
        Data::I64(_) => join_as!(I64),
        Data::Bool(_) => join_as!(Bool),
    }
}

/// The elements of `data` at `offsets`, in that order.
fn take(data: &Data, offsets: &[usize]) -> Data {
    match data {
        Data::F32(v) => Data::F32(offsets.iter().map(|&i| v[i]).collect()),
        Data::F64(v) => Data::F64(offsets.iter().map(|&i| v[i]).collect()),
        Data::I32(v) => Data::I32(offsets.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(offsets.iter().map(|&i| v[i]).collect()),
        Data::Bool(v) => Data::Bool(offsets.iter().map(|&i| v[i]).collect()),
    }
}
