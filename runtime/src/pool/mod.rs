//! A small persistent thread pool that runs one kernel over split ranges.
//!
//! In: a compiled kernel, the raw arguments of one call and its outer extent. Out: the kernel
//! has run over `0..extent` exactly once (split into at most `threads` contiguous ranges), and
//! the first nonzero status of any range.
//!
//! Spawning a thread per kernel call costs tens of microseconds; a training step runs dozens
//! of kernels. The pool keeps `threads - 1` workers. For each split call it builds a job that
//! owns the ranges, a status slot per range and its own count of unfinished ranges; range `p`
//! is posted to worker `p` alone, the calling thread runs range 0, and waits for that job's
//! count to reach zero. Workers that a job does not need are not woken. Idle threads spin for
//! about 200 µs and then park. The protocol, and why it runs each range exactly once for the
//! call it belongs to, is in `crew.rs`; it is generic over the work so that loom can check it
//! without JIT code.

mod crew;
mod sync;

use std::cell::UnsafeCell;

use kiln_compiler::codegen::{CompiledKernel, KernelStatus};

use crew::{Crew, Job, Parts};

/// Raw arguments of one kernel call, shared with the workers for its duration.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub buffers: *const *mut u8,
    pub sizes: *const i64,
}

// SAFETY: the pointers stay valid while `Pool::run` waits for every range to finish, and the
// ranges write disjoint elements (the kernel contract of `CompiledKernel::run`).
unsafe impl Send for Call {}

/// One kernel call split into ranges: the work of a job.
struct KernelRanges {
    kernel: CompiledKernel,
    call: Call,
    ranges: Vec<(i64, i64)>,
    /// One status per range, written only by the thread running that range and read by the
    /// caller after the job's countdown reached zero.
    statuses: Vec<UnsafeCell<KernelStatus>>,
}

// SAFETY: see `Call`; each range writes only its own status slot, and the caller reads the
// slots only after every range finished (the countdown orders those writes before the read).
unsafe impl Send for KernelRanges {}
// SAFETY: as for `Send`: threads share the job read-only except for disjoint writes.
unsafe impl Sync for KernelRanges {}

impl Parts for KernelRanges {
    fn run_part(&self, part: usize) {
        let (start, end) = self.ranges[part];
        // SAFETY: `KernelRanges` is only built by `Pool::run`, whose caller guarantees the kernel
        // contract over `0..extent`; the ranges lie within it and each writes disjoint elements;
        // status slot `part` belongs to this range alone.
        unsafe {
            let status = self.statuses[part].get();
            self.kernel.run(self.call.buffers, self.call.sizes, start, end, &mut *status);
        }
    }
}

/// Runs kernels on `threads` threads (the caller's included).
pub(crate) struct Pool {
    crew: Crew<KernelRanges>,
}

impl Pool {
    /// A pool of `threads` threads in all (at least 1).
    pub fn new(threads: usize) -> Pool {
        Pool { crew: Crew::new(threads.max(1) - 1) }
    }

    /// Threads in the pool, the caller's included.
    pub fn threads(&self) -> usize {
        self.crew.workers() + 1
    }

    /// Runs `kernel` over `0..extent`, split into at most `threads` ranges when `split`.
    /// Returns the first nonzero status of any range.
    ///
    /// # Safety
    /// `call` must satisfy the contract of [`CompiledKernel::run`] for `0..extent`.
    pub unsafe fn run(&mut self, kernel: &CompiledKernel, call: Call, extent: i64, split: bool) -> KernelStatus {
        let parts = if split { (self.threads() as i64).min(extent).max(1) } else { 1 };
        if parts == 1 {
            let mut status = KernelStatus::default();
            // SAFETY: the caller's contract, over the whole range.
            unsafe { kernel.run(call.buffers, call.sizes, 0, extent, &mut status) };
            return status;
        }
        let ranges: Vec<(i64, i64)> = (0..parts).map(|p| (extent * p / parts, extent * (p + 1) / parts)).collect();
        let statuses = (0..parts).map(|_| UnsafeCell::new(KernelStatus::default())).collect();
        let job = Job::new(KernelRanges { kernel: kernel.clone(), call, ranges, statuses }, parts as usize);
        self.crew.run(&job);
        // SAFETY: every range has finished (`run` returned), so no thread writes a status now.
        job.work.statuses.iter().map(|status| unsafe { *status.get() }).find(|s| s[0] != 0).unwrap_or_default()
    }
}
