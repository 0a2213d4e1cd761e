//! Graph-to-graph passes: simplification, constant folding, common-subexpression elimination
//! and dead-code elimination.
//!
//! In: a graph and the nodes wanted from it (its outputs). Out: a new graph computing the same
//! values for those outputs, and their ids in it. Every pass keeps the meaning the reference
//! interpreter gives the graph; tests compare listings before and after, and values.
//!
//! Invariants kept: inputs and params all survive, with their names, shapes, dtypes and
//! order (a compiled program is fed by name, and params are updated by name); the output
//! order is preserved; the arena stays in topological order.
//!
//! `KILN_DUMP=graph` prints the listing after each pass to stderr.

mod cse;
mod dce;
mod fold;
mod rewrite;
mod simplify;

pub use cse::eliminate_common_subexpressions;
pub use dce::eliminate_dead_code;
pub use fold::fold_constants;
pub use simplify::{RULES, Rule, simplify};

use crate::graph::{Graph, NodeId};
use crate::settings::Dump;

/// A graph together with the nodes wanted from it: what every pass consumes and produces.
#[derive(Debug)]
pub struct Rooted {
    /// The graph.
    pub graph: Graph,
    /// The wanted nodes, in the caller's order.
    pub outputs: Vec<NodeId>,
}

impl Rooted {
    /// The listing of the graph followed by a line naming the outputs.
    pub fn listing(&self) -> String {
        let outputs: Vec<String> = self.outputs.iter().map(ToString::to_string).collect();
        format!("{}outputs: {}\n", self.graph.listing(), outputs.join(", "))
    }
}

/// One pass of the pipeline: its name (for dumps) and the function.
type Pass = (&'static str, fn(&Graph, &[NodeId]) -> Rooted);

/// The passes [`optimize`] runs, in order.
pub const PIPELINE: &[Pass] = &[
    ("simplify", simplify),
    ("fold_constants", fold_constants),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("eliminate_dead_code", eliminate_dead_code),
];

/// Runs [`PIPELINE`] until the graph stops shrinking (at most a few rounds).
pub fn optimize(graph: &Graph, outputs: &[NodeId]) -> Rooted {
    optimize_with(graph, outputs, &Dump::default())
}

/// [`optimize`], printing the graph before the passes and after each one when `dump.graph`.
pub fn optimize_with(graph: &Graph, outputs: &[NodeId], dump: &Dump) -> Rooted {
    let dump = dump.graph;
    let mut current = rewrite::copy(graph, outputs);
    if dump {
        eprintln!("== graph before passes\n{}", current.listing());
    }
    for _round in 0..4 {
        let size_before = current.graph.len();
        for (name, pass) in PIPELINE {
            current = pass(&current.graph, &current.outputs);
            if dump {
                eprintln!("== after {name}\n{}", current.listing());
            }
        }
        if current.graph.len() >= size_before {
            break;
        }
    }
    current
}
