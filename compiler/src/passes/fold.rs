//! Constant folding: ops whose operands are all known are evaluated once, here.
//!
//! In: a graph and its outputs. Out: the graph with constant subexpressions replaced by their
//! values.

use std::collections::HashMap;

use super::{Rooted, rewrite};
use crate::graph::{Graph, NodeId, Op};
use crate::interp::eval::{Context, evaluate};
use crate::value::Value;

/// Folded results larger than this stay as ops: a fill broadcast to a big shape is cheaper to
/// recompute than to store.
const MAX_FOLDED_ELEMENTS: usize = 1 << 16;

/// Replaces every op whose operands are constants (or fills of static shape) by a constant
/// holding its value, computed by the reference interpreter. Random ops are left alone.
pub fn fold_constants(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    let symbols = HashMap::new();
    rewrite::rebuild(graph, outputs, |new, node| {
        let shape = node.shape.as_static()?;
        let foldable = match &node.op {
            Op::Constant(_) | Op::Fill(_) | Op::Random { .. } => false,
            Op::DimSize(dims) => dims.iter().all(|d| d.as_static().is_some()),
            _ => !node.inputs.is_empty(),
        };
        if !foldable || shape.iter().product::<usize>() > MAX_FOLDED_ELEMENTS {
            return None;
        }
        let operands = node.inputs.iter().map(|&id| known_value(new, id)).collect::<Option<Vec<Value>>>()?;
        let operands: Vec<&Value> = operands.iter().collect();
        let names = vec![None; node.inputs.len()];
        let context = Context { symbols: &symbols, dtype: node.dtype, shape, names };
        let value = evaluate(&node.op, &operands, &context).ok()?;
        // A result with one value throughout stays a fill: later stages recompute it for free
        // instead of reading a tensor of copies.
        let values = value.to_f64_vec();
        let uniform = value.numel() > 1 && values.iter().all(|v| v.to_bits() == values[0].to_bits());
        let op = if uniform { Op::Fill(values[0]) } else { Op::Constant(value) };
        let mut folded = crate::graph::Node { op, inputs: vec![], ..node.clone() };
        folded.name = node.name.clone();
        Some(rewrite::copy_node(new, folded))
    })
}

/// The value of a constant node, or of a fill of static shape.
fn known_value(graph: &Graph, id: NodeId) -> Option<Value> {
    let node = graph.node(id);
    match node.op {
        Op::Constant(value) => Some(value),
        Op::Fill(fill) => Some(Value::full(node.shape.as_static()?, node.dtype, fill)),
        _ => None,
    }
}
