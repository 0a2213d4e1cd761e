//! Sums across processes as steps of a compiled program: where each one starts and ends.
//!
//! In: a kernel program whose `reduced` buffers (the gradients of a data-parallel step) must
//! be summed across processes. Out: an [`Exchange`], the schedule the runtime follows while it
//! runs the kernels: the sum of a buffer starts right after the kernel that finishes it, and
//! is waited for right before the first kernel that reads it (the optimizer's update), so the
//! sums of early gradients travel while the rest of the backward pass computes.
//!
//! The sums themselves are a [`Reducer`]'s job (MPI's non-blocking all-reduce, with the
//! `mpi` feature); the runtime never needs to know how they travel.

use kiln_compiler::kernel::{Program, Role};
use kiln_compiler::{DType, Error, Location, Result};

/// Sums buffers of `f32` across the processes of a data-parallel run, without blocking.
///
/// Every process runs the same program, so every process starts the same sums in the same
/// order; the `n`-th [`start`](Reducer::start) of one process meets the `n`-th of the others.
pub trait Reducer: Send {
    /// How many processes take part (the sums are divided by this for the mean).
    fn ranks(&self) -> usize;

    /// Starts summing `len` floats at `data` across processes, in place; `name` says what they
    /// are, for errors. Returns a ticket for [`wait`](Reducer::wait).
    ///
    /// # Safety
    /// `data` must point to `len` floats that stay valid, and that nothing reads or writes,
    /// until the ticket has been waited for.
    unsafe fn start(&mut self, data: *mut f32, len: usize, name: &str) -> Result<usize>;

    /// Waits until the sum of `ticket` is in place, or fails after the reducer's timeout with
    /// an error naming the sum and saying which processes did not answer.
    fn wait(&mut self, ticket: usize) -> Result<()>;
}

/// The sum of one buffer: when it starts and when the program needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sum {
    /// The storage buffer summed.
    pub buffer: usize,
    /// What it holds, for errors (`gradient 3`, or the name given at compilation).
    pub name: String,
    /// Start after this kernel (`None`: before the first, as no kernel writes it).
    pub after: Option<usize>,
    /// Wait before this kernel (the kernel count: at the end of the call).
    pub before: usize,
}

/// The schedule of every sum of a program, in the order they start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exchange {
    /// One per summed storage buffer.
    pub sums: Vec<Sum>,
}

impl Exchange {
    /// The schedule of `program`'s reduced buffers, named by `names` (one per buffer of
    /// `program.reduced`). Constants are the same on every process and are not summed; a
    /// buffer that is not `f32` is an error (at the caller's line).
    #[track_caller]
    pub fn plan(program: &Program, names: &[String]) -> Result<Exchange> {
        let mut sums: Vec<Sum> = Vec::new();
        for (&buffer, name) in program.reduced.iter().zip(names) {
            let storage = program.storage(buffer);
            let declared = &program.buffers[storage];
            if matches!(declared.role, Role::Constant(_)) || sums.iter().any(|sum| sum.buffer == storage) {
                continue;
            }
            if declared.dtype != DType::F32 {
                let detail = format!("`{name}` is {}; only f32 buffers are summed across processes", declared.dtype);
                return Err(Error::Argument { op: "function_reducing", detail, location: Location::caller() });
            }
            let touches = |position: usize, reads: bool| {
                let (read, written) = program.kernels[position].accesses();
                let list = if reads { read } else { written };
                list.into_iter().any(|b| program.storage(b) == storage)
            };
            let count = program.kernels.len();
            let after = (0..count).rev().find(|&k| touches(k, false));
            let first = after.map_or(0, |k| k + 1);
            let before = (first..count).find(|&k| touches(k, true)).unwrap_or(count);
            sums.push(Sum { buffer: storage, name: name.clone(), after, before });
        }
        // Start in kernel order, so every process starts its sums in the same order.
        sums.sort_by_key(|sum| sum.after.map_or(0, |k| k + 1));
        Ok(Exchange { sums })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_compiler::compile::compile_reducing;
    use kiln_compiler::prelude::*;

    /// A two-layer step whose gradients are summed: each sum starts after the kernel that
    /// finishes the gradient and ends before the update that reads it. The gradients come from
    /// matmuls (weights), reductions (biases) and an elementwise loop (the penalised param
    /// outside the network, `2q`). The passes' own rules are tested in `kernel::merge` and
    /// `kernel::epilogue`.
    #[test]
    fn each_gradient_sum_starts_after_its_last_writer_and_ends_before_its_first_reader() -> Result<()> {
        let g = Graph::new();
        let x = g.input("x", [8, 4])?;
        let labels = g.typed_input("labels", [8], DType::I64)?;
        let first = layers::Linear::new(&g, "first", 4, 6)?;
        let second = layers::Linear::new(&g, "second", 6, 3)?;
        let penalised = g.param("penalised", [6], Init::ONES)?;
        let logits = second.forward(layers::relu(first.forward(x)?)?)?;
        let loss = layers::cross_entropy(logits, labels)? + (penalised * penalised).sum_all()?;
        let params = [first.weight, first.bias, second.weight, second.bias, penalised];
        let grads = g.grad(loss, &params)?;
        let updates: Vec<_> = params.iter().zip(&grads).map(|(&p, &d)| (p, p - d * 0.1)).collect();
        let compiled = compile_reducing(&g, &[loss], &updates, &grads, &Default::default())?;
        let program = &compiled.program.program;
        let names: Vec<String> = (0..5).map(|i| format!("gradient {i}")).collect();
        let exchange = Exchange::plan(program, &names)?;
        assert_eq!(exchange.sums.len(), 5, "{exchange:?}");
        for sum in &exchange.sums {
            let after = sum.after.expect("every gradient is written by a kernel");
            assert!(after < sum.before && sum.before < program.kernels.len(), "{sum:?}");
            for (position, kernel) in program.kernels.iter().enumerate() {
                let (reads, writes) = kernel.accesses();
                let reads = reads.iter().any(|&b| program.storage(b) == sum.buffer);
                let writes = writes.iter().any(|&b| program.storage(b) == sum.buffer);
                assert!(!(reads && writes), "kernel {position} both writes and reads {}", sum.name);
                if position > after {
                    assert!(!writes, "kernel {position} writes {} after its sum started", sum.name);
                    if position < sum.before {
                        assert!(!reads, "kernel {position} reads {} before its sum ended", sum.name);
                    }
                }
            }
        }
        Ok(())
    }
}
