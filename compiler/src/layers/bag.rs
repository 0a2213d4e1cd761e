//! `EmbeddingBag`: PyTorch's `nn.EmbeddingBag` over fixed-length bags, the sum or mean of each
//! bag's embedding rows, with a padding id that contributes nothing.
//!
//! In: integer ids `[..., length]` (each last-axis row a bag). Out: `[..., dim]`. Built from a
//! gather, a mask and a sum, so autodiff and the compiler see through it; sparse, its table's
//! gradient is row updates from which the padding id is dropped, so the padding row never moves.

use crate::error::{Error, Location, Result};
use crate::graph::{DType, Dim, Graph, Init, Shape, SparseParam, Tensor};
use crate::layers::{Layer, Module, Scope};

/// How a bag's rows are reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BagMode {
    /// The sum of the rows.
    Sum,
    /// The mean of the rows that are not padding (a bag of padding only gives zeros, as in
    /// PyTorch).
    Mean,
}

/// The sum or mean of embedding rows over each bag of `indices` (`[..., length]` to
/// `[..., dim]`) from the table `{name}.weight` (`[count, dim]`, N(0, 1) as PyTorch's).
#[derive(Clone, Copy, Debug)]
pub struct EmbeddingBag<'g> {
    /// The table, `[count, dim]`.
    pub weight: Tensor<'g>,
    /// Sum or mean.
    pub mode: BagMode,
    /// An id that contributes nothing to its bag and gets no update.
    pub padding: Option<usize>,
}

impl<'g> EmbeddingBag<'g> {
    /// Declares the table in `scope`, sparse (gradient as row updates) when `sparse` is set.
    #[track_caller]
    pub fn build(
        scope: &Scope<'g, '_>,
        count: usize,
        dim: usize,
        mode: BagMode,
        padding: Option<usize>,
        sparse: bool,
    ) -> Result<EmbeddingBag<'g>> {
        let location = Location::caller();
        if let Some(padding) = padding
            && padding >= count
        {
            let detail = format!("padding id {padding} is not a row of a table of {count} rows");
            return Err(Error::Argument { op: "EmbeddingBag", detail, location });
        }
        let weight = scope.param("weight", &[count, dim], Init::Normal { mean: 0.0, std: 1.0 })?;
        if sparse {
            let name = weight.name().ok_or_else(|| Error::Bug("an embedding bag's table has no name".into()))?;
            weight.graph().set_sparse(&name, SparseParam { padding })?;
        }
        Ok(EmbeddingBag { weight, mode, padding })
    }

    /// Declares the table `{name}.weight` in `graph`.
    #[track_caller]
    pub fn new(
        graph: &'g Graph,
        name: &str,
        count: usize,
        dim: usize,
        mode: BagMode,
        padding: Option<usize>,
        sparse: bool,
    ) -> Result<EmbeddingBag<'g>> {
        Self::build(&Scope::with_prefix(graph, name), count, dim, mode, padding, sparse)
    }

    /// The reduced rows of each bag of `indices` (i32 or i64, `[..., length]`).
    #[track_caller]
    pub fn forward(&self, indices: Tensor<'g>) -> Result<Tensor<'g>> {
        let location = Location::caller();
        let shape = indices.shape();
        if shape.rank() == 0 {
            let detail = "the ids must have a bag axis (`[..., length]`), got a scalar".to_string();
            return Err(Error::Shape { op: "EmbeddingBag", detail, location });
        }
        let bag_axis = shape.rank() - 1;
        let rows = self.weight.gather(indices)?;
        let Some(padding) = self.padding else {
            return match self.mode {
                BagMode::Sum => rows.sum(&[bag_axis], false),
                BagMode::Mean => crate::layers::mean(rows, &[bag_axis], false),
            };
        };
        // 1 for ids that count, 0 for padding, shaped `[..., length, 1]` to scale the rows.
        let keep = indices.eq(padding as f64)?.cast(DType::F32)?.neg()?.add(1.0)?;
        let mut dims = shape.0.clone();
        dims.push(Dim::from(1));
        let keep = keep.reshape(Shape(dims))?;
        let sum = rows.mul(keep)?.sum(&[bag_axis], false)?;
        match self.mode {
            BagMode::Sum => Ok(sum),
            BagMode::Mean => sum.div(keep.sum(&[bag_axis], false)?.maximum(1.0)?),
        }
    }
}

impl<'g> Module<'g> for EmbeddingBag<'g> {
    fn kind(&self) -> String {
        let dims = self.weight.shape().as_static().unwrap_or_default();
        let mode = if self.mode == BagMode::Sum { "sum" } else { "mean" };
        format!("EmbeddingBag({}, {}, mode={mode})", dims.first().unwrap_or(&0), dims.get(1).unwrap_or(&0))
    }

    fn own_parameters(&self) -> Vec<Tensor<'g>> {
        vec![self.weight]
    }
}

impl<'g> Layer<'g> for EmbeddingBag<'g> {
    fn apply(&self, x: Tensor<'g>) -> Result<Tensor<'g>> {
        self.forward(x)
    }
}
