//! Export, compiler side (the plan and the printers; packaging is `kiln_runtime::export`).
//!
//! Layout choices an artifact can make because its weights are constants.
//!
//! In: a forward program and the trained params. Out: the same program where every matmul
//! whose right operand is a param read with non-adjacent columns (`x · Wᵀ` of a linear
//! layer reads `W[out, in]` down its columns) reads instead a constant copy transposed to
//! `[k, n]` row-major. The register tile then loads 4 columns with one vector load instead
//! of 4 scalar loads and inserts; every product and sum is the same, so the outputs keep
//! their bits. The JIT cannot do this: its params change at every training step.

use crate::error::Result;
use crate::graph::{DType, Shape};
use crate::kernel::{Buffer, Kernel, Program, Role, Size};
use crate::value::ParamStore;
use crate::value::{Data, Value};

/// Transposes the constant right operands of matmuls (see the module comment); returns how
/// many it gave a transposed copy. Params without a value are left for the plan to report.
pub fn pretranspose_weights(program: &mut Program, params: &ParamStore) -> Result<usize> {
    let mut count = 0;
    for number in 0..program.kernels.len() {
        let Kernel::MatMul(matmul) = &program.kernels[number] else { continue };
        let (b, strides) = (matmul.b.0, matmul.b.1.clone());
        let owner = program.storage(b);
        let Role::Param(name) = &program.buffers[owner].role else { continue };
        let (Some(k), Some(n)) = (matmul.k.as_fixed(), matmul.n.as_fixed()) else { continue };
        let fixed: Option<Vec<i64>> = strides.iter().map(Size::as_fixed).collect();
        let Some(&[batch_stride, k_stride, n_stride]) = fixed.as_deref() else { continue };
        let single = matmul.batch.as_fixed() == Some(1) || batch_stride == 0;
        if !single || n_stride == 1 || program.buffers[owner].dtype != DType::F32 {
            continue;
        }
        let Some(value) = params.get(name) else { continue };
        let Data::F32(values) = value.cast(DType::F32).data().clone() else { continue };
        let mut transposed = Vec::with_capacity((k * n) as usize);
        for p in 0..k {
            for j in 0..n {
                let at = (p * k_stride + j * n_stride) as usize;
                let Some(&element) = values.get(at) else { return Ok(count) };
                transposed.push(element);
            }
        }
        let shape = Shape::of([k as usize, n as usize]);
        let role = Role::Constant(Value::f32([k as usize, n as usize], transposed));
        program.buffers.push(Buffer { shape, dtype: DType::F32, role });
        program.slots.push(None);
        let copy = program.buffers.len() - 1;
        if let Kernel::MatMul(matmul) = &mut program.kernels[number] {
            matmul.b = (copy, [Size::fixed(0), Size::fixed(n), Size::fixed(1)]);
        }
        count += 1;
    }
    Ok(count)
}
