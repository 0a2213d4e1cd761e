//! The reference interpreter: evaluates any graph directly, op by op.
//!
//! In: a graph, values for its inputs ([`Feeds`]) and params ([`ParamStore`]), and the nodes
//! wanted. Out: their [`Value`]s.
//!
//! It is the oracle every compiled kernel is checked against, so it favours plain, obviously
//! right code over speed. Its meaning of every op: compute the exact result (floats in `f64`,
//! integers in `i64` with wrapping), then round or wrap it to the node's dtype. Reductions and
//! matmuls accumulate in `f64` in row-major order. With [`Precision::F64`] every `f32` node is
//! computed and kept in `f64` instead, which is what gradient checks use.

pub(crate) mod eval;

use std::collections::HashMap;

use crate::error::{Error, Location, Result};
use crate::graph::{
    DType, Dim, Graph, MAX_ELEMENTS, MODE_STEP_INPUT, Mode, NodeId, Op, Shape, TRAINING_INPUT, Tensor, checked_numel,
};
use crate::value::Value;
pub use crate::value::{Feeds, ParamStore};

/// The float precision the interpreter computes `f32` nodes in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Every node in its declared dtype.
    #[default]
    Declared,
    /// `f32` nodes computed and returned in `f64` (for gradient checks).
    F64,
}

/// Evaluates nodes of a graph. Cheap to create; holds no values between runs.
///
/// ```
/// use kiln_compiler::prelude::*;
/// let g = Graph::new();
/// let x = g.input("x", [Dim::sym("B")])?;
/// let y = (x * 2.0 + 1.0).sum_all()?;
/// let feeds = Feeds::from([("x", Value::f32([3], vec![1.0, 2.0, 3.0]))]);
/// let out = Interpreter::new(&g).run_without_params(&feeds, &[y])?;
/// assert_eq!(out[0].item(), Some(15.0));
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Interpreter<'g> {
    graph: &'g Graph,
    precision: Precision,
}

impl<'g> Interpreter<'g> {
    /// An interpreter of `graph` computing in the declared dtypes.
    pub fn new(graph: &'g Graph) -> Interpreter<'g> {
        Interpreter { graph, precision: Precision::Declared }
    }

    /// The same interpreter computing in `precision`.
    pub fn precision(self, precision: Precision) -> Interpreter<'g> {
        Interpreter { precision, ..self }
    }

    /// Evaluates `outputs`, computing only the nodes they need, with the inputs in `feeds` and
    /// the params in `params`. The mode inputs ([`TRAINING_INPUT`], [`MODE_STEP_INPUT`]) that
    /// `feeds` leaves out are fed from the graph's mode ([`Graph::set_mode`]) and step 0.
    #[track_caller]
    pub fn run(&self, feeds: &Feeds, params: &ParamStore, outputs: &[Tensor<'g>]) -> Result<Vec<Value>> {
        let location = Location::caller();
        self.graph.check()?;
        let ids = outputs.iter().map(|t| self.output_id(t, location)).collect::<Result<Vec<_>>>()?;
        let nodes = self.graph.nodes();
        let needed = needed_nodes(&nodes, &ids);
        let last_use = last_uses(&nodes, &needed, &ids);
        let mut symbols = HashMap::new();
        let mut values: Vec<Option<Value>> = vec![None; nodes.len()];
        // Leaves first, so every symbol is bound before any op needs it. Inputs that are fed
        // but not needed are still checked: they may bind a symbol, and a bad feed is an error.
        for (index, node) in nodes.iter().enumerate() {
            let fed = match &node.op {
                Op::Input { name } if needed[index] || feeds.get(name).is_some() => {
                    let mode_value = feeds.get(name).is_none().then(|| mode_value(self.graph, name)).flatten();
                    self.fed_value(name, feeds.get(name).or(mode_value.as_ref()), node, &mut symbols, "input")?
                }
                Op::Param { name, .. } if needed[index] => {
                    self.fed_value(name, params.get(name), node, &mut symbols, "param")?
                }
                _ => continue,
            };
            values[index] = needed[index].then_some(fed);
        }
        for (index, node) in nodes.iter().enumerate() {
            if !needed[index] || values[index].is_some() {
                continue;
            }
            let op = &node.op;
            let inputs: Vec<&Value> = node
                .inputs
                .iter()
                .map(|id| values[id.0].as_ref().expect("bug in kiln: operand not evaluated"))
                .collect();
            let shape = resolve_shape(&node.shape, &symbols).map_err(|detail| eval_error(index, op, detail))?;
            reserve_working_memory(index, op, &shape, &inputs)?;
            let names = node.inputs.iter().map(|id| nodes[id.0].name.clone()).collect();
            let context = eval::Context { symbols: &symbols, dtype: self.effective(node.dtype), shape, names };
            let value = eval::evaluate(op, &inputs, &context).map_err(|detail| eval_error(index, op, detail))?;
            values[index] = Some(value);
            for input in &node.inputs {
                if last_use[input.0] == index {
                    values[input.0] = None;
                }
            }
        }
        Ok(ids.iter().map(|id| values[id.0].clone().expect("bug in kiln: output not evaluated")).collect())
    }

    /// Evaluates `outputs` of a graph without params (numpy-style code: inputs in, values out),
    /// as [`Interpreter::run`] with no params. A graph with params needs their values: this
    /// returns [`Error::MissingParam`] naming the first one needed (use [`Interpreter::run`]
    /// with a [`ParamStore`], e.g. [`ParamStore::init`]).
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let x = g.input("x", [Dim::sym("N")])?;
    /// let y = (x * x).sum_all()?;
    /// let out = Interpreter::new(&g).run_without_params(&Feeds::from([("x", Value::f32([2], vec![3.0, 4.0]))]), &[y])?;
    /// assert_eq!(out[0].item(), Some(25.0));
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    #[track_caller]
    pub fn run_without_params(&self, feeds: &Feeds, outputs: &[Tensor<'g>]) -> Result<Vec<Value>> {
        self.run(feeds, &ParamStore::new(), outputs)
    }

    fn output_id(&self, tensor: &Tensor<'g>, location: Location) -> Result<NodeId> {
        if !std::ptr::eq(self.graph, tensor.graph()) {
            return Err(Error::ForeignTensor { op: "run", location });
        }
        tensor.id()
    }

    fn effective(&self, dtype: DType) -> DType {
        match (self.precision, dtype) {
            (Precision::F64, DType::F32) => DType::F64,
            _ => dtype,
        }
    }

    /// Checks a fed input or param value against its node, binding the symbols of its shape.
    fn fed_value(
        &self,
        name: &str,
        value: Option<&Value>,
        node: &crate::graph::Node,
        symbols: &mut HashMap<String, usize>,
        what: &'static str,
    ) -> Result<Value> {
        let Some(value) = value else {
            return Err(match what {
                "input" => Error::MissingInput { name: name.to_string() },
                _ => Error::MissingParam { name: name.to_string() },
            });
        };
        let bad = |expected: String, got: String| Error::BadFeed {
            what,
            name: name.to_string(),
            expected,
            got,
            location: None,
        };
        let dtype_ok = value.dtype() == node.dtype
            || (self.precision == Precision::F64 && node.dtype == DType::F32 && value.dtype() == DType::F64);
        if !dtype_ok {
            return Err(bad(format!("dtype {}", node.dtype), format!("dtype {}", value.dtype())));
        }
        let expected_shape = || format!("shape {}", node.shape);
        if value.shape().len() != node.shape.rank() {
            return Err(bad(expected_shape(), format!("shape {:?}", value.shape())));
        }
        for (dim, &size) in node.shape.dims().iter().zip(value.shape()) {
            match dim {
                Dim::Static(n) if *n != size => {
                    return Err(bad(expected_shape(), format!("shape {:?}", value.shape())));
                }
                Dim::Static(_) => {}
                Dim::Sym(symbol) => match symbols.get(symbol) {
                    Some(&bound) if bound != size => {
                        let expected = format!("{symbol} = {bound} (bound by an earlier input)");
                        return Err(bad(expected, format!("{symbol} = {size} in shape {:?}", value.shape())));
                    }
                    Some(_) => {}
                    None => {
                        symbols.insert(symbol.clone(), size);
                    }
                },
            }
        }
        Ok(value.cast(self.effective(node.dtype)))
    }
}

/// The value a run feeds to the mode input `name` that the caller did not feed: the graph's mode
/// for [`TRAINING_INPUT`], 0 for [`MODE_STEP_INPUT`]; `None` for any other input.
fn mode_value(graph: &Graph, name: &str) -> Option<Value> {
    match name {
        TRAINING_INPUT => Some(Value::scalar(DType::Bool, f64::from(u8::from(graph.mode() == Mode::Train)))),
        MODE_STEP_INPUT => Some(Value::scalar(DType::I64, 0.0)),
        _ => None,
    }
}

/// Marks the nodes the outputs depend on.
fn needed_nodes(nodes: &[crate::graph::Node], outputs: &[NodeId]) -> Vec<bool> {
    let mut needed = vec![false; nodes.len()];
    for id in outputs {
        needed[id.0] = true;
    }
    for index in (0..nodes.len()).rev() {
        if needed[index] {
            for input in &nodes[index].inputs {
                needed[input.0] = true;
            }
        }
    }
    needed
}

/// For each node, the index of the last needed node that reads it (outputs are never freed).
fn last_uses(nodes: &[crate::graph::Node], needed: &[bool], outputs: &[NodeId]) -> Vec<usize> {
    let mut last = vec![0; nodes.len()];
    for (index, node) in nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
        for input in &node.inputs {
            last[input.0] = index;
        }
    }
    for id in outputs {
        last[id.0] = usize::MAX;
    }
    last
}

/// The concrete sizes of a shape under the bound symbols; an error if they would hold more
/// than [`MAX_ELEMENTS`] elements (the count would wrap around).
pub(crate) fn resolve_shape(shape: &Shape, symbols: &HashMap<String, usize>) -> Result<Vec<usize>, String> {
    let sizes = shape
        .dims()
        .iter()
        .map(|dim| match dim {
            Dim::Static(n) => Ok(*n),
            Dim::Sym(symbol) => {
                symbols.get(symbol).copied().ok_or_else(|| format!("symbol `{symbol}` is not bound by any fed input"))
            }
        })
        .collect::<Result<Vec<usize>, String>>()?;
    match checked_numel(&sizes) {
        Some(_) => Ok(sizes),
        None => Err(format!("its result {shape} would be {sizes:?}: more than {MAX_ELEMENTS} elements")),
    }
}

fn eval_error(node: usize, op: &Op, detail: String) -> Error {
    Error::Eval { node, op: op.name(), detail }
}

/// Bytes per element the interpreter may hold at once while evaluating a node: the result, an
/// `f64` copy of it, and a `usize` offset per element (broadcasting and gathers index through
/// offset tables).
const WORKING_BYTES_PER_ELEMENT: usize = 8 + 8 + 8;

/// Checks that the memory node `index` is about to need can be allocated, so that a graph too big
/// for the machine (a batch of 10^8 rows) is an [`Error::OutOfMemory`] instead of an abort. The
/// whole working set is reserved once and released: the allocations that follow are no larger.
fn reserve_working_memory(index: usize, op: &Op, shape: &[usize], inputs: &[&Value]) -> Result<()> {
    let largest = inputs
        .iter()
        .map(|v| v.numel())
        .fold(shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)), |n, m| n.map(|n| n.max(m)));
    let bytes = largest.and_then(|n| n.checked_mul(WORKING_BYTES_PER_ELEMENT)).unwrap_or(usize::MAX);
    let mut probe: Vec<u8> = Vec::new();
    probe
        .try_reserve_exact(bytes)
        .map_err(|_| Error::OutOfMemory { bytes, what: format!("node %{index} (`{}`)", op.name()) })
}
