//! Scatter-add to Cranelift IR: zero the result, then add each update row at its index.
//!
//! In: a scatter-add kernel. Out: its Cranelift function.
//!
//! The splittable range is the columns of a row, so threads never write the same element and
//! every element sums its updates in order of position, whatever the thread count. Columns
//! run 4 lanes at a time, then one by one.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, types};
use cranelift_frontend::FunctionBuilder;

use super::loops::{self, loop_begin, loop_end};
use super::{KernelShape, STATUS_INDEX_OUT_OF_RANGE, Target, trusted};
use crate::graph::DType;
use crate::kernel::{Program, ScatterKernel};

/// Builds the function of a scatter kernel; returns the extent of its splittable range.
pub(super) fn build(
    builder: &mut FunctionBuilder,
    kernel: &ScatterKernel,
    program: &Program,
    target: Target,
) -> KernelShape {
    let params = super::entry(builder);
    let indices = super::buffer_address(builder, params.buffers, kernel.indices);
    // Computed updates read their operands instead of an updates buffer.
    let updates = kernel.producer.is_none().then(|| super::buffer_address(builder, params.buffers, kernel.updates));
    let out = super::buffer_address(builder, params.buffers, kernel.out);
    let positions = super::size_value(builder, params.sizes, &kernel.positions);
    let rows = super::size_value(builder, params.sizes, &kernel.rows);
    let row_len = super::size_value(builder, params.sizes, &kernel.row_len);
    let index_is_i32 = program.buffers[kernel.indices].dtype == DType::I32;
    let zero_f = builder.ins().f32const(0.0);
    let zero = builder.ins().iconst(types::I64, 0);

    // out[row, start..end] = 0 for every row.
    let row = builder.declare_var(types::I64);
    builder.def_var(row, zero);
    let (r, row_frame) = loop_begin(builder, row, rows, 1);
    let row_start = builder.ins().imul(r, row_len);
    let column = builder.declare_var(types::I64);
    builder.def_var(column, params.start);
    for lanes in [4, 1] {
        let (c, column_frame) = loop_begin(builder, column, params.end, lanes);
        let offset = builder.ins().iadd(row_start, c);
        let address = f32_element(builder, out, offset);
        let zero = if lanes == 4 { builder.ins().splat(types::F32X4, zero_f) } else { zero_f };
        builder.ins().store(trusted(), zero, address, 0);
        loop_end(builder, column, column_frame);
    }
    loop_end(builder, row, row_frame);

    // out[indices[p], start..end] += updates[p, start..end], skipping bad indices.
    let status_code = builder.declare_var(types::I64);
    let status_value = builder.declare_var(types::I64);
    builder.def_var(status_code, zero);
    builder.def_var(status_value, zero);
    let status_position = builder.declare_var(types::I64);
    builder.def_var(status_position, zero);
    let position = builder.declare_var(types::I64);
    builder.def_var(position, zero);
    let (p, position_frame) = loop_begin(builder, position, positions, 1);
    let target_row = if index_is_i32 {
        let offset = builder.ins().ishl_imm_s(p, 2);
        let address = builder.ins().iadd(indices, offset);
        let narrow = builder.ins().load(types::I32, trusted(), address, 0);
        builder.ins().sextend(types::I64, narrow)
    } else {
        let offset = builder.ins().ishl_imm_s(p, 3);
        let address = builder.ins().iadd(indices, offset);
        builder.ins().load(types::I64, trusted(), address, 0)
    };
    let below = builder.ins().icmp(IntCC::SignedLessThan, target_row, zero);
    let above = builder.ins().icmp(IntCC::SignedGreaterThanOrEqual, target_row, rows);
    let bad = builder.ins().bor(below, above);
    let add_block = builder.create_block();
    let bad_block = builder.create_block();
    let next_block = builder.create_block();
    builder.ins().brif(bad, bad_block, &[], add_block, &[]);

    builder.switch_to_block(bad_block);
    // The first bad index is the one reported, as the interpreter does.
    let earlier = builder.use_var(status_code);
    let (earlier_value, earlier_position) = (builder.use_var(status_value), builder.use_var(status_position));
    let code = builder.ins().iconst(types::I64, STATUS_INDEX_OUT_OF_RANGE);
    let value = builder.ins().select(earlier, earlier_value, target_row);
    let bad_position = builder.ins().select(earlier, earlier_position, p);
    builder.def_var(status_code, code);
    builder.def_var(status_value, value);
    builder.def_var(status_position, bad_position);
    builder.ins().jump(next_block, &[]);

    builder.switch_to_block(add_block);
    let source_start = builder.ins().imul(p, row_len);
    let target_start = builder.ins().imul(target_row, row_len);
    // With a computed update: the indices of position `p` along the indices' dims.
    let position_indices = kernel.producer.as_ref().map(|producer| {
        let dims = &producer.loops[..producer.loops.len() - 1];
        let mut rest = p;
        let mut indices = vec![rest; dims.len()];
        for (d, extent) in dims.iter().enumerate().rev() {
            let extent = super::size_value(builder, params.sizes, extent);
            indices[d] = if d == 0 { rest } else { builder.ins().urem(rest, extent) };
            if d > 0 {
                rest = builder.ins().udiv(rest, extent);
            }
        }
        indices
    });
    let vector = kernel.producer.as_ref().is_none_or(|producer| loops::vectorizable_innermost(producer, program));
    builder.def_var(column, params.start);
    for lanes in if vector { vec![4, 1] } else { vec![1] } {
        let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
        let (c, column_frame) = loop_begin(builder, column, params.end, lanes);
        let update = match (&kernel.producer, &position_indices) {
            (Some(producer), Some(position)) => {
                let indices: Vec<_> = position.iter().copied().chain([c]).collect();
                let tables = (params.sizes, params.buffers);
                loops::emit_value(builder, producer, program, target, tables, &indices, lanes == 4)
            }
            _ => {
                let source = builder.ins().iadd(source_start, c);
                let updates = updates.expect("bug in kiln: a scatter with neither updates nor producer");
                let source = f32_element(builder, updates, source);
                builder.ins().load(ty, trusted(), source, 0)
            }
        };
        let target = builder.ins().iadd(target_start, c);
        let target = f32_element(builder, out, target);
        let current = builder.ins().load(ty, trusted(), target, 0);
        let sum = builder.ins().fadd(current, update);
        builder.ins().store(trusted(), sum, target, 0);
        loop_end(builder, column, column_frame);
    }
    builder.ins().jump(next_block, &[]);

    builder.switch_to_block(next_block);
    loop_end(builder, position, position_frame);
    let (code, value) = (builder.use_var(status_code), builder.use_var(status_value));
    let bad_position = builder.use_var(status_position);
    builder.ins().store(trusted(), code, params.status, 0);
    builder.ins().store(trusted(), value, params.status, 8);
    builder.ins().store(trusted(), bad_position, params.status, 16);
    let check = builder.ins().iconst(types::I64, kernel.check as i64 + 1);
    let check = builder.ins().select(code, check, zero);
    builder.ins().store(trusted(), check, params.status, 24);
    builder.ins().return_(&[]);
    KernelShape { chunks: vec![(kernel.row_len.clone(), 1)], splittable: true }
}

fn f32_element(
    builder: &mut FunctionBuilder,
    base: cranelift_codegen::ir::Value,
    offset: cranelift_codegen::ir::Value,
) -> cranelift_codegen::ir::Value {
    let bytes = builder.ins().ishl_imm_s(offset, 2);
    builder.ins().iadd(base, bytes)
}
