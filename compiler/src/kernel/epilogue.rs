//! Fusing the elementwise kernel after a matmul into it, as its epilogue.
//!
//! In: a program after `merge_neighbours`, before `collapse_loops`. Out: the same program
//! where a matmul followed by a loop kernel over exactly the matmul's result grid (`[m, n]`,
//! no batch) carries that kernel as its epilogue, and the loop kernel is gone. The matmul
//! runs the epilogue on each block of its result right after computing the block (in the
//! register tile or the GEMM), while the block is still in cache: this is how a bias add and
//! ReLU after a layer, or the ReLU mask on a gradient, stop costing a pass over memory.
//!
//! The epilogue may read the product only at the element it computes, must not write what
//! the matmul reads or the product itself, and must not be able to fail (no gathers, no
//! integer division), so a block's epilogue depends on that block alone. Kernels computing
//! new values of params stay on their own (see `can_be_epilogue`).

use super::{Expr, Index, Kernel, LoopKernel, MatMulKernel, Program, Size};
use crate::graph::DType;

/// How far back a loop kernel may look for the matmul whose product it reads.
const REACH: usize = 3;

/// Attaches each loop kernel that can be a matmul's epilogue to that matmul: the kernel
/// reading the product may follow it directly or a few kernels later, if the kernels between
/// neither write what it reads nor touch what it writes (so it can move up to the matmul).
pub fn fuse_epilogues(program: &mut Program) {
    let updated: Vec<usize> = program.updates.iter().map(|&(_, value)| value).collect();
    let kernels = std::mem::take(&mut program.kernels);
    for kernel in kernels {
        if let Kernel::Loop(candidate) = &kernel {
            let start = program.kernels.len().saturating_sub(REACH);
            let host = (start..program.kernels.len()).rev().find(|&i| match &program.kernels[i] {
                Kernel::MatMul(matmul) => {
                    // A kernel reading a buffer summed across processes waits for the sum:
                    // as an epilogue it would run before the matmul's product was summed.
                    matmul.epilogue.is_none()
                        && !candidate.reads().iter().any(|buffer| program.reduced.contains(buffer))
                        && can_be_epilogue(matmul, candidate, &updated)
                        && program.kernels[i + 1..].iter().all(|between| independent(program, between, candidate))
                }
                _ => false,
            });
            if let Some(i) = host
                && let Kernel::MatMul(matmul) = &mut program.kernels[i]
            {
                matmul.name = format!("{}+{}", matmul.name, candidate.name);
                matmul.epilogue = Some(candidate.clone());
                continue;
            }
        }
        program.kernels.push(kernel);
    }
}

/// True if `candidate` can run before `kernel` instead of after it.
fn independent(program: &Program, kernel: &Kernel, candidate: &LoopKernel) -> bool {
    let resolve = |buffers: Vec<usize>| -> Vec<usize> { buffers.into_iter().map(|b| program.storage(b)).collect() };
    let (reads, writes) = kernel.accesses();
    let (reads, writes) = (resolve(reads), resolve(writes));
    let (candidate_reads, candidate_writes) = (resolve(candidate.reads()), resolve(candidate.writes()));
    !writes.iter().any(|b| candidate_reads.contains(b) || candidate_writes.contains(b))
        && !reads.iter().any(|b| candidate_writes.contains(b))
}

fn can_be_epilogue(matmul: &MatMulKernel, candidate: &LoopKernel, updated: &[usize]) -> bool {
    let grid = vec![matmul.m.clone(), matmul.n.clone()];
    if matmul.batch.as_fixed() != Some(1) || candidate.reduce.is_some() || candidate.loops != grid {
        return false;
    }
    let element = Index { base: vec![], strides: vec![matmul.n.clone(), Size::fixed(1)] };
    let reads_ok = candidate.body.iter().all(|(expr, dtype)| match expr {
        Expr::Load { buffer, index } => *buffer != matmul.out || *index == element,
        _ => !expr.can_fail(*dtype),
    });
    // Updates of params stay kernels of their own: a flat pass over a whole param beats
    // five strided streams per block (measured on W4's first layer).
    let writes_ok = candidate
        .stores
        .iter()
        .all(|(_, buffer, _)| ![matmul.a.0, matmul.b.0, matmul.out].contains(buffer) && !updated.contains(buffer));
    let floats = candidate.body.iter().all(|(_, dtype)| matches!(dtype, DType::F32 | DType::Bool));
    reads_ok && writes_ok && floats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Unary;

    fn matmul() -> MatMulKernel {
        MatMulKernel {
            name: "matmul".into(),
            batch: Size::fixed(1),
            m: Size::fixed(8),
            k: Size::fixed(3),
            n: Size::fixed(5),
            a: (0, [Size::fixed(0), Size::fixed(3), Size::fixed(1)]),
            b: (1, [Size::fixed(0), Size::fixed(5), Size::fixed(1)]),
            out: 2,
            epilogue: None,
            accumulate: None,
        }
    }

    /// `b3 = tanh(b2)` over the product's grid, reading it at `load` strides.
    fn map(load: [i64; 2]) -> LoopKernel {
        let index = |s: [i64; 2]| Index { base: vec![], strides: s.iter().map(|&x| Size::fixed(x)).collect() };
        LoopKernel {
            name: "tanh".into(),
            loops: vec![Size::fixed(8), Size::fixed(5)],
            reduce: None,
            kept_inside: 0,
            body: vec![
                (Expr::Load { buffer: 2, index: index(load) }, DType::F32),
                (Expr::Unary(Unary::Tanh, 0), DType::F32),
            ],
            stores: vec![(1, 3, index([5, 1]))],
        }
    }

    fn program(kernels: Vec<Kernel>) -> Program {
        let (checks, shapes) = (vec![], vec![]);
        Program {
            symbols: vec![],
            buffers: vec![],
            kernels,
            outputs: vec![],
            updates: vec![],
            slots: vec![],
            checks,
            shapes,
            maximum_axes: vec![],
            reduced: vec![],
        }
    }

    #[test]
    fn an_elementwise_reader_of_the_product_becomes_its_epilogue() {
        let mut p = program(vec![Kernel::MatMul(Box::new(matmul())), Kernel::Loop(map([5, 1]))]);
        fuse_epilogues(&mut p);
        assert_eq!(p.kernels.len(), 1);
        let Kernel::MatMul(m) = &p.kernels[0] else { panic!("a matmul") };
        assert_eq!(m.epilogue.as_ref().map(|e| e.name.as_str()), Some("tanh"));
    }

    #[test]
    fn a_reader_of_a_product_summed_across_processes_stays_a_kernel() {
        let mut p = program(vec![Kernel::MatMul(Box::new(matmul())), Kernel::Loop(map([5, 1]))]);
        p.reduced = vec![2];
        fuse_epilogues(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }

    #[test]
    fn a_param_update_stays_a_kernel() {
        let mut p = program(vec![Kernel::MatMul(Box::new(matmul())), Kernel::Loop(map([5, 1]))]);
        p.updates = vec![(4, 3)];
        fuse_epilogues(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }

    #[test]
    fn a_reader_of_the_transposed_product_stays_a_kernel() {
        let mut other = map([1, 8]);
        other.loops = vec![Size::fixed(8), Size::fixed(5)];
        let mut p = program(vec![Kernel::MatMul(Box::new(matmul())), Kernel::Loop(other)]);
        fuse_epilogues(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }
}
