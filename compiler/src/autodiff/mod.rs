//! Reverse-mode automatic differentiation, as graph construction.
//!
//! In: a graph, a scalar loss node and the nodes to differentiate with respect to.
//! Out: new nodes appended to the same graph, one gradient per requested node.
//!
//! Gradients are ordinary nodes, so they can be printed, evaluated, compiled and
//! differentiated again. Only nodes on a path from a requested node to the loss get adjoints,
//! so frozen params (which can never be requested) get no gradient nodes at all. Each
//! primitive has one vector-Jacobian rule, in `rules`.

mod check;
mod rows;
mod rules;

pub use check::{GradientCheck, check_gradients};
pub use rows::RowGradient;

use crate::error::{Error, Location, Result};
use crate::graph::{Graph, NodeId, Op, Tensor};

impl Graph {
    /// Appends the gradient of the scalar `loss` with respect to each of `wrt` (params,
    /// inputs or any float node) and returns them in the same order. A node the loss does not
    /// depend on gets zeros.
    ///
    /// Asking for the gradient of a frozen param is an error: freezing means "no gradient".
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let x = g.input("x", [3])?;
    /// let y = x.sin()?.sum_all()?;
    /// let dx = g.grad(y, &[x])?[0];
    /// let out = Interpreter::new(&g).run(&Feeds::from([("x", Value::f32([3], vec![0.0, 1.0, 2.0]))]), &ParamStore::new(), &[dx])?;
    /// assert!((out[0].to_f64_vec()[1] - 1f64.cos()).abs() < 1e-6);
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    #[track_caller]
    pub fn grad<'g>(&'g self, loss: Tensor<'g>, wrt: &[Tensor<'g>]) -> Result<Vec<Tensor<'g>>> {
        let location = Location::caller();
        self.check()?;
        let loss_id = self.check_operand(loss, location)?;
        let loss_node = self.node(loss_id);
        if loss_node.shape.rank() != 0 || !loss_node.dtype.is_float() {
            let detail = format!(
                "the loss must be a float scalar, got {} {} (reduce it with sum or mean first)",
                loss_node.shape, loss_node.dtype
            );
            return Err(Error::Grad { detail, location });
        }
        let mut targets = Vec::with_capacity(wrt.len());
        for &tensor in wrt {
            let id = self.check_operand(tensor, location)?;
            let node = self.node(id);
            if let Op::Param { name, trainable: false, .. } = &node.op {
                let detail = format!("param `{name}` is frozen (not trainable); it has no gradient");
                return Err(Error::Grad { detail, location });
            }
            if !node.dtype.is_float() {
                let subject = match (&node.op, &node.name) {
                    (Op::Input { name }, _) => format!("input `{name}` ({id})"),
                    (Op::Param { name, .. }, _) => format!("param `{name}` ({id})"),
                    (_, Some(name)) => format!("node `{name}` ({id})"),
                    (_, None) => id.to_string(),
                };
                let detail = format!("{subject} has dtype {}; only float nodes have gradients", node.dtype);
                return Err(Error::Grad { detail, location });
            }
            targets.push(id);
        }

        let adjoints = self.backpropagate(loss_id, &targets)?;
        let grads = targets.iter().map(|&id| match adjoints.get(id.0).copied().flatten() {
            Some(adjoint) => adjoint,
            None => {
                let node = self.node(id);
                self.fill(node.shape, node.dtype, 0.0)
            }
        });
        Ok(grads.collect())
    }

    fn check_operand(&self, tensor: Tensor<'_>, location: Location) -> Result<NodeId> {
        if !std::ptr::eq(self, tensor.graph()) {
            return Err(Error::ForeignTensor { op: "grad", location });
        }
        tensor.id()
    }

    /// The adjoint of every node on a path from `targets` to `loss` (`None` elsewhere).
    fn backpropagate<'g>(&'g self, loss: NodeId, targets: &[NodeId]) -> Result<Vec<Option<Tensor<'g>>>> {
        let on_path = self.nodes_depending_on(targets, loss);
        let mut adjoints: Vec<Option<Tensor<'g>>> = vec![None; loss.0 + 1];
        adjoints[loss.0] = Some(self.typed_scalar(1.0, self.node(loss).dtype));
        for index in (0..=loss.0).rev() {
            let Some(adjoint) = adjoints[index] else { continue };
            let node = self.node(NodeId(index));
            if node.inputs.iter().all(|input| !on_path[input.0]) {
                continue;
            }
            let inputs: Vec<Tensor<'g>> = node.inputs.iter().map(|&id| self.handle(id)).collect();
            let needed: Vec<bool> = node.inputs.iter().map(|input| on_path[input.0]).collect();
            let contributions = rules::vjp(self, &node, self.handle(NodeId(index)), adjoint, &inputs, &needed)?;
            for (input, contribution) in node.inputs.iter().zip(contributions) {
                let Some(contribution) = contribution else { continue };
                if !on_path[input.0] {
                    continue;
                }
                adjoints[input.0] = Some(match adjoints[input.0] {
                    Some(sum) => sum.add(contribution)?,
                    None => contribution,
                });
            }
        }
        Ok(adjoints)
    }

    /// Marks the float nodes, up to `last`, that some target reaches: the only nodes whose
    /// adjoints matter.
    fn nodes_depending_on(&self, targets: &[NodeId], last: NodeId) -> Vec<bool> {
        let nodes = self.nodes();
        let mut depends = vec![false; last.0 + 1];
        for (index, node) in nodes.iter().enumerate().take(last.0 + 1) {
            let is_target = targets.contains(&NodeId(index));
            let reached = node.inputs.iter().any(|input| depends[input.0]);
            depends[index] = node.dtype.is_float() && (is_target || reached);
        }
        depends
    }
}
