//! Row groups: consecutive loop kernels over the same rows run as one kernel, block by block.
//!
//! In: a program whose kernels are otherwise final, before its memory plan. Out: the same program where each run of two or more
//! consecutive loop kernels that can share a pass over their rows is one [`RowsKernel`].
//!
//! A softmax, log-softmax or cross-entropy over classes lowers to a chain of small kernels over
//! the same rows: the row's maximum, the shifted exponentials, their sum, the normalised
//! values (and, backwards, the same again). Separately, each walks every row and costs a
//! dispatch; grouped, each block of rows goes through the whole chain while it sits in L1, for
//! any number of classes. Reductions of a few static elements are still unrolled into their
//! readers by the lowering; this serves every other row-wise reduction.
//!
//! Members may run block by block instead of one after another because every member reads
//! what another writes only within the row it is computing:
//! - both accesses move by the same static stride per row, and what the two touch in one row
//!   spans less than that stride (so different rows touch disjoint memory);
//! - no buffer the runtime sums across processes is written by one member and read by another;
//! - at most one member can fail, so the first error reported is still the first in row order,
//!   and then no member writes a param (a failed call leaves the params as they were).
//!
//! The memory plan then treats a group as one kernel: every buffer a member touches lives
//! across the whole group, so no two share a scratch slot, and a param is updated in place
//! by a member only if no other member touches it.
//!
//! Each member computes each row the same way whatever range it is given, so results do not
//! depend on the blocks, nor on how the runtime splits the rows across threads.

use super::{Expr, Index, Kernel, LoopKernel, Program, Role, RowsKernel};

/// Elements per member and block: a block holds as many rows as fit, at least one.
pub const BLOCK_ELEMENTS: i64 = 2048;

/// Groups runs of consecutive loop kernels over the same rows (see the module comment).
pub fn group_rows(program: &mut Program) {
    let kernels = std::mem::take(&mut program.kernels);
    let mut group: Vec<LoopKernel> = Vec::new();
    for kernel in kernels {
        match kernel {
            Kernel::Loop(candidate) if row_elements(&candidate).is_some() => {
                if !group.is_empty() && !joins(program, &group, &candidate) {
                    close(program, std::mem::take(&mut group));
                }
                group.push(candidate);
            }
            other => {
                close(program, std::mem::take(&mut group));
                program.kernels.push(other);
            }
        }
    }
    close(program, group);
}

/// Appends `group` to the program: as one kernel if it has several members.
fn close(program: &mut Program, mut group: Vec<LoopKernel>) {
    if group.len() < 2 {
        program.kernels.extend(group.pop().map(Kernel::Loop));
        return;
    }
    let widest = group.iter().filter_map(row_elements).max().unwrap_or(1);
    let name = format!("{}..{}", group[0].name, group[group.len() - 1].name);
    let rows = group[0].loops[0].clone();
    program.kernels.push(Kernel::Rows(RowsKernel {
        name,
        rows,
        block: (BLOCK_ELEMENTS / widest).max(1),
        members: group,
    }));
}

/// The elements of one row of `kernel` (the product of its inner loops), if it can be a
/// member: its rows can be split (it does not reduce over them) and its inner loops are static.
fn row_elements(kernel: &LoopKernel) -> Option<i64> {
    let (_, inner) = kernel.loops.split_first()?;
    if !kernel.splittable() {
        return None;
    }
    inner.iter().try_fold(1i64, |product, extent| product.checked_mul(extent.as_fixed()?))
}

/// One access of a kernel to memory.
struct Access<'k> {
    /// The buffer whose memory is accessed (aliases resolved).
    storage: usize,
    /// Where, or `None` for a gather (rows picked by data).
    index: Option<&'k Index>,
    write: bool,
}

fn accesses<'k>(program: &Program, kernel: &'k LoopKernel) -> Vec<Access<'k>> {
    let reads = kernel.body.iter().filter_map(|(expr, _)| match expr {
        Expr::Load { buffer, index } => {
            Some(Access { storage: program.storage(*buffer), index: Some(index), write: false })
        }
        Expr::Gather { buffer, .. } => Some(Access { storage: program.storage(*buffer), index: None, write: false }),
        _ => None,
    });
    let writes = kernel.stores.iter().map(|(_, buffer, index)| Access {
        storage: program.storage(*buffer),
        index: Some(index),
        write: true,
    });
    reads.chain(writes).collect()
}

/// What an access of `kernel` touches in row 0, `first..=last`, and how far it moves per row:
/// static offsets, a static positive row stride and static non-negative inner strides.
struct RowSpan {
    first: i64,
    last: i64,
    stride: i64,
}

fn row_span(kernel: &LoopKernel, index: &Index) -> Option<RowSpan> {
    let (row, inner) = index.strides.split_first()?;
    let stride = row.as_fixed().filter(|&stride| stride > 0)?;
    let first = index.base.iter().try_fold(0i64, |sum, term| sum.checked_add(term.as_fixed()?))?;
    let mut last = first;
    for (step, extent) in inner.iter().zip(&kernel.loops[1..]) {
        let (step, extent) = (step.as_fixed().filter(|&s| s >= 0)?, extent.as_fixed()?);
        last = last.checked_add(step.checked_mul(extent - 1)?)?;
    }
    Some(RowSpan { first, last, stride })
}

/// True if two accesses touch, in each row, memory that no other row of either touches: the
/// same row stride, and their union in one row spans less than it.
fn same_rows(a: &RowSpan, b: &RowSpan) -> bool {
    a.stride == b.stride && a.last.max(b.last) - a.first.min(b.first) < a.stride
}

/// True if `candidate` may join `group` (see the module comment).
fn joins(program: &Program, group: &[LoopKernel], candidate: &LoopKernel) -> bool {
    if candidate.loops[0] != group[0].loops[0] {
        return false;
    }
    let members = || group.iter().chain(std::iter::once(candidate));
    // At most one member can fail, and then none writes a param.
    let failing = members().filter(|member| member.can_fail()).count();
    let writes_param = members()
        .flat_map(|member| member.writes())
        .any(|buffer| matches!(program.buffers[program.storage(buffer)].role, Role::Param(_)));
    if failing > 1 || (failing == 1 && writes_param) {
        return false;
    }
    let reduced: Vec<usize> = program.reduced.iter().map(|&b| program.storage(b)).collect();
    let theirs: Vec<(&LoopKernel, Access)> =
        group.iter().flat_map(|member| accesses(program, member).into_iter().map(move |a| (member, a))).collect();
    for mine in accesses(program, candidate) {
        for (member, theirs) in theirs.iter().filter(|(_, a)| a.storage == mine.storage && (a.write || mine.write)) {
            if reduced.contains(&mine.storage) {
                return false;
            }
            let spans =
                mine.index.and_then(|i| row_span(candidate, i)).zip(theirs.index.and_then(|i| row_span(member, i)));
            if !spans.is_some_and(|(a, b)| same_rows(&a, &b)) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DType, Dim, Graph};
    use crate::kernel::lower;
    use crate::layers;

    /// The program's kernels: `rows(n)` for a group of `n` members, the name otherwise.
    fn kernels(program: &Program) -> Vec<String> {
        let describe = |kernel: &Kernel| match kernel {
            Kernel::Rows(k) => format!("rows({})", k.members.len()),
            other => other.name().split('%').next().unwrap_or("").to_string(),
        };
        program.kernels.iter().map(describe).collect()
    }

    #[test]
    fn a_softmax_over_many_classes_is_one_kernel_in_blocks_that_fit_the_widest_row() {
        for (classes, block) in [(10usize, 204i64), (1000, 2), (5000, 1)] {
            let g = Graph::new();
            let x = g.input("x", [Dim::sym("B"), classes.into()]).unwrap();
            let y = layers::softmax(x, 1).unwrap();
            let (program, _) = lower(&g, &[y.id().unwrap()], &[], &[]).unwrap();
            assert_eq!(kernels(&program), ["rows(4)"], "{classes} classes");
            let Kernel::Rows(group) = &program.kernels[0] else { unreachable!() };
            assert_eq!(group.block, block, "{classes} classes");
        }
    }

    #[test]
    fn a_cross_entropy_groups_its_row_kernels_and_stops_at_the_mean_over_rows() {
        let g = Graph::new();
        let logits = g.input("logits", [32, 100]).unwrap();
        let labels = g.typed_input("labels", [32], DType::I64).unwrap();
        let loss = layers::cross_entropy(logits, labels).unwrap();
        let (program, _) = lower(&g, &[loss.id().unwrap()], &[], &[]).unwrap();
        let listed = kernels(&program);
        assert_eq!(listed[0], "rows(4)", "{listed:?}");
        assert!(listed[1..].iter().all(|k| !k.starts_with("rows")), "{listed:?}");
    }

    #[test]
    fn kernels_reading_other_rows_or_a_whole_column_are_not_grouped() {
        // `x - x.max(axis 0)`: the maximum runs over the rows, so its kernel is no member, and
        // the subtraction reads it in every row.
        let g = Graph::new();
        let x = g.input("x", [64, 100]).unwrap();
        let shifted = x.sub(x.max(&[0], true).unwrap()).unwrap();
        let (program, _) = lower(&g, &[shifted.id().unwrap()], &[], &[]).unwrap();
        assert!(program.kernels.iter().all(|k| !matches!(k, Kernel::Rows(_))), "{:?}", kernels(&program));
        // A row reversed reads the row's other elements, within the row: allowed; the same
        // values read one row down: not.
        let g = Graph::new();
        let x = g.input("x", [64, 100]).unwrap();
        let total = x.sum(&[1], true).unwrap();
        let next = total.slice(0, 1, 64).unwrap();
        let y = x.slice(0, 0, 63).unwrap().mul(next).unwrap();
        let (program, _) = lower(&g, &[y.id().unwrap()], &[], &[]).unwrap();
        assert!(program.kernels.iter().all(|k| !matches!(k, Kernel::Rows(_))), "{:?}", kernels(&program));
    }

    #[test]
    fn two_kernels_that_can_fail_stay_apart() {
        let g = Graph::new();
        let logits = g.input("logits", [32, 100]).unwrap();
        let first = g.typed_input("first", [32], DType::I64).unwrap();
        let second = g.typed_input("second", [32], DType::I64).unwrap();
        let a = layers::cross_entropy(logits, first).unwrap();
        let b = layers::cross_entropy(logits, second).unwrap();
        let (program, _) = lower(&g, &[a.id().unwrap(), b.id().unwrap()], &[], &[]).unwrap();
        for kernel in &program.kernels {
            if let Kernel::Rows(group) = kernel {
                assert!(group.members.iter().filter(|m| m.can_fail()).count() <= 1, "{}", group.name);
            }
        }
    }
}
