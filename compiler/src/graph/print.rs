//! Text forms of a graph: a listing with one node per line (like Theano's `debugprint`),
//! and Graphviz DOT.
//!
//! In: a graph. Out: its listing and its DOT text.
//!
//! The listing is stable (no addresses, no hash order), so tests can compare it as text.

use std::fmt::Write;

use super::{Graph, Node, Op};

impl Graph {
    /// One line per node: `%id = op(inputs) attributes : shape dtype  # name`.
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    /// let _ = x.exp()?.named("ex");
    /// assert_eq!(g.listing(), "%0 = input \"x\" : [B, 2] f32\n%1 = exp(%0) : [B, 2] f32  # ex\n");
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes().iter().enumerate() {
            out.push_str(&format!("%{i} = {}\n", describe(node)));
        }
        out
    }

    /// The graph in Graphviz DOT: leaves as boxes (params filled), ops as ellipses, edges from
    /// operand to result. Render with `dot -Tsvg graph.dot > graph.svg`.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph kiln {\n  rankdir=TB;\n  node [fontname=\"monospace\"];\n");
        for (i, node) in self.nodes().iter().enumerate() {
            let style = match node.op {
                Op::Param { trainable: true, .. } => "shape=box, style=filled, fillcolor=lightblue",
                Op::Param { trainable: false, .. } => "shape=box, style=filled, fillcolor=lightgrey",
                Op::Input { .. } => "shape=box",
                Op::Constant(_) | Op::Fill(_) | Op::DimSize(_) => "shape=plaintext",
                _ => "shape=ellipse",
            };
            let mut label = format!("%{i} {}", node.op.name());
            let attributes = node.op.attributes();
            if !attributes.is_empty() {
                let _ = write!(label, " {attributes}");
            }
            let _ = write!(label, "\n{} {}", node.shape, node.dtype);
            if let (Some(name), false) = (&node.name, is_leaf(node)) {
                let _ = write!(label, "\n{name}");
            }
            let _ = writeln!(out, "  n{i} [label=\"{}\", {style}];", escape(&label));
            for input in &node.inputs {
                let _ = writeln!(out, "  n{} -> n{i};", input.0);
            }
        }
        out.push_str("}\n");
        out
    }
}

fn is_leaf(node: &Node) -> bool {
    matches!(node.op, Op::Input { .. } | Op::Param { .. })
}

/// `op(inputs) attributes : shape dtype  # name` for one node.
fn describe(node: &Node) -> String {
    let mut line = node.op.name().to_string();
    if !node.inputs.is_empty() {
        let inputs: Vec<String> = node.inputs.iter().map(ToString::to_string).collect();
        let _ = write!(line, "({})", inputs.join(", "));
    }
    let attributes = node.op.attributes();
    if !attributes.is_empty() {
        let _ = write!(line, " {attributes}");
    }
    let _ = write!(line, " : {} {}", node.shape, node.dtype);
    if let Op::Param { init, trainable, .. } = &node.op {
        let _ = write!(line, " init={init}{}", if *trainable { "" } else { " frozen" });
    }
    if let (Some(name), false) = (&node.name, is_leaf(node)) {
        let _ = write!(line, "  # {name}");
    }
    line
}

/// A DOT string body: backslashes and quotes escaped, then `\n` line breaks.
fn escape(label: &str) -> String {
    let lines: Vec<String> = label.split('\n').map(|line| line.replace('\\', "\\\\").replace('"', "\\\"")).collect();
    lines.join("\\n")
}
