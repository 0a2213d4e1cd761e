//! The one way passes build their result: walk the old graph in order, remap each node's
//! inputs, and either let a rule answer with a node of the new graph or copy the node over.
//!
//! In: a graph, its outputs and a rule. Out: the rewritten graph with its outputs ([`Rooted`]).

use super::Rooted;
use crate::graph::{Graph, Node, NodeId, Op};

/// Rebuilds `graph` node by node. For each node (inputs already remapped into the new graph),
/// `rule` may return an existing or freshly built node of the new graph to stand for it;
/// otherwise the node is copied. Leaves are always copied, so inputs and params survive.
pub(super) fn rebuild(
    graph: &Graph,
    outputs: &[NodeId],
    mut rule: impl FnMut(&Graph, &Node) -> Option<NodeId>,
) -> Rooted {
    let new = Graph::new();
    let mut map: Vec<NodeId> = Vec::with_capacity(graph.len());
    for node in graph.nodes().iter() {
        let remapped = Node { inputs: node.inputs.iter().map(|id| map[id.0]).collect(), ..node.clone() };
        let is_leaf = matches!(remapped.op, Op::Input { .. } | Op::Param { .. });
        let replacement = if is_leaf { None } else { rule(&new, &remapped) };
        map.push(replacement.unwrap_or_else(|| copy_node(&new, remapped)));
    }
    let outputs = outputs.iter().map(|id| map[id.0]).collect();
    Rooted { graph: new, outputs }
}

/// Appends `node` to `graph` as it is.
pub(super) fn copy_node(graph: &Graph, node: Node) -> NodeId {
    let Node { op, inputs, shape, dtype, name } = node;
    let id = graph.push(op, inputs, shape, dtype).id().expect("bug in kiln: a pushed node failed");
    if let Some(name) = name {
        graph.set_name(id, &name);
    }
    id
}

/// A copy of the graph, unchanged.
pub(super) fn copy(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    rebuild(graph, outputs, |_, _| None)
}
