//! Composite functions: activations, reductions, losses and normalisation.
//!
//! In: tensors (and, for losses, labels). Out: tensors built from primitive nodes only, in
//! numerically stable forms, each error naming the composite the user called.

use crate::error::{Error, Location, Result};
use crate::graph::{DType, Dim, Graph, Tensor};
use crate::value::Value;

/// `max(x, 0)`, with gradient 0 at 0 (as PyTorch and JAX). NaN stays NaN, as in PyTorch: the
/// mask picks zero only where `x <= 0` holds, which it never does for NaN, so a bad input shows
/// in the loss instead of vanishing into a zero activation.
#[track_caller]
pub fn relu(x: Tensor<'_>) -> Result<Tensor<'_>> {
    let zero = x.graph().typed_scalar(0.0, x.dtype());
    x.le(0.0)?.select(zero, x)
}

/// `1 / (1 + e^-x)`, computed from `e^-|x|` so that no exponential overflows.
#[track_caller]
pub fn sigmoid(x: Tensor<'_>) -> Result<Tensor<'_>> {
    let (nonnegative, e) = split_at_zero(x)?;
    let denominator = e.add(1.0)?;
    nonnegative.select(denominator.recip()?, e.div(denominator)?)
}

/// `log(1 + e^x)`, as `max(x, 0) + log(1 + e^-|x|)`.
#[track_caller]
pub fn softplus(x: Tensor<'_>) -> Result<Tensor<'_>> {
    let (nonnegative, e) = split_at_zero(x)?;
    nonnegative.select(x, 0.0)?.add(e.add(1.0)?.log()?)
}

/// The mask `x >= 0` and `e^-|x|`, with `-|x|` taken as `-x` exactly where the mask holds.
///
/// Sigmoid and softplus are smooth at 0, but built from `|x|` and `max(x, 0)` their gradient
/// there would depend on the subgradients those kinks pick. Deciding both pieces with one mask
/// makes every element follow one smooth branch, so the gradient at 0 is the true one.
fn split_at_zero(x: Tensor<'_>) -> Result<(Tensor<'_>, Tensor<'_>)> {
    let nonnegative = x.ge(0.0)?;
    let minus_abs = nonnegative.select(x.neg()?, x)?;
    Ok((nonnegative, minus_abs.exp()?))
}

/// The number of elements of `x` along `axes` (possibly symbolic), as a scalar of `x`'s dtype.
fn count<'g>(x: Tensor<'g>, axes: &[usize]) -> Result<Tensor<'g>> {
    let shape = x.shape();
    let dims: Vec<Dim> = axes.iter().filter_map(|&a| shape.dims().get(a).cloned()).collect();
    match Dim::static_product(&dims) {
        Some(n) => Ok(x.graph().typed_scalar(n as f64, x.dtype())),
        None => x.graph().dim_size(&dims, x.dtype()),
    }
}

/// Mean over `axes`. Works over symbolic dims: the count is taken when the graph runs.
///
/// A mask or an integer tensor is averaged as `f32`, as JAX does (numpy uses `f64`): the mean
/// of a mask is the fraction of true elements, and the mean of integers is not truncated.
#[track_caller]
pub fn mean<'g>(x: Tensor<'g>, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
    let x = if x.dtype().is_float() { x } else { x.cast(DType::F32)? };
    let sum = x.sum(axes, keepdims)?;
    sum.div(count(x, axes)?)
}

/// Mean of every element.
#[track_caller]
pub fn mean_all(x: Tensor<'_>) -> Result<Tensor<'_>> {
    let axes: Vec<usize> = (0..x.rank()).collect();
    mean(x, &axes, false)
}

/// Biased variance over `axes` (divides by the count, as numpy and JAX do by default).
#[track_caller]
pub fn var<'g>(x: Tensor<'g>, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
    let centered = x.sub(mean(x, axes, true)?)?;
    mean(centered.square()?, axes, keepdims)
}

/// Errors of the primitives a composite is built from, renamed after the composite the user
/// called: a width mismatch in `layer_norm` is `layer_norm`'s error, not `mul`'s (the detail
/// still says which primitive refused).
fn in_layer<T>(layer: &'static str, result: Result<T>) -> Result<T> {
    let rename =
        |op: &'static str, detail: String| if op == layer { detail } else { format!("{detail} (in its `{op}`)") };
    result.map_err(|error| match error {
        Error::Shape { op, detail, location } => Error::Shape { op: layer, detail: rename(op, detail), location },
        Error::DType { op, detail, location } => Error::DType { op: layer, detail: rename(op, detail), location },
        Error::Axis { op, detail, location } => Error::Axis { op: layer, detail: rename(op, detail), location },
        Error::Argument { op, detail, location } => Error::Argument { op: layer, detail: rename(op, detail), location },
        other => other,
    })
}

/// `log(softmax(x))` along `axis`, as `x - max - log Σ e^(x - max)`.
#[track_caller]
pub fn log_softmax(x: Tensor<'_>, axis: usize) -> Result<Tensor<'_>> {
    in_layer("log_softmax", build_log_softmax(x, axis))
}

#[track_caller]
fn build_log_softmax(x: Tensor<'_>, axis: usize) -> Result<Tensor<'_>> {
    let shifted = x.sub(x.max(&[axis], true)?)?;
    shifted.sub(shifted.exp()?.sum(&[axis], true)?.log()?)
}

/// `e^x / Σ e^x` along `axis`, shifted by the max so no exponential overflows.
#[track_caller]
pub fn softmax(x: Tensor<'_>, axis: usize) -> Result<Tensor<'_>> {
    in_layer("softmax", build_softmax(x, axis))
}

#[track_caller]
fn build_softmax(x: Tensor<'_>, axis: usize) -> Result<Tensor<'_>> {
    let exp = x.sub(x.max(&[axis], true)?)?.exp()?;
    exp.div(exp.sum(&[axis], true)?)
}

/// Mean cross-entropy of `logits` (`[..., C]`) against integer class `labels` (`[...]`),
/// like PyTorch's `cross_entropy` with mean reduction.
#[track_caller]
pub fn cross_entropy<'g>(logits: Tensor<'g>, labels: Tensor<'g>) -> Result<Tensor<'g>> {
    let location = Location::caller();
    let (logits_shape, labels_shape) = (logits.shape(), labels.shape());
    let rank = logits_shape.rank();
    let classes = logits_shape.dims().last().and_then(Dim::as_static);
    let fits = rank >= 1 && labels_shape.dims() == &logits_shape.dims()[..rank - 1];
    let (Some(classes), true) = (classes, fits) else {
        let detail = format!(
            "logits {logits_shape} need a static class dim last and labels of the leading dims, got labels {labels_shape}"
        );
        return Err(Error::Shape { op: "cross_entropy", detail, location });
    };
    in_layer("cross_entropy", build_cross_entropy(logits, labels, classes))
}

#[track_caller]
fn build_cross_entropy<'g>(logits: Tensor<'g>, labels: Tensor<'g>, classes: usize) -> Result<Tensor<'g>> {
    let rank = logits.rank();
    let picked = labels.one_hot(classes)?.cast(logits.dtype())?.mul(log_softmax(logits, rank - 1)?)?;
    mean_all(picked.sum(&[rank - 1], false)?)?.neg()
}

/// Mean logistic loss of `logits` against float `targets` in `[0, 1]`, as
/// `max(x, 0) - x·t + log(1 + e^-|x|)` (PyTorch's `binary_cross_entropy_with_logits`).
#[track_caller]
pub fn binary_cross_entropy_with_logits<'g>(logits: Tensor<'g>, targets: Tensor<'g>) -> Result<Tensor<'g>> {
    let loss = softplus(logits)?.sub(logits.mul(targets)?)?;
    mean_all(loss)
}

/// Mean squared error.
#[track_caller]
pub fn mse<'g>(prediction: Tensor<'g>, target: Tensor<'g>) -> Result<Tensor<'g>> {
    mean_all(prediction.sub(target)?.square()?)
}

/// Normalises over the last axis to mean 0 and variance 1, `(x - mean) / sqrt(var + eps)`,
/// with no scale or shift: PyTorch's `layer_norm(x, shape, eps=eps)` without weight and bias.
/// [`layer_norm_affine`] scales and shifts too, as the `LayerNorm` layer does.
///
/// ```
/// # use kiln_compiler::graph::{Graph, Shape};
/// # use kiln_compiler::layers;
/// let g = Graph::new();
/// let x = g.input("x", [8, 16]).unwrap();
/// assert_eq!(layers::layer_norm(x, 1e-5).unwrap().shape(), Shape::from([8, 16]));
/// ```
#[track_caller]
pub fn layer_norm(x: Tensor<'_>, eps: f64) -> Result<Tensor<'_>> {
    let location = Location::caller();
    let last = last_axis(x, location)?;
    in_layer("layer_norm", build_layer_norm(x, last, eps))
}

/// Normalises over the last axis as [`layer_norm`], then scales by `gamma` and shifts by
/// `beta` (each of the last axis' size), as PyTorch's `layer_norm` with weight and bias.
#[track_caller]
pub fn layer_norm_affine<'g>(x: Tensor<'g>, gamma: Tensor<'g>, beta: Tensor<'g>, eps: f64) -> Result<Tensor<'g>> {
    let location = Location::caller();
    let last = last_axis(x, location)?;
    in_layer("layer_norm", build_affine_layer_norm(x, last, (gamma, beta), eps))
}

#[track_caller]
fn build_affine_layer_norm<'g>(
    x: Tensor<'g>,
    last: usize,
    (gamma, beta): (Tensor<'g>, Tensor<'g>),
    eps: f64,
) -> Result<Tensor<'g>> {
    build_layer_norm(x, last, eps)?.mul(gamma)?.add(beta)
}

/// The last axis of a layer norm's input, or the error for a scalar.
fn last_axis(x: Tensor<'_>, location: Location) -> Result<usize> {
    x.rank().checked_sub(1).ok_or_else(|| {
        let detail = "needs at least one dim, got a scalar".to_string();
        Error::Shape { op: "layer_norm", detail, location }
    })
}

#[track_caller]
fn build_layer_norm(x: Tensor<'_>, last: usize, eps: f64) -> Result<Tensor<'_>> {
    let centered = x.sub(mean(x, &[last], true)?)?;
    let inv_std = var(x, &[last], true)?.add(eps)?.sqrt()?.recip()?;
    centered.mul(inv_std)
}

/// `x · weightᵀ + bias` with PyTorch's `[out, in]` weight layout.
#[track_caller]
pub fn linear<'g>(x: Tensor<'g>, weight: Tensor<'g>, bias: Option<Tensor<'g>>) -> Result<Tensor<'g>> {
    let product = x.matmul(weight.t()?)?;
    match bias {
        Some(bias) => product.add(bias),
        None => Ok(product),
    }
}

/// The character-level positional encoding of the practitioners' notes, `[len, dim]`: row
/// `pos` is `cos(pos / a)` for even positions and `sin(pos / a)` for odd ones, with
/// `a = 1, 2, ..., dim` over the columns. Multiplied elementwise with the embeddings of a text's
/// characters and summed over positions, it encodes the order of the characters without a
/// recurrent net, while characters shared by two spellings still contribute alike.
pub fn positional_encoding(graph: &Graph, len: usize, dim: usize) -> Tensor<'_> {
    let mut table = Vec::with_capacity(len * dim);
    for pos in 0..len {
        for a in 1..=dim {
            let angle = pos as f64 / a as f64;
            table.push(if pos % 2 == 0 { angle.cos() } else { angle.sin() } as f32);
        }
    }
    graph.constant(Value::f32([len, dim], table))
}
