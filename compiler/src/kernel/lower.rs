//! Lowering an optimised graph to a [`Program`]: fusion decisions, buffers and kernels.
//!
//! In: an optimised graph, its outputs and updates. Out: a [`Program`] and the fusion notes.
//!
//! Each node either gets a buffer (it is *materialised*, computed by a kernel of its own) or is
//! *fused*: recomputed inside every kernel that reads it, at the index that kernel needs.
//! Elementwise ops, broadcasts, permutes, slices, one-hot, gathers and random draws fuse;
//! reductions fuse their producer into their own loop; matmuls, reductions, scatter-adds,
//! concats and reshapes always get a buffer. A fusible node is materialised when several
//! kernels would recompute it (unless it is cheap), when it is an output, or when its consumer
//! needs memory (a reshape, a gather table, a scatter operand). Every decision is recorded as a
//! [`FusionNote`] with its reason (`KILN_DUMP=fusion` prints them).

use std::collections::HashMap;

use super::{
    Buffer, Expr, ExprId, Index, IndexCheck, Kernel, LoopKernel, MatMulKernel, Program, Reduce, Role, ScatterKernel,
    Size,
};
use crate::error::{Error, Result};
use crate::graph::{Binary, Compare, DType, Dim, Graph, Node, NodeId, Op, Shape, Unary};
use crate::value::Value;

/// Why a node was fused or given a buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct FusionNote {
    /// The node.
    pub node: NodeId,
    /// The op's name.
    pub op: &'static str,
    /// The decision and its reason, e.g. `fused: used by 1 kernel`.
    pub decision: String,
}

/// Reductions over at most this many elements fuse into their readers, unrolled.
const SMALL_REDUCTION: usize = 8;

/// For each dim of a tensor: the loop that drives its index (if any) and a constant offset.
type DimMap = Vec<(Option<usize>, i64)>;

/// Lowers `graph` to a program computing `outputs` and, for each `(param, value)` in
/// `updates`, the new value of the param. The outputs listed in `reduced` also go to
/// [`Program::reduced`]: the runtime sums them across processes between kernels.
pub fn lower(
    graph: &Graph,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    reduced: &[NodeId],
) -> Result<(Program, Vec<FusionNote>)> {
    let nodes = graph.nodes();
    check_supported(&nodes)?;
    let mut lowering = Lowering::new(&nodes);
    let roots: Vec<NodeId> = outputs.iter().chain(updates.iter().map(|(_, value)| value)).copied().collect();
    lowering.decide(&roots);
    for index in 0..nodes.len() {
        lowering.emit_node(NodeId(index));
    }
    let Lowering { buffer_of, mut program, notes, .. } = lowering;
    let buffer = |id: NodeId| buffer_of[id.0].expect("bug in kiln: a root has no buffer");
    program.outputs = outputs.iter().map(|&id| buffer(id)).collect();
    program.updates = updates.iter().map(|&(param, value)| (buffer(param), buffer(value))).collect();
    program.shapes = call_shapes(&nodes, &program.buffers);
    program.maximum_axes = maximum_axes(&nodes, &program.symbols);
    program.reduced = reduced.iter().map(|&id| buffer(id)).collect();
    if let Some(id) = reduced.iter().find(|id| !outputs.contains(id)) {
        return Err(Error::Bug(format!("reduced node {id} is not among the outputs")));
    }
    super::merge_neighbours(&mut program);
    super::fuse_epilogues(&mut program);
    super::collapse_loops(&mut program);
    super::split_contractions(&mut program);
    super::group_rows(&mut program);
    super::plan_memory(&mut program);
    Ok((program, notes))
}

/// The compiler handles `f32`, the integer dtypes and masks in full. In `f64` it computes
/// arithmetic, comparisons, selects, casts, sums, maxima, data movement, gathers and one-hots
/// (in scalar loops); the `f64` transcendentals, powers and matmuls, which have no code
/// generator yet, run in the interpreter.
/// The scatter kernel adds `f32` rows only (an embedding's gradient); integer scatter-adds run
/// in the interpreter.
fn check_supported(nodes: &[Node]) -> Result<()> {
    let f64_without_code = |node: &&Node| {
        let transcendental = matches!(node.op, Op::Unary(unary) if !matches!(unary, Unary::Neg | Unary::Abs | Unary::Sqrt | Unary::Recip));
        node.dtype == DType::F64 && (transcendental || matches!(node.op, Op::PowScalar(_) | Op::MatMul))
    };
    if let Some((index, node)) = nodes.iter().enumerate().find(|(_, node)| f64_without_code(node)) {
        return Err(Error::Eval {
            node: index,
            op: node.op.name(),
            detail: format!(
                "compiled functions compute `{}` in f32 only; run this f64 graph in the interpreter, or cast to f32",
                node.op.name()
            ),
        });
    }
    let integer_scatter = |node: &&Node| matches!(node.op, Op::ScatterAdd) && node.dtype != DType::F32;
    if let Some((index, node)) = nodes.iter().enumerate().find(|(_, node)| integer_scatter(node)) {
        return Err(Error::Eval {
            node: index,
            op: node.op.name(),
            detail: format!(
                "compiled functions scatter-add f32 rows only, not {}; run it in the interpreter",
                node.dtype
            ),
        });
    }
    Ok(())
}

struct Lowering<'a> {
    nodes: &'a [Node],
    symbols: HashMap<String, usize>,
    buffer_of: Vec<Option<usize>>,
    needs_buffer: Vec<bool>,
    program: Program,
    notes: Vec<FusionNote>,
    /// A one-element constant 1.0, the stride-0 operand of column sums.
    ones: Option<usize>,
}

impl<'a> Lowering<'a> {
    fn new(nodes: &'a [Node]) -> Lowering<'a> {
        let mut symbols = HashMap::new();
        let mut names = Vec::new();
        for node in nodes {
            let dims = node.shape.dims().iter();
            let dim_size_dims = match &node.op {
                Op::DimSize(dims) => dims.as_slice(),
                _ => &[],
            };
            for dim in dims.chain(dim_size_dims) {
                if let Dim::Sym(name) = dim
                    && !symbols.contains_key(name)
                {
                    symbols.insert(name.clone(), names.len());
                    names.push(name.clone());
                }
            }
        }
        let program = Program {
            symbols: names,
            buffers: vec![],
            kernels: vec![],
            outputs: vec![],
            updates: vec![],
            slots: vec![],
            checks: vec![],
            shapes: vec![],
            maximum_axes: vec![],
            reduced: vec![],
        };
        let n = nodes.len();
        let buffer_of = vec![None; n];
        Lowering { nodes, symbols, buffer_of, needs_buffer: vec![false; n], program, notes: vec![], ones: None }
    }

    fn size(&self, dim: &Dim) -> Size {
        match dim {
            Dim::Static(n) => Size::fixed(*n as i64),
            Dim::Sym(name) => Size { factor: 1, symbols: vec![self.symbols[name]] },
        }
    }

    fn sizes(&self, shape: &Shape) -> Vec<Size> {
        shape.dims().iter().map(|d| self.size(d)).collect()
    }

    /// Row-major strides of a shape, in elements.
    fn contiguous_strides(&self, shape: &Shape) -> Vec<Size> {
        let sizes = self.sizes(shape);
        let mut strides = vec![Size::fixed(1); sizes.len()];
        for d in (0..sizes.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1].times(&sizes[d + 1]);
        }
        strides
    }

    /// Decides which nodes get buffers, walking from the last node to the first so every
    /// node's users are decided before it.
    fn decide(&mut self, roots: &[NodeId]) {
        let nodes = self.nodes;
        let mut users: Vec<Vec<usize>> = vec![vec![]; nodes.len()];
        for (index, node) in nodes.iter().enumerate() {
            for input in &node.inputs {
                users[input.0].push(index);
            }
        }
        for root in roots {
            self.needs_buffer[root.0] = true;
        }
        for node in nodes {
            match node.op {
                Op::Reshape => node.inputs.iter().for_each(|input| self.needs_buffer[input.0] = true),
                Op::ScatterAdd => {
                    // The indices are read as memory; the updates too unless the scatter can
                    // compute them (see `computable_updates`).
                    self.needs_buffer[node.inputs[0].0] = true;
                    if !self.computable_updates(node) {
                        self.needs_buffer[node.inputs[1].0] = true;
                    }
                }
                Op::Gather => self.needs_buffer[node.inputs[0].0] = true,
                _ => {}
            }
        }
        // How many kernels would recompute each node if it were fused.
        let mut kernel_uses = vec![0usize; nodes.len()];
        let mut materialised = vec![false; nodes.len()];
        for index in (0..nodes.len()).rev() {
            let node = &nodes[index];
            kernel_uses[index] = users[index]
                .iter()
                .map(|&u| if materialised[u] || !self.fusible_node(u) { 1 } else { kernel_uses[u] })
                .sum();
            let (materialise, reason) = self.decision(index, kernel_uses[index], &users[index]);
            materialised[index] = materialise;
            if materialise {
                self.buffer_of[index] = Some(self.new_buffer(node));
            }
            self.notes.push(FusionNote { node: NodeId(index), op: node.op.name(), decision: reason });
        }
        self.notes.reverse();
    }

    fn decision(&self, index: usize, kernel_uses: usize, users: &[usize]) -> (bool, String) {
        let node = &self.nodes[index];
        let expensive_broadcast_user = users.iter().any(|&u| {
            let user = &self.nodes[u];
            user.op == Op::BroadcastTo && !cheap(node)
        });
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => (true, "leaf".into()),
            Op::Constant(value) if value.numel() > 1 => (true, "constant tensor".into()),
            _ if self.needs_buffer[index] => (true, "materialised: an output, or read as memory".into()),
            _ if !self.fusible_node(index) => (true, self.own_kernel_reason(index)),
            _ if expensive_broadcast_user => (true, "materialised: broadcast would recompute it for every copy".into()),
            _ if kernel_uses >= 2 && !cheap(node) => {
                (true, format!("materialised: {kernel_uses} kernels read it and it is not cheap to recompute"))
            }
            _ => (false, format!("fused into the {kernel_uses} kernel(s) that read it")),
        }
    }

    /// True if a scatter-add can compute its updates itself instead of reading them: rows of
    /// one dim, `f32`, and nothing in their fused expression that can fail (a gather, an
    /// integer division), whose status the scatter would have to report.
    fn computable_updates(&self, scatter: &Node) -> bool {
        let (indices, updates) = (&self.nodes[scatter.inputs[0].0], &self.nodes[scatter.inputs[1].0]);
        if updates.shape.rank() != indices.shape.rank() + 1 || updates.dtype != DType::F32 {
            return false;
        }
        // Walk the fusible ancestry (conservatively: whatever may end up fused).
        let mut stack = vec![scatter.inputs[1]];
        let mut seen = vec![false; self.nodes.len()];
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut seen[id.0], true) {
                continue;
            }
            let node = &self.nodes[id.0];
            if node.op.can_fail(node.dtype) {
                return false;
            }
            if self.fusible_node(id.0) {
                stack.extend(&node.inputs);
            }
        }
        true
    }

    /// True if node `index` can be recomputed inside the kernels that read it.
    fn fusible_node(&self, index: usize) -> bool {
        fusible(&self.nodes[index].op) || self.small_reduction(index)
    }

    /// A sum or max over static axes of at most [`SMALL_REDUCTION`] elements: unrolled into
    /// the expression of each reader (`x[.., 0] + x[.., 1]`), it fuses like an elementwise op,
    /// so a softmax over a few classes and its gradient become elementwise chains.
    fn small_reduction(&self, index: usize) -> bool {
        let node = &self.nodes[index];
        let (Op::Sum { axes, .. } | Op::ReduceMax { axes, .. }) = &node.op else { return false };
        let input = &self.nodes[node.inputs[0].0].shape;
        let sizes: Option<Vec<usize>> = axes.iter().map(|&a| input.dims()[a].as_static()).collect();
        sizes.is_some_and(|sizes| sizes.iter().product::<usize>() <= SMALL_REDUCTION)
    }

    /// Why a node that cannot fuse gets a kernel of its own.
    fn own_kernel_reason(&self, index: usize) -> String {
        match &self.nodes[index].op {
            Op::Sum { .. } | Op::ReduceMax { .. } => {
                format!(
                    "computed by its own kernel: a reduction over more than {SMALL_REDUCTION} elements or a symbolic dim"
                )
            }
            Op::MatMul => "computed by its own kernel: matmuls always are".into(),
            op => format!("computed by its own kernel: `{}` is never recomputed in its readers", op.name()),
        }
    }

    fn new_buffer(&mut self, node: &Node) -> usize {
        let role = match &node.op {
            Op::Input { name } => Role::Input(name.clone()),
            Op::Param { name, .. } => Role::Param(name.clone()),
            Op::Constant(value) if value.numel() > 1 => Role::Constant(value.clone()),
            _ => Role::Temporary,
        };
        self.push_buffer(node.shape.clone(), node.dtype, role)
    }

    fn push_buffer(&mut self, shape: Shape, dtype: DType, role: Role) -> usize {
        self.program.buffers.push(Buffer { shape, dtype, role });
        self.program.buffers.len() - 1
    }

    /// Emits the kernels computing a materialised node.
    fn emit_node(&mut self, id: NodeId) {
        let node = &self.nodes[id.0];
        let Some(out) = self.buffer_of[id.0] else { return };
        match &node.op {
            Op::Input { .. } | Op::Param { .. } => {}
            Op::Constant(value) if value.numel() > 1 => {}
            Op::Reshape => {
                let source = self.buffer_of[node.inputs[0].0].expect("bug in kiln: reshape input has no buffer");
                self.program.buffers[out].role = Role::Alias(source);
            }
            Op::Sum { axes, .. } if !self.small_reduction(id.0) => self.emit_reduction(id, out, axes, Reduce::Sum),
            Op::ReduceMax { axes, .. } if !self.small_reduction(id.0) => {
                self.emit_reduction(id, out, axes, Reduce::Max)
            }
            Op::MatMul => self.emit_matmul(id, out),
            Op::ScatterAdd => self.emit_scatter(id, out),
            Op::Concat { axis } => self.emit_concat(id, out, *axis),
            _ => {
                let shape = node.shape.clone();
                let strides = self.contiguous_strides(&shape);
                self.emit_map(&format!("{}{}", node.op.name(), id), id, &shape, out, &strides, vec![], true);
            }
        }
    }

    /// A kernel computing node `id` (by its op, not from its own buffer) over `shape`, storing
    /// it into `out` at `strides` plus `base`.
    #[allow(clippy::too_many_arguments)]
    fn emit_map(
        &mut self,
        name: &str,
        id: NodeId,
        shape: &Shape,
        out: usize,
        strides: &[Size],
        base: Vec<Size>,
        by_op: bool,
    ) {
        let mut loops = self.sizes(shape);
        let map: DimMap = (0..shape.rank()).map(|d| (Some(d), 0)).collect();
        let mut store_strides = strides.to_vec();
        if loops.is_empty() {
            loops.push(Size::fixed(1));
            store_strides.push(Size::fixed(0));
        }
        let mut body = Body::default();
        let value = if by_op { self.op_expr(&mut body, id, &map) } else { self.expr(&mut body, id, &map) };
        let value = body.convert(value, self.nodes[id.0].dtype);
        let index = Index { base, strides: store_strides };
        let kernel = LoopKernel {
            name: name.to_string(),
            loops,
            reduce: None,
            kept_inside: 0,
            body: body.exprs,
            stores: vec![(value, out, index)],
        };
        self.program.kernels.push(Kernel::Loop(kernel));
    }

    fn emit_reduction(&mut self, id: NodeId, out: usize, axes: &[usize], reduce: Reduce) {
        if reduce == Reduce::Sum && self.emit_column_sum(id, out, axes) {
            return;
        }
        let node = &self.nodes[id.0];
        let input = node.inputs[0];
        let input_shape = &self.nodes[input.0].shape;
        let kept: Vec<usize> = (0..input_shape.rank()).filter(|d| !axes.contains(d)).collect();
        // Kept dims after the last reduced one stay innermost (see `LoopKernel::kept_inside`).
        let last_reduced = axes.iter().copied().max().unwrap_or(0);
        let (outer, inside): (Vec<usize>, Vec<usize>) = kept.iter().partition(|&&d| d < last_reduced);
        let order: Vec<usize> = outer.iter().chain(axes).chain(&inside).copied().collect();
        let loops: Vec<Size> = order.iter().map(|&d| self.size(&input_shape.dims()[d])).collect();
        let mut map: DimMap = vec![(None, 0); input_shape.rank()];
        for (level, &d) in order.iter().enumerate() {
            map[d] = (Some(level), 0);
        }
        // The result's contiguous strides, spread over the kept loops.
        let out_strides = self.contiguous_strides(&node.shape);
        let keepdims = node.shape.rank() == input_shape.rank();
        let mut store_strides = vec![Size::fixed(0); loops.len()];
        for (level, &d) in order.iter().enumerate() {
            if let Some(position) = kept.iter().position(|&k| k == d) {
                let out_dim = if keepdims { d } else { position };
                store_strides[level] = out_strides[out_dim].clone();
            }
        }
        let mut body = Body::default();
        let value = self.expr(&mut body, input, &map);
        let name = format!("{}{}", node.op.name(), id);
        let index = Index { base: vec![], strides: store_strides };
        let kernel = LoopKernel {
            name,
            loops,
            reduce: Some((reduce, outer.len())),
            kept_inside: inside.len(),
            body: body.exprs,
            stores: vec![(value, out, index)],
        };
        self.program.kernels.push(Kernel::Loop(kernel));
    }

    /// A sum over the leading axes of a materialised `f32` tensor, as the product `1ᵀ · X`
    /// of a stride-0 row of ones and `X` viewed as `[leading, trailing]`: the matmul kernel
    /// runs it vectorised along the kept columns (or in the tuned GEMM), where a loop kernel
    /// would walk each column with a stride. Bias gradients are sums of this shape.
    fn emit_column_sum(&mut self, id: NodeId, out: usize, axes: &[usize]) -> bool {
        let node = &self.nodes[id.0];
        let input = node.inputs[0];
        let input_shape = &self.nodes[input.0].shape;
        let leading =
            !axes.is_empty() && axes.len() < input_shape.rank() && axes.iter().enumerate().all(|(i, &a)| i == a);
        let Some(buffer) = self.buffer_of[input.0] else { return false };
        let columns = input_shape.dims()[axes.len()..].iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
        let wide = columns.as_fixed().is_none_or(|n| n >= 8);
        if !leading || !wide || node.dtype != DType::F32 {
            return false;
        }
        let rows = input_shape.dims()[..axes.len()].iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
        let ones = match self.ones {
            Some(ones) => ones,
            None => {
                let ones = self.push_buffer(
                    Shape(vec![Dim::Static(1)]),
                    DType::F32,
                    Role::Constant(Value::f32([1], vec![1.0])),
                );
                self.ones = Some(ones);
                ones
            }
        };
        let zero = Size::fixed(0);
        let kernel = MatMulKernel {
            name: format!("{}{}", node.op.name(), id),
            batch: Size::fixed(1),
            m: Size::fixed(1),
            k: rows,
            n: columns.clone(),
            a: (ones, [zero.clone(), zero.clone(), zero.clone()]),
            b: (buffer, [zero, columns, Size::fixed(1)]),
            out,
            epilogue: None,
            accumulate: None,
        };
        self.program.kernels.push(Kernel::MatMul(Box::new(kernel)));
        true
    }

    fn emit_concat(&mut self, id: NodeId, out: usize, axis: usize) {
        let node = &self.nodes[id.0];
        let strides = self.contiguous_strides(&node.shape);
        let mut offset = 0i64;
        for (part_number, &part) in node.inputs.iter().enumerate() {
            let shape = self.nodes[part.0].shape.clone();
            let base = vec![Size { factor: offset * strides[axis].factor, symbols: strides[axis].symbols.clone() }];
            let name = format!("concat{id}.part{part_number}");
            self.emit_map(&name, part, &shape, out, &strides, base, false);
            offset += shape.dims()[axis].as_static().expect("bug in kiln: concat of a symbolic axis") as i64;
        }
    }

    /// A contiguous buffer holding node `id` broadcast to `shape` (its own buffer when it has
    /// one of that shape; otherwise a copy kernel fills a new one).
    fn contiguous_operand(&mut self, id: NodeId, shape: &Shape) -> usize {
        let node = &self.nodes[id.0];
        if let Some(buffer) = self.buffer_of[id.0]
            && node.shape == *shape
        {
            return buffer;
        }
        let buffer = self.push_buffer(shape.clone(), node.dtype, Role::Temporary);
        let strides = self.contiguous_strides(shape);
        // Broadcast the operand to `shape` through the map of a broadcasting user.
        let mut body = Body::default();
        let map: DimMap = (0..shape.rank()).map(|d| (Some(d), 0)).collect();
        let operand_map = broadcast_map(&node.shape, shape, &map);
        let value = self.expr(&mut body, id, &operand_map);
        let mut loops = self.sizes(shape);
        let mut store = strides;
        if loops.is_empty() {
            loops.push(Size::fixed(1));
            store.push(Size::fixed(0));
        }
        let index = Index { base: vec![], strides: store };
        let name = format!("copy{id}");
        let kernel = LoopKernel {
            name,
            loops,
            reduce: None,
            kept_inside: 0,
            body: body.exprs,
            stores: vec![(value, buffer, index)],
        };
        self.program.kernels.push(Kernel::Loop(kernel));
        buffer
    }

    fn emit_matmul(&mut self, id: NodeId, out: usize) {
        let node = &self.nodes[id.0];
        let out_dims = node.shape.dims();
        let rank = out_dims.len();
        let batch_dims = &out_dims[..rank - 2];
        let (a, b) = (node.inputs[0], node.inputs[1]);
        let (m, n) = (out_dims[rank - 2].clone(), out_dims[rank - 1].clone());
        let a_shape = &self.nodes[a.0].shape;
        let k = a_shape.dims()[a_shape.rank() - 1].clone();
        let operand_shape = |rows: &Dim, cols: &Dim, own: &Shape| {
            // Unbatched operands stay 2-D (their batch stride is 0); batched ones are
            // broadcast to the full batch shape.
            if own.rank() == 2 {
                Shape(vec![rows.clone(), cols.clone()])
            } else {
                Shape(batch_dims.iter().cloned().chain([rows.clone(), cols.clone()]).collect())
            }
        };
        let a_full = operand_shape(&m, &k, a_shape);
        let b_full = operand_shape(&k, &n, &self.nodes[b.0].shape.clone());
        let a_buffer = self.strided_view(a, &a_full).unwrap_or_else(|| (self.contiguous_operand(a, &a_full), None));
        let b_buffer = self.strided_view(b, &b_full).unwrap_or_else(|| (self.contiguous_operand(b, &b_full), None));
        let batch = batch_dims.iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
        let strides_of = |this: &Self, shape: &Shape, view: Option<[Size; 3]>| {
            view.unwrap_or_else(|| {
                let s = this.contiguous_strides(shape);
                let r = s.len();
                let batch_stride = if r == 2 { Size::fixed(0) } else { s[r - 3].clone() };
                [batch_stride, s[r - 2].clone(), s[r - 1].clone()]
            })
        };
        let a_strides = strides_of(self, &a_full, a_buffer.1);
        let b_strides = strides_of(self, &b_full, b_buffer.1);
        let kernel = MatMulKernel {
            name: format!("matmul{id}"),
            batch,
            m: self.size(&m),
            k: self.size(&k),
            n: self.size(&n),
            a: (a_buffer.0, a_strides),
            b: (b_buffer.0, b_strides),
            out,
            epilogue: None,
            accumulate: None,
        };
        self.program.kernels.push(Kernel::MatMul(Box::new(kernel)));
    }

    /// The buffer and (batch, row, column) strides of an unbatched operand that is a
    /// materialised matrix or the transpose of one, read in place without a copy.
    fn strided_view(&self, id: NodeId, full: &Shape) -> Option<(usize, Option<[Size; 3]>)> {
        if full.rank() != 2 {
            return None;
        }
        let node = &self.nodes[id.0];
        if let Some(buffer) = self.buffer_of[id.0] {
            return Some((buffer, None));
        }
        let Op::Permute(perm) = &node.op else { return None };
        let source = node.inputs[0];
        let buffer = self.buffer_of[source.0]?;
        let strides = self.contiguous_strides(&self.nodes[source.0].shape);
        let column_stride = strides[perm[1]].clone();
        Some((buffer, Some([Size::fixed(0), strides[perm[0]].clone(), column_stride])))
    }

    fn emit_scatter(&mut self, id: NodeId, out: usize) {
        let node = &self.nodes[id.0];
        let (indices, updates) = (node.inputs[0], node.inputs[1]);
        let indices_buffer = self.buffer_of[indices.0].expect("bug in kiln: scatter indices have no buffer");
        let (updates_buffer, producer) = match self.buffer_of[updates.0] {
            Some(buffer) => (buffer, None),
            None => {
                // The updates' own expression, over their shape, as a loop kernel whose first
                // store carries the value (its buffer and index are not used).
                let shape = self.nodes[updates.0].shape.clone();
                let loops = self.sizes(&shape);
                let map: DimMap = (0..shape.rank()).map(|d| (Some(d), 0)).collect();
                let mut body = Body::default();
                let value = self.expr(&mut body, updates, &map);
                let index = Index { base: vec![], strides: vec![Size::fixed(0); loops.len()] };
                let name = format!("updates{updates}");
                let producer = LoopKernel {
                    name,
                    loops,
                    reduce: None,
                    kept_inside: 0,
                    body: body.exprs,
                    stores: vec![(value, out, index)],
                };
                (out, Some(Box::new(producer)))
            }
        };
        let positions =
            self.nodes[indices.0].shape.dims().iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
        let row_len = node.shape.dims()[1..].iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
        let rows = self.size(&node.shape.dims()[0]);
        let check = self.index_check("scatter_add", indices, "rows".to_string(), rows.clone());
        let kernel = ScatterKernel {
            name: format!("scatter_add{id}"),
            indices: indices_buffer,
            updates: updates_buffer,
            producer,
            out,
            positions,
            rows,
            row_len,
            check,
        };
        self.program.kernels.push(Kernel::Scatter(kernel));
    }

    /// The expression for node `id` at the element `map` selects: a load if it has a buffer,
    /// else its op, recomputed here.
    fn expr(&mut self, body: &mut Body, id: NodeId, map: &DimMap) -> ExprId {
        match self.buffer_of[id.0] {
            Some(buffer) => {
                let index = self.index(&self.nodes[id.0].shape, map);
                body.push(Expr::Load { buffer, index }, self.nodes[id.0].dtype)
            }
            None => self.op_expr(body, id, map),
        }
    }

    /// The index into a contiguous tensor of `shape` of the element `map` selects.
    fn index(&self, shape: &Shape, map: &DimMap) -> Index {
        let strides = self.contiguous_strides(shape);
        let loops = map.iter().filter_map(|(level, _)| *level).max().map_or(0, |m| m + 1);
        let mut index = Index { base: vec![], strides: vec![Size::fixed(0); loops] };
        for (d, &(level, offset)) in map.iter().enumerate() {
            if let Some(level) = level {
                index.strides[level] = strides[d].clone();
            }
            if offset != 0 {
                index.base.push(Size { factor: offset * strides[d].factor, symbols: strides[d].symbols.clone() });
            }
        }
        index
    }

    /// Node `id`'s own op as an expression over its operands.
    fn op_expr(&mut self, body: &mut Body, id: NodeId, map: &DimMap) -> ExprId {
        let node = &self.nodes[id.0];
        let dtype = node.dtype;
        let operand = |this: &mut Self, body: &mut Body, i: usize| {
            let input = node.inputs[i];
            let operand_map = broadcast_map(&this.nodes[input.0].shape, &node.shape, map);
            this.expr(body, input, &operand_map)
        };
        match &node.op {
            Op::Constant(value) => body.push(Expr::Const(value.to_f64_vec()[0]), dtype),
            Op::Fill(value) => body.push(Expr::Const(*value), dtype),
            Op::DimSize(dims) => {
                let size = dims.iter().fold(Size::fixed(1), |acc, d| acc.times(&self.size(d)));
                body.push(Expr::Size(size), dtype)
            }
            Op::Unary(unary) => {
                let x = operand(self, body, 0);
                body.push(Expr::Unary(*unary, x), dtype)
            }
            Op::PowScalar(p) => {
                let x = operand(self, body, 0);
                body.push(Expr::Pow(*p, x), dtype)
            }
            Op::Binary(binary) => {
                let (a, b) = (operand(self, body, 0), operand(self, body, 1));
                body.push(Expr::Binary(*binary, a, b), dtype)
            }
            Op::Compare(compare) => {
                let (a, b) = (operand(self, body, 0), operand(self, body, 1));
                body.push(Expr::Compare(*compare, a, b), dtype)
            }
            Op::Select => {
                let (m, a, b) = (operand(self, body, 0), operand(self, body, 1), operand(self, body, 2));
                body.push(Expr::Select(m, a, b), dtype)
            }
            Op::Cast(_) | Op::BroadcastTo => {
                let x = operand(self, body, 0);
                body.convert(x, dtype)
            }
            Op::Permute(perm) => {
                let mut operand_map = vec![(None, 0); map.len()];
                for (i, &p) in perm.iter().enumerate() {
                    operand_map[p] = map[i];
                }
                self.expr(body, node.inputs[0], &operand_map)
            }
            Op::Slice { axis, start, .. } => {
                let mut operand_map = map.clone();
                operand_map[*axis].1 += *start as i64;
                self.expr(body, node.inputs[0], &operand_map)
            }
            Op::OneHot { depth } => {
                let labels_rank = map.len() - 1;
                let labels_map = map[..labels_rank].to_vec();
                let labels = self.expr(body, node.inputs[0], &labels_map);
                let labels = body.convert(labels, DType::I64);
                // A label outside the classes is an error, as in a gather, not a zero row.
                let limit = Size::fixed(*depth as i64);
                let check = self.index_check("one_hot", node.inputs[0], "classes".to_string(), limit.clone());
                let position = self.index(&self.nodes[node.inputs[0].0].shape, &labels_map);
                let labels = body.push(Expr::CheckIndex { value: labels, limit, position, check }, DType::I64);
                let class = self.position(body, map[labels_rank]);
                let hit = body.push(Expr::Compare(Compare::Eq, labels, class), DType::Bool);
                body.convert(hit, dtype)
            }
            Op::Random { seed, distribution } => {
                let counter = self.expr(body, node.inputs[0], &vec![]);
                let counter = body.convert(counter, DType::I64);
                let index = self.index(&node.shape, map);
                body.push(Expr::Random { seed: *seed, distribution: *distribution, counter, index }, dtype)
            }
            Op::Gather => {
                let (table, indices) = (node.inputs[0], node.inputs[1]);
                let index_rank = self.nodes[indices.0].shape.rank();
                let indices_map = map[..index_rank].to_vec();
                let row = self.expr(body, indices, &indices_map);
                let position = self.index(&self.nodes[indices.0].shape, &indices_map);
                let row = body.convert(row, DType::I64);
                let table_shape = self.nodes[table.0].shape.clone();
                let mut table_map: DimMap = vec![(None, 0)];
                table_map.extend_from_slice(&map[index_rank..]);
                let index = self.index(&table_shape, &table_map);
                let strides = self.contiguous_strides(&table_shape);
                let buffer = self.buffer_of[table.0].expect("bug in kiln: gather table has no buffer");
                let rows = self.size(&table_shape.dims()[0]);
                let what = match &self.nodes[table.0].name {
                    Some(name) => format!("rows of `{name}`"),
                    None => "rows".to_string(),
                };
                let check = self.index_check("gather", indices, what, rows.clone());
                let row_stride = strides[0].clone();
                let gather = Expr::Gather { buffer, row, rows, row_stride, index, position, check };
                body.push(gather, dtype)
            }
            Op::Sum { axes, .. } => self.unrolled_reduction(body, id, axes, Binary::Add, map),
            Op::ReduceMax { axes, .. } => self.unrolled_reduction(body, id, axes, Binary::Max, map),
            op => unreachable!("bug in kiln: `{}` is never fused", op.name()),
        }
    }

    /// A small reduction of node `id`'s input over `axes`, as `combine` folded over every
    /// element of the reduced axes in row-major order (see [`Lowering::small_reduction`]).
    fn unrolled_reduction(
        &mut self,
        body: &mut Body,
        id: NodeId,
        axes: &[usize],
        combine: Binary,
        map: &DimMap,
    ) -> ExprId {
        let node = &self.nodes[id.0];
        let input = node.inputs[0];
        let input_shape = self.nodes[input.0].shape.clone();
        let keepdims = node.shape.rank() == input_shape.rank();
        // The input's map: kept dims follow the result's, reduced dims are set below.
        let mut input_map: DimMap = Vec::with_capacity(input_shape.rank());
        let mut kept = 0;
        for d in 0..input_shape.rank() {
            if axes.contains(&d) {
                input_map.push((None, 0));
            } else {
                input_map.push(map[if keepdims { d } else { kept }]);
                kept += 1;
            }
        }
        let sizes: Vec<usize> =
            axes.iter().map(|&a| input_shape.dims()[a].as_static().expect("bug in kiln: checked static")).collect();
        let count: usize = sizes.iter().product();
        let mut total = None;
        for flat in 0..count {
            // The row-major position `flat` over the reduced axes.
            let mut rest = flat;
            for (&axis, &size) in axes.iter().zip(&sizes).rev() {
                input_map[axis] = (None, (rest % size) as i64);
                rest /= size;
            }
            let value = self.expr(body, input, &input_map);
            total = Some(match total {
                None => value,
                Some(sum) => body.push(Expr::Binary(combine, sum, value), node.dtype),
            });
        }
        total.unwrap_or_else(|| body.push(Expr::Const(0.0), node.dtype))
    }

    /// The number of the program's range check of `op` over the index tensor `indices`
    /// (registered on first use, so every kernel that recomputes the op shares it).
    fn index_check(&mut self, op: &'static str, indices: NodeId, what: String, limit: Size) -> usize {
        let check = IndexCheck { op, indices: self.nodes[indices.0].name.clone(), what, limit };
        match self.program.checks.iter().position(|c| *c == check) {
            Some(number) => number,
            None => {
                self.program.checks.push(check);
                self.program.checks.len() - 1
            }
        }
    }

    /// The index along a dim driven by `(loop, offset)`, as an `I64` expression.
    fn position(&self, body: &mut Body, (level, offset): (Option<usize>, i64)) -> ExprId {
        let offset_expr = body.push(Expr::Const(offset as f64), DType::I64);
        match level {
            Some(level) => {
                let index = body.push(Expr::LoopIndex(level), DType::I64);
                body.push(Expr::Binary(Binary::Add, index, offset_expr), DType::I64)
            }
            None => offset_expr,
        }
    }
}

/// The map of an operand of shape `operand` read by a user of shape `user` with map `map`
/// (numpy broadcasting: right-aligned, size-1 dims that the user stretches stay at 0).
fn broadcast_map(operand: &Shape, user: &Shape, map: &DimMap) -> DimMap {
    let extra = user.rank() - operand.rank();
    (0..operand.rank())
        .map(|j| {
            let stretched = operand.dims()[j].is_one() && !user.dims()[j + extra].is_one();
            if stretched { (None, 0) } else { map[j + extra] }
        })
        .collect()
}

/// Every distinct shape a call computes: each node's (with its op's name) and each buffer's
/// (copies of broadcast matmul operands have shapes of their own). A symbolic shape's element
/// count is only known at a call, so the runtime checks them all there.
fn call_shapes(nodes: &[Node], buffers: &[Buffer]) -> Vec<(&'static str, Shape)> {
    let mut shapes: Vec<(&'static str, Shape)> = Vec::new();
    let named = nodes.iter().map(|node| (node.op.name(), &node.shape));
    for (op, shape) in named.chain(buffers.iter().map(|buffer| ("buffer", &buffer.shape))) {
        if shape.dims().iter().any(|dim| matches!(dim, Dim::Sym(_))) && !shapes.iter().any(|(_, s)| s == shape) {
            shapes.push((op, shape.clone()));
        }
    }
    shapes
}

/// Every symbolic axis a needed maximum reduces, described (`axis 0 of [B, 3]`), with its size.
fn maximum_axes(nodes: &[Node], symbols: &[String]) -> Vec<(String, Size)> {
    let mut axes = Vec::new();
    for node in nodes {
        let Op::ReduceMax { axes: reduced, .. } = &node.op else { continue };
        let shape = &nodes[node.inputs[0].0].shape;
        for &axis in reduced {
            if let Dim::Sym(name) = &shape.dims()[axis] {
                let symbol = symbols.iter().position(|s| s == name).expect("bug in kiln: an unknown symbol");
                axes.push((format!("axis {axis} of {shape}"), Size { factor: 1, symbols: vec![symbol] }));
            }
        }
    }
    axes
}

/// Ops a kernel can recompute at any index.
fn fusible(op: &Op) -> bool {
    matches!(
        op,
        Op::Constant(_)
            | Op::Fill(_)
            | Op::DimSize(_)
            | Op::Random { .. }
            | Op::Unary(_)
            | Op::PowScalar(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast(_)
            | Op::Permute(_)
            | Op::BroadcastTo
            | Op::Slice { .. }
            | Op::Gather
            | Op::OneHot { .. }
    )
}

/// Nodes so cheap that recomputing them in every reader beats a round trip through memory.
fn cheap(node: &Node) -> bool {
    matches!(
        node.op,
        Op::Constant(_)
            | Op::Fill(_)
            | Op::DimSize(_)
            | Op::Compare(_)
            | Op::Cast(_)
            | Op::Permute(_)
            | Op::BroadcastTo
            | Op::Slice { .. }
            | Op::OneHot { .. }
    )
}

/// A kernel body under construction: expressions deduplicated, each with its dtype.
#[derive(Default)]
struct Body {
    exprs: Vec<(Expr, DType)>,
}

impl Body {
    fn push(&mut self, expr: Expr, dtype: DType) -> ExprId {
        if let Some(existing) = self.exprs.iter().position(|(e, t)| *e == expr && *t == dtype) {
            return existing;
        }
        self.exprs.push((expr, dtype));
        self.exprs.len() - 1
    }

    /// `value` converted to `dtype` (itself if it already has that dtype).
    fn convert(&mut self, value: ExprId, dtype: DType) -> ExprId {
        if self.exprs[value].1 == dtype { value } else { self.push(Expr::Cast(value), dtype) }
    }
}
