//! Matrix products to Cranelift IR: a register-tiled micro-kernel.
//!
//! In: a matmul kernel (with its epilogue, if fused). Out: its Cranelift function: the GEMM call or
//! the register tile.
//!
//! Rows of the result are the splittable range (batch and rows flattened, in chunks). Big
//! products call the tuned GEMM (see `gemm`); the others run a tile that keeps rows × vectors
//! accumulators of 4 columns in registers (at most ~16 live vectors, see CRANELIFT.md) and
//! runs the contracted dim as a loop, broadcasting one element of `a` and loading one vector
//! of `b` per step; leftover columns run in narrower tiles, then scalars. The tile sums each
//! element in order of `k`; the GEMM is called once per fixed chunk of rows. Either way the
//! order of every sum is fixed by the shapes alone, so results do not depend on threads.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{FuncRef, InstBuilder, StackSlotData, StackSlotKind, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};

use super::loops::{self, loop_begin, loop_end};
use super::{KernelShape, STATUS_GEMM_FAILED, Target, gemm, read_only, trusted};
use crate::kernel::{CHUNK_COLUMNS, MatMulKernel, Program, Size};

/// Rows per tile when rows share the right operand, by vectors per tile: at most ~16 live
/// vector values (accumulators, the right operand's vectors and one broadcast).
fn rows_per_tile(vectors: usize) -> usize {
    match vectors {
        1 | 2 => 4,
        3 => 3,
        _ => 2,
    }
}

struct Operands {
    a: Value,
    b: Value,
    out: Value,
    m: Value,
    k: Value,
    n: Value,
    a_strides: [Value; 3],
    b_strides: [Value; 3],
}

/// Builds the function of a matmul kernel. Its range counts blocks of result rows (batch and
/// rows flattened) by columns, row-major (`MatMulKernel::chunks`). With `gemm`, products of at
/// least `target.gemm_min_work` multiply-adds over a `k` of at least [`gemm::GEMM_MIN_K`]
/// call the tuned GEMM; the rest run the tile.
pub(super) fn build(
    builder: &mut FunctionBuilder,
    kernel: &MatMulKernel,
    program: &Program,
    gemm_shim: Option<FuncRef>,
    target: Target,
) -> KernelShape {
    let params = super::entry(builder);
    let size = |builder: &mut FunctionBuilder, s: &Size| super::size_value(builder, params.sizes, s);
    let operands = Operands {
        a: super::buffer_address(builder, params.buffers, kernel.a.0),
        b: super::buffer_address(builder, params.buffers, kernel.b.0),
        out: super::buffer_address(builder, params.buffers, kernel.out),
        m: size(builder, &kernel.m),
        k: size(builder, &kernel.k),
        n: size(builder, &kernel.n),
        a_strides: kernel.a.1.clone().map(|s| size(builder, &s)),
        b_strides: kernel.b.1.clone().map(|s| size(builder, &s)),
    };
    let total_rows = size(builder, &kernel.batch.times(&kernel.m));
    // Big enough for the GEMM? (Decided once per call: it depends on the sizes alone.)
    let big = gemm_shim.map(|_| {
        if kernel.accumulate.is_some() {
            // Only the GEMM computes `c·out + a·b`.
            return builder.ins().iconst(types::I8, 1);
        }
        let rows_k = builder.ins().imul(operands.m, operands.k);
        let work = builder.ins().imul(rows_k, operands.n);
        let much_work = builder.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, work, target.gemm_min_work);
        let long_k = builder.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, operands.k, gemm::GEMM_MIN_K);
        builder.ins().band(much_work, long_k)
    });
    let failed = builder.declare_var(types::I64);
    let zero = builder.ins().iconst(types::I64, 0);
    builder.def_var(failed, zero);
    // Rows of one tile may belong to different batches; they share `b` only if it is unbatched.
    let shared_b = kernel.batch.as_fixed() == Some(1) || kernel.b.1[0].as_fixed() == Some(0);
    let widest = kernel.n.as_fixed().map_or(2, |n| (n as usize / 4).clamp(1, 5));
    let unit_columns = kernel.b.1[2].as_fixed() == Some(1);
    // The tile applies the epilogue to its accumulators when the epilogue runs 4 columns at a
    // time; the GEMM path (and the tile otherwise) applies it to each finished block.
    let register_epilogue = kernel.epilogue.as_ref().and_then(|epilogue| {
        let context = ((params.sizes, params.buffers), kernel.out);
        loops::RegisterEpilogue::new(epilogue, program, target, context)
    });
    let tile_finishes = register_epilogue.is_some();
    let single_batch = kernel.batch.as_fixed() == Some(1);
    let tile =
        Tile { operands: &operands, fma: target.fma, widest, unit_columns, single_batch, epilogue: register_epilogue };
    // Each index of the range is one block of `chunk_rows` rows × CHUNK_COLUMNS columns.
    let chunk_rows = kernel.chunk_rows();
    let column_chunks = builder.ins().iadd_imm_s(operands.n, CHUNK_COLUMNS - 1);
    let column_chunks = builder.ins().sdiv_imm_s(column_chunks, CHUNK_COLUMNS);
    let index = builder.declare_var(types::I64);
    builder.def_var(index, params.start);
    let (chunk, chunk_frame) = loop_begin(builder, index, params.end, 1);
    let row_chunk = builder.ins().udiv(chunk, column_chunks);
    let column_chunk = builder.ins().urem(chunk, column_chunks);
    let first_row = builder.ins().imul_imm_s(row_chunk, chunk_rows);
    let last_row = builder.ins().iadd_imm_s(first_row, chunk_rows);
    let last_row = builder.ins().smin(last_row, total_rows);
    let first_column = builder.ins().imul_imm_s(column_chunk, CHUNK_COLUMNS);
    let last_column = builder.ins().iadd_imm_s(first_column, CHUNK_COLUMNS);
    let columns = (first_column, builder.ins().smin(last_column, operands.n));
    let block_done = builder.create_block();
    if let (Some(shim), Some(big)) = (gemm_shim, big) {
        let tiled = builder.create_block();
        let called = builder.create_block();
        builder.ins().brif(big, called, &[], tiled, &[]);
        builder.switch_to_block(called);
        let next = builder.ins().iadd_imm_s(chunk, 1);
        let rows = (total_rows, builder.ins().iconst(types::I64, chunk_rows));
        let accumulate = builder.ins().iconst(types::I64, gemm::accumulate_word(kernel.accumulate));
        let status = call_gemm(builder, shim, &operands, (rows, accumulate), (chunk, next));
        let so_far = builder.use_var(failed);
        let status = builder.ins().bor(so_far, status);
        builder.def_var(failed, status);
        builder.ins().jump(block_done, &[]);
        builder.switch_to_block(tiled);
    }
    let row = builder.declare_var(types::I64);
    builder.def_var(row, first_row);
    // Fewer than 4 columns leave a vector's lanes empty: put 4 rows in the lanes instead.
    let narrow = kernel.n.as_fixed().filter(|&n| (1..4).contains(&n));
    if let (true, Some(n)) = (single_batch, narrow) {
        let (first, frame) = loop_begin(builder, row, last_row, 4);
        tile.rows_in_lanes(builder, first, n as usize);
        loop_end(builder, row, frame);
    } else if shared_b {
        let rows = rows_per_tile(widest);
        let (first, frame) = loop_begin(builder, row, last_row, rows as i64);
        tile.rows(builder, first, rows, columns);
        loop_end(builder, row, frame);
    }
    let (first, frame) = loop_begin(builder, row, last_row, 1);
    tile.rows(builder, first, 1, columns);
    loop_end(builder, row, frame);
    let finished = builder.create_block();
    builder.ins().jump(if tile_finishes { finished } else { block_done }, &[]);
    builder.switch_to_block(block_done);
    if let Some(epilogue) = &kernel.epilogue {
        // The block is in cache: finish it (bias, activation, mask) before the next one.
        let (sizes, buffers) = (params.sizes, params.buffers);
        let block = loops::ResultBlock { rows: (first_row, last_row), columns };
        loops::emit_block(builder, epilogue, program, target, (sizes, buffers), block, &[kernel.out]);
    }
    builder.ins().jump(finished, &[]);
    builder.switch_to_block(finished);
    loop_end(builder, index, chunk_frame);
    let failed = builder.use_var(failed);
    let code = builder.ins().iconst(types::I64, STATUS_GEMM_FAILED);
    let code = builder.ins().select(failed, code, zero);
    builder.ins().store(trusted(), code, params.status, 0);
    builder.ins().return_(&[]);
    KernelShape { chunks: kernel.chunks(), splittable: true }
}

/// Calls the GEMM shim for blocks `start..end`; returns its result (nonzero on failure).
/// `rows`: the result's rows (batches flattened) and rows per block; `accumulate`: the
/// layout's word for `MatMulKernel::accumulate`.
fn call_gemm(
    builder: &mut FunctionBuilder,
    shim: FuncRef,
    o: &Operands,
    (rows, accumulate): ((Value, Value), Value),
    blocks: (Value, Value),
) -> Value {
    let slot = builder.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        (gemm::LAYOUT_WORDS * 8) as u32,
        3,
    ));
    // In the order of `gemm::Layout`'s fields.
    let fields = [
        o.m,
        o.k,
        o.n,
        rows.0,
        o.a_strides[0],
        o.a_strides[1],
        o.a_strides[2],
        o.b_strides[0],
        o.b_strides[1],
        o.b_strides[2],
        rows.1,
        accumulate,
    ];
    debug_assert_eq!(fields.len(), gemm::LAYOUT_WORDS);
    for (i, &field) in fields.iter().enumerate() {
        builder.ins().stack_store(types::I64, field, slot, (i * 8) as i32);
    }
    let layout = builder.ins().stack_addr(types::I64, slot, 0);
    let call = builder.ins().call(shim, &[layout, o.a, o.b, o.out, blocks.0, blocks.1]);
    builder.inst_results(call)[0]
}

struct Tile<'o> {
    operands: &'o Operands,
    fma: bool,
    /// Vectors of 4 columns in the widest block.
    widest: usize,
    /// The right operand's columns are adjacent (column stride 1).
    unit_columns: bool,
    /// The product has one batch (rows need no division into batch and row).
    single_batch: bool,
    /// An epilogue applied to the accumulators in registers, before anything is stored.
    epilogue: Option<loops::RegisterEpilogue<'o>>,
}

impl Tile<'_> {
    /// Columns `columns.0..columns.1` of `rows` consecutive result rows starting at `first`.
    fn rows(&self, builder: &mut FunctionBuilder, first: Value, rows: usize, columns: (Value, Value)) {
        let o = self.operands;
        // Element offsets of each row's start in `a` and `out`, and of its batch in `b`.
        let mut a_rows = Vec::with_capacity(rows);
        let mut out_rows = Vec::with_capacity(rows);
        let mut row_indices = Vec::with_capacity(rows);
        let mut b_base = None;
        for r in 0..rows {
            let row = builder.ins().iadd_imm_s(first, r as i64);
            row_indices.push(row);
            // One batch: every row is in batch 0, with no division by `m` (a symbolic batch
            // of rows makes `m` a run-time value, and a division costs tens of cycles).
            let (batch, i) = if self.single_batch {
                (builder.ins().iconst(types::I64, 0), row)
            } else {
                (builder.ins().udiv(row, o.m), builder.ins().urem(row, o.m))
            };
            let batch_offset = builder.ins().imul(batch, o.a_strides[0]);
            let row_offset = builder.ins().imul(i, o.a_strides[1]);
            a_rows.push(builder.ins().iadd(batch_offset, row_offset));
            out_rows.push(builder.ins().imul(row, o.n));
            b_base.get_or_insert_with(|| builder.ins().imul(batch, o.b_strides[0]));
        }
        let b_base = b_base.expect("bug in kiln: a tile has at least one row");
        let column = builder.declare_var(types::I64);
        builder.def_var(column, columns.0);
        for vectors in [self.widest, 1] {
            let (j, frame) = loop_begin(builder, column, columns.1, 4 * vectors as i64);
            self.block(builder, &a_rows, (&out_rows, &row_indices), b_base, j, vectors, true);
            loop_end(builder, column, frame);
        }
        let (j, frame) = loop_begin(builder, column, columns.1, 1);
        self.block(builder, &a_rows, (&out_rows, &row_indices), b_base, j, 1, false);
        loop_end(builder, column, frame);
    }

    /// All `n` (< 4) columns of the 4 result rows from `first`, one row per lane: each lane
    /// sums its own element in order of `k`, as the scalar tile does, so the bits are the same.
    fn rows_in_lanes(&self, builder: &mut FunctionBuilder, first: Value, n: usize) {
        let o = self.operands;
        let rows: Vec<Value> = (0..4).map(|r| builder.ins().iadd_imm_s(first, r)).collect();
        // One batch (the caller checks): row i of `a` starts at i · row stride.
        let a_rows: Vec<Value> = rows.iter().map(|&row| builder.ins().imul(row, o.a_strides[1])).collect();
        let zero = builder.ins().f32const(0.0);
        let zero = builder.ins().splat(types::F32X4, zero);
        let accumulators: Vec<Variable> = (0..n)
            .map(|_| {
                let var = builder.declare_var(types::F32X4);
                builder.def_var(var, zero);
                var
            })
            .collect();
        let kk = builder.declare_var(types::I64);
        let start = builder.ins().iconst(types::I64, 0);
        builder.def_var(kk, start);
        let (p, frame) = loop_begin(builder, kk, o.k, 1);
        let a_step = builder.ins().imul(p, o.a_strides[2]);
        let mut a_lanes = None;
        for (lane, &a_row) in a_rows.iter().enumerate() {
            let offset = builder.ins().iadd(a_row, a_step);
            let address = element(builder, o.a, offset);
            let value = builder.ins().load(types::F32, read_only(), address, 0);
            a_lanes = Some(match a_lanes {
                None => builder.ins().splat(types::F32X4, value),
                Some(v) => builder.ins().insertlane(v, value, lane as u8),
            });
        }
        let a_value = a_lanes.expect("bug in kiln: four lanes");
        let b_row = builder.ins().imul(p, o.b_strides[1]);
        let b_values: Vec<Value> = (0..n)
            .map(|c| {
                let column = builder.ins().iconst(types::I64, c as i64);
                let step = builder.ins().imul(column, o.b_strides[2]);
                let offset = builder.ins().iadd(b_row, step);
                let address = element(builder, o.b, offset);
                let value = builder.ins().load(types::F32, read_only(), address, 0);
                builder.ins().splat(types::F32X4, value)
            })
            .collect();
        self.multiply_add(builder, a_value, &b_values, &accumulators);
        loop_end(builder, kk, frame);
        for (c, &accumulator) in accumulators.iter().enumerate() {
            let sums = builder.use_var(accumulator);
            let column = builder.ins().iconst(types::I64, c as i64);
            for (lane, &row) in rows.iter().enumerate() {
                let value = builder.ins().extractlane(sums, lane as u8);
                let out_row = builder.ins().imul(row, o.n);
                let offset = builder.ins().iadd(out_row, column);
                let address = element(builder, o.out, offset);
                builder.ins().store(trusted(), value, address, 0);
                if let Some(epilogue) = &self.epilogue {
                    epilogue.emit(builder, [row, column], value, false);
                }
            }
        }
    }

    /// One block of results: `a_rows.len()` rows × `vectors` vectors of 4 columns (or one
    /// scalar column) from column `j`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        builder: &mut FunctionBuilder,
        a_rows: &[Value],
        (out_rows, row_indices): (&[Value], &[Value]),
        b_base: Value,
        j: Value,
        vectors: usize,
        vector: bool,
    ) {
        let o = self.operands;
        let ty = if vector { types::F32X4 } else { types::F32 };
        let zero = builder.ins().f32const(0.0);
        let zero = if vector { builder.ins().splat(ty, zero) } else { zero };
        let accumulators: Vec<Vec<Variable>> = (0..a_rows.len())
            .map(|_| {
                (0..vectors)
                    .map(|_| {
                        let var = builder.declare_var(ty);
                        builder.def_var(var, zero);
                        var
                    })
                    .collect()
            })
            .collect();
        let kk = builder.declare_var(types::I64);
        let start = builder.ins().iconst(types::I64, 0);
        builder.def_var(kk, start);
        let (p, frame) = loop_begin(builder, kk, o.k, 1);
        // b[batch, p, j + 4c + lane], at element (j + 4c + lane) · column stride of row p.
        let b_row = builder.ins().imul(p, o.b_strides[1]);
        let b_row = builder.ins().iadd(b_row, b_base);
        let first_column = if self.unit_columns { j } else { builder.ins().imul(j, o.b_strides[2]) };
        let b_row = builder.ins().iadd(b_row, first_column);
        let b_values: Vec<Value> = (0..vectors)
            .map(|c| {
                if self.unit_columns {
                    let offset = builder.ins().iadd_imm_s(b_row, 4 * c as i64);
                    let address = element(builder, o.b, offset);
                    return builder.ins().load(ty, read_only(), address, 0);
                }
                // The columns of a right operand whose columns are not adjacent (the transpose
                // of a weight): one load per lane.
                let mut lanes = None;
                for lane in 0..if vector { 4 } else { 1 } {
                    let step = builder.ins().imul_imm_s(o.b_strides[2], 4 * c as i64 + lane);
                    let offset = builder.ins().iadd(b_row, step);
                    let address = element(builder, o.b, offset);
                    let value = builder.ins().load(types::F32, read_only(), address, 0);
                    lanes = Some(match lanes {
                        None if vector => builder.ins().splat(types::F32X4, value),
                        None => value,
                        Some(v) => builder.ins().insertlane(v, value, lane as u8),
                    });
                }
                lanes.expect("bug in kiln: at least one lane")
            })
            .collect();
        for (r, &a_row) in a_rows.iter().enumerate() {
            let a_step = builder.ins().imul(p, o.a_strides[2]);
            let a_offset = builder.ins().iadd(a_row, a_step);
            let address = element(builder, o.a, a_offset);
            let a_value = builder.ins().load(types::F32, read_only(), address, 0);
            let a_value = if vector { builder.ins().splat(ty, a_value) } else { a_value };
            self.multiply_add(builder, a_value, &b_values, &accumulators[r]);
        }
        loop_end(builder, kk, frame);
        for ((&out_row, &row), row_accumulators) in out_rows.iter().zip(row_indices).zip(&accumulators) {
            for (c, &accumulator) in row_accumulators.iter().enumerate() {
                let column = builder.ins().iadd_imm_s(j, 4 * c as i64);
                let offset = builder.ins().iadd(out_row, column);
                let address = element(builder, o.out, offset);
                let value = builder.use_var(accumulator);
                builder.ins().store(trusted(), value, address, 0);
                if let Some(epilogue) = &self.epilogue {
                    epilogue.emit(builder, [row, column], value, vector);
                }
            }
        }
    }

    /// `accumulators[c] += a · b_values[c]`: fused where the target has FMA, a multiply then
    /// an add otherwise.
    fn multiply_add(&self, builder: &mut FunctionBuilder, a: Value, b_values: &[Value], accumulators: &[Variable]) {
        for (&b, &accumulator) in b_values.iter().zip(accumulators) {
            let acc = builder.use_var(accumulator);
            let next = if self.fma {
                builder.ins().fma(a, b, acc)
            } else {
                let product = builder.ins().fmul(a, b);
                builder.ins().fadd(acc, product)
            };
            builder.def_var(accumulator, next);
        }
    }
}

/// The address of `f32` element `offset` of the buffer at `base`.
fn element(builder: &mut FunctionBuilder, base: Value, offset: Value) -> Value {
    let bytes = builder.ins().ishl_imm_s(offset, 2);
    builder.ins().iadd(base, bytes)
}
