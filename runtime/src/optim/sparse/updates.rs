//! Coalescing row gradients and applying row rules to tables and their state.
//!
//! In: the row gradients a step computed. Out: the tables and their state updated in place.

use std::borrow::Cow;

use kiln_compiler::{Data, Error, Graph, Location, ParamStore, Result, RowGradient, Tensor, Value};

use super::RowRule;
use crate::Function;
use crate::optim::Optimizer;

/// Row gradients with duplicate ids summed: `ids` ascending and distinct, `rows` the summed
/// gradient of each (`[ids.len(), dim]`, row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct RowUpdates {
    /// The width of a row.
    pub dim: usize,
    /// The rows touched, ascending.
    pub ids: Vec<usize>,
    /// Their summed gradients.
    pub rows: Vec<f32>,
}

impl RowUpdates {
    /// Sums the row gradients of `parts` (each: integer ids `[I...]` and rows `[I..., dim]`) by
    /// id, over a table of `table_rows` rows. Duplicates are added in a fixed order (by their
    /// position, parts in order), so the result does not depend on threads or hashing. Ids
    /// equal to `padding` are dropped; an id outside the table is an error naming `param`.
    pub fn coalesce(
        param: &str,
        parts: &[(&Value, &Value)],
        table_rows: usize,
        dim: usize,
        padding: Option<usize>,
    ) -> Result<RowUpdates> {
        let mut positions = Vec::new();
        let mut sources: Vec<Cow<'_, [f32]>> = Vec::with_capacity(parts.len());
        for (part, (ids, rows)) in parts.iter().enumerate() {
            let count = ids.numel();
            if rows.numel() != count * dim {
                return Err(Error::Bug(format!(
                    "the row gradient of `{param}` has {} values for {count} ids of width {dim}",
                    rows.numel()
                )));
            }
            for position in 0..count {
                let id = ids.data().get_i64(position);
                if id < 0 || id as usize >= table_rows {
                    let detail = format!("id {id} is not a row of sparse param `{param}` ({table_rows} rows)");
                    return Err(Error::Argument { op: "sparse update", detail, location: Location::caller() });
                }
                if Some(id as usize) != padding {
                    positions.push((id as usize, part, position));
                }
            }
            // The compiled step returns f32 rows: read them in place rather than copy them.
            sources.push(match rows.data() {
                Data::F32(values) => Cow::Borrowed(values.as_slice()),
                _ => Cow::Owned(rows.to_f32_vec()),
            });
        }
        // (id, part, position) are distinct, so the order is total and the same every time.
        positions.sort_unstable();
        let mut ids: Vec<usize> = Vec::new();
        let mut summed: Vec<f32> = Vec::new();
        for (id, part, position) in positions {
            let row = &sources[part][position * dim..(position + 1) * dim];
            if ids.last() == Some(&id) {
                let start = summed.len() - dim;
                summed[start..].iter_mut().zip(row).for_each(|(sum, x)| *sum += x);
            } else {
                ids.push(id);
                summed.extend_from_slice(row);
            }
        }
        Ok(RowUpdates { dim, ids, rows: summed })
    }

    /// The summed gradient of the `k`-th row touched.
    pub fn row(&self, k: usize) -> &[f32] {
        &self.rows[k * self.dim..(k + 1) * self.dim]
    }
}

/// One sparse param: its rule, its state and where its row gradients are among the outputs.
struct Table {
    name: String,
    rows: usize,
    dim: usize,
    padding: Option<usize>,
    parts: usize,
    rule: Box<dyn RowRule>,
    state_names: Vec<String>,
    state: Vec<Vec<f32>>,
}

/// The sparse params of a training step and their optimizer state: given the row gradients
/// the compiled step returns, updates only the rows touched.
///
/// ```
/// use kiln_compiler::prelude::*;
/// use kiln_runtime::function;
/// use kiln_runtime::optim::{Adam, Optimizer, Schedule, SparseAdam, SparseUpdates};
/// let g = Graph::new();
/// let ids = g.typed_input("ids", [4], DType::I64)?;
/// let table = layers::Embedding::new(&g, "emb", 10, 3)?.sparse()?;
/// let w = g.param("w", [3], Init::ONES)?;
/// let loss = table.forward(ids)?.mul(w)?.sum_all()?;
/// let (grads, rows) = g.grad_rows(loss, &[w], &[table.weight])?;
/// let schedule = Schedule::inputs(&g)?;
/// let updates = Adam::new().updates(&g, &[w], &grads, &schedule)?;
/// let mut sparse = SparseUpdates::new(&g, &rows, &SparseAdam::new())?;
/// let mut outputs = vec![loss];
/// outputs.extend(sparse.outputs(&rows));
/// let mut step = function(&g, &[ids, schedule.lr, schedule.step], &outputs, &updates)?;
/// let before = step.params().get("emb.weight").unwrap().to_f32_vec();
/// let [lr, t] = Schedule::values(0.1, 1);
/// let out = step.call(&[Value::i64([4], vec![1, 1, 7, 2]), lr, t])?;
/// sparse.apply_to_function(&mut step, &out[1..], 0.1, 1)?;
/// let after = step.params().get("emb.weight").unwrap().to_f32_vec();
/// assert_eq!(before[..3], after[..3]); // row 0 was not looked up: unchanged
/// assert_ne!(before[3..6], after[3..6]); // row 1 moved
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
pub struct SparseUpdates {
    tables: Vec<Table>,
}

impl SparseUpdates {
    /// The sparse updates of `row_grads` (from `Graph::grad_rows`) by `optimizer`'s row rule
    /// ([`Optimizer::row_rule`]): an optimizer without a sparse form, or with weight decay, is
    /// an error naming the param.
    #[track_caller]
    pub fn new(graph: &Graph, row_grads: &[RowGradient<'_>], optimizer: &dyn Optimizer) -> Result<SparseUpdates> {
        let mut tables = Vec::with_capacity(row_grads.len());
        for gradient in row_grads {
            debug_assert!(std::ptr::eq(graph, gradient.param.graph()), "row gradients of another graph");
            let dims = gradient.param.shape().as_static().unwrap_or_default();
            let rows = dims.first().copied().unwrap_or(0);
            let dim = dims.iter().skip(1).product();
            let rule = optimizer.row_rule(gradient.param)?;
            let state_names = rule.state_names(&gradient.name);
            let state = vec![vec![0.0; rows * dim]; state_names.len()];
            tables.push(Table {
                name: gradient.name.clone(),
                rows,
                dim,
                padding: gradient.sparse.padding,
                parts: gradient.parts.len(),
                rule,
                state_names,
                state,
            });
        }
        Ok(SparseUpdates { tables })
    }

    /// The tensors the compiled step must return, after its own outputs, for these updates:
    /// every row gradient's ids and rows, in order.
    pub fn outputs<'g>(&self, row_grads: &[RowGradient<'g>]) -> Vec<Tensor<'g>> {
        row_grads.iter().flat_map(RowGradient::outputs).collect()
    }

    /// How many outputs [`SparseUpdates::outputs`] adds.
    pub fn output_count(&self) -> usize {
        self.tables.iter().map(|table| 2 * table.parts).sum()
    }

    /// The names of the sparse params.
    pub fn params(&self) -> Vec<&str> {
        self.tables.iter().map(|table| table.name.as_str()).collect()
    }

    /// Applies one step to the tables held by `function`, from `outputs` (the values of
    /// [`SparseUpdates::outputs`], in order) at learning rate `lr` and step `step` (from 1).
    pub fn apply_to_function(&mut self, function: &mut Function, outputs: &[Value], lr: f64, step: u64) -> Result<()> {
        self.apply(outputs, lr, step, |name, update| match function.param_values_mut(name) {
            Some(values) => update(values),
            None => Err(Error::MissingParam { name: name.to_string() }),
        })
    }

    /// [`SparseUpdates::apply_to_function`] for params held in a store (the interpreter's).
    pub fn apply_to_store(&mut self, store: &mut ParamStore, outputs: &[Value], lr: f64, step: u64) -> Result<()> {
        self.apply(outputs, lr, step, |name, update| {
            let value = store.get(name).ok_or_else(|| Error::MissingParam { name: name.to_string() })?;
            let shape = value.shape().to_vec();
            let mut values = value.to_f32_vec();
            update(&mut values)?;
            store.set(name, Value::f32(shape, values));
            Ok(())
        })
    }

    fn apply(
        &mut self,
        outputs: &[Value],
        lr: f64,
        step: u64,
        mut with_table: impl FnMut(&str, &mut dyn FnMut(&mut [f32]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        if outputs.len() != self.output_count() {
            let detail = format!("{} row-gradient outputs given, {} expected", outputs.len(), self.output_count());
            return Err(Error::Argument { op: "sparse update", detail, location: Location::caller() });
        }
        let mut next = 0;
        for table in &mut self.tables {
            let parts: Vec<(&Value, &Value)> =
                (0..table.parts).map(|k| (&outputs[next + 2 * k], &outputs[next + 2 * k + 1])).collect();
            next += 2 * table.parts;
            let updates = RowUpdates::coalesce(&table.name, &parts, table.rows, table.dim, table.padding)?;
            let Table { name, rule, state, rows, dim, .. } = table;
            with_table(name, &mut |values: &mut [f32]| {
                if values.len() != *rows * *dim {
                    return Err(Error::Bug(format!("sparse param `{name}` has {} values", values.len())));
                }
                rule.apply(values, state, &updates, lr, step);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The optimizer state of every sparse param, by name (`optimizer.sparse_adam.m.emb.weight`).
    pub fn state(&self) -> ParamStore {
        let mut store = ParamStore::new();
        for table in &self.tables {
            for (name, values) in table.state_names.iter().zip(&table.state) {
                store.set(name, Value::f32([table.rows, table.dim], values.clone()));
            }
        }
        store
    }

    /// True if `name` is a state table of these updates.
    pub fn holds(&self, name: &str) -> bool {
        self.tables.iter().any(|table| table.state_names.iter().any(|n| n == name))
    }

    /// Sets the state tables named in `store` (others keep their values); a table of the
    /// wrong size is an error and changes nothing.
    pub fn set_state(&mut self, store: &ParamStore) -> Result<()> {
        self.check_state(store)?;
        for table in &mut self.tables {
            for (name, values) in table.state_names.iter().zip(&mut table.state) {
                if let Some(value) = store.get(name) {
                    *values = value.to_f32_vec();
                }
            }
        }
        Ok(())
    }

    /// Checks that every state table named in `store` has its table's size.
    pub fn check_state(&self, store: &ParamStore) -> Result<()> {
        for table in &self.tables {
            for name in &table.state_names {
                if let Some(value) = store.get(name)
                    && value.numel() != table.rows * table.dim
                {
                    let (expected, got) =
                        (format!("shape [{}, {}]", table.rows, table.dim), format!("{:?}", value.shape()));
                    return Err(Error::BadFeed {
                        what: "optimizer state",
                        name: name.clone(),
                        expected,
                        got,
                        location: None,
                    });
                }
            }
        }
        Ok(())
    }
}
