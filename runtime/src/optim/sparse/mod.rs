//! Sparse updates: optimizer rules that move only the rows of a table looked up in the step.
//!
//! In: the row gradients of sparse params (`Graph::grad_rows`: for each gather, its ids and the
//! gradient of the loss with respect to the rows it gathered), as values returned by the
//! compiled step. Out: the tables and their optimizer state updated in place, row by row.
//!
//! Why here and not in the graph: a graph update is a whole value (`(param, new value)`), so a
//! rule written in graph ops would rebuild the whole table at every step. The compiled step
//! instead returns the `(ids, rows)` pairs (computed by the same backward pass, never a dense
//! table), and [`SparseUpdates`] applies a [`RowRule`] to the rows they name: duplicate ids are
//! summed first, in a fixed order (ascending id, then position in the step's outputs), and a
//! padding id is dropped. A step's cost then follows the rows touched, not the table's size.
//!
//! The rules follow PyTorch's sparse semantics: [`Sgd`](super::Sgd) without momentum
//! (PyTorch's momentum on a sparse gradient keeps moving every row it ever saw, so kiln refuses
//! it), [`Adagrad`](super::Adagrad) (`torch.optim.Adagrad` on a sparse gradient) and
//! [`SparseAdam`] (lazy moments: only the rows in the batch move; bias corrections from the
//! global step). Weight decay would move every row at every step, so a sparse param with
//! weight decay is refused, pointing to the skip list. The rules are checked against
//! PyTorch's trajectories (`tests/fixtures/sparse_optimizers.py`).

pub(crate) mod rules;
mod updates;

pub use rules::SparseAdam;
pub use updates::{RowUpdates, SparseUpdates};

use kiln_compiler::{Error, Location};

/// An update rule for the rows of a sparse param: what [`super::Optimizer::row_rule`] returns.
pub trait RowRule: Send + Sync {
    /// The names of the rule's state tables, each shaped like the param
    /// (`optimizer.<rule>.<state>.<param>`), zero at first.
    fn state_names(&self, param: &str) -> Vec<String>;

    /// Applies one step to the rows of `updates` (coalesced gradients): `table` is the param
    /// (`[rows, dim]`, row-major), `state` its state tables in the order of
    /// [`RowRule::state_names`]; `step` counts from 1.
    fn apply(&self, table: &mut [f32], state: &mut [Vec<f32>], updates: &RowUpdates, lr: f64, step: u64);
}

/// The error for weight decay on a sparse param.
pub(crate) fn weight_decay_error(param: &str, rule: &str, weight_decay: f64) -> Error {
    let detail = format!(
        "param `{param}` is sparse (row-update gradients) but its rule {rule} has weight decay {weight_decay}; \
         decay would move every row at every step, so sparse params take none: put `{param}` in the skip list \
         (`split_for_weight_decay(params, &[\"{param}\"])` or `WeightDecayGroups::new(.., &[\"{param}\"])`), \
         or use the rule without weight decay"
    );
    Error::Argument { op: "optimizer", detail, location: Location::caller() }
}
