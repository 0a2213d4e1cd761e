//! Common-subexpression elimination: nodes with the same op, attributes and inputs are one.
//!
//! In: a graph and its outputs. Out: the graph with duplicate nodes merged.

use std::collections::HashMap;

use super::{Rooted, rewrite};
use crate::graph::{Graph, NodeId};

/// Merges every node into the first earlier node with the same op, attributes, inputs, shape
/// and dtype. Sound because every op is a pure function of its inputs (random ops included:
/// their values depend only on seed, counter and index).
pub fn eliminate_common_subexpressions(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    rewrite::rebuild(graph, outputs, |new, node| {
        // The Debug form spells out the op with all its attributes (floats exactly).
        let key = format!("{:?}|{:?}|{}|{}", node.op, node.inputs, node.shape, node.dtype);
        if let Some(&existing) = seen.get(&key) {
            return Some(existing);
        }
        let id = rewrite::copy_node(new, node.clone());
        seen.insert(key, id);
        Some(id)
    })
}
