//! Export, compiler side (the plan and the printers; packaging is `kiln_runtime::export`).
//!
//! The exported entry points of an artifact, in Cranelift IR: the C ABI around the kernels.
//!
//! In: a forward program and its artifact plan (`crate::export`). Out: the C-ABI entry points as
//! Cranelift functions in an object module. Compiler side of export: the runtime packages the
//! object.
//!
//! `<name>_infer(input0, input0_len, ..., batch, output0, output0_len, ..., scratch,
//! scratch_len)` does, single-threaded, what the runtime's `Function::call` does: it checks
//! its arguments (null pointers, a negative or too large batch, an input, output or scratch
//! length below what the batch needs: an error code), lays out the scratch slots of the plan
//! at offsets computed from `batch`, fills the table of buffer addresses (the caller's inputs
//! and outputs, the weights in read-only data, slots of the caller's scratch) and the table of
//! symbol values (the batch), calls every kernel over its whole range, and returns the first
//! kernel status as an error code. The others are constant functions that describe the
//! artifact (`_scratch_bytes`, `_input_count`, `_input_size`, `_output_count`, `_output_size`,
//! `_max_batch`, `_version`, `_abi_version`).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, Signature, StackSlotData, StackSlotKind, Type, UserFuncName, Value, types,
};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataId, Linkage, Module};

use super::{ABI_VERSION, ArtifactPlan, ErrorCode, Placement, SCRATCH_ALIGN};
use crate::codegen::{DefinedKernel, STATUS_WORDS};
use crate::error::{Error, Result};
use crate::kernel::{Program, Size};

/// Defines every exported function of the artifact in `module`.
pub(super) fn define_entry_points<M: Module>(
    module: &mut M,
    program: &Program,
    plan: &ArtifactPlan,
    kernels: &[DefinedKernel],
    weights: &[DataId],
    version: DataId,
) -> Result<()> {
    let pointer = module.target_config().pointer_type();
    let mut contexts = (module.make_context(), FunctionBuilderContext::new());
    let constant = |value: i64, ty: Type| {
        move |b: &mut FunctionBuilder, _: &[Value]| -> Vec<Value> { vec![b.ins().iconst(ty, value)] }
    };
    let counts = [("input", plan.inputs.len()), ("output", plan.outputs.len())];
    for (what, count) in counts {
        define(module, &mut contexts, &format!("{}_{what}_count", plan.name), &[], &[types::I32], |_, b, p| {
            constant(count as i64, types::I32)(b, p)
        })?;
    }
    for (what, ports) in [("input", &plan.inputs), ("output", &plan.outputs)] {
        let symbol = format!("{}_{what}_size", plan.name);
        define(module, &mut contexts, &symbol, &[types::I32], &[types::I64], |_, b, p| {
            // -1 for an index out of range, else the port's elements per row (all, if fixed).
            let mut size = b.ins().iconst(types::I64, -1);
            for (i, port) in ports.iter().enumerate() {
                let chosen = b.ins().icmp_imm_s(IntCC::Equal, p[0], i as i64);
                let row = b.ins().iconst(types::I64, port.row);
                size = b.ins().select(chosen, row, size);
            }
            vec![size]
        })?;
    }
    define(module, &mut contexts, &format!("{}_max_batch", plan.name), &[], &[types::I64], |_, b, p| {
        constant(plan.max_batch, types::I64)(b, p)
    })?;
    define(module, &mut contexts, &format!("{}_abi_version", plan.name), &[], &[types::I32], |_, b, p| {
        constant(i64::from(ABI_VERSION), types::I32)(b, p)
    })?;
    define(module, &mut contexts, &format!("{}_version", plan.name), &[], &[pointer], |module, b, _| {
        let global = module.declare_data_in_func(version, b.func);
        vec![b.ins().symbol_value(pointer, global)]
    })?;
    define(module, &mut contexts, &format!("{}_scratch_bytes", plan.name), &[types::I64], &[types::I64], |_, b, p| {
        let batch = p[0];
        let (_, total) = scratch_layout(b, plan, batch);
        let negative = b.ins().icmp_imm_s(IntCC::SignedLessThan, batch, 0);
        let too_large = b.ins().icmp_imm_s(IntCC::SignedGreaterThan, batch, plan.max_batch);
        let invalid = b.ins().bor(negative, too_large);
        let zero = b.ins().iconst(types::I64, 0);
        vec![b.ins().select(invalid, zero, total)]
    })?;
    let mut params = Vec::new();
    for _ in &plan.inputs {
        params.extend([pointer, types::I64]);
    }
    params.push(types::I64);
    for _ in &plan.outputs {
        params.extend([pointer, types::I64]);
    }
    params.extend([pointer, types::I64]);
    define(module, &mut contexts, &format!("{}_infer", plan.name), &params, &[types::I32], |module, b, p| {
        infer(module, b, program, plan, kernels, weights, p)
    })
}

/// Defines the exported function `symbol` with the body `body` (which returns the results).
fn define<M: Module>(
    module: &mut M,
    (context, builder_context): &mut (cranelift_codegen::Context, FunctionBuilderContext),
    symbol: &str,
    params: &[Type],
    returns: &[Type],
    body: impl FnOnce(&mut M, &mut FunctionBuilder, &[Value]) -> Vec<Value>,
) -> Result<()> {
    let mut signature = Signature::new(CallConv::triple_default(module.isa().triple()));
    signature.params.extend(params.iter().map(|&t| AbiParam::new(t)));
    signature.returns.extend(returns.iter().map(|&t| AbiParam::new(t)));
    let id = module
        .declare_function(symbol, Linkage::Export, &signature)
        .map_err(|e| Error::Bug(format!("declaring {symbol}: {e}")))?;
    let frontend_config = module.target_config();
    context.func = Function::with_name_signature(UserFuncName::user(1, id.as_u32()), signature);
    {
        let mut builder = FunctionBuilder::new(&mut context.func, builder_context);
        let block = builder.create_block();
        builder.append_block_params_for_function_params(block);
        builder.switch_to_block(block);
        let values = builder.block_params(block).to_vec();
        let results = body(module, &mut builder, &values);
        builder.ins().return_(&results);
        builder.seal_all_blocks();
        builder.finalize(frontend_config);
    }
    module.define_function(id, context).map_err(|e| Error::Bug(format!("compiling {symbol}: {e:?}")))?;
    module.clear_context(context);
    Ok(())
}

/// The offset of every scratch slot at `batch` and the total (as `ArtifactPlan::slot_offsets`).
fn scratch_layout(builder: &mut FunctionBuilder, plan: &ArtifactPlan, batch: Value) -> (Vec<Value>, Value) {
    let mut offset = builder.ins().iconst(types::I64, 0);
    let mut offsets = Vec::with_capacity(plan.slots.len());
    for slot in &plan.slots {
        offsets.push(offset);
        let mut largest = builder.ins().iconst(types::I64, 0);
        for bytes in slot {
            let size = builder.ins().imul_imm_s(batch, bytes.per_row);
            let size = builder.ins().iadd_imm_s(size, bytes.fixed);
            largest = builder.ins().smax(largest, size);
        }
        let rounded = builder.ins().iadd_imm_s(largest, SCRATCH_ALIGN - 1);
        let rounded = builder.ins().band_imm_s(rounded, !(SCRATCH_ALIGN - 1));
        offset = builder.ins().iadd(offset, rounded);
    }
    (offsets, offset)
}

/// Returns `code` from the function if `failed` (an `i8`), else goes on in a new block.
fn fail_if(builder: &mut FunctionBuilder, failed: Value, code: Value) {
    let (fail, next) = (builder.create_block(), builder.create_block());
    builder.set_cold_block(fail);
    builder.ins().brif(failed, fail, &[], next, &[]);
    builder.switch_to_block(fail);
    builder.ins().return_(&[code]);
    builder.switch_to_block(next);
}

/// The value of `size` when the batch is `batch`. Kernels see no other symbol (the plan
/// checks every buffer they touch); an unused input's symbols are 0.
fn size_at(builder: &mut FunctionBuilder, size: &Size, batch: (usize, Value)) -> Value {
    let mut value = builder.ins().iconst(types::I64, size.factor);
    for &symbol in &size.symbols {
        let factor = if symbol == batch.0 { batch.1 } else { builder.ins().iconst(types::I64, 0) };
        value = builder.ins().imul(value, factor);
    }
    value
}

/// The body of `<name>_infer`.
fn infer<M: Module>(
    module: &mut M,
    builder: &mut FunctionBuilder,
    program: &Program,
    plan: &ArtifactPlan,
    kernels: &[DefinedKernel],
    weights: &[DataId],
    params: &[Value],
) -> Vec<Value> {
    let pointer = module.target_config().pointer_type();
    let (inputs, rest) = params.split_at(2 * plan.inputs.len());
    let (batch, rest) = (rest[0], &rest[1..]);
    let (outputs, rest) = rest.split_at(2 * plan.outputs.len());
    let (scratch, scratch_len) = (rest[0], rest[1]);
    let code = |builder: &mut FunctionBuilder, code: ErrorCode| builder.ins().iconst(types::I32, code as i64);
    for pair in inputs.chunks(2).chain(outputs.chunks(2)) {
        let null = builder.ins().icmp_imm_s(IntCC::Equal, pair[0], 0);
        let error = code(builder, ErrorCode::NullPointer);
        fail_if(builder, null, error);
    }
    let negative = builder.ins().icmp_imm_s(IntCC::SignedLessThan, batch, 0);
    let error = code(builder, ErrorCode::NegativeBatch);
    fail_if(builder, negative, error);
    let too_large = builder.ins().icmp_imm_s(IntCC::SignedGreaterThan, batch, plan.max_batch);
    let error = code(builder, ErrorCode::BatchTooLarge);
    fail_if(builder, too_large, error);
    // Lengths compare unsigned: a "negative" length is a huge size_t, never short; the
    // needed counts are below i64::MAX / 8 up to the maximum batch.
    let ports = [(inputs, &plan.inputs, ErrorCode::InputTooShort), (outputs, &plan.outputs, ErrorCode::OutputTooShort)];
    for (pairs, ports, short) in ports {
        for (pair, port) in pairs.chunks(2).zip(ports) {
            let needed = if port.batched {
                builder.ins().imul_imm_s(batch, port.row)
            } else {
                builder.ins().iconst(types::I64, port.row)
            };
            let too_short = builder.ins().icmp(IntCC::UnsignedLessThan, pair[1], needed);
            let error = code(builder, short);
            fail_if(builder, too_short, error);
        }
    }
    let (offsets, total) = scratch_layout(builder, plan, batch);
    let needs_scratch = builder.ins().icmp_imm_s(IntCC::SignedGreaterThan, total, 0);
    let null_scratch = builder.ins().icmp_imm_s(IntCC::Equal, scratch, 0);
    let missing = builder.ins().band(needs_scratch, null_scratch);
    let error = code(builder, ErrorCode::NullPointer);
    fail_if(builder, missing, error);
    let scratch_short = builder.ins().icmp(IntCC::UnsignedLessThan, scratch_len, total);
    let error = code(builder, ErrorCode::ScratchTooShort);
    fail_if(builder, scratch_short, error);

    let slot = |builder: &mut FunctionBuilder, words: usize| {
        let data = StackSlotData::new(StackSlotKind::ExplicitSlot, (words.max(1) * 8) as u32, 4);
        builder.create_sized_stack_slot(data)
    };
    let (table, sizes, status) =
        (slot(builder, program.buffers.len()), slot(builder, program.symbols.len()), slot(builder, STATUS_WORDS));
    let zero = builder.ins().iconst(types::I64, 0);
    for symbol in 0..program.symbols.len() {
        let value = if symbol == plan.batch_symbol { batch } else { zero };
        builder.ins().stack_store(pointer, value, sizes, (symbol * 8) as i32);
    }
    for word in 0..STATUS_WORDS {
        builder.ins().stack_store(pointer, zero, status, (word * 8) as i32);
    }
    let weight_addresses: Vec<Value> = weights
        .iter()
        .map(|&id| {
            let global = module.declare_data_in_func(id, builder.func);
            builder.ins().symbol_value(pointer, global)
        })
        .collect();
    for (buffer, placement) in plan.placements.iter().enumerate() {
        let address = match *placement {
            Placement::Input(i) => inputs[2 * i],
            Placement::Output(j) => outputs[2 * j],
            Placement::Weight(w) => weight_addresses[w],
            Placement::Scratch(s) => builder.ins().iadd(scratch, offsets[s]),
            Placement::Unused => zero,
        };
        builder.ins().stack_store(pointer, address, table, (buffer * 8) as i32);
    }
    let (table, sizes, status) = (
        builder.ins().stack_addr(pointer, table, 0),
        builder.ins().stack_addr(pointer, sizes, 0),
        builder.ins().stack_addr(pointer, status, 0),
    );
    for kernel in kernels {
        let mut range = builder.ins().iconst(types::I64, 1);
        for (extent, chunk) in &kernel.shape.chunks {
            let extent = size_at(builder, extent, (plan.batch_symbol, batch));
            let chunks = if *chunk == 1 {
                extent
            } else {
                let rounded = builder.ins().iadd_imm_s(extent, chunk - 1);
                builder.ins().sdiv_imm_s(rounded, *chunk)
            };
            range = builder.ins().imul(range, chunks);
        }
        let callee = module.declare_func_in_func(kernel.id, builder.func);
        builder.ins().call(callee, &[table, sizes, zero, range, status]);
        let reported = builder.ins().load(types::I64, crate::codegen::trusted(), status, 0);
        let failed = builder.ins().icmp_imm_s(IntCC::NotEqual, reported, 0);
        let reported = builder.ins().ireduce(types::I32, reported);
        let error = builder.ins().iadd_imm_s(reported, ErrorCode::KernelStatus as i64);
        fail_if(builder, failed, error);
    }
    vec![builder.ins().iconst(types::I32, 0)]
}
