//! The symbolic graph: what users build and what every later stage consumes.
//!
//! In: calls of the builder API (`Graph::input`, `Tensor::matmul`, `a + b`, ...).
//! Out: an arena of [`Node`]s, each an [`Op`] over earlier nodes, with a [`Shape`] and a
//! [`DType`] checked when the node was built.
//!
//! Invariants: a node's inputs all precede it (the arena is in topological order); leaf names
//! (inputs and params) are unique; every node's shape and dtype are consistent with its op
//! and inputs. Errors found while building are returned as [`Error`]s naming the op, the
//! shapes and the caller's `file:line`. Operators (`a + b`) cannot return a `Result`, so a
//! failing operator records its error in the graph and yields a failed tensor: the next
//! fallible call that touches it, and every `grad` or evaluation of the graph, returns that
//! error.

pub mod build;
mod init;
mod mode;
mod operators;
mod print;
mod shape;
mod sparse;
mod strided;

pub mod op;

use std::cell::{Ref, RefCell};

pub use mode::{MODE_STEP_INPUT, Mode, ModeInputs, SharedMode, TRAINING_INPUT};
pub use op::{Binary, Compare, Distribution, Fan, Init, Op, OpKind, Unary, gain};
pub use shape::{Dim, Shape, broadcast_shapes, broadcasts_to};

pub use crate::dtype::{DType, MAX_ELEMENTS, checked_numel};
pub use sparse::SparseParam;

use crate::error::{Error, Location, Result};
use crate::value::Value;

/// Index of a node in its graph's arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One node of the graph: an op applied to earlier nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Operands, all earlier in the arena.
    pub inputs: Vec<NodeId>,
    /// The result's shape.
    pub shape: Shape,
    /// The result's element type.
    pub dtype: DType,
    /// A name for listings and debugging (leaves always have one: their input or param name).
    pub name: Option<String>,
}

/// A symbolic computation graph, built Theano-style through [`Tensor`] handles.
///
/// ```
/// use kiln_compiler::prelude::*;
///
/// let g = Graph::new();
/// let x = g.input("x", [Dim::sym("B"), 3.into()])?;
/// let w = g.param("w", [3, 2], Init::XavierUniform)?;
/// let y = x.matmul(w)?.tanh()?.sum_all()?;
/// assert_eq!(y.shape(), Shape::scalar());
/// let [dw] = g.grad(y, &[w])?[..] else { unreachable!() };
/// assert_eq!(dw.shape(), w.shape());
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Graph {
    state: RefCell<GraphState>,
    /// Train or eval, shared with the functions compiled from the graph (see `mode`).
    mode: SharedMode,
}

#[derive(Debug, Default)]
struct GraphState {
    nodes: Vec<Node>,
    /// Errors recorded by failing operators, addressed by failed tensors.
    errors: Vec<Error>,
    /// Params whose gradient is kept as row updates, by name (see `sparse`).
    sparse: std::collections::BTreeMap<String, SparseParam>,
}

/// A handle to a node of a [`Graph`]: cheap to copy, and the receiver of every op.
///
/// Handles borrow their graph, so they cannot outlive it, and combining handles of two graphs
/// is an error rather than a silent mix-up.
#[derive(Clone, Copy)]
pub struct Tensor<'g> {
    graph: &'g Graph,
    slot: Slot,
}

/// What a handle points at: a node, or the error that prevented its node from being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Node(NodeId),
    Failed(usize),
}

impl std::fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.slot {
            Slot::Node(id) => write!(f, "Tensor({id}: {} {})", self.shape(), self.dtype()),
            Slot::Failed(i) => write!(f, "Tensor(failed: {})", self.graph.recorded_error(i)),
        }
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.state.borrow().nodes.len()
    }

    /// True if the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All nodes, in topological order. Holding the returned borrow while adding nodes is a
    /// bug in the caller (`RefCell` will say so).
    pub fn nodes(&self) -> Ref<'_, [Node]> {
        Ref::map(self.state.borrow(), |s| s.nodes.as_slice())
    }

    /// A copy of one node.
    pub fn node(&self, id: NodeId) -> Node {
        self.state.borrow().nodes[id.0].clone()
    }

    /// The handle of node `id`, or `None` if the graph has no such node.
    pub fn tensor(&self, id: NodeId) -> Option<Tensor<'_>> {
        (id.0 < self.len()).then_some(Tensor { graph: self, slot: Slot::Node(id) })
    }

    /// The handle of a node known to exist.
    pub(crate) fn handle(&self, id: NodeId) -> Tensor<'_> {
        debug_assert!(id.0 < self.len(), "bug in kiln: node {id} is not in this graph");
        Tensor { graph: self, slot: Slot::Node(id) }
    }

    /// The first error recorded by a failing operator, if any. `grad` and the interpreter
    /// refuse to work on a graph that has one.
    pub fn check(&self) -> Result<()> {
        match self.state.borrow().errors.first() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// A graph input: a value fed by name on every run (`f32`; [`Graph::input_of`] takes a
    /// dtype).
    #[track_caller]
    pub fn input(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor<'_>> {
        self.typed_input(name, shape, DType::F32)
    }

    /// A graph input of a given dtype: `F64` for a double-precision model, `I64` or `I32` for
    /// labels and indices.
    #[track_caller]
    pub fn input_of(&self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor<'_>> {
        self.typed_input(name, shape, dtype)
    }

    /// A graph input of a given dtype (the same as [`Graph::input_of`], under its older name).
    #[track_caller]
    pub fn typed_input(&self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor<'_>> {
        let location = Location::caller();
        self.check_new_leaf_name(name, location)?;
        let shape = build::addressable("input", shape.into(), location)?;
        let op = Op::Input { name: name.to_string() };
        Ok(self.push_named(op, vec![], shape, dtype, name))
    }

    /// A trainable `f32` param with a PyTorch-style dotted name (`layer1.weight`).
    #[track_caller]
    pub fn param(&self, name: &str, shape: impl Into<Shape>, init: Init) -> Result<Tensor<'_>> {
        self.param_with(name, shape, init, true)
    }

    /// A param that is trainable or frozen (frozen params get no gradient, ever).
    #[track_caller]
    pub fn param_with(&self, name: &str, shape: impl Into<Shape>, init: Init, trainable: bool) -> Result<Tensor<'_>> {
        let location = Location::caller();
        let shape = shape.into();
        self.check_new_leaf_name(name, location)?;
        let Some(static_shape) = shape.as_static() else {
            let detail = format!("param `{name}` has shape {shape}; params must be static");
            return Err(Error::Shape { op: "param", detail, location });
        };
        let shape = build::addressable("param", shape, location)?;
        if let Init::Values(value) = &init
            && value.shape() != static_shape
        {
            let detail =
                format!("param `{name}` has shape {shape} but its initial values have shape {:?}", value.shape());
            return Err(Error::Shape { op: "param", detail, location });
        }
        let op = Op::Param { name: name.to_string(), init, trainable };
        Ok(self.push_named(op, vec![], shape, DType::F32, name))
    }

    /// Marks the param `name` trainable or frozen. Gradients built afterwards follow the flag.
    #[track_caller]
    pub fn set_trainable(&self, name: &str, trainable: bool) -> Result<()> {
        let mut state = self.state.borrow_mut();
        for node in &mut state.nodes {
            if let Op::Param { name: n, trainable: t, .. } = &mut node.op
                && n == name
            {
                *t = trainable;
                return Ok(());
            }
        }
        let detail = format!("the graph has no param named `{name}`");
        Err(Error::Name { detail, location: Location::caller() })
    }

    /// Freezes (or, with `trainable`, unfreezes) every param named `prefix` or `prefix.…`
    /// (PyTorch's module paths: `layer1` covers `layer1.weight` and `layer1.bias`, not
    /// `layer10.weight`); returns how many. Gradients built afterwards follow the flags, so a
    /// step compiled afterwards holds no backward computation for frozen params.
    #[track_caller]
    pub fn set_trainable_prefix(&self, prefix: &str, trainable: bool) -> Result<usize> {
        let mut state = self.state.borrow_mut();
        let mut count = 0;
        for node in &mut state.nodes {
            if let Op::Param { name, trainable: t, .. } = &mut node.op
                && (name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')))
            {
                *t = trainable;
                count += 1;
            }
        }
        if count == 0 {
            let detail = format!("the graph has no param named `{prefix}` or `{prefix}.…`");
            return Err(Error::Name { detail, location: Location::caller() });
        }
        Ok(count)
    }

    /// Every param as `(handle, name, trainable)`, in the order they were declared.
    pub fn params(&self) -> Vec<(Tensor<'_>, String, bool)> {
        self.leaves(|op| match op {
            Op::Param { name, trainable, .. } => Some((name.clone(), *trainable)),
            _ => None,
        })
        .into_iter()
        .map(|(t, (name, trainable))| (t, name, trainable))
        .collect()
    }

    /// Every input as `(handle, name)`, in the order they were declared.
    pub fn inputs(&self) -> Vec<(Tensor<'_>, String)> {
        self.leaves(|op| match op {
            Op::Input { name } => Some(name.clone()),
            _ => None,
        })
    }

    /// The leaf (input or param) called `name`.
    #[track_caller]
    pub fn leaf(&self, name: &str) -> Result<Tensor<'_>> {
        let found = self.leaves(|op| match op {
            Op::Input { name: n } | Op::Param { name: n, .. } if n == name => Some(()),
            _ => None,
        });
        match found.first() {
            Some((t, ())) => Ok(*t),
            None => {
                let detail = format!("the graph has no input or param named `{name}`");
                Err(Error::Name { detail, location: Location::caller() })
            }
        }
    }

    fn leaves<T>(&self, mut pick: impl FnMut(&Op) -> Option<T>) -> Vec<(Tensor<'_>, T)> {
        let state = self.state.borrow();
        let picked = state.nodes.iter().enumerate().filter_map(|(i, node)| {
            pick(&node.op).map(|item| (Tensor { graph: self, slot: Slot::Node(NodeId(i)) }, item))
        });
        picked.collect()
    }

    /// A constant tensor.
    pub fn constant(&self, value: Value) -> Tensor<'_> {
        let shape = Shape::of(value.shape().iter().copied());
        let dtype = value.dtype();
        self.push(Op::Constant(value), vec![], shape, dtype)
    }

    /// An `f32` scalar constant ([`Graph::scalar_of`] takes a dtype; a number combined with a
    /// tensor, as in `x * 0.5`, takes the tensor's dtype by itself).
    pub fn scalar(&self, value: f64) -> Tensor<'_> {
        self.typed_scalar(value, DType::F32)
    }

    /// A scalar constant of the given dtype holding `value` converted to it: exactly `value`
    /// for `F64` (`g.scalar_of(1e-5, DType::F64)` is the double nearest 1e-5, not an `f32`
    /// rounding of it), the nearest `f32` for `F32`, truncated for integers, `value != 0` for
    /// `Bool`.
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// let g = Graph::new();
    /// let eps = g.scalar_of(1e-5, DType::F64);
    /// let out = Interpreter::new(&g).run(&Feeds::new(), &ParamStore::new(), &[eps])?;
    /// assert_eq!(out[0].item(), Some(1e-5));
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    pub fn scalar_of(&self, value: f64, dtype: DType) -> Tensor<'_> {
        self.typed_scalar(value, dtype)
    }

    /// A scalar constant of the given dtype (the same as [`Graph::scalar_of`], under its older
    /// name).
    pub fn typed_scalar(&self, value: f64, dtype: DType) -> Tensor<'_> {
        // A float scalar keeps its `f64` value (a fill of no dims) until the node is computed:
        // an `f32` graph rounds it there, exactly as before, while the interpreter's
        // `Precision::F64` and an `f64` graph see the number as written, not an `f32` rounding.
        if dtype.is_float() {
            return self.push(Op::Fill(value), vec![], Shape::scalar(), dtype);
        }
        self.constant(Value::scalar(dtype, value))
    }

    /// A tensor of the given (possibly symbolic) shape with every element equal to `value`
    /// (a failed tensor if the shape's element count overflows).
    #[track_caller]
    pub fn fill(&self, shape: impl Into<Shape>, dtype: DType, value: f64) -> Tensor<'_> {
        match build::addressable("fill", shape.into(), Location::caller()) {
            Ok(shape) => self.push(Op::Fill(value), vec![], shape, dtype),
            Err(error) => self.fail(error),
        }
    }

    /// `f32` zeros of the given shape ([`Graph::zeros_of`] takes a dtype).
    #[track_caller]
    pub fn zeros(&self, shape: impl Into<Shape>) -> Tensor<'_> {
        self.fill(shape, DType::F32, 0.0)
    }

    /// Zeros of the given shape and dtype.
    #[track_caller]
    pub fn zeros_of(&self, shape: impl Into<Shape>, dtype: DType) -> Tensor<'_> {
        self.fill(shape, dtype, 0.0)
    }

    /// `f32` ones of the given shape ([`Graph::ones_of`] takes a dtype).
    #[track_caller]
    pub fn ones(&self, shape: impl Into<Shape>) -> Tensor<'_> {
        self.fill(shape, DType::F32, 1.0)
    }

    /// Ones of the given shape and dtype.
    #[track_caller]
    pub fn ones_of(&self, shape: impl Into<Shape>, dtype: DType) -> Tensor<'_> {
        self.fill(shape, dtype, 1.0)
    }

    /// A scalar of the given float dtype holding the product of the runtime sizes of `dims`
    /// (for example the batch size `B`, to take a mean over a symbolic batch).
    #[track_caller]
    pub fn dim_size(&self, dims: &[Dim], dtype: DType) -> Result<Tensor<'_>> {
        if !dtype.is_float() && !dtype.is_int() {
            let detail = format!("dim_size produces a number, not {dtype}");
            return Err(Error::DType { op: "dim_size", detail, location: Location::caller() });
        }
        Ok(self.push(Op::DimSize(dims.to_vec()), vec![], Shape::scalar(), dtype))
    }

    fn check_new_leaf_name(&self, name: &str, location: Location) -> Result<()> {
        let state = self.state.borrow();
        let taken = state
            .nodes
            .iter()
            .any(|node| matches!(&node.op, Op::Input { name: n } | Op::Param { name: n, .. } if n == name));
        if name.is_empty() {
            let detail = "inputs and params need a non-empty name".to_string();
            return Err(Error::Name { detail, location });
        }
        if taken {
            let detail = format!("the name `{name}` is already used by another input or param");
            return Err(Error::Name { detail, location });
        }
        Ok(())
    }

    /// Appends a node. Callers have checked shapes and dtypes.
    pub(crate) fn push(&self, op: Op, inputs: Vec<NodeId>, shape: Shape, dtype: DType) -> Tensor<'_> {
        let node = Node { op, inputs, shape, dtype, name: None };
        let mut state = self.state.borrow_mut();
        state.nodes.push(node);
        Tensor { graph: self, slot: Slot::Node(NodeId(state.nodes.len() - 1)) }
    }

    fn push_named(&self, op: Op, inputs: Vec<NodeId>, shape: Shape, dtype: DType, name: &str) -> Tensor<'_> {
        let tensor = self.push(op, inputs, shape, dtype);
        self.set_name(tensor.id_unchecked(), name);
        tensor
    }

    pub(crate) fn set_name(&self, id: NodeId, name: &str) {
        self.state.borrow_mut().nodes[id.0].name = Some(name.to_string());
    }

    /// Records an operator's error and returns the failed handle that stands for it.
    pub(crate) fn fail(&self, error: Error) -> Tensor<'_> {
        let mut state = self.state.borrow_mut();
        state.errors.push(error);
        Tensor { graph: self, slot: Slot::Failed(state.errors.len() - 1) }
    }

    fn recorded_error(&self, index: usize) -> Error {
        self.state.borrow().errors[index].clone()
    }
}

impl<'g> Tensor<'g> {
    /// The graph this handle belongs to.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// The node id, or the error recorded when building this tensor failed.
    pub fn id(&self) -> Result<NodeId> {
        match self.slot {
            Slot::Node(id) => Ok(id),
            Slot::Failed(i) => Err(self.graph.recorded_error(i)),
        }
    }

    fn id_unchecked(&self) -> NodeId {
        match self.slot {
            Slot::Node(id) => id,
            Slot::Failed(_) => panic!("bug in kiln: a failed tensor was used as a node"),
        }
    }

    /// The shape (a scalar's empty shape for a failed tensor).
    pub fn shape(&self) -> Shape {
        match self.slot {
            Slot::Node(id) => self.graph.state.borrow().nodes[id.0].shape.clone(),
            Slot::Failed(_) => Shape::scalar(),
        }
    }

    /// The dtype (`F32` for a failed tensor).
    pub fn dtype(&self) -> DType {
        match self.slot {
            Slot::Node(id) => self.graph.state.borrow().nodes[id.0].dtype,
            Slot::Failed(_) => DType::F32,
        }
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape().rank()
    }

    /// Gives the node a name for listings (`h1`, `logits`, ...). Leaves keep their own names.
    pub fn named(self, name: &str) -> Tensor<'g> {
        if let Slot::Node(id) = self.slot {
            let is_leaf = matches!(self.graph.node(id).op, Op::Input { .. } | Op::Param { .. });
            if !is_leaf {
                self.graph.set_name(id, name);
            }
        }
        self
    }

    /// The node's name, if it has one.
    pub fn name(&self) -> Option<String> {
        match self.slot {
            Slot::Node(id) => self.graph.state.borrow().nodes[id.0].name.clone(),
            Slot::Failed(_) => None,
        }
    }
}
