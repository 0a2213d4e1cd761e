//! The state of one generated function: its parameters, the sizes and buffer addresses it
//! has loaded, the data-dependent status it reports, and how it addresses elements.
//!
//! In: a Cranelift function builder and the kernel being built. Out: addresses of elements, loaded
//! sizes, reported statuses.

use std::collections::HashMap;

use cranelift_codegen::ir::{Block, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::FunctionBuilder;

use super::Target;
use crate::graph::DType;
use crate::kernel::{Expr, Index, LoopKernel, Program, Size};

/// Vector width in `f32` lanes.
pub(super) const LANES: i64 = 4;

/// Where a kernel reports a data-dependent error: the two status slots (zero on entry), written
/// only when an error happens, on a branch taken only then, so a loop that checks every element
/// (a gather's index) carries no state from one iteration to the next.
pub(super) struct Status {
    /// The status slots' address; `None` for code that cannot fail (epilogues, computed
    /// updates).
    pointer: Option<Value>,
}

impl Status {
    pub(super) fn new(pointer: Option<Value>) -> Status {
        Status { pointer }
    }

    /// Records `code` and `value` if `failed` (an `i8` 0/1) is set.
    pub(super) fn report(&self, builder: &mut FunctionBuilder, failed: Value, code: i64, value: Value) {
        let next = self.enter_report(builder, failed, code, value);
        builder.ins().jump(next, &[]);
        builder.switch_to_block(next);
    }

    /// Opens the cold blocks taken when `failed` is set, records `code` and `value` there
    /// unless an earlier error of the call is recorded already (the first error is the one
    /// reported, as the interpreter does), and returns the block that follows: the caller may
    /// record more (still in the cold path, so nothing it computes costs the hot one), then
    /// jumps to it and switches to it.
    pub(super) fn enter_report(&self, builder: &mut FunctionBuilder, failed: Value, code: i64, value: Value) -> Block {
        let pointer = self.pointer();
        let (report, record, next) = (builder.create_block(), builder.create_block(), builder.create_block());
        builder.set_cold_block(report);
        builder.set_cold_block(record);
        builder.ins().brif(failed, report, &[], next, &[]);
        builder.switch_to_block(report);
        let earlier = builder.ins().load(types::I64, super::trusted(), pointer, 0);
        builder.ins().brif(earlier, next, &[], record, &[]);
        builder.switch_to_block(record);
        let code = builder.ins().iconst(types::I64, code);
        builder.ins().store(super::trusted(), code, pointer, 0);
        builder.ins().store(super::trusted(), value, pointer, 8);
        next
    }

    /// The status slots' address: readable memory of [`super::STATUS_WORDS`] words, which a
    /// gather reads instead of its table when its row is bad.
    pub(super) fn pointer(&self) -> Value {
        self.pointer.expect("bug in kiln: code that cannot fail reported an error")
    }
}

/// The state shared by everything emitted into one function.
pub(super) struct Emitter<'a, 'b> {
    pub builder: &'a mut FunctionBuilder<'b>,
    pub(super) sizes: Value,
    pub(super) buffers: Value,
    pub(super) program: &'a Program,
    pub(super) target: Target,
    pub(super) status: Status,
    pub(super) size_cache: HashMap<Size, Value>,
    pub(super) address_cache: HashMap<usize, Value>,
    /// Buffers the function writes before this code reads them (a matmul's product, read by
    /// its epilogue): their loads must not be treated as read-only.
    pub(super) written: Vec<usize>,
    /// Inside an innermost loop (the level): each index's offset and each access's address
    /// without that loop's term, computed once before the loop, so an access inside costs a
    /// multiply-add instead of the whole sum over the nest.
    pub(super) partials: Option<Partials>,
}

/// Offsets and addresses without the innermost loop's term (see `Emitter::partials`).
pub(super) struct Partials {
    pub(super) level: usize,
    pub(super) offsets: HashMap<Index, Value>,
    pub(super) addresses: HashMap<(usize, Index), Value>,
}

impl<'a, 'b> Emitter<'a, 'b> {
    pub(super) fn new(
        builder: &'a mut FunctionBuilder<'b>,
        sizes: Value,
        buffers: Value,
        program: &'a Program,
        target: Target,
        status: Option<Value>,
    ) -> Emitter<'a, 'b> {
        let status = Status::new(status);
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
    pub(super) fn prepare(&mut self, kernel: &LoopKernel) {
        let mut sizes: Vec<&Size> = kernel.loops.iter().collect();
        let mut buffers: Vec<usize> = Vec::new();
        let indices = kernel.body.iter().filter_map(|(expr, _)| match expr {
            Expr::Load { index, .. } | Expr::Random { index, .. } | Expr::Gather { index, .. } => Some(index),
            _ => None,
        });
        let all_indices: Vec<&Index> = indices.chain(kernel.stores.iter().map(|(_, _, index)| index)).collect();
        // Positions of checked indices are computed only when a check fails, but from sizes
        // computed here, which dominate every block.
        let positions = kernel.body.iter().filter_map(|(expr, _)| match expr {
            Expr::Gather { position, .. } | Expr::CheckIndex { position, .. } => Some(position),
            _ => None,
        });
        for index in all_indices.into_iter().chain(positions) {
            sizes.extend(index.base.iter());
            sizes.extend(index.strides.iter());
        }
        for (expr, _) in &kernel.body {
            match expr {
                Expr::Load { buffer, .. } => buffers.push(*buffer),
                Expr::Size(size) | Expr::CheckIndex { limit: size, .. } => sizes.push(size),
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
    pub(super) fn load_flags(&self, buffer: usize) -> MemFlagsData {
        if self.written.contains(&buffer) { super::trusted() } else { super::read_only() }
    }

    /// The value of a size (computed by `prepare`).
    pub(super) fn size(&mut self, size: &Size) -> Value {
        self.size_cache[size]
    }

    pub(super) fn address(&mut self, buffer: usize) -> Value {
        self.address_cache[&buffer]
    }

    pub(super) fn iconst(&mut self, value: i64) -> Value {
        self.builder.ins().iconst(types::I64, value)
    }

    /// The element offset of `index` at loop indices `indices`.
    pub(super) fn offset(&mut self, index: &Index, indices: &[Value]) -> Value {
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
    pub(super) fn add_term(&mut self, offset: Value, index: &Index, level: usize, position: Value) -> Value {
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
    pub(super) fn access(&mut self, buffer: usize, index: &Index, indices: &[Value]) -> Value {
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
    pub(super) fn enter_innermost(&mut self, kernel: &LoopKernel, level: usize, outer: &[Value]) {
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
    pub(super) fn element_address(&mut self, buffer: usize, offset: Value) -> Value {
        let base = self.address(buffer);
        let bytes = byte_size(self.program.buffers[buffer].dtype);
        let byte_offset = self.builder.ins().imul_imm_s(offset, bytes);
        self.builder.ins().iadd(base, byte_offset)
    }
}

/// Every index a kernel computes, with the buffer it addresses (`None` for a random draw's
/// element number and a gather's position within its row, which are offsets, not addresses).
pub(super) fn accesses(kernel: &LoopKernel) -> Vec<(Option<usize>, &Index)> {
    let body = kernel.body.iter().filter_map(|(expr, _)| match expr {
        Expr::Load { buffer, index } => Some((Some(*buffer), index)),
        Expr::Random { index, .. } | Expr::Gather { index, .. } => Some((None, index)),
        _ => None,
    });
    body.chain(kernel.stores.iter().map(|(_, buffer, index)| (Some(*buffer), index))).collect()
}

/// Bytes per element.
pub(super) fn byte_size(dtype: DType) -> i64 {
    match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool => 1,
    }
}

/// The Cranelift type of a scalar of `dtype` (masks are `i8` 0/1).
pub(super) fn scalar_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

/// A scalar constant of `dtype`: `float` for floats, `int` for integers, nonzero for masks.
pub(super) fn constant(builder: &mut FunctionBuilder, dtype: DType, float: f64, int: i64) -> Value {
    match dtype {
        DType::F32 => builder.ins().f32const(float as f32),
        DType::F64 => builder.ins().f64const(float),
        DType::I32 => builder.ins().iconst(types::I32, int as i32 as i64),
        DType::I64 => builder.ins().iconst(types::I64, int),
        DType::Bool => builder.ins().iconst(types::I8, i64::from(float != 0.0)),
    }
}
