//! Loop kernels to Cranelift IR: the loop nest, the body in scalar and 4-lane vector form,
//! stores and reductions.
//!
//! In: a loop kernel and its program. Out: the kernel's Cranelift function (loop nest, vector and
//! scalar loops, reductions).
//!
//! One loop runs 4 elements at a time (`f32x4`, the widest vector Cranelift lowers on x86-64)
//! when every value of the body is an `f32`, a mask or an integer that does not change along
//! it: the innermost loop, or the one around it when the innermost is too short to fill a
//! vector (then the lanes hold 4 rows). Reads and writes that move by one element along it are
//! vector loads and stores; others go lane by lane. A scalar loop finishes the remainder.
//! Reductions keep a vector and a scalar accumulator and combine them in a fixed order, so
//! results do not depend on how the outer loop is split across threads. The body itself is
//! emitted by `body`, through the function state of `emitter`.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{Block, InstBuilder, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};

use super::body::{Body, uniform_exprs};
use super::emitter::{Emitter, LANES, byte_size, constant, scalar_type};
use super::{KernelShape, Target};
use crate::graph::{Binary, DType, Unary};
use crate::kernel::{Expr, Index, LoopKernel, Program, Reduce, RowsKernel, Size};

/// Builds the function of a loop kernel; returns the extent of its splittable range.
pub(super) fn build(
    builder: &mut FunctionBuilder,
    kernel: &LoopKernel,
    program: &Program,
    target: Target,
) -> KernelShape {
    let params = super::entry(builder);
    let mut emitter = Emitter::new(builder, params.sizes, params.buffers, program, target, Some(params.status));
    emitter.prepare(kernel);
    let vector_level = vector_level(kernel, program);
    let extents: Vec<Value> = kernel.loops.iter().map(|s| emitter.size(s)).collect();
    let mut nest =
        Nest { kernel, extents, vector_level, indices: vec![], accumulators: None, columns: None, product: None };
    nest.level(&mut emitter, 0, params.start, params.end, false);
    emitter.builder.ins().return_(&[]);
    KernelShape { chunks: vec![(kernel.loops[0].clone(), 1)], splittable: kernel.splittable() }
}

/// Builds the function of a row group: for each block of `group.block` rows of the range,
/// every member's loop nest over those rows, in order.
pub(super) fn build_rows(
    builder: &mut FunctionBuilder,
    group: &RowsKernel,
    program: &Program,
    target: Target,
) -> KernelShape {
    let params = super::entry(builder);
    // A member reads what an earlier one stored: such loads are not read-only here, so none
    // moves above the store.
    let stored: Vec<usize> = group.members.iter().flat_map(LoopKernel::writes).map(|b| program.storage(b)).collect();
    let written: Vec<usize> = (0..program.buffers.len()).filter(|&b| stored.contains(&program.storage(b))).collect();
    let row = builder.declare_var(types::I64);
    builder.def_var(row, params.start);
    let (header, body, exit) = (builder.create_block(), builder.create_block(), builder.create_block());
    builder.ins().jump(header, &[]);
    builder.switch_to_block(header);
    let first = builder.use_var(row);
    let more = builder.ins().icmp(IntCC::SignedLessThan, first, params.end);
    builder.ins().brif(more, body, &[], exit, &[]);
    builder.switch_to_block(body);
    let block = builder.ins().iconst(types::I64, group.block);
    let next = builder.ins().iadd(first, block);
    let last = builder.ins().smin(next, params.end);
    for member in &group.members {
        let mut emitter = Emitter::new(builder, params.sizes, params.buffers, program, target, Some(params.status));
        emitter.written = written.clone();
        emitter.prepare(member);
        let vector_level = vector_level(member, program);
        let extents: Vec<Value> = member.loops.iter().map(|s| emitter.size(s)).collect();
        let mut nest = Nest {
            kernel: member,
            extents,
            vector_level,
            indices: vec![],
            accumulators: None,
            columns: None,
            product: None,
        };
        nest.level(&mut emitter, 0, first, last, false);
    }
    builder.def_var(row, last);
    builder.ins().jump(header, &[]);
    builder.switch_to_block(exit);
    builder.ins().return_(&[]);
    KernelShape { chunks: vec![(group.rows.clone(), 1)], splittable: true }
}

/// A block of a matmul's result: rows `rows.0..rows.1`, columns `columns.0..columns.1`.
#[derive(Clone, Copy)]
pub(super) struct ResultBlock {
    pub rows: (Value, Value),
    pub columns: (Value, Value),
}

/// Emits the elementwise loop kernel `kernel` over `[rows, columns]` at the current position,
/// for rows `rows.0..rows.1` and columns `columns.0..columns.1` only: a matmul's epilogue on
/// one block of its result. The kernel cannot fail (`fuse_epilogues` checks), so it has no
/// status to report.
pub(super) fn emit_block(
    builder: &mut FunctionBuilder,
    kernel: &LoopKernel,
    program: &Program,
    target: Target,
    (sizes, buffers): (Value, Value),
    block: ResultBlock,
    written: &[usize],
) {
    let ResultBlock { rows, columns } = block;
    let mut emitter = Emitter::new(builder, sizes, buffers, program, target, None);
    emitter.written = written.to_vec();
    emitter.prepare(kernel);
    let vector_level = vector_level(kernel, program);
    let extents: Vec<Value> = kernel.loops.iter().map(|s| emitter.size(s)).collect();
    let mut nest = Nest {
        kernel,
        extents,
        vector_level,
        indices: vec![],
        accumulators: None,
        columns: Some(columns),
        product: None,
    };
    nest.level(&mut emitter, 0, rows.0, rows.1, false);
}

/// A matmul's epilogue applied by the register tile to each accumulator, in place of the
/// epilogue's loads of the product.
pub(super) struct RegisterEpilogue<'k> {
    kernel: &'k LoopKernel,
    program: &'k Program,
    target: Target,
    /// The function's `sizes` and `buffers` parameters.
    tables: (Value, Value),
    /// The product's buffer.
    product: usize,
}

impl<'k> RegisterEpilogue<'k> {
    /// The register form of `kernel` (over `[rows, columns]`), if it runs 4 columns at a time.
    pub fn new(
        kernel: &'k LoopKernel,
        program: &'k Program,
        target: Target,
        (tables, product): ((Value, Value), usize),
    ) -> Option<Self> {
        let by_columns = kernel.loops.len() == 2 && vectorizable_at(kernel, program, 1);
        by_columns.then_some(RegisterEpilogue { kernel, program, target, tables, product })
    }

    /// Emits the epilogue for the element (or, with `vector`, the 4 columns) at `[row,
    /// column]` whose product is `value`.
    pub fn emit(&self, builder: &mut FunctionBuilder, [row, column]: [Value; 2], value: Value, vector: bool) {
        let (sizes, buffers) = self.tables;
        let mut emitter = Emitter::new(builder, sizes, buffers, self.program, self.target, None);
        emitter.written = vec![self.product];
        emitter.prepare(self.kernel);
        let mut nest = Nest {
            kernel: self.kernel,
            extents: vec![],
            vector_level: Some(1),
            indices: vec![row, column],
            accumulators: None,
            columns: None,
            product: Some((self.product, value)),
        };
        nest.body(&mut emitter, vector);
    }
}

/// The value of `kernel`'s first store at loop indices `indices` (4 lanes of the last loop
/// with `vector`), emitted at the current position: a scatter's computed update. The kernel
/// cannot fail (the lowering checks), so it has no status to report.
pub(super) fn emit_value(
    builder: &mut FunctionBuilder,
    kernel: &LoopKernel,
    program: &Program,
    target: Target,
    (sizes, buffers): (Value, Value),
    indices: &[Value],
    vector: bool,
) -> Value {
    let mut emitter = Emitter::new(builder, sizes, buffers, program, target, None);
    emitter.prepare(kernel);
    let level = kernel.loops.len() - 1;
    let body = Body { kernel, indices, vector, level, product: None };
    let (values, _) = body.emit(&mut emitter);
    values[kernel.stores[0].0]
}

/// True if the last loop of `kernel` can run 4 lanes at a time (see [`vectorizable_at`]).
pub(super) fn vectorizable_innermost(kernel: &LoopKernel, program: &Program) -> bool {
    vectorizable_at(kernel, program, kernel.loops.len() - 1)
}

/// The loop that runs 4 lanes at a time, if any: the innermost one, or, when the innermost
/// loop is too short to fill a vector (a softmax over 2 classes), the one around it, with
/// the rows of the result in the lanes.
fn vector_level(kernel: &LoopKernel, program: &Program) -> Option<usize> {
    let innermost = kernel.loops.len() - 1;
    let short = |level: usize| kernel.loops[level].as_fixed().is_some_and(|n| n < LANES);
    if short(innermost) && innermost > 0 && !short(innermost - 1) {
        let outer = innermost - 1;
        // Lanes may only hold independent results: a reduction must run inside them.
        let reduction_inside = kernel.reduce.is_none_or(|(_, first)| first > outer && kernel.kept_inside == 0);
        if reduction_inside && vectorizable_at(kernel, program, outer) {
            return Some(outer);
        }
    }
    vectorizable_at(kernel, program, innermost).then_some(innermost)
}

/// True if loop `level` can run 4 lanes at a time: every value is an `f32` or a mask, or an
/// integer that does not change along the lanes; reads and writes that do not move by one
/// element along the loop gather and scatter lane by lane.
fn vectorizable_at(kernel: &LoopKernel, program: &Program, level: usize) -> bool {
    let moves_by_0_or_1 =
        |index: &Index| index.strides.get(level).is_none_or(|s| matches!(s.as_fixed(), Some(0) | Some(1)));
    // `f64` values have no lanes here: a kernel holding any runs one element at a time.
    if kernel.body.iter().any(|(_, dtype)| *dtype == DType::F64) {
        return false;
    }
    let uniform = uniform_exprs(kernel, level);
    let body_ok = kernel.body.iter().enumerate().all(|(id, (expr, dtype))| {
        if uniform[id] {
            return true;
        }
        if dtype.is_int() {
            // Integers that change along the lanes are computed lane by lane.
            return match expr {
                Expr::Load { buffer, .. } => program.buffers[*buffer].dtype == *dtype,
                Expr::LoopIndex(loop_level) => *loop_level == level,
                Expr::Cast(_) | Expr::Select(..) | Expr::CheckIndex { .. } => true,
                Expr::Unary(op, _) => matches!(op, Unary::Neg | Unary::Abs),
                // Division reports a zero divisor: it stays scalar.
                Expr::Binary(op, ..) => *op != Binary::Div,
                _ => false,
            };
        }
        match expr {
            Expr::Load { buffer, .. } => program.buffers[*buffer].dtype == DType::F32,
            Expr::Const(_) | Expr::Size(_) => true,
            Expr::Unary(..) | Expr::Pow(..) | Expr::Binary(..) | Expr::Select(..) => true,
            Expr::Compare(..) => true,
            Expr::Cast(_) => *dtype == DType::F32,
            Expr::Random { index, .. } => moves_by_0_or_1(index),
            // A row picked once per vector, read along it.
            Expr::Gather { buffer, row, index, .. } => {
                program.buffers[*buffer].dtype == DType::F32 && uniform[*row] && moves_by_0_or_1(index)
            }
            Expr::LoopIndex(_) | Expr::CheckIndex { .. } => false,
        }
    });
    let stores_ok = kernel.stores.iter().all(|(value, buffer, index)| {
        let value_dtype = kernel.body[*value].1;
        let buffer_dtype = program.buffers[*buffer].dtype;
        let float = buffer_dtype == DType::F32 && value_dtype == DType::F32;
        // Integer results are stored lane by lane, outside reductions.
        let int = buffer_dtype.is_int() && value_dtype == buffer_dtype && kernel.reduce.is_none();
        // Accumulating in place reads and writes 4 adjacent results at a time.
        let unit = index.strides.get(level).and_then(Size::as_fixed) == Some(1);
        (float || int) && (kernel.kept_inside == 0 || unit)
    });
    body_ok && stores_ok
}

/// The loop nest of one kernel.
struct Nest<'k> {
    kernel: &'k LoopKernel,
    extents: Vec<Value>,
    /// The loop that runs 4 lanes at a time (see [`vector_level`]).
    vector_level: Option<usize>,
    indices: Vec<Value>,
    /// The scalar and (if vectorised) vector accumulators of a reduction.
    accumulators: Option<(Variable, Option<Variable>)>,
    /// The range of the second loop, if not all of it (an epilogue's block of columns).
    columns: Option<(Value, Value)>,
    /// In a register epilogue: the product's buffer and its value at the current element,
    /// which loads of that buffer take instead of reading memory.
    product: Option<(usize, Value)>,
}

impl Nest<'_> {
    /// Emits loop `level` over `from..to` and everything inside it; `vector` when an outer
    /// loop already runs 4 lanes at a time.
    fn level(&mut self, emitter: &mut Emitter, level: usize, from: Value, to: Value, vector: bool) {
        let innermost = level + 1 == self.kernel.loops.len();
        let reduce = self.kernel.reduce.filter(|&(_, first)| first == level);
        let in_place = self.kernel.kept_inside > 0;
        match reduce {
            Some((op, _)) if in_place => self.fill_identity(emitter, op),
            Some((op, _)) => self.start_reduction(emitter, op, vector),
            None => {}
        }
        if innermost {
            emitter.enter_innermost(self.kernel, level, &self.indices);
        }
        let counter = emitter.builder.declare_var(types::I64);
        emitter.builder.def_var(counter, from);
        let inner = |nest: &mut Self, emitter: &mut Emitter, vector: bool| {
            if innermost {
                nest.body(emitter, vector);
            } else {
                let (from, to) = match nest.columns {
                    Some(columns) if level == 0 => columns,
                    _ => (emitter.iconst(0), nest.extents[level + 1]),
                };
                nest.level(emitter, level + 1, from, to, vector);
            }
        };
        if self.vector_level == Some(level) {
            let (i, frame) = loop_begin(emitter.builder, counter, to, LANES);
            self.indices.push(i);
            inner(self, emitter, true);
            self.indices.pop();
            loop_end(emitter.builder, counter, frame);
        }
        let (i, frame) = loop_begin(emitter.builder, counter, to, 1);
        self.indices.push(i);
        inner(self, emitter, vector);
        self.indices.pop();
        loop_end(emitter.builder, counter, frame);
        if innermost {
            emitter.partials = None;
        }
        if let (Some((op, _)), false) = (reduce, in_place) {
            self.finish_reduction(emitter, op, vector);
        }
    }

    /// The identity of `op`, as a scalar of the result's dtype.
    fn identity(&self, emitter: &mut Emitter, op: Reduce) -> Value {
        let dtype = self.kernel.body[self.kernel.stores[0].0].1;
        match op {
            Reduce::Sum => constant(emitter.builder, dtype, 0.0, 0),
            Reduce::Max => constant(emitter.builder, dtype, f64::NEG_INFINITY, lowest(dtype)),
        }
    }

    /// Stores the identity of `op` into every result the loops inside the reduction reach,
    /// before a reduction that accumulates in place (the reduction loops' indices do not move
    /// the result, so they are 0 here).
    fn fill_identity(&mut self, emitter: &mut Emitter, op: Reduce) {
        let identity = self.identity(emitter, op);
        let inside = self.kernel.loops.len() - self.kernel.kept_inside;
        let outer = self.indices.len();
        while self.indices.len() < inside {
            let zero = emitter.iconst(0);
            self.indices.push(zero);
        }
        self.fill_level(emitter, inside, identity);
        self.indices.truncate(outer);
    }

    fn fill_level(&mut self, emitter: &mut Emitter, level: usize, identity: Value) {
        let counter = emitter.builder.declare_var(types::I64);
        let zero = emitter.iconst(0);
        emitter.builder.def_var(counter, zero);
        let (i, frame) = loop_begin(emitter.builder, counter, self.extents[level], 1);
        self.indices.push(i);
        if level + 1 == self.kernel.loops.len() {
            let (_, buffer, index) = &self.kernel.stores[0];
            let address = emitter.access(*buffer, index, &self.indices);
            emitter.builder.ins().store(super::trusted(), identity, address, 0);
        } else {
            self.fill_level(emitter, level + 1, identity);
        }
        self.indices.pop();
        loop_end(emitter.builder, counter, frame);
    }

    /// Declares the accumulators of a reduction starting here: a vector one if this loop or
    /// one inside it runs 4 lanes at a time, and a scalar one for the rest.
    fn start_reduction(&mut self, emitter: &mut Emitter, op: Reduce, vector: bool) {
        let dtype = self.kernel.body[self.kernel.stores[0].0].1;
        let ty = scalar_type(dtype);
        let identity = match op {
            Reduce::Sum => 0.0,
            Reduce::Max => f64::NEG_INFINITY,
        };
        let scalar = emitter.builder.declare_var(ty);
        let initial = constant(
            emitter.builder,
            dtype,
            identity,
            match op {
                Reduce::Sum => 0,
                Reduce::Max => lowest(dtype),
            },
        );
        emitter.builder.def_var(scalar, initial);
        let level = self.kernel.reduce.map_or(0, |(_, first)| first);
        let needs_vector = vector || self.vector_level.is_some_and(|v| v >= level);
        let vector = needs_vector.then(|| {
            let var = emitter.builder.declare_var(types::F32X4);
            let splat = emitter.builder.ins().splat(types::F32X4, initial);
            emitter.builder.def_var(var, splat);
            var
        });
        self.accumulators = Some((scalar, vector));
    }

    /// Stores a reduction's result: with `vector` (the lanes are 4 results of an outer loop),
    /// the vector accumulator as it is; otherwise the scalar one plus the vector one's lanes.
    fn finish_reduction(&mut self, emitter: &mut Emitter, op: Reduce, vector: bool) {
        let (scalar, vector_acc) = self.accumulators.take().expect("bug in kiln: reduction without accumulators");
        let (_, buffer, index) = &self.kernel.stores[0];
        if vector {
            let lanes = emitter.builder.use_var(vector_acc.expect("bug in kiln: a vector reduction without lanes"));
            self.store(emitter, lanes, *buffer, index, true);
            return;
        }
        let mut total = emitter.builder.use_var(scalar);
        let dtype = self.kernel.body[self.kernel.stores[0].0].1;
        if let Some(vector) = vector_acc {
            let lanes = emitter.builder.use_var(vector);
            let lane = |b: &mut FunctionBuilder, i: u8| b.ins().extractlane(lanes, i);
            let (l0, l1, l2, l3) = (
                lane(emitter.builder, 0),
                lane(emitter.builder, 1),
                lane(emitter.builder, 2),
                lane(emitter.builder, 3),
            );
            let low = combine(emitter.builder, op, dtype, l0, l1);
            let high = combine(emitter.builder, op, dtype, l2, l3);
            let lanes_total = combine(emitter.builder, op, dtype, low, high);
            total = combine(emitter.builder, op, dtype, lanes_total, total);
        }
        self.store(emitter, total, *buffer, index, false);
    }

    /// Stores four scalars, the lanes of an integer result, at `index` of `buffer` and the
    /// next 3 elements along the vector loop.
    fn store_lanes(&self, emitter: &mut Emitter, four: [Value; 4], buffer: usize, index: &Index) {
        let address = emitter.access(buffer, index, &self.indices);
        let level = self.vector_level.unwrap_or(0);
        let stride = index.strides.get(level).cloned().unwrap_or_else(|| Size::fixed(0));
        let bytes = byte_size(emitter.program.buffers[buffer].dtype);
        let step = emitter.size(&stride);
        let step = emitter.builder.ins().imul_imm_s(step, bytes);
        let mut lane_address = address;
        for (lane, &value) in four.iter().enumerate() {
            if lane > 0 {
                lane_address = emitter.builder.ins().iadd(lane_address, step);
            }
            emitter.builder.ins().store(super::trusted(), value, lane_address, 0);
        }
    }

    /// Stores `value` (4 lanes along the vector loop with `vector`) at `index` of `buffer`:
    /// one store where the lanes are adjacent, one per lane elsewhere.
    fn store(&self, emitter: &mut Emitter, value: Value, buffer: usize, index: &Index, vector: bool) {
        let address = emitter.access(buffer, index, &self.indices);
        let level = self.vector_level.unwrap_or(0);
        let stride = index.strides.get(level).cloned().unwrap_or_else(|| Size::fixed(0));
        // An integer that does not change along the lanes stays a scalar in a vector body:
        // it is stored once per lane, not once for all four.
        let scalar = !emitter.builder.func.dfg.value_type(value).is_vector();
        if !vector || (stride.as_fixed() == Some(1) && !scalar) {
            emitter.builder.ins().store(super::trusted(), value, address, 0);
            return;
        }
        let bytes = byte_size(emitter.program.buffers[buffer].dtype);
        let step = emitter.size(&stride);
        let step = emitter.builder.ins().imul_imm_s(step, bytes);
        let mut lane_address = address;
        for lane in 0..LANES as u8 {
            let element = if scalar { value } else { emitter.builder.ins().extractlane(value, lane) };
            emitter.builder.ins().store(super::trusted(), element, lane_address, 0);
            lane_address = emitter.builder.ins().iadd(lane_address, step);
        }
    }

    /// The innermost body at the current indices, in vector (4 lanes) or scalar form.
    fn body(&mut self, emitter: &mut Emitter, vector: bool) {
        let level = self.vector_level.unwrap_or(0);
        let body = Body { kernel: self.kernel, indices: &self.indices, vector, level, product: self.product };
        let (values, lanes) = body.emit(emitter);
        if let Some((scalar, vector_acc)) = self.accumulators {
            let (op, _) = self.kernel.reduce.expect("bug in kiln: accumulators without a reduction");
            let value = values[self.kernel.stores[0].0];
            let dtype = self.kernel.body[self.kernel.stores[0].0].1;
            let var = if vector {
                vector_acc.expect("bug in kiln: vector body without a vector accumulator")
            } else {
                scalar
            };
            let acc = emitter.builder.use_var(var);
            let next = combine(emitter.builder, op, dtype, acc, value);
            emitter.builder.def_var(var, next);
            return;
        }
        if let (Some((op, _)), true) = (self.kernel.reduce, self.kernel.kept_inside > 0) {
            // Accumulate in the result itself: it is this kernel's only store, read nowhere
            // else in the kernel, so a plain load sees the previous iteration's store.
            let (value, buffer, index) = &self.kernel.stores[0];
            let dtype = self.kernel.body[*value].1;
            let address = emitter.access(*buffer, index, &self.indices);
            let ty = if vector { types::F32X4 } else { scalar_type(dtype) };
            let old = emitter.builder.ins().load(ty, super::trusted(), address, 0);
            let next = combine(emitter.builder, op, dtype, old, values[*value]);
            emitter.builder.ins().store(super::trusted(), next, address, 0);
            return;
        }
        for (value, buffer, index) in &self.kernel.stores {
            match lanes[*value] {
                Some(four) => self.store_lanes(emitter, four, *buffer, index),
                None => self.store(emitter, values[*value], *buffer, index, vector),
            }
        }
    }
}

/// Sum or max of two values of `dtype` (scalars or `f32x4`).
fn combine(builder: &mut FunctionBuilder, op: Reduce, dtype: DType, a: Value, b: Value) -> Value {
    match (op, dtype.is_float()) {
        (Reduce::Sum, true) => builder.ins().fadd(a, b),
        (Reduce::Max, true) => builder.ins().fmax(a, b),
        (Reduce::Sum, false) => builder.ins().iadd(a, b),
        (Reduce::Max, false) => builder.ins().smax(a, b),
    }
}

/// The smallest integer of `dtype`, the identity of an integer maximum (`i64::MIN` would
/// truncate to 0 as an `i32`).
fn lowest(dtype: DType) -> i64 {
    if dtype == DType::I32 { i64::from(i32::MIN) } else { i64::MIN }
}

/// The blocks of a loop opened by [`loop_begin`].
pub(super) struct LoopFrame {
    header: Block,
    exit: Block,
    next: Value,
}

/// Opens `while counter + step <= to { ... }`: returns the counter's value for the body, which
/// the caller emits before closing the loop with [`loop_end`]. `counter` keeps its final value
/// after the loop, so a second loop can finish the rest.
pub(super) fn loop_begin(builder: &mut FunctionBuilder, counter: Variable, to: Value, step: i64) -> (Value, LoopFrame) {
    let header = builder.create_block();
    let inside = builder.create_block();
    let exit = builder.create_block();
    builder.ins().jump(header, &[]);
    builder.switch_to_block(header);
    let i = builder.use_var(counter);
    let next = builder.ins().iadd_imm_s(i, step);
    let more = builder.ins().icmp(IntCC::SignedLessThanOrEqual, next, to);
    builder.ins().brif(more, inside, &[], exit, &[]);
    builder.switch_to_block(inside);
    (i, LoopFrame { header, exit, next })
}

/// Closes a loop opened by [`loop_begin`]: steps the counter and continues after the loop.
pub(super) fn loop_end(builder: &mut FunctionBuilder, counter: Variable, frame: LoopFrame) {
    builder.def_var(counter, frame.next);
    builder.ins().jump(frame.header, &[]);
    builder.switch_to_block(frame.exit);
}
