//! Sparse params: tables (embeddings) whose gradient is kept as row updates instead of a dense
//! table, PyTorch's `nn.Embedding(..., sparse=True)`.
//!
//! In: a param of the graph, marked by name. Out: nothing in the graph changes; the mark is read
//! by `Graph::grad_rows` (autodiff), which then gives the param's gradient as the gathered rows'
//! gradients and their indices, and by the optimizers, which update only those rows. A sparse
//! param may be read only through gathers; `grad_rows` refuses any other reader.

use crate::error::{Error, Location, Result};
use crate::graph::{Graph, Op};

/// How a sparse param's row updates are formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseParam {
    /// A row id whose lookups contribute nothing and whose row never moves (PyTorch's
    /// `padding_idx`): row updates at this id are dropped before any optimizer sees them.
    pub padding: Option<usize>,
}

impl Graph {
    /// Marks the param `name` sparse: its gradient will be row updates (ids and rows), and its
    /// optimizer a sparse rule that moves only those rows. The param must be a table of rank
    /// 2 or more (`[rows, dim...]`), and `padding`, if given, one of its rows.
    #[track_caller]
    pub fn set_sparse(&self, name: &str, sparse: SparseParam) -> Result<()> {
        let location = Location::caller();
        let param = self.leaf(name)?;
        let node = self.node(param.id()?);
        if !matches!(node.op, Op::Param { .. }) {
            let detail = format!("`{name}` is an input; only params can be sparse");
            return Err(Error::Argument { op: "set_sparse", detail, location });
        }
        let dims = node.shape.as_static().unwrap_or_default();
        if dims.len() < 2 {
            let detail = format!("param `{name}` is {}; a sparse param is a table of rows, rank 2 or more", node.shape);
            return Err(Error::Shape { op: "set_sparse", detail, location });
        }
        if let Some(padding) = sparse.padding
            && padding >= dims[0]
        {
            let detail = format!("padding id {padding} is not a row of param `{name}` ({} rows)", dims[0]);
            return Err(Error::Argument { op: "set_sparse", detail, location });
        }
        self.state.borrow_mut().sparse.insert(name.to_string(), sparse);
        Ok(())
    }

    /// How the param `name` is sparse, or `None` for a dense param.
    pub fn sparse(&self, name: &str) -> Option<SparseParam> {
        self.state.borrow().sparse.get(name).copied()
    }
}
