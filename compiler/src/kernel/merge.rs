//! Merging neighbouring loop kernels over the same loops into one pass.
//!
//! In: a program. Out: the same program with each run of consecutive elementwise loop kernels
//! over identical loops merged into one kernel: the second kernel's body follows the first's,
//! and where it loads what the first stores (same buffer, same index) it uses the value
//! directly. A store nobody reads any more is dropped. This is how a bias add and the ReLU
//! after it, or the updates of params of the same shape, become one loop.

use super::{Expr, ExprId, Kernel, LoopKernel, Program, Role};
use crate::graph::DType;

/// Merges neighbouring elementwise kernels with identical loops, then drops dead stores.
pub fn merge_neighbours(program: &mut Program) {
    let kernels = std::mem::take(&mut program.kernels);
    let storage: Vec<usize> = (0..program.buffers.len()).map(|buffer| program.storage(buffer)).collect();
    for kernel in kernels {
        let merged = match (program.kernels.last_mut(), &kernel) {
            (Some(Kernel::Loop(first)), Kernel::Loop(second))
                if can_merge(&storage, first, second) && !reads_reduced_from(second, first, &program.reduced) =>
            {
                append(first, second);
                true
            }
            _ => false,
        };
        if !merged {
            program.kernels.push(kernel);
        }
    }
    drop_dead_stores(program);
}

/// True if `second` reads a buffer of `reduced` that `first` writes: merged, they would leave
/// no point between them for the runtime's sum across processes.
fn reads_reduced_from(second: &LoopKernel, first: &LoopKernel, reduced: &[usize]) -> bool {
    let written = first.writes();
    second.reads().iter().any(|buffer| reduced.contains(buffer) && written.contains(buffer))
}

fn is_elementwise_f32(kernel: &LoopKernel) -> bool {
    kernel.body.iter().all(|(_, dtype)| matches!(dtype, DType::F32 | DType::Bool))
}

/// `storage[b]`: the buffer whose memory buffer `b` uses (itself, or an alias's target).
fn can_merge(storage: &[usize], first: &LoopKernel, second: &LoopKernel) -> bool {
    if first.reduce.is_some() || second.reduce.is_some() || first.loops != second.loops {
        return false;
    }
    // A scalar-only body would drag a vectorisable one down with it.
    if is_elementwise_f32(first) != is_elementwise_f32(second) {
        return false;
    }
    // The second may read what the first stores only at the element being computed, through
    // the same buffer: an alias (a reshape) of a stored buffer names other elements at the
    // same index, so a load through one compares the memory, not the buffer number.
    let memory = |buffer: usize| storage[buffer];
    let stored = |buffer: usize| {
        first.stores.iter().filter(move |(_, b, _)| memory(*b) == memory(buffer)).map(|(_, b, index)| (*b, index))
    };
    let reads_ok = second.body.iter().all(|(expr, _)| match expr {
        Expr::Load { buffer, index } => stored(*buffer).all(|(b, stored_index)| b == *buffer && stored_index == index),
        Expr::Gather { buffer, .. } => stored(*buffer).next().is_none(),
        _ => true,
    });
    // And must not overwrite anything the first reads.
    let first_reads = first.reads();
    let writes_ok =
        second.stores.iter().all(|(_, buffer, _)| first_reads.iter().all(|&read| memory(read) != memory(*buffer)));
    reads_ok && writes_ok
}

/// Appends `second`'s body and stores to `first`.
fn append(first: &mut LoopKernel, second: &LoopKernel) {
    let mut map: Vec<ExprId> = Vec::with_capacity(second.body.len());
    for (expr, dtype) in &second.body {
        if let Expr::Load { buffer, index } = expr
            && let Some((value, _, _)) = first.stores.iter().find(|(_, b, i)| b == buffer && i == index)
        {
            map.push(*value);
            continue;
        }
        let expr = remap(expr, &map);
        let existing = first.body.iter().position(|(e, t)| *e == expr && t == dtype);
        map.push(existing.unwrap_or_else(|| {
            first.body.push((expr, *dtype));
            first.body.len() - 1
        }));
    }
    first.stores.extend(second.stores.iter().map(|(value, buffer, index)| (map[*value], *buffer, index.clone())));
    first.name = format!("{}+{}", first.name, second.name);
}

/// `expr` with its operand ids translated through `map`.
pub(super) fn remap(expr: &Expr, map: &[ExprId]) -> Expr {
    match expr {
        Expr::Unary(op, x) => Expr::Unary(*op, map[*x]),
        Expr::Pow(p, x) => Expr::Pow(*p, map[*x]),
        Expr::Binary(op, a, b) => Expr::Binary(*op, map[*a], map[*b]),
        Expr::Compare(op, a, b) => Expr::Compare(*op, map[*a], map[*b]),
        Expr::Select(m, a, b) => Expr::Select(map[*m], map[*a], map[*b]),
        Expr::Cast(x) => Expr::Cast(map[*x]),
        Expr::Random { seed, distribution, counter, index } => {
            Expr::Random { seed: *seed, distribution: *distribution, counter: map[*counter], index: index.clone() }
        }
        Expr::Gather { buffer, row, rows, row_stride, index, position, check } => Expr::Gather {
            buffer: *buffer,
            row: map[*row],
            rows: rows.clone(),
            row_stride: row_stride.clone(),
            index: index.clone(),
            position: position.clone(),
            check: *check,
        },
        Expr::CheckIndex { value, limit, position, check } => {
            Expr::CheckIndex { value: map[*value], limit: limit.clone(), position: position.clone(), check: *check }
        }
        Expr::Load { .. } | Expr::Const(_) | Expr::Size(_) | Expr::LoopIndex(_) => expr.clone(),
    }
}

/// Removes stores to temporaries that no kernel reads, no output returns and no update copies.
fn drop_dead_stores(program: &mut Program) {
    let mut read = vec![false; program.buffers.len()];
    for kernel in &program.kernels {
        for buffer in kernel.accesses().0 {
            read[buffer] = true;
        }
    }
    for &output in &program.outputs {
        read[output] = true;
    }
    for &(_, value) in &program.updates {
        read[value] = true;
    }
    for buffer in &program.buffers {
        if let Role::Alias(target) = buffer.role {
            read[target] = true;
        }
    }
    // An alias being read means its storage is read.
    for (index, buffer) in program.buffers.iter().enumerate() {
        if let Role::Alias(_) = buffer.role
            && read[index]
        {
            read[program.storage(index)] = true;
        }
    }
    let temporary = |b: usize| matches!(program.buffers[b].role, Role::Temporary);
    for kernel in &mut program.kernels {
        if let Kernel::Loop(k) = kernel
            && k.reduce.is_none()
            && k.stores.len() > 1
        {
            k.stores.retain(|(_, buffer, _)| read[*buffer] || !temporary(*buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Binary, Dim, Shape, Unary};
    use crate::kernel::{Buffer, Index, Size};

    /// `b1 = tanh(b0)`, then `b2 = b1 · b1`, both over 8 elements; `b1` and `b2` are outputs.
    fn program(reduced: Vec<usize>) -> Program {
        let unit = || Index { base: vec![], strides: vec![Size::fixed(1)] };
        let buffer = |role| Buffer { shape: Shape(vec![Dim::Static(8)]), dtype: DType::F32, role };
        let kernel = |name: &str, body: Vec<Expr>, out| {
            Kernel::Loop(LoopKernel {
                name: name.into(),
                loops: vec![Size::fixed(8)],
                reduce: None,
                kept_inside: 0,
                stores: vec![(body.len() - 1, out, unit())],
                body: body.into_iter().map(|expr| (expr, DType::F32)).collect(),
            })
        };
        Program {
            symbols: vec![],
            buffers: vec![buffer(Role::Input("x".into())), buffer(Role::Temporary), buffer(Role::Temporary)],
            kernels: vec![
                kernel("tanh", vec![Expr::Load { buffer: 0, index: unit() }, Expr::Unary(Unary::Tanh, 0)], 1),
                kernel("square", vec![Expr::Load { buffer: 1, index: unit() }, Expr::Binary(Binary::Mul, 0, 0)], 2),
            ],
            outputs: vec![1, 2],
            updates: vec![],
            slots: vec![],
            checks: vec![],
            shapes: vec![],
            maximum_axes: vec![],
            reduced,
        }
    }

    #[test]
    fn a_reader_of_what_the_previous_kernel_stores_merges_with_it() {
        let mut p = program(vec![]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 1);
    }

    #[test]
    fn a_reader_of_a_buffer_summed_across_processes_stays_apart_from_its_writer() {
        let mut p = program(vec![1]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }
}
