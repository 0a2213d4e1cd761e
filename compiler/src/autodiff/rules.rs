//! One vector-Jacobian rule per primitive op.
//!
//! In: one node, the adjoint of its output and which inputs need a gradient. Out: one optional
//! contribution per input, as new graph nodes.
//!
//! Each rule receives the node, its output handle, the adjoint of that output, the input
//! handles and which inputs need a contribution, and returns one optional contribution per
//! input (`None` where the input has no gradient, such as indices, masks and random counters,
//! or where none was asked for: a rule builds no node that nobody reads). Rules are built from primitive ops only, so the
//! gradients they build can be differentiated again. Broadcasting is undone by summing.

use crate::error::{Location, Result};
use crate::graph::{Binary, Dim, Graph, Node, Op, Shape, Tensor, Unary};

/// The contributions of one node's adjoint to its inputs' adjoints.
pub(super) fn vjp<'g>(
    graph: &'g Graph,
    node: &Node,
    out: Tensor<'g>,
    grad: Tensor<'g>,
    inputs: &[Tensor<'g>],
    needed: &[bool],
) -> Result<Vec<Option<Tensor<'g>>>> {
    // Builds input `i`'s contribution only if it is needed.
    let only_if = |i: usize, build: &dyn Fn() -> Result<Tensor<'g>>| needed[i].then(build).transpose();
    let contributions = match &node.op {
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Constant(_)
        | Op::Fill(_)
        | Op::DimSize(_)
        | Op::Random { .. }
        | Op::Compare(_)
        | Op::OneHot { .. } => vec![None; inputs.len()],
        Op::Unary(unary) => vec![Some(unary_vjp(*unary, inputs[0], out, grad)?)],
        Op::PowScalar(exponent) => {
            let x = inputs[0];
            let slope = x.powf(exponent - 1.0)?.mul(*exponent)?;
            vec![Some(grad.mul(slope)?)]
        }
        Op::Binary(binary) => binary_vjp(*binary, inputs[0], inputs[1], out, grad, needed)?,
        Op::Select => {
            let (mask, a, b) = (inputs[0], inputs[1], inputs[2]);
            let zero = graph.typed_scalar(0.0, grad.dtype());
            vec![
                None,
                only_if(1, &|| unbroadcast(mask.select(grad, zero)?, &a.shape()))?,
                only_if(2, &|| unbroadcast(mask.select(zero, grad)?, &b.shape()))?,
            ]
        }
        Op::Cast(_) => {
            let x = inputs[0];
            vec![x.dtype().is_float().then(|| grad.cast(x.dtype())).transpose()?]
        }
        Op::Reshape => vec![Some(grad.reshape(inputs[0].shape())?)],
        Op::Permute(perm) => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(grad.permute(&inverse)?)]
        }
        Op::BroadcastTo => vec![Some(unbroadcast(grad, &inputs[0].shape())?)],
        Op::Slice { axis, start, end } => vec![Some(pad(graph, grad, &inputs[0].shape(), *axis, *start, *end)?)],
        Op::Concat { axis } => {
            let mut offset = 0;
            let mut parts = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                let size = input.shape().0[*axis].as_static().expect("bug in kiln: concat of a symbolic axis");
                parts.push(only_if(i, &|| grad.slice(*axis, offset, offset + size))?);
                offset += size;
            }
            parts
        }
        Op::Sum { axes, keepdims } => {
            let x_shape = inputs[0].shape();
            let grad = keep_reduced_dims(grad, &x_shape, axes, *keepdims)?;
            vec![Some(grad.broadcast_to(x_shape)?)]
        }
        Op::ReduceMax { axes, keepdims } => {
            // The gradient is shared equally among the elements that attain the maximum.
            let x = inputs[0];
            let x_shape = x.shape();
            let max = keep_reduced_dims(out, &x_shape, axes, *keepdims)?;
            let hits = x.eq(max)?.cast(x.dtype())?;
            let count = hits.sum(axes, true)?;
            let grad = keep_reduced_dims(grad, &x_shape, axes, *keepdims)?;
            vec![Some(hits.mul(grad.div(count)?)?)]
        }
        Op::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            vec![
                only_if(0, &|| unbroadcast(grad.matmul(b.t()?)?, &a.shape()))?,
                only_if(1, &|| unbroadcast(a.t()?.matmul(grad)?, &b.shape()))?,
            ]
        }
        Op::Gather => {
            let (table, indices) = (inputs[0], inputs[1]);
            let rows = table.shape().0[0].clone();
            vec![only_if(0, &|| indices.scatter_rows(grad, rows.clone(), Location::caller()))?, None]
        }
        Op::ScatterAdd => vec![None, only_if(1, &|| grad.gather(inputs[0]))?],
    };
    Ok(contributions)
}

fn unary_vjp<'g>(unary: Unary, x: Tensor<'g>, out: Tensor<'g>, grad: Tensor<'g>) -> Result<Tensor<'g>> {
    match unary {
        Unary::Neg => grad.neg(),
        Unary::Exp => grad.mul(out),
        Unary::Log => grad.div(x),
        Unary::Sqrt => grad.div(out.mul(2.0)?),
        Unary::Sin => grad.mul(x.cos()?),
        Unary::Cos => grad.mul(x.sin()?).and_then(Tensor::neg),
        Unary::Tanh => grad.mul(out.square()?.neg()?.add(1.0)?),
        Unary::Abs => {
            // sign(x): +1, -1, and 0 at 0 (the subgradient PyTorch and JAX pick).
            let positive = x.gt(0.0)?.cast(x.dtype())?;
            let negative = x.lt(0.0)?.cast(x.dtype())?;
            grad.mul(positive.sub(negative)?)
        }
        Unary::Recip => grad.mul(out.square()?)?.neg(),
    }
}

fn binary_vjp<'g>(
    binary: Binary,
    a: Tensor<'g>,
    b: Tensor<'g>,
    out: Tensor<'g>,
    grad: Tensor<'g>,
    needed: &[bool],
) -> Result<Vec<Option<Tensor<'g>>>> {
    let zero = || a.graph().typed_scalar(0.0, grad.dtype());
    // Ties of max and min send the whole gradient to `a`.
    let a_wins = || if binary == Binary::Max { a.ge(b) } else { a.le(b) };
    let grad_a = || match binary {
        Binary::Add | Binary::Sub => Ok(grad),
        Binary::Mul => grad.mul(b),
        Binary::Div => grad.div(b),
        Binary::Max | Binary::Min => a_wins()?.select(grad, zero()),
    };
    let grad_b = || match binary {
        Binary::Add => Ok(grad),
        Binary::Sub => grad.neg(),
        Binary::Mul => grad.mul(a),
        Binary::Div => grad.mul(out)?.div(b)?.neg(),
        Binary::Max | Binary::Min => a_wins()?.select(zero(), grad),
    };
    Ok(vec![
        needed[0].then(|| unbroadcast(grad_a()?, &a.shape())).transpose()?,
        needed[1].then(|| unbroadcast(grad_b()?, &b.shape())).transpose()?,
    ])
}

/// Sums `grad` down to `shape`, undoing a numpy broadcast of a `shape` operand.
pub(crate) fn unbroadcast<'g>(grad: Tensor<'g>, shape: &Shape) -> Result<Tensor<'g>> {
    let grad_shape = grad.shape();
    if grad_shape == *shape {
        return Ok(grad);
    }
    let extra = grad_shape.rank() - shape.rank();
    let leading: Vec<usize> = (0..extra).collect();
    let mut reduced = grad.sum(&leading, false)?;
    let stretched: Vec<usize> =
        (0..shape.rank()).filter(|&i| shape.0[i].is_one() && !grad_shape.0[extra + i].is_one()).collect();
    if !stretched.is_empty() {
        reduced = reduced.sum(&stretched, true)?;
    }
    reduced.reshape(shape.clone())
}

/// Reinserts the reduced axes as size-1 dims if the reduction dropped them.
fn keep_reduced_dims<'g>(reduced: Tensor<'g>, x_shape: &Shape, axes: &[usize], keepdims: bool) -> Result<Tensor<'g>> {
    if keepdims {
        return Ok(reduced);
    }
    let kept = (0..x_shape.rank()).map(|i| if axes.contains(&i) { Dim::Static(1) } else { x_shape.0[i].clone() });
    reduced.reshape(Shape(kept.collect()))
}

/// `grad` placed at `start..end` of `axis` in zeros of `shape`: the adjoint of a slice.
fn pad<'g>(
    graph: &'g Graph,
    grad: Tensor<'g>,
    shape: &Shape,
    axis: usize,
    start: usize,
    end: usize,
) -> Result<Tensor<'g>> {
    let size = shape.0[axis].as_static().expect("bug in kiln: slice of a symbolic axis");
    let zeros = |len: usize| {
        let mut zeros_shape = shape.clone();
        zeros_shape.0[axis] = Dim::Static(len);
        graph.fill(zeros_shape, grad.dtype(), 0.0)
    };
    let mut parts = Vec::with_capacity(3);
    if start > 0 {
        parts.push(zeros(start));
    }
    parts.push(grad);
    if end < size {
        parts.push(zeros(size - end));
    }
    if parts.len() == 1 { Ok(grad) } else { Tensor::concat(&parts, axis) }
}
