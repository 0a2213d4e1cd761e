//! Collapsing neighbouring loops that walk every buffer as one loop.
//!
//! In: a program. Out: the same program where, in each loop kernel, two neighbouring loops
//! `l, l + 1` are replaced by one loop of their product wherever every index the kernel
//! touches moves along loop `l` exactly `extent(l + 1)` times as far as along loop `l + 1`
//! (contiguous in both, or broadcast along both). A `[B, 2]` elementwise kernel becomes one
//! loop of `2·B` elements, which the code generator runs 4 lanes at a time instead of never.
//!
//! Loops are not collapsed across the boundary of a reduction, nor where the body reads a
//! loop's index (one-hot compares against it).

use super::{Expr, Index, Kernel, LoopKernel, Program, Size};

/// Collapses the loops of every loop kernel of `program` as far as its indices allow.
pub fn collapse_loops(program: &mut Program) {
    for kernel in &mut program.kernels {
        if let Kernel::Loop(kernel) = kernel {
            collapse(kernel);
        }
    }
}

fn collapse(kernel: &mut LoopKernel) {
    drop_unit_loops(kernel);
    // Innermost pairs first, so a whole contiguous nest folds into one loop.
    let mut outer = kernel.loops.len().saturating_sub(1);
    while outer > 0 {
        let level = outer - 1;
        if can_collapse(kernel, level) {
            merge_levels(kernel, level);
        }
        outer -= 1;
    }
}

/// Removes loops of extent 1 outside any reduction (whatever their strides: their index is
/// always 0), keeping at least one loop.
fn drop_unit_loops(kernel: &mut LoopKernel) {
    let mut level = kernel.loops.len();
    while level > 0 && kernel.loops.len() > 1 {
        level -= 1;
        let unit = kernel.loops[level].as_fixed() == Some(1);
        let outside_reduction = kernel.reduce.is_none_or(|(_, first)| level < first);
        let reads_index = kernel.body.iter().any(|(expr, _)| matches!(expr, Expr::LoopIndex(l) if *l == level));
        if unit && outside_reduction && !reads_index {
            remove_level(kernel, level);
        }
    }
}

/// Removes loop `level`, which only ever has index 0.
fn remove_level(kernel: &mut LoopKernel, level: usize) {
    kernel.loops.remove(level);
    let fix = |index: &mut Index| {
        if index.strides.len() > level {
            index.strides.remove(level);
        }
    };
    // `level` is outside any reduction (the caller checks), so the reduction's first loop moves.
    drop_loop(kernel, level, fix);
}

/// After loop `removed` is gone: applies `fix` to every index the kernel reads and writes
/// through, and renumbers the loops after `removed` (the loop indices the body reads and the
/// first loop of a reduction).
fn drop_loop(kernel: &mut LoopKernel, removed: usize, fix: impl Fn(&mut Index)) {
    for (expr, _) in &mut kernel.body {
        match expr {
            Expr::Load { index, .. } | Expr::Random { index, .. } => fix(index),
            Expr::Gather { index, position, .. } => {
                fix(index);
                fix(position);
            }
            Expr::CheckIndex { position, .. } => fix(position),
            Expr::LoopIndex(l) if *l > removed => *l -= 1,
            _ => {}
        }
    }
    for (_, _, index) in &mut kernel.stores {
        fix(index);
    }
    if let Some((_, first)) = &mut kernel.reduce
        && *first > removed
    {
        *first -= 1;
    }
}

/// The indices a kernel reads and writes through.
fn indices(kernel: &LoopKernel) -> impl Iterator<Item = &Index> {
    let body = kernel.body.iter().map(|(expr, _)| match expr {
        Expr::Load { index, .. } | Expr::Random { index, .. } => vec![index],
        Expr::Gather { index, position, .. } => vec![index, position],
        Expr::CheckIndex { position, .. } => vec![position],
        _ => vec![],
    });
    body.flatten().chain(kernel.stores.iter().map(|(_, _, index)| index))
}

fn can_collapse(kernel: &LoopKernel, level: usize) -> bool {
    let inner = level + 1;
    let inside = kernel.loops.len() - kernel.kept_inside;
    let crosses_reduction =
        kernel.reduce.is_some_and(|(_, first)| first == inner || (kernel.kept_inside > 0 && inside == inner));
    let reads_index =
        kernel.body.iter().any(|(expr, _)| matches!(expr, Expr::LoopIndex(l) if *l == level || *l == inner));
    if crosses_reduction || reads_index {
        return false;
    }
    let extent = &kernel.loops[inner];
    indices(kernel).all(|index| same(&stride(index, level), &stride(index, inner).times(extent)))
}

fn stride(index: &Index, level: usize) -> Size {
    index.strides.get(level).cloned().unwrap_or_else(|| Size::fixed(0))
}

/// Equal as values: a zero factor is zero whatever symbols multiply it.
fn same(a: &Size, b: &Size) -> bool {
    (a.factor == 0 && b.factor == 0) || a == b
}

/// Replaces loops `level` and `level + 1` by one loop over both, with the inner loop's strides.
fn merge_levels(kernel: &mut LoopKernel, level: usize) {
    let inner = level + 1;
    if level >= kernel.loops.len() - kernel.kept_inside {
        kernel.kept_inside -= 1;
    }
    let extent = kernel.loops.remove(inner);
    kernel.loops[level] = kernel.loops[level].times(&extent);
    let fix = |index: &mut Index| {
        if index.strides.len() > inner {
            index.strides[level] = index.strides.remove(inner);
        } else if index.strides.len() == inner {
            // Only the outer loop moved it, which `can_collapse` rules out unless by 0.
            index.strides.truncate(level);
        }
    };
    drop_loop(kernel, inner, fix);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::DType;

    fn index(strides: &[i64]) -> Index {
        Index { base: vec![], strides: strides.iter().map(|&s| Size::fixed(s)).collect() }
    }

    fn kernel(loops: &[i64], load: &[i64], store: &[i64]) -> LoopKernel {
        LoopKernel {
            name: "k".into(),
            loops: loops.iter().map(|&e| Size::fixed(e)).collect(),
            reduce: None,
            kept_inside: 0,
            body: vec![(Expr::Load { buffer: 0, index: index(load) }, DType::F32)],
            stores: vec![(0, 1, index(store))],
        }
    }

    #[test]
    fn a_contiguous_nest_becomes_one_loop() {
        let mut k = kernel(&[10, 3, 2], &[6, 2, 1], &[6, 2, 1]);
        collapse(&mut k);
        assert_eq!(k.loops, vec![Size::fixed(60)]);
        assert_eq!(k.stores[0].2, index(&[1]));
    }

    #[test]
    fn a_broadcast_operand_keeps_its_loop() {
        // A bias read as b[i1] against a contiguous [10, 20] result.
        let mut k = kernel(&[10, 20], &[0, 1], &[20, 1]);
        collapse(&mut k);
        assert_eq!(k.loops.len(), 2);
    }

    #[test]
    fn a_transposed_read_keeps_both_loops() {
        let mut k = kernel(&[4, 5], &[1, 4], &[5, 1]);
        collapse(&mut k);
        assert_eq!(k.loops.len(), 2);
    }

    #[test]
    fn symbolic_extents_collapse_too() {
        let b = Size { factor: 1, symbols: vec![0] };
        let mut k = kernel(&[1, 2], &[2, 1], &[2, 1]);
        k.loops[0] = b.clone();
        collapse(&mut k);
        assert_eq!(k.loops, vec![b.times(&Size::fixed(2))]);
    }

    #[test]
    fn loops_of_extent_one_disappear() {
        // A [10, 1] result read from every other element of a [10, 2] buffer.
        let mut k = kernel(&[10, 1], &[2, 1], &[1, 1]);
        collapse(&mut k);
        assert_eq!(k.loops, vec![Size::fixed(10)]);
        assert_eq!(k.body[0].0, Expr::Load { buffer: 0, index: index(&[2]) });
    }

    #[test]
    fn reductions_keep_their_boundary() {
        let mut k = kernel(&[10, 2], &[2, 1], &[1, 0]);
        k.reduce = Some((super::super::Reduce::Sum, 1));
        collapse(&mut k);
        assert_eq!(k.loops.len(), 2);
    }
}
