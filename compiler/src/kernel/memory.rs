//! The memory plan: which buffers share storage.
//!
//! In: a program whose kernels are final. Out: the same program with
//! - updates done in place: where a param's new value is computed by a loop kernel after
//!   which nothing reads the old value, and that kernel reads the old value only at the
//!   element it writes (`p ← p - lr·g`, the EMAs of Adam), the new value is written straight
//!   into the param (the value buffer becomes an alias of it) and the copy after the call
//!   disappears, unless a kernel from there on can stop the call with an error (a failed call
//!   leaves the params as they were);
//! - temporaries in scratch slots: two temporaries whose lifetimes do not overlap share a
//!   slot (the runtime sizes each slot for the largest buffer in it under the call's sizes).
//!
//! Lifetimes are kernel positions, from the kernel that first writes a buffer to the last
//! that reads it (through any alias); outputs and update values live to the end. A buffer a
//! kernel reads never shares a slot with one it writes, so the invariant "a kernel never
//! writes a buffer it reads" keeps holding for storage, not just for buffer numbers.

use super::{Expr, Kernel, LoopKernel, Program, Role};

/// Plans in-place updates and scratch slots for `program` (see the module comment).
pub fn plan_memory(program: &mut Program) {
    update_in_place(program);
    assign_slots(program);
}

/// Storage buffers read and written by kernel `kernel` (aliases resolved).
fn accesses(program: &Program, kernel: &Kernel) -> (Vec<usize>, Vec<usize>) {
    let (reads, writes) = kernel.accesses();
    let storage = |buffers: Vec<usize>| buffers.into_iter().map(|b| program.storage(b)).collect();
    (storage(reads), storage(writes))
}

fn update_in_place(program: &mut Program) {
    let mut last_read = vec![None; program.buffers.len()];
    let mut writer = vec![None; program.buffers.len()];
    for (position, kernel) in program.kernels.iter().enumerate() {
        let (reads, writes) = accesses(program, kernel);
        for buffer in reads {
            last_read[buffer] = Some(position);
        }
        for buffer in writes {
            writer[buffer] = Some(position);
        }
    }
    let outputs: Vec<usize> = program.outputs.iter().map(|&b| program.storage(b)).collect();
    let mut kept = Vec::with_capacity(program.updates.len());
    for &(param, value) in &program.updates.clone() {
        let in_place = (|| {
            let Role::Param(_) = program.buffers[param].role else { return None };
            let Role::Temporary = program.buffers[value].role else { return None };
            let position = writer[value]?;
            // Nothing after the writing kernel may see the new value where it expects the old.
            if last_read[param].is_some_and(|read| read > position) || outputs.contains(&param) {
                return None;
            }
            // A call that fails must leave the params as they were: no kernel from this one on
            // may stop the call.
            if program.kernels[position..].iter().any(Kernel::can_fail) {
                return None;
            }
            // The kernel computing the value: a loop kernel, or a matmul's epilogue, as long as
            // the product does not read the param (a later block would see the new value).
            let kernel = match &program.kernels[position] {
                Kernel::Loop(kernel) => kernel,
                Kernel::MatMul(matmul) if ![matmul.a.0, matmul.b.0].iter().any(|&b| program.storage(b) == param) => {
                    matmul.epilogue.as_ref()?
                }
                // A member of a row group, as long as no other member touches the param (the
                // group runs block by block: another member would see the new value).
                Kernel::Rows(group) => {
                    let writes = |member: &&LoopKernel| member.writes().contains(&value);
                    let member = group.members.iter().find(writes)?;
                    let touches = |other: &LoopKernel| {
                        let (reads, writes) = (other.reads(), other.writes());
                        reads.iter().chain(&writes).any(|&b| program.storage(b) == param)
                    };
                    if group.members.iter().any(|other| !std::ptr::eq(other, member) && touches(other)) {
                        return None;
                    }
                    member
                }
                _ => return None,
            };
            let (_, _, store_index) = kernel.stores.iter().find(|(_, b, _)| *b == value)?;
            // The kernel reads the old value only at the element it writes.
            let reads_elsewhere = kernel.body.iter().any(|(expr, _)| match expr {
                Expr::Load { buffer, index } => program.storage(*buffer) == param && index != store_index,
                Expr::Gather { buffer, .. } => program.storage(*buffer) == param,
                _ => false,
            });
            let writes_param = kernel.stores.iter().any(|(_, b, _)| program.storage(*b) == param);
            (!reads_elsewhere && !writes_param && kernel.reduce.is_none()).then_some(())
        })();
        match in_place {
            Some(()) => program.buffers[value].role = Role::Alias(param),
            None => kept.push((param, value)),
        }
    }
    program.updates = kept;
}

fn assign_slots(program: &mut Program) {
    let end = program.kernels.len();
    let buffers = program.buffers.len();
    let mut first_write: Vec<Option<usize>> = vec![None; buffers];
    let mut last_use: Vec<usize> = vec![0; buffers];
    for (position, kernel) in program.kernels.iter().enumerate() {
        let (reads, writes) = accesses(program, kernel);
        for buffer in writes {
            first_write[buffer].get_or_insert(position);
            last_use[buffer] = last_use[buffer].max(position);
        }
        for buffer in reads {
            last_use[buffer] = last_use[buffer].max(position);
        }
    }
    for &buffer in program.outputs.iter().chain(program.updates.iter().map(|(_, value)| value)) {
        last_use[program.storage(buffer)] = end;
    }
    let mut temporaries: Vec<usize> =
        (0..buffers).filter(|&b| matches!(program.buffers[b].role, Role::Temporary)).collect();
    temporaries.sort_by_key(|&b| (first_write[b].unwrap_or(0), b));
    // For each slot: the last position at which its current buffer is used.
    let mut busy_until: Vec<usize> = Vec::new();
    let mut slots = vec![None; buffers];
    for buffer in temporaries {
        let born = first_write[buffer].unwrap_or(0);
        // A buffer written by kernel `born` may take a slot last used strictly before it.
        let free = busy_until.iter().position(|&until| until < born);
        let slot = free.unwrap_or_else(|| {
            busy_until.push(0);
            busy_until.len() - 1
        });
        busy_until[slot] = last_use[buffer].max(born);
        slots[buffer] = Some(slot);
    }
    program.slots = slots;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{DType, Shape};
    use crate::kernel::{Buffer, ExprId, Index, LoopKernel, Size};

    fn buffer(role: Role) -> Buffer {
        Buffer { shape: Shape(vec![crate::graph::Dim::Static(8)]), dtype: DType::F32, role }
    }

    fn unit() -> Index {
        Index { base: vec![], strides: vec![Size::fixed(1)] }
    }

    /// `out = f(inputs)` elementwise over 8 elements.
    fn map(inputs: &[usize], out: usize) -> Kernel {
        let mut body: Vec<(Expr, DType)> =
            inputs.iter().map(|&b| (Expr::Load { buffer: b, index: unit() }, DType::F32)).collect();
        let mut value: ExprId = 0;
        for i in 1..inputs.len() {
            body.push((Expr::Binary(crate::graph::Binary::Add, value, i), DType::F32));
            value = body.len() - 1;
        }
        Kernel::Loop(LoopKernel {
            name: format!("b{out}"),
            loops: vec![Size::fixed(8)],
            reduce: None,
            kept_inside: 0,
            body,
            stores: vec![(value, out, unit())],
        })
    }

    fn program(
        buffers: Vec<Buffer>,
        kernels: Vec<Kernel>,
        outputs: Vec<usize>,
        updates: Vec<(usize, usize)>,
    ) -> Program {
        Program {
            symbols: vec![],
            buffers,
            kernels,
            outputs,
            updates,
            slots: vec![],
            checks: vec![],
            shapes: vec![],
            maximum_axes: vec![],
            reduced: vec![],
        }
    }

    #[test]
    fn a_chain_of_temporaries_reuses_two_slots() {
        // b0 input; b1 = f(b0); b2 = f(b1); b3 = f(b2); b4 = f(b3), the output.
        let mut buffers = vec![buffer(Role::Input("x".into()))];
        buffers.extend((0..4).map(|_| buffer(Role::Temporary)));
        let kernels = (1..5).map(|b| map(&[b - 1], b)).collect();
        let mut p = program(buffers, kernels, vec![4], vec![]);
        plan_memory(&mut p);
        // b1 and b3 share, b2 and b4 share: each kernel reads one slot and writes the other.
        assert_eq!(p.slots[1..], [Some(0), Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn a_buffer_read_by_a_kernel_never_shares_with_its_output() {
        let mut buffers = vec![buffer(Role::Input("x".into()))];
        buffers.extend((0..3).map(|_| buffer(Role::Temporary)));
        // b1 = f(x); b2 = f(b1); b3 = f(b1, b2): b1 lives until the last kernel.
        let kernels = vec![map(&[0], 1), map(&[1], 2), map(&[1, 2], 3)];
        let mut p = program(buffers, kernels, vec![3], vec![]);
        plan_memory(&mut p);
        let slots: Vec<usize> = p.slots[1..].iter().map(|s| s.expect("temporary")).collect();
        assert!(slots[0] != slots[1] && slots[0] != slots[2] && slots[1] != slots[2], "{slots:?}");
    }

    #[test]
    fn an_sgd_update_is_written_in_place() {
        // b0 param, b1 gradient (input), b2 = f(b0, b1) the new value.
        let buffers = vec![buffer(Role::Param("w".into())), buffer(Role::Input("g".into())), buffer(Role::Temporary)];
        let mut p = program(buffers, vec![map(&[0, 1], 2)], vec![], vec![(0, 2)]);
        plan_memory(&mut p);
        assert_eq!(p.buffers[2].role, Role::Alias(0));
        assert!(p.updates.is_empty());
    }

    #[test]
    fn an_update_whose_old_value_is_read_later_is_copied() {
        // b2 = f(b0, b1) is w's new value, but b3 = f(b0) still reads the old w afterwards.
        let buffers = vec![
            buffer(Role::Param("w".into())),
            buffer(Role::Input("g".into())),
            buffer(Role::Temporary),
            buffer(Role::Temporary),
        ];
        let mut p = program(buffers, vec![map(&[0, 1], 2), map(&[0], 3)], vec![3], vec![(0, 2)]);
        plan_memory(&mut p);
        assert_eq!(p.buffers[2].role, Role::Temporary);
        assert_eq!(p.updates, vec![(0, 2)]);
    }
}
