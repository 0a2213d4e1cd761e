//! The embedding layer.
//!
//! In: a scope and the table's size; then integer indices. Out: the table param and the rows
//! the indices pick.

use super::{Layer, Module, Scope};
use crate::error::{Error, Location, Result};
use crate::graph::{Graph, Init, SparseParam, Tensor};

/// Looks up the embedding rows of integer `indices` (`[...]` to `[..., dim]`) in the param
/// `{name}.weight` (`[count, dim]`), initialised N(0, 1) as PyTorch's `nn.Embedding`.
///
/// Dense (the default), its gradient is a table of the param's shape (a scatter-add of the
/// rows used) and any optimizer updates it. Sparse ([`Embedding::sparse`], PyTorch's
/// `sparse=True`), its gradient is row updates and a sparse optimizer rule moves only the rows
/// looked up in the step (`kiln_runtime::optim::sparse`).
#[derive(Clone, Copy, Debug)]
pub struct Embedding<'g> {
    /// The table, `[count, dim]`.
    pub weight: Tensor<'g>,
}

impl<'g> Embedding<'g> {
    /// Declares the table in `scope`.
    #[track_caller]
    pub fn build(scope: &Scope<'g, '_>, count: usize, dim: usize) -> Result<Embedding<'g>> {
        if count == 0 {
            let detail = format!("`{}` would have no rows: an embedding needs at least one", scope.prefix());
            return Err(Error::Argument { op: "Embedding", detail, location: Location::caller() });
        }
        let weight = scope.param("weight", &[count, dim], Init::Normal { mean: 0.0, std: 1.0 })?;
        Ok(Embedding { weight })
    }

    /// Declares the table in `scope`, sparse when `sparse` is set (as `model!`'s
    /// `Embedding(count => dim, sparse)`).
    #[track_caller]
    pub fn build_with(scope: &Scope<'g, '_>, count: usize, dim: usize, sparse: bool) -> Result<Embedding<'g>> {
        let embedding = Self::build(scope, count, dim)?;
        if sparse { embedding.sparse() } else { Ok(embedding) }
    }

    /// Declares the table `{name}.weight` in `graph`.
    #[track_caller]
    pub fn new(graph: &'g Graph, name: &str, count: usize, dim: usize) -> Result<Embedding<'g>> {
        Self::build(&Scope::with_prefix(graph, name), count, dim)
    }

    /// Makes the table sparse: its gradient becomes row updates (see [`Graph::set_sparse`]).
    #[track_caller]
    pub fn sparse(self) -> Result<Embedding<'g>> {
        let name = self.weight.name().ok_or_else(|| Error::Bug("an embedding's table has no name".into()))?;
        self.weight.graph().set_sparse(&name, SparseParam::default())?;
        Ok(self)
    }

    /// True if the table is sparse.
    pub fn is_sparse(&self) -> bool {
        self.weight.name().is_some_and(|name| self.weight.graph().sparse(&name).is_some())
    }

    /// The rows of `indices` (i32 or i64).
    #[track_caller]
    pub fn forward(&self, indices: Tensor<'g>) -> Result<Tensor<'g>> {
        self.weight.gather(indices)
    }
}

impl<'g> Module<'g> for Embedding<'g> {
    fn kind(&self) -> String {
        let dims = self.weight.shape().as_static().unwrap_or_default();
        format!("Embedding({}, {})", dims.first().unwrap_or(&0), dims.get(1).unwrap_or(&0))
    }

    fn own_parameters(&self) -> Vec<Tensor<'g>> {
        vec![self.weight]
    }
}

impl<'g> Layer<'g> for Embedding<'g> {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.forward(x)
    }
}
