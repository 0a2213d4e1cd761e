//! Loop kernels to Cranelift IR: the loop nest, the body in scalar and 4-lane vector form,
//! stores and reductions.
//!
//! One loop runs 4 elements at a time (`f32x4`, the widest vector Cranelift lowers on x86-64)
//! when every value of the body is an `f32`, a mask or an integer that does not change along
//! it: the innermost loop, or the one around it when the innermost is too short to fill a
//! vector (then the lanes hold 4 rows). Reads and writes that move by one element along it are
//! vector loads and stores; others go lane by lane. A scalar loop finishes the remainder. Reductions keep a vector and a
//! scalar accumulator and combine them in a fixed order, so results do not depend on how the
//! outer loop is split across threads.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{Block, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};

use super::{KernelShape, STATUS_DIVISION_BY_ZERO, STATUS_INDEX_OUT_OF_RANGE, Target, math};
use crate::graph::{Binary, Compare, DType, Distribution, Unary};
use crate::kernel::{Expr, ExprId, Index, LoopKernel, Program, Reduce, Size};

/// Vector width in `f32` lanes.
const LANES: i64 = 4;

/// Builds the function of a loop kernel; returns the extent of its splittable range.
pub(super) fn build(
    builder: &mut FunctionBuilder,
    kernel: &LoopKernel,
    program: &Program,
    target: Target,
) -> KernelShape {
    let params = super::entry(builder);
    let mut emitter = Emitter::new(builder, params.sizes, params.buffers, program, target);
    emitter.prepare(kernel);
    let vector_level = vector_level(kernel, program);
    let extents: Vec<Value> = kernel.loops.iter().map(|s| emitter.size(s)).collect();
    let mut nest =
        Nest { kernel, extents, vector_level, indices: vec![], accumulators: None, columns: None, product: None };
    nest.level(&mut emitter, 0, params.start, params.end, false);
    emitter.status.store(emitter.builder, params.status);
    emitter.builder.ins().return_(&[]);
    let splittable = kernel.reduce.is_none_or(|(_, from)| from > 0);
    KernelShape { chunks: vec![(kernel.loops[0].clone(), 1)], splittable }
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
    let mut emitter = Emitter::new(builder, sizes, buffers, program, target);
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
        let mut emitter = Emitter::new(builder, sizes, buffers, self.program, self.target);
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
                Expr::Cast(_) | Expr::Select(..) => true,
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
            Expr::LoopIndex(_) => false,
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

/// For each expression of the body: true if it has the same value at every iteration of loop
/// `level` (built from constants, sizes and loads that do not move along it).
fn uniform_exprs(kernel: &LoopKernel, level: usize) -> Vec<bool> {
    let mut uniform: Vec<bool> = Vec::with_capacity(kernel.body.len());
    for (expr, _) in &kernel.body {
        let value = match expr {
            Expr::Const(_) | Expr::Size(_) => true,
            Expr::Load { index, .. } => index.strides.get(level).is_none_or(|s| s.as_fixed() == Some(0)),
            Expr::Unary(_, x) | Expr::Pow(_, x) | Expr::Cast(x) => uniform[*x],
            Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => uniform[*a] && uniform[*b],
            Expr::Select(m, a, b) => uniform[*m] && uniform[*a] && uniform[*b],
            Expr::LoopIndex(loop_level) => *loop_level != level,
            Expr::Random { .. } | Expr::Gather { .. } => false,
        };
        uniform.push(value);
    }
    uniform
}

/// Status slots kept in variables and written once at the end.
struct Status {
    code: Variable,
    value: Variable,
}

impl Status {
    fn new(builder: &mut FunctionBuilder) -> Status {
        let code = builder.declare_var(types::I64);
        let value = builder.declare_var(types::I64);
        let zero = builder.ins().iconst(types::I64, 0);
        builder.def_var(code, zero);
        builder.def_var(value, zero);
        Status { code, value }
    }

    /// Records `code` and `value` where `failed` (an `i8` 0/1) is set.
    fn report(&self, builder: &mut FunctionBuilder, failed: Value, code: i64, value: Value) {
        let (old_code, old_value) = (builder.use_var(self.code), builder.use_var(self.value));
        let code = builder.ins().iconst(types::I64, code);
        let new_code = builder.ins().select(failed, code, old_code);
        let new_value = builder.ins().select(failed, value, old_value);
        builder.def_var(self.code, new_code);
        builder.def_var(self.value, new_value);
    }

    fn store(&self, builder: &mut FunctionBuilder, status: Value) {
        let (code, value) = (builder.use_var(self.code), builder.use_var(self.value));
        builder.ins().store(super::trusted(), code, status, 0);
        builder.ins().store(super::trusted(), value, status, 8);
    }
}

/// The state shared by everything emitted into one function.
pub(super) struct Emitter<'a, 'b> {
    pub builder: &'a mut FunctionBuilder<'b>,
    sizes: Value,
    buffers: Value,
    program: &'a Program,
    target: Target,
    status: Status,
    size_cache: HashMap<Size, Value>,
    address_cache: HashMap<usize, Value>,
    /// Buffers the function writes before this code reads them (a matmul's product, read by
    /// its epilogue): their loads must not be treated as read-only.
    written: Vec<usize>,
    /// Inside an innermost loop (the level): each index's offset and each access's address
    /// without that loop's term, computed once before the loop, so an access inside costs a
    /// multiply-add instead of the whole sum over the nest.
    partials: Option<Partials>,
}

/// Offsets and addresses without the innermost loop's term (see `Emitter::partials`).
struct Partials {
    level: usize,
    offsets: HashMap<Index, Value>,
    addresses: HashMap<(usize, Index), Value>,
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn new(
        builder: &'a mut FunctionBuilder<'b>,
        sizes: Value,
        buffers: Value,
        program: &'a Program,
        target: Target,
    ) -> Emitter<'a, 'b> {
        let status = Status::new(builder);
        Emitter {
            builder,
            sizes,
            buffers,
            program,
            target,
            status,
            size_cache: HashMap::new(),
            address_cache: HashMap::new(),
            written: Vec::new(),
            partials: None,
        }
    }

    /// Computes every size and buffer address the kernel uses, in the entry block, so that
    /// every loop sees them (a value first computed inside one loop would not dominate the next).
    fn prepare(&mut self, kernel: &LoopKernel) {
        let mut sizes: Vec<&Size> = kernel.loops.iter().collect();
        let mut buffers: Vec<usize> = Vec::new();
        let indices = kernel.body.iter().filter_map(|(expr, _)| match expr {
            Expr::Load { index, .. } | Expr::Random { index, .. } | Expr::Gather { index, .. } => Some(index),
            _ => None,
        });
        let all_indices: Vec<&Index> = indices.chain(kernel.stores.iter().map(|(_, _, index)| index)).collect();
        for index in all_indices {
            sizes.extend(index.base.iter());
            sizes.extend(index.strides.iter());
        }
        for (expr, _) in &kernel.body {
            match expr {
                Expr::Load { buffer, .. } => buffers.push(*buffer),
                Expr::Size(size) => sizes.push(size),
                Expr::Gather { buffer, rows, row_stride, .. } => {
                    buffers.push(*buffer);
                    sizes.push(rows);
                    sizes.push(row_stride);
                }
                _ => {}
            }
        }
        buffers.extend(kernel.stores.iter().map(|(_, buffer, _)| *buffer));
        for size in sizes {
            if !self.size_cache.contains_key(size) {
                let value = super::size_value(self.builder, self.sizes, size);
                self.size_cache.insert(size.clone(), value);
            }
        }
        for buffer in buffers {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.address_cache.entry(buffer) {
                slot.insert(super::buffer_address(self.builder, self.buffers, buffer));
            }
        }
    }

    /// Flags for loads of `buffer`: read-only and movable unless this function writes it.
    fn load_flags(&self, buffer: usize) -> MemFlagsData {
        if self.written.contains(&buffer) { super::trusted() } else { super::read_only() }
    }

    /// The value of a size (computed by `prepare`).
    fn size(&mut self, size: &Size) -> Value {
        self.size_cache[size]
    }

    fn address(&mut self, buffer: usize) -> Value {
        self.address_cache[&buffer]
    }

    fn iconst(&mut self, value: i64) -> Value {
        self.builder.ins().iconst(types::I64, value)
    }

    /// The element offset of `index` at loop indices `indices`.
    fn offset(&mut self, index: &Index, indices: &[Value]) -> Value {
        if let Some(partials) = &self.partials
            && indices.len() == partials.level + 1
            && let Some(&partial) = partials.offsets.get(index)
        {
            let level = partials.level;
            return self.add_term(partial, index, level, indices[level]);
        }
        let mut offset = self.iconst(0);
        for base in &index.base {
            let base = self.size(base);
            offset = self.builder.ins().iadd(offset, base);
        }
        for (level, &position) in indices.iter().enumerate() {
            offset = self.add_term(offset, index, level, position);
        }
        offset
    }

    /// `offset` plus loop `level`'s term of `index` at `position`.
    fn add_term(&mut self, offset: Value, index: &Index, level: usize, position: Value) -> Value {
        match index.strides.get(level).and_then(Size::as_fixed) {
            Some(0) => offset,
            Some(1) => self.builder.ins().iadd(offset, position),
            _ if level >= index.strides.len() => offset,
            _ => {
                let stride = self.size(&index.strides[level]);
                let term = self.builder.ins().imul(position, stride);
                self.builder.ins().iadd(offset, term)
            }
        }
    }

    /// The address of element `index` of `buffer` at loop indices `indices`.
    fn access(&mut self, buffer: usize, index: &Index, indices: &[Value]) -> Value {
        let bytes = byte_size(self.program.buffers[buffer].dtype);
        if let Some(partials) = &self.partials
            && indices.len() == partials.level + 1
            && let Some(&partial) = partials.addresses.get(&(buffer, index.clone()))
        {
            let level = partials.level;
            let position = indices[level];
            return match index.strides.get(level) {
                None => partial,
                Some(stride) => match stride.as_fixed() {
                    Some(0) => partial,
                    Some(step) => {
                        let bytes_in = self.builder.ins().imul_imm_s(position, step * bytes);
                        self.builder.ins().iadd(partial, bytes_in)
                    }
                    None => {
                        let stride = self.size(stride);
                        let elements = self.builder.ins().imul(position, stride);
                        let bytes_in = self.builder.ins().imul_imm_s(elements, bytes);
                        self.builder.ins().iadd(partial, bytes_in)
                    }
                },
            };
        }
        let offset = self.offset(index, indices);
        self.element_address(buffer, offset)
    }

    /// Computes the partial offsets and addresses of every access of `kernel` for the loop
    /// `level` about to open, at the outer loops' indices `outer`.
    fn enter_innermost(&mut self, kernel: &LoopKernel, level: usize, outer: &[Value]) {
        let mut partials = Partials { level, offsets: HashMap::new(), addresses: HashMap::new() };
        for (buffer, index) in accesses(kernel) {
            if !partials.offsets.contains_key(index) {
                let offset = self.offset(index, outer);
                partials.offsets.insert(index.clone(), offset);
            }
            if let Some(buffer) = buffer
                && !partials.addresses.contains_key(&(buffer, index.clone()))
            {
                let offset = partials.offsets[index];
                let address = self.element_address(buffer, offset);
                partials.addresses.insert((buffer, index.clone()), address);
            }
        }
        self.partials = Some(partials);
    }

    /// The address of element `offset` of `buffer`.
    fn element_address(&mut self, buffer: usize, offset: Value) -> Value {
        let base = self.address(buffer);
        let bytes = byte_size(self.program.buffers[buffer].dtype);
        let byte_offset = self.builder.ins().imul_imm_s(offset, bytes);
        self.builder.ins().iadd(base, byte_offset)
    }
}

/// Every index a kernel computes, with the buffer it addresses (`None` for a random draw's
/// element number and a gather's position within its row, which are offsets, not addresses).
fn accesses(kernel: &LoopKernel) -> Vec<(Option<usize>, &Index)> {
    let body = kernel.body.iter().filter_map(|(expr, _)| match expr {
        Expr::Load { buffer, index } => Some((Some(*buffer), index)),
        Expr::Random { index, .. } | Expr::Gather { index, .. } => Some((None, index)),
        _ => None,
    });
    body.chain(kernel.stores.iter().map(|(_, buffer, index)| (Some(*buffer), index))).collect()
}

/// Bytes per element.
fn byte_size(dtype: DType) -> i64 {
    match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool => 1,
    }
}

/// The Cranelift type of a scalar of `dtype` (masks are `i8` 0/1).
fn scalar_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
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
            Reduce::Max => constant(emitter.builder, dtype, f64::NEG_INFINITY, i64::MIN),
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
                Reduce::Max => i64::MIN,
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
        if !vector || stride.as_fixed() == Some(1) {
            emitter.builder.ins().store(super::trusted(), value, address, 0);
            return;
        }
        let bytes = byte_size(emitter.program.buffers[buffer].dtype);
        let step = emitter.size(&stride);
        let step = emitter.builder.ins().imul_imm_s(step, bytes);
        let mut lane_address = address;
        for lane in 0..LANES as u8 {
            let element = emitter.builder.ins().extractlane(value, lane);
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

/// A scalar constant of `dtype`: `float` for floats, `int` for integers, nonzero for masks.
fn constant(builder: &mut FunctionBuilder, dtype: DType, float: f64, int: i64) -> Value {
    match dtype {
        DType::F32 => builder.ins().f32const(float as f32),
        DType::F64 => builder.ins().f64const(float),
        DType::I32 => builder.ins().iconst(types::I32, int as i32 as i64),
        DType::I64 => builder.ins().iconst(types::I64, int),
        DType::Bool => builder.ins().iconst(types::I8, i64::from(float != 0.0)),
    }
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

/// The four lanes of each integer value that changes along the vector loop (`None` for the
/// others).
type Lanes = Vec<Option<[Value; 4]>>;

/// Emits a kernel body's expressions at the current loop indices.
struct Body<'k> {
    kernel: &'k LoopKernel,
    indices: &'k [Value],
    /// The body runs 4 lanes of loop `level` at a time.
    vector: bool,
    level: usize,
    /// A buffer whose loads take this value instead (see `Nest::product`).
    product: Option<(usize, Value)>,
}

impl Body<'_> {
    /// The body's values: scalars, or in a vector body 4-lane vectors (`f32x4`, masks as
    /// `i32x4`) and, for integers that change along the lanes, their lane 0 (all four lanes
    /// are in `Lanes`).
    fn emit(&self, emitter: &mut Emitter) -> (Vec<Value>, Lanes) {
        let uniform =
            if self.vector { uniform_exprs(self.kernel, self.level) } else { vec![true; self.kernel.body.len()] };
        let mut values: Vec<Value> = Vec::with_capacity(self.kernel.body.len());
        let mut lanes: Lanes = vec![None; self.kernel.body.len()];
        for (id, (expr, dtype)) in self.kernel.body.iter().enumerate() {
            let value = if dtype.is_int() && !uniform[id] {
                let four = self.int_lanes(emitter, expr, *dtype, &values, &lanes);
                lanes[id] = Some(four);
                four[0]
            } else {
                self.expr(emitter, expr, *dtype, &values, &lanes)
            };
            values.push(value);
        }
        (values, lanes)
    }

    /// Lane `lane` of integer value `id`: its own lane, or the value itself if uniform.
    fn lane(values: &[Value], lanes: &Lanes, id: ExprId, lane: usize) -> Value {
        lanes[id].map_or(values[id], |four| four[lane])
    }

    /// The four lanes of an integer expression that changes along the vector loop.
    fn int_lanes(
        &self,
        emitter: &mut Emitter,
        expr: &Expr,
        dtype: DType,
        values: &[Value],
        lanes: &Lanes,
    ) -> [Value; 4] {
        let ty = scalar_type(dtype);
        let builder_lanes = |emitter: &mut Emitter, f: &mut dyn FnMut(&mut Emitter, usize) -> Value| {
            [f(emitter, 0), f(emitter, 1), f(emitter, 2), f(emitter, 3)]
        };
        match expr {
            Expr::Load { buffer, index } => {
                let address = emitter.access(*buffer, index, self.indices);
                let stride = index.strides.get(self.level).cloned().unwrap_or_else(|| Size::fixed(0));
                let step = emitter.size(&stride);
                let step = emitter.builder.ins().imul_imm_s(step, byte_size(dtype));
                builder_lanes(emitter, &mut |emitter, lane| {
                    let skip = emitter.builder.ins().imul_imm_s(step, lane as i64);
                    let lane_address = emitter.builder.ins().iadd(address, skip);
                    let flags = emitter.load_flags(*buffer);
                    emitter.builder.ins().load(ty, flags, lane_address, 0)
                })
            }
            Expr::LoopIndex(level) => {
                let index = self.indices[*level];
                builder_lanes(emitter, &mut |emitter, lane| emitter.builder.ins().iadd_imm_s(index, lane as i64))
            }
            Expr::Cast(x) => {
                let from = self.kernel.body[*x].1;
                builder_lanes(emitter, &mut |emitter, lane| {
                    let source = match from {
                        // A vector mask lane is 0 or -1 (`i32`); a float lane is an `f32`.
                        DType::Bool if self.vector && lanes[*x].is_none() && !self.is_scalar(emitter, values[*x]) => {
                            let wide = emitter.builder.ins().extractlane(values[*x], lane as u8);
                            let bit = emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0);
                            return cast(emitter.builder, DType::Bool, dtype, bit);
                        }
                        DType::F32 if !self.is_scalar(emitter, values[*x]) => {
                            emitter.builder.ins().extractlane(values[*x], lane as u8)
                        }
                        _ => Self::lane(values, lanes, *x, lane),
                    };
                    cast(emitter.builder, from, dtype, source)
                })
            }
            Expr::Unary(op, x) => builder_lanes(emitter, &mut |emitter, lane| {
                let x = Self::lane(values, lanes, *x, lane);
                unary(emitter.builder, emitter.target, *op, dtype, x, false)
            }),
            Expr::Binary(op, a, b) => builder_lanes(emitter, &mut |emitter, lane| {
                let (a, b) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                binary(emitter, *op, dtype, a, b)
            }),
            Expr::Select(mask, a, b) => builder_lanes(emitter, &mut |emitter, lane| {
                let wide = emitter.builder.ins().extractlane(values[*mask], lane as u8);
                let bit = emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0);
                let (a, b) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                emitter.builder.ins().select(bit, a, b)
            }),
            _ => unreachable!("bug in kiln: `vectorizable_at` admits no other integer lanes"),
        }
    }

    /// A mask as 4 lanes of 0 or -1: itself, or a uniform scalar mask (`i8` 0/1) spread.
    fn vector_mask(&self, emitter: &mut Emitter, mask: Value) -> Value {
        if !self.is_scalar(emitter, mask) {
            return mask;
        }
        let wide = emitter.builder.ins().sextend(types::I32, mask);
        let wide = emitter.builder.ins().ineg(wide);
        emitter.builder.ins().splat(types::I32X4, wide)
    }

    /// A mask as a scalar `i8`: itself, or lane 0 of a vector mask that is uniform.
    fn scalar_mask(&self, emitter: &mut Emitter, mask: Value) -> Value {
        if self.is_scalar(emitter, mask) {
            return mask;
        }
        let wide = emitter.builder.ins().extractlane(mask, 0);
        emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0)
    }

    /// True if `value` is a scalar (not a vector).
    fn is_scalar(&self, emitter: &mut Emitter, value: Value) -> bool {
        !emitter.builder.func.dfg.value_type(value).is_vector()
    }

    /// Four scalars as one vector of `ty`.
    fn build_vector(emitter: &mut Emitter, ty: Type, four: [Value; 4]) -> Value {
        let mut vector = emitter.builder.ins().splat(ty, four[0]);
        for (lane, &value) in four.iter().enumerate().skip(1) {
            vector = emitter.builder.ins().insertlane(vector, value, lane as u8);
        }
        vector
    }

    /// The `f32` elements at `address` and 3 more, `stride` elements apart, as 4 lanes.
    fn gather_lanes(&self, emitter: &mut Emitter, buffer: usize, address: Value, stride: &Size) -> Value {
        let flags = emitter.load_flags(buffer);
        let step = emitter.size(stride);
        let step = emitter.builder.ins().imul_imm_s(step, 4);
        let first = emitter.builder.ins().load(types::F32, flags, address, 0);
        let mut lanes = emitter.builder.ins().splat(types::F32X4, first);
        let mut lane_address = address;
        for lane in 1..LANES as u8 {
            lane_address = emitter.builder.ins().iadd(lane_address, step);
            let element = emitter.builder.ins().load(types::F32, flags, lane_address, 0);
            lanes = emitter.builder.ins().insertlane(lanes, element, lane);
        }
        lanes
    }

    /// A scalar as the body's form of a value of `dtype`: splat to lanes in a vector body,
    /// except integers, which stay scalar there (they are uniform along the lanes).
    fn splat_if_vector(&self, builder: &mut FunctionBuilder, value: Value, dtype: DType) -> Value {
        if self.vector && !dtype.is_int() { builder.ins().splat(types::F32X4, value) } else { value }
    }

    fn expr(&self, emitter: &mut Emitter, expr: &Expr, dtype: DType, values: &[Value], lanes: &Lanes) -> Value {
        let target = emitter.target;
        match expr {
            Expr::Load { buffer, .. } if self.product.is_some_and(|(product, _)| product == *buffer) => {
                self.product.expect("checked").1
            }
            Expr::Load { buffer, index } => {
                let address = emitter.access(*buffer, index, self.indices);
                let stride = index.strides.get(self.level).cloned().unwrap_or_else(|| Size::fixed(0));
                let flags = emitter.load_flags(*buffer);
                if self.vector && stride.as_fixed() == Some(1) {
                    return emitter.builder.ins().load(types::F32X4, flags, address, 0);
                }
                if self.vector && stride.as_fixed() != Some(0) {
                    return self.gather_lanes(emitter, *buffer, address, &stride);
                }
                let value = if dtype == DType::Bool {
                    let byte = emitter.builder.ins().load(types::I8, flags, address, 0);
                    emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, byte, 0)
                } else {
                    emitter.builder.ins().load(scalar_type(dtype), flags, address, 0)
                };
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::Const(v) => {
                let value = constant(emitter.builder, dtype, *v, *v as i64);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::Size(size) => {
                let value = emitter.size(size);
                let value = convert_int(emitter.builder, value, DType::I64, dtype);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::LoopIndex(level) => self.indices[*level],
            Expr::Unary(op, x) => unary(emitter.builder, target, *op, dtype, values[*x], self.vector),
            Expr::Pow(p, x) => pow(emitter.builder, target, *p, values[*x]),
            Expr::Binary(op, a, b) => binary(emitter, *op, dtype, values[*a], values[*b]),
            Expr::Compare(op, a, b) => {
                let operand = self.kernel.body[*a].1;
                if self.vector && operand.is_int() && (lanes[*a].is_some() || lanes[*b].is_some()) {
                    // Lane by lane, as a mask of 0 or -1 per `i32` lane, like `fcmp` gives.
                    let mut four = [values[*a]; 4];
                    for (lane, slot) in four.iter_mut().enumerate() {
                        let (x, y) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                        let bit = compare(emitter.builder, *op, operand, x, y);
                        let wide = emitter.builder.ins().sextend(types::I32, bit);
                        *slot = emitter.builder.ins().ineg(wide);
                    }
                    return Self::build_vector(emitter, types::I32X4, four);
                }
                compare(emitter.builder, *op, operand, values[*a], values[*b])
            }
            Expr::Select(mask, a, b) => {
                if self.vector && !dtype.is_int() {
                    let mask = self.vector_mask(emitter, values[*mask]);
                    let mask = emitter.builder.ins().bitcast(types::F32X4, little_endian(), mask);
                    emitter.builder.ins().bitselect(mask, values[*a], values[*b])
                } else {
                    let mask = self.scalar_mask(emitter, values[*mask]);
                    emitter.builder.ins().select(mask, values[*a], values[*b])
                }
            }
            Expr::Cast(x) => {
                let from = self.kernel.body[*x].1;
                if self.vector && !dtype.is_int() && from.is_int() {
                    let mut four = [values[*x]; 4];
                    for (lane, slot) in four.iter_mut().enumerate() {
                        *slot = cast(emitter.builder, from, dtype, Self::lane(values, lanes, *x, lane));
                    }
                    return Self::build_vector(emitter, types::F32X4, four);
                }
                if self.vector && !dtype.is_int() {
                    let x = if from == DType::Bool { self.vector_mask(emitter, values[*x]) } else { values[*x] };
                    vector_cast(emitter.builder, from, x)
                } else {
                    cast(emitter.builder, from, dtype, values[*x])
                }
            }
            Expr::Random { seed, distribution, counter, index } => {
                let offset = emitter.offset(index, self.indices);
                let counter = values[*counter];
                let moves = index.strides.get(self.level).and_then(Size::as_fixed) == Some(1);
                let key = random_key(emitter.builder, *seed, counter);
                if self.vector && moves {
                    return random_lanes(emitter.builder, target, *distribution, key, offset);
                }
                let value = random_value(emitter.builder, target, *distribution, key, offset);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::Gather { buffer, row, rows, row_stride, index } => {
                let rows = emitter.size(rows);
                let row = values[*row];
                let zero = emitter.iconst(0);
                let below = emitter.builder.ins().icmp(IntCC::SignedLessThan, row, zero);
                let above = emitter.builder.ins().icmp(IntCC::SignedGreaterThanOrEqual, row, rows);
                let bad = emitter.builder.ins().bor(below, above);
                emitter.status.report(emitter.builder, bad, STATUS_INDEX_OUT_OF_RANGE, row);
                let safe_row = emitter.builder.ins().select(bad, zero, row);
                let row_stride = emitter.size(row_stride);
                let row_offset = emitter.builder.ins().imul(safe_row, row_stride);
                let inner = emitter.offset(index, self.indices);
                let offset = emitter.builder.ins().iadd(row_offset, inner);
                let address = emitter.element_address(*buffer, offset);
                if self.vector && index.strides.get(self.level).and_then(Size::as_fixed) == Some(1) {
                    return emitter.builder.ins().load(types::F32X4, super::read_only(), address, 0);
                }
                let value = emitter.builder.ins().load(scalar_type(dtype), super::read_only(), address, 0);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
        }
    }
}

fn little_endian() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

fn unary(builder: &mut FunctionBuilder, target: Target, op: Unary, dtype: DType, x: Value, vector: bool) -> Value {
    if dtype.is_int() {
        return match op {
            Unary::Neg => builder.ins().ineg(x),
            Unary::Abs => builder.ins().iabs(x),
            _ => unreachable!("bug in kiln: integer {op:?} passed the builder's checks"),
        };
    }
    match op {
        Unary::Neg => builder.ins().fneg(x),
        Unary::Abs => builder.ins().fabs(x),
        Unary::Sqrt => builder.ins().sqrt(x),
        Unary::Recip => {
            let one = builder.ins().f32const(1.0);
            let one = if vector { builder.ins().splat(types::F32X4, one) } else { one };
            builder.ins().fdiv(one, x)
        }
        Unary::Exp => math::exp(builder, x, target.fma),
        Unary::Log => math::log(builder, x, target.fma),
        Unary::Sin => math::sin(builder, x, target.fma),
        Unary::Cos => math::cos(builder, x, target.fma),
        Unary::Tanh => math::tanh(builder, x, target.fma),
    }
}

/// `x^p`: exact products for small integer `p`, square roots for ±1/2, else `exp(p·log x)`
/// (NaN for negative `x`, as `powf` gives for non-integer exponents).
fn pow(builder: &mut FunctionBuilder, target: Target, p: f64, x: Value) -> Value {
    let ty = builder.func.dfg.value_type(x);
    let splat = |builder: &mut FunctionBuilder, v: f32| {
        let c = builder.ins().f32const(v);
        if ty.is_vector() { builder.ins().splat(ty, c) } else { c }
    };
    if p == 0.5 {
        return builder.ins().sqrt(x);
    }
    if p == -0.5 {
        let root = builder.ins().sqrt(x);
        let one = splat(builder, 1.0);
        return builder.ins().fdiv(one, root);
    }
    if p.fract() == 0.0 && p.abs() <= 16.0 {
        let mut result = splat(builder, 1.0);
        let mut power = x;
        let mut n = p.abs() as u32;
        while n > 0 {
            if n & 1 == 1 {
                result = builder.ins().fmul(result, power);
            }
            n >>= 1;
            if n > 0 {
                power = builder.ins().fmul(power, power);
            }
        }
        if p < 0.0 {
            let one = splat(builder, 1.0);
            result = builder.ins().fdiv(one, result);
        }
        return result;
    }
    let log = math::log(builder, x, target.fma);
    let exponent = splat(builder, p as f32);
    let scaled = builder.ins().fmul(log, exponent);
    math::exp(builder, scaled, target.fma)
}

fn binary(emitter: &mut Emitter, op: Binary, dtype: DType, a: Value, b: Value) -> Value {
    let builder = &mut *emitter.builder;
    if dtype.is_float() {
        return match op {
            Binary::Add => builder.ins().fadd(a, b),
            Binary::Sub => builder.ins().fsub(a, b),
            Binary::Mul => builder.ins().fmul(a, b),
            Binary::Div => builder.ins().fdiv(a, b),
            Binary::Max => builder.ins().fmax(a, b),
            Binary::Min => builder.ins().fmin(a, b),
        };
    }
    match op {
        Binary::Add => builder.ins().iadd(a, b),
        Binary::Sub => builder.ins().isub(a, b),
        Binary::Mul => builder.ins().imul(a, b),
        Binary::Max => builder.ins().smax(a, b),
        Binary::Min => builder.ins().smin(a, b),
        Binary::Div => {
            // Cranelift's sdiv traps on a zero divisor and on MIN / -1: divide by a safe
            // divisor, report a zero one, and wrap MIN / -1 to MIN as Rust's wrapping_div does.
            let ty = builder.func.dfg.value_type(a);
            let zero = builder.ins().iconst(ty, 0);
            let one = builder.ins().iconst(ty, 1);
            let is_zero = builder.ins().icmp(IntCC::Equal, b, zero);
            let is_minus_one = builder.ins().icmp_imm_s(IntCC::Equal, b, -1);
            let unsafe_divisor = builder.ins().bor(is_zero, is_minus_one);
            let divisor = builder.ins().select(unsafe_divisor, one, b);
            let quotient = builder.ins().sdiv(a, divisor);
            let negated = builder.ins().ineg(a);
            let quotient = builder.ins().select(is_minus_one, negated, quotient);
            let wide = if ty == types::I64 { a } else { builder.ins().sextend(types::I64, a) };
            emitter.status.report(emitter.builder, is_zero, STATUS_DIVISION_BY_ZERO, wide);
            let _ = dtype;
            quotient
        }
    }
}

fn compare(builder: &mut FunctionBuilder, op: Compare, operand: DType, a: Value, b: Value) -> Value {
    if operand.is_float() {
        let cc = match op {
            Compare::Lt => FloatCC::LessThan,
            Compare::Le => FloatCC::LessThanOrEqual,
            Compare::Gt => FloatCC::GreaterThan,
            Compare::Ge => FloatCC::GreaterThanOrEqual,
            Compare::Eq => FloatCC::Equal,
        };
        return builder.ins().fcmp(cc, a, b);
    }
    let cc = match op {
        Compare::Lt => IntCC::SignedLessThan,
        Compare::Le => IntCC::SignedLessThanOrEqual,
        Compare::Gt => IntCC::SignedGreaterThan,
        Compare::Ge => IntCC::SignedGreaterThanOrEqual,
        Compare::Eq => IntCC::Equal,
    };
    builder.ins().icmp(cc, a, b)
}

/// Casts between scalar dtypes with Rust's `as` semantics (saturating float to int, NaN to 0;
/// nonzero to true).
fn cast(builder: &mut FunctionBuilder, from: DType, to: DType, x: Value) -> Value {
    match (from, to) {
        _ if from == to => x,
        (DType::F32, DType::Bool) => {
            let zero = builder.ins().f32const(0.0);
            builder.ins().fcmp(FloatCC::NotEqual, x, zero)
        }
        (DType::F32, int) => builder.ins().fcvt_to_sint_sat(scalar_type(int), x),
        (DType::Bool, DType::F32) => {
            let wide = builder.ins().uextend(types::I32, x);
            builder.ins().fcvt_from_uint(types::F32, wide)
        }
        (DType::Bool, int) => builder.ins().uextend(scalar_type(int), x),
        (int, other) => convert_int(builder, x, int, other),
    }
}

/// Converts an integer of `from` to `to` (`f32`, another integer width, or a mask).
fn convert_int(builder: &mut FunctionBuilder, x: Value, from: DType, to: DType) -> Value {
    match (from, to) {
        _ if from == to => x,
        (_, DType::F32) => builder.ins().fcvt_from_sint(types::F32, x),
        (_, DType::F64) => builder.ins().fcvt_from_sint(types::F64, x),
        (DType::I32, DType::I64) => builder.ins().sextend(types::I64, x),
        (DType::I64, DType::I32) => builder.ins().ireduce(types::I32, x),
        (_, DType::Bool) => builder.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
        _ => unreachable!("bug in kiln: cast from {from} to {to}"),
    }
}

/// Vector casts: only mask to `f32` (0 or 1) and `f32` to itself are vectorised.
fn vector_cast(builder: &mut FunctionBuilder, from: DType, x: Value) -> Value {
    match from {
        DType::Bool => {
            let one = builder.ins().f32const(1.0);
            let zero = builder.ins().f32const(0.0);
            let (one, zero) = (builder.ins().splat(types::F32X4, one), builder.ins().splat(types::F32X4, zero));
            let mask = builder.ins().bitcast(types::F32X4, little_endian(), x);
            builder.ins().bitselect(mask, one, zero)
        }
        _ => x,
    }
}

/// `mix32` of `random.rs`, on an `i32` or on four `i32x4` lanes.
fn mix32(builder: &mut FunctionBuilder, x: Value) -> Value {
    let ty = builder.func.dfg.value_type(x);
    let multiply = |builder: &mut FunctionBuilder, x: Value, factor: u32| {
        let factor = builder.ins().iconst(types::I32, factor as i32 as i64);
        let factor = if ty.is_vector() { builder.ins().splat(ty, factor) } else { factor };
        builder.ins().imul(x, factor)
    };
    let shifted = builder.ins().ushr_imm_s(x, 16);
    let x = builder.ins().bxor(x, shifted);
    let x = multiply(builder, x, 0x7feb_352d);
    let shifted = builder.ins().ushr_imm_s(x, 15);
    let x = builder.ins().bxor(x, shifted);
    let x = multiply(builder, x, 0x846c_a68b);
    let shifted = builder.ins().ushr_imm_s(x, 16);
    builder.ins().bxor(x, shifted)
}

/// `random::bits(key, index)` then a uniform on [0, 1) with 24 bits.
fn uniform_at(builder: &mut FunctionBuilder, key: Value, index: Value) -> Value {
    let low = builder.ins().ireduce(types::I32, index);
    let high = builder.ins().ushr_imm_s(index, 32);
    let high = builder.ins().ireduce(types::I32, high);
    uniform_from_halves(builder, key, low, high)
}

/// The uniform of the element whose 64-bit index has halves `low` and `high`, for one `i32`
/// index or four `i32x4` lanes (with `key` of the same form).
fn uniform_from_halves(builder: &mut FunctionBuilder, key: Value, low: Value, high: Value) -> Value {
    let vector = builder.func.dfg.value_type(low).is_vector();
    let mixed = builder.ins().bxor(key, low);
    let mixed = mix32(builder, mixed);
    let mixed = builder.ins().iadd(mixed, high);
    let bits = mix32(builder, mixed);
    let top = builder.ins().ushr_imm_s(bits, 8);
    // Below 2^24, so the signed conversion is exact.
    let value = builder.ins().fcvt_from_sint(if vector { types::F32X4 } else { types::F32 }, top);
    let scale = builder.ins().f32const(1.0 / 16_777_216.0);
    let scale = if vector { builder.ins().splat(types::F32X4, scale) } else { scale };
    builder.ins().fmul(value, scale)
}

/// `random::draw_key(seed, counter)`: mix32 folded over the seed's and the counter's halves.
fn random_key(builder: &mut FunctionBuilder, seed: u64, counter: Value) -> Value {
    let mut key = builder.ins().iconst(types::I32, 0x9e37_79b9_u32 as i32 as i64);
    for half in [seed as u32, (seed >> 32) as u32] {
        let half = builder.ins().iconst(types::I32, half as i32 as i64);
        let mixed = builder.ins().bxor(key, half);
        key = mix32(builder, mixed);
    }
    let counter_high = builder.ins().ushr_imm_s(counter, 32);
    for half in [counter, counter_high] {
        let half = builder.ins().ireduce(types::I32, half);
        let mixed = builder.ins().bxor(key, half);
        key = mix32(builder, mixed);
    }
    key
}

/// kiln's counter-based random number at flat `index` of the stream `key`, as `random.rs`
/// defines it.
fn random_value(
    builder: &mut FunctionBuilder,
    target: Target,
    distribution: Distribution,
    key: Value,
    index: Value,
) -> Value {
    match distribution {
        Distribution::Uniform => uniform_at(builder, key, index),
        Distribution::Normal => {
            let first = builder.ins().imul_imm_s(index, 2);
            let second = builder.ins().iadd_imm_s(first, 1);
            let u1 = uniform_at(builder, key, first);
            let u2 = uniform_at(builder, key, second);
            box_muller(builder, target, u1, u2)
        }
    }
}

/// A normal draw from two uniforms on [0, 1): `sqrt(-2 ln(1 - u1)) · cos(2π u2)`, in scalar
/// or vector form.
fn box_muller(builder: &mut FunctionBuilder, target: Target, u1: Value, u2: Value) -> Value {
    let ty = builder.func.dfg.value_type(u1);
    let splat = |builder: &mut FunctionBuilder, v: f32| {
        let c = builder.ins().f32const(v);
        if ty.is_vector() { builder.ins().splat(ty, c) } else { c }
    };
    let one = splat(builder, 1.0);
    let complement = builder.ins().fsub(one, u1);
    let log = math::log(builder, complement, target.fma);
    let minus_two = splat(builder, -2.0);
    let radius_squared = builder.ins().fmul(log, minus_two);
    let radius = builder.ins().sqrt(radius_squared);
    let tau = splat(builder, std::f32::consts::TAU);
    let angle = builder.ins().fmul(u2, tau);
    let cos = math::cos(builder, angle, target.fma);
    builder.ins().fmul(radius, cos)
}

/// The random numbers at flat indices `index + 0..4`, as an `f32x4`: the same values as four
/// calls of [`random_value`], computed lane-wise in `i32x4`.
fn random_lanes(
    builder: &mut FunctionBuilder,
    target: Target,
    distribution: Distribution,
    key: Value,
    index: Value,
) -> Value {
    let key = builder.ins().splat(types::I32X4, key);
    match distribution {
        Distribution::Uniform => {
            let (low, high) = lane_halves(builder, index, [0, 1, 2, 3]);
            uniform_from_halves(builder, key, low, high)
        }
        Distribution::Normal => {
            let first = builder.ins().imul_imm_s(index, 2);
            let (low, high) = lane_halves(builder, first, [0, 2, 4, 6]);
            let u1 = uniform_from_halves(builder, key, low, high);
            let (low, high) = lane_halves(builder, first, [1, 3, 5, 7]);
            let u2 = uniform_from_halves(builder, key, low, high);
            box_muller(builder, target, u1, u2)
        }
    }
}

/// The low and high 32-bit halves of the 64-bit values `base + steps[l]`, lane by lane: the low
/// halves wrap, and a lane whose low half wrapped carries one into its high half.
fn lane_halves(builder: &mut FunctionBuilder, base: Value, steps: [i32; 4]) -> (Value, Value) {
    let base_low = builder.ins().ireduce(types::I32, base);
    let base_high = builder.ins().ushr_imm_s(base, 32);
    let base_high = builder.ins().ireduce(types::I32, base_high);
    let base_low = builder.ins().splat(types::I32X4, base_low);
    let bytes: Vec<u8> = steps.iter().flat_map(|step| step.to_le_bytes()).collect();
    let steps = builder.func.dfg.constants.insert(bytes.into());
    let steps = builder.ins().vconst(types::I32X4, steps);
    let low = builder.ins().iadd(base_low, steps);
    // All ones (-1) in the lanes that wrapped.
    let wrapped = builder.ins().icmp(IntCC::UnsignedLessThan, low, base_low);
    let high = builder.ins().splat(types::I32X4, base_high);
    let high = builder.ins().isub(high, wrapped);
    (low, high)
}
