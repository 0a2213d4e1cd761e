//! Algebraic simplification, as a table of rewrite rules.
//!
//! In: a graph and its outputs. Out: the graph with every rule applied.
//!
//! Each [`Rule`] looks at one node (its inputs already rewritten) and may answer with a
//! simpler node that computes the same values. Rules that would change a result's shape or
//! dtype do not fire, and none assumes finite inputs (`x * 0` is not `0` when `x` is NaN).

use super::{Rooted, rewrite};
use crate::graph::{Binary, Dim, Graph, Node, NodeId, Op, Shape, Unary};

/// A named rewrite: `apply` returns the node of the new graph that replaces `node`, if any.
#[derive(Clone, Copy)]
pub struct Rule {
    /// What the rule does, as `before -> after`.
    pub name: &'static str,
    /// The rewrite.
    pub apply: fn(&Graph, &Node) -> Option<NodeId>,
}

/// Every simplification rule, tried in order until one fires.
pub const RULES: &[Rule] = &[
    Rule { name: "x + 0 -> x", apply: |g, n| identity_operand(g, n, Binary::Add, 0.0, true) },
    Rule { name: "x - 0 -> x", apply: |g, n| identity_operand(g, n, Binary::Sub, 0.0, false) },
    Rule { name: "x * 1 -> x", apply: |g, n| identity_operand(g, n, Binary::Mul, 1.0, true) },
    Rule { name: "x / 1 -> x", apply: |g, n| identity_operand(g, n, Binary::Div, 1.0, false) },
    Rule { name: "x ^ 1 -> x", apply: |_, n| (n.op == Op::PowScalar(1.0)).then(|| n.inputs[0]) },
    Rule { name: "-(-x) -> x", apply: double_negation },
    Rule { name: "select(m, x, x) -> x", apply: select_same },
    Rule { name: "reshape/broadcast/permute to the same shape -> x", apply: no_op_movement },
    Rule { name: "permute(permute(x)) -> permute(x)", apply: compose_permutes },
    Rule { name: "reshape(reshape(x)) -> reshape(x)", apply: collapse_reshapes },
    Rule { name: "sum(broadcast(x)) -> x * count", apply: sum_of_broadcast },
    Rule { name: "transpose(a @ b) -> transpose(b) @ transpose(a)", apply: transpose_of_matmul },
];

/// Applies [`RULES`] to every node, once, in topological order (so a rewritten operand is
/// seen by its users).
pub fn simplify(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    rewrite::rebuild(graph, outputs, |new, node| RULES.iter().find_map(|rule| (rule.apply)(new, node)))
}

/// The value every element of node `id` has, if it is a constant or fill of one value.
fn uniform_value(graph: &Graph, id: NodeId) -> Option<f64> {
    match graph.node(id).op {
        Op::Fill(value) => Some(value),
        Op::Constant(value) => {
            let values = value.to_f64_vec();
            let first = *values.first()?;
            values.iter().all(|&v| v == first).then_some(first)
        }
        _ => None,
    }
}

/// `x op c -> x` (and `c op x -> x` if `commutes`) when `c` is all `identity` and the result
/// has `x`'s shape.
fn identity_operand(graph: &Graph, node: &Node, binary: Binary, identity: f64, commutes: bool) -> Option<NodeId> {
    if node.op != Op::Binary(binary) {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let keeps_shape = |x: NodeId| graph.node(x).shape == node.shape;
    if uniform_value(graph, b) == Some(identity) && keeps_shape(a) {
        return Some(a);
    }
    (commutes && uniform_value(graph, a) == Some(identity) && keeps_shape(b)).then_some(b)
}

fn double_negation(graph: &Graph, node: &Node) -> Option<NodeId> {
    let inner = graph.node(*node.inputs.first()?);
    (node.op == Op::Unary(Unary::Neg) && inner.op == Op::Unary(Unary::Neg)).then(|| inner.inputs[0])
}

fn select_same(graph: &Graph, node: &Node) -> Option<NodeId> {
    let same = node.op == Op::Select && node.inputs[1] == node.inputs[2];
    (same && graph.node(node.inputs[1]).shape == node.shape).then(|| node.inputs[1])
}

fn no_op_movement(graph: &Graph, node: &Node) -> Option<NodeId> {
    let movement = match &node.op {
        Op::Reshape | Op::BroadcastTo => true,
        Op::Permute(perm) => perm.iter().enumerate().all(|(i, &p)| i == p),
        _ => false,
    };
    (movement && graph.node(node.inputs[0]).shape == node.shape).then(|| node.inputs[0])
}

fn compose_permutes(graph: &Graph, node: &Node) -> Option<NodeId> {
    let Op::Permute(outer) = &node.op else { return None };
    let inner_node = graph.node(node.inputs[0]);
    let Op::Permute(inner) = &inner_node.op else { return None };
    // Output dim i is dim outer[i] of the inner result, which is dim inner[outer[i]] of x.
    let composed: Vec<usize> = outer.iter().map(|&o| inner[o]).collect();
    let x = graph.handle(inner_node.inputs[0]);
    if composed.iter().enumerate().all(|(i, &p)| i == p) {
        return Some(inner_node.inputs[0]);
    }
    x.permute(&composed).and_then(|t| t.id()).ok()
}

fn collapse_reshapes(graph: &Graph, node: &Node) -> Option<NodeId> {
    let inner = graph.node(node.inputs.first().copied()?);
    if node.op != Op::Reshape || inner.op != Op::Reshape {
        return None;
    }
    graph.handle(inner.inputs[0]).reshape(node.shape.clone()).and_then(|t| t.id()).ok()
}

/// `sum over axes of broadcast_to(x)`, where exactly the broadcast-stretched axes are summed,
/// is `x` times the number of copies, reshaped to the sum's shape.
fn sum_of_broadcast(graph: &Graph, node: &Node) -> Option<NodeId> {
    let Op::Sum { axes, .. } = &node.op else { return None };
    let broadcast = graph.node(node.inputs[0]);
    if broadcast.op != Op::BroadcastTo {
        return None;
    }
    let x = graph.handle(broadcast.inputs[0]);
    let (x_shape, wide) = (x.shape(), &broadcast.shape);
    let extra = wide.rank() - x_shape.rank();
    let x_dim = |d: usize| d.checked_sub(extra).map(|i| &x_shape.dims()[i]);
    let stretched = |d: usize| x_dim(d).is_none_or(|dim| dim.is_one() && !wide.dims()[d].is_one());
    let all_stretched_summed = (0..wide.rank()).filter(|&d| stretched(d)).all(|d| axes.contains(&d));
    let only_stretched_summed = axes.iter().all(|&d| x_dim(d).is_none_or(Dim::is_one));
    if !all_stretched_summed || !only_stretched_summed {
        return None;
    }
    let copies: Vec<Dim> = axes.iter().map(|&d| wide.dims()[d].clone()).collect();
    let count = match Dim::static_product(&copies) {
        Some(n) => graph.typed_scalar(n as f64, node.dtype),
        None => graph.dim_size(&copies, node.dtype).ok()?,
    };
    let scaled = x.mul(count).ok()?;
    scaled.reshape(Shape(node.shape.dims().to_vec())).and_then(|t| t.id()).ok()
}

/// The transpose of a matrix product, computed as the product of the transposes in the other
/// order, so the result comes out in the layout its readers want. This is how a weight
/// gradient `transpose(xᵀ · g)` becomes `gᵀ · x`, written row by row as the weight is stored.
fn transpose_of_matmul(graph: &Graph, node: &Node) -> Option<NodeId> {
    if node.op != Op::Permute(vec![1, 0]) {
        return None;
    }
    let product = graph.node(node.inputs[0]);
    if product.op != Op::MatMul || product.inputs.iter().any(|&x| graph.node(x).shape.rank() != 2) {
        return None;
    }
    let (a, b) = (product.inputs[0], product.inputs[1]);
    transposed(graph, b)?.matmul(transposed(graph, a)?).and_then(|t| t.id()).ok()
}

/// The transpose of matrix `id`: the matrix it transposes, if it is a transpose.
fn transposed(graph: &Graph, id: NodeId) -> Option<crate::graph::Tensor<'_>> {
    let node = graph.node(id);
    if node.op == Op::Permute(vec![1, 0]) {
        return Some(graph.handle(node.inputs[0]));
    }
    graph.handle(id).t().ok()
}
