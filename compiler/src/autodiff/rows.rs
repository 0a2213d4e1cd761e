//! Gradients of sparse params as row updates.
//!
//! In: a scalar loss, the dense params (or any float nodes) to differentiate, and the sparse
//! params (marked with `Graph::set_sparse`). Out: the dense gradients, and for each sparse
//! param a [`RowGradient`]: for every gather that reads it on the way to the loss, the gather's
//! indices and the gradient of the loss with respect to the gathered rows.
//!
//! Where sparse updates live in kiln's pipeline, and why: the row gradients are ordinary graph
//! nodes (the adjoints of the gather outputs), so they come out of the same backward pass,
//! fused and compiled with it, and nothing of size `[rows, dim]` is ever built: no scatter-add,
//! no zero fill of the table. The graph's updates are whole values (`(param, new value)`), so
//! an update that touches only some rows cannot be one of them; the compiled step returns the
//! `(ids, rows)` pairs instead, and the runtime's sparse optimizer rules
//! (`kiln_runtime::optim::sparse`) sum duplicate ids in a fixed order (ascending id, then
//! position) and update only those rows of the table and of its optimizer state, in place.
//! A step's cost then follows the rows touched, whatever the table's size.

use crate::error::{Error, Location, Result};
use crate::graph::{Graph, NodeId, Op, SparseParam, Tensor};

/// The gradient of one sparse param, as row updates.
#[derive(Clone, Debug)]
pub struct RowGradient<'g> {
    /// The param.
    pub param: Tensor<'g>,
    /// Its name.
    pub name: String,
    /// For each gather reading the param: its integer indices (`[I...]`) and the gradient
    /// of the loss with respect to the rows it gathered (`[I..., D...]`). The param's dense
    /// gradient would be the sum over these of `zeros.scatter_add(indices, rows)`.
    pub parts: Vec<(Tensor<'g>, Tensor<'g>)>,
    /// How the param is sparse (its padding id).
    pub sparse: SparseParam,
}

impl<'g> RowGradient<'g> {
    /// The tensors a compiled step must return for this param, in order: each part's indices
    /// then its rows.
    pub fn outputs(&self) -> Vec<Tensor<'g>> {
        self.parts.iter().flat_map(|&(indices, rows)| [indices, rows]).collect()
    }
}

impl Graph {
    /// The gradients of the scalar `loss`: dense ones for `dense` (as [`Graph::grad`]), and
    /// row updates for each of `sparse`, which must be params marked with
    /// [`Graph::set_sparse`] and read only through gathers on the way to the loss. Both come
    /// from one backward pass; no node the size of a sparse table is added.
    #[track_caller]
    pub fn grad_rows<'g>(
        &'g self,
        loss: Tensor<'g>,
        dense: &[Tensor<'g>],
        sparse: &[Tensor<'g>],
    ) -> Result<(Vec<Tensor<'g>>, Vec<RowGradient<'g>>)> {
        let location = Location::caller();
        let loss_id = loss.id()?;
        let needed = self.nodes_needed_by(loss_id);
        let mut gathers_of = Vec::with_capacity(sparse.len());
        for &param in sparse {
            let id = param.id()?;
            let node = self.node(id);
            let Op::Param { name, trainable, .. } = &node.op else {
                let detail = format!("{id} is a `{}` node; only params have row gradients", node.op.name());
                return Err(Error::Grad { detail, location });
            };
            let Some(marked) = self.sparse(name) else {
                let detail =
                    format!("param `{name}` is not sparse (mark it with `set_sparse`, or an embedding's `sparse`)");
                return Err(Error::Grad { detail, location });
            };
            if !trainable {
                let detail = format!("param `{name}` is frozen (not trainable); it has no gradient");
                return Err(Error::Grad { detail, location });
            }
            gathers_of.push((param, name.clone(), marked, self.gathers_reading(id, name, &needed, location)?));
        }
        let mut targets = dense.to_vec();
        for (_, _, _, gathers) in &gathers_of {
            targets.extend(gathers.iter().map(|&(gather, _)| gather));
        }
        let mut grads = self.grad(loss, &targets)?;
        let mut row_grads = grads.split_off(dense.len()).into_iter();
        let rows = gathers_of
            .into_iter()
            .map(|(param, name, sparse, gathers)| {
                let parts = gathers.iter().map(|&(_, indices)| (indices, row_grads.next().expect("one per gather")));
                RowGradient { param, name, parts: parts.collect(), sparse }
            })
            .collect();
        Ok((grads, rows))
    }

    /// The gathers that read param `id` among the `needed` nodes, as `(gather, indices)`; any
    /// other reader is an error naming the param and the reader.
    fn gathers_reading<'g>(
        &'g self,
        id: NodeId,
        name: &str,
        needed: &[bool],
        location: Location,
    ) -> Result<Vec<(Tensor<'g>, Tensor<'g>)>> {
        let mut gathers = Vec::new();
        for (index, node) in self.nodes().iter().enumerate().take(needed.len()) {
            if !needed[index] || !node.inputs.contains(&id) {
                continue;
            }
            if matches!(node.op, Op::Gather) && node.inputs[0] == id && node.inputs[1] != id {
                gathers.push((self.handle(NodeId(index)), self.handle(node.inputs[1])));
            } else {
                let reader = match &node.name {
                    Some(label) => format!("node {index} (`{}`, named `{label}`)", node.op.name()),
                    None => format!("node {index} (`{}`)", node.op.name()),
                };
                let detail = format!(
                    "param `{name}` is sparse, so it may be read only through gathers (embedding lookups), \
                     but {reader} reads it; make it dense or read it through `gather`"
                );
                return Err(Error::Grad { detail, location });
            }
        }
        Ok(gathers)
    }

    /// Marks the nodes `loss` depends on (itself included).
    fn nodes_needed_by(&self, loss: NodeId) -> Vec<bool> {
        let nodes = self.nodes();
        let mut needed = vec![false; loss.0 + 1];
        needed[loss.0] = true;
        for index in (0..=loss.0).rev() {
            if needed[index] {
                for input in &nodes[index].inputs {
                    needed[input.0] = true;
                }
            }
        }
        needed
    }
}
