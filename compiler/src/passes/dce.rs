//! Dead-code elimination: drops every node no output depends on (leaves stay).
//!
//! In: a graph and its outputs. Out: the graph without the nodes no output needs.

use super::{Rooted, rewrite};
use crate::graph::{Graph, NodeId, Op};

/// Keeps the outputs, everything they depend on, and every input and param.
pub fn eliminate_dead_code(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    let nodes = graph.nodes();
    let mut live = vec![false; nodes.len()];
    for id in outputs {
        live[id.0] = true;
    }
    for index in (0..nodes.len()).rev() {
        live[index] |= matches!(nodes[index].op, Op::Input { .. } | Op::Param { .. });
        if live[index] {
            for input in &nodes[index].inputs {
                live[input.0] = true;
            }
        }
    }
    let new = Graph::new();
    let mut map = vec![None; nodes.len()];
    for (index, node) in nodes.iter().enumerate().filter(|(i, _)| live[*i]) {
        let inputs = node.inputs.iter().map(|id| map[id.0].expect("bug in kiln: live node reads a dead one"));
        let remapped = crate::graph::Node { inputs: inputs.collect(), ..node.clone() };
        map[index] = Some(rewrite::copy_node(&new, remapped));
    }
    let outputs = outputs.iter().map(|id| map[id.0].expect("bug in kiln: an output is dead")).collect();
    Rooted { graph: new, outputs }
}
