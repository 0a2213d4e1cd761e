//! A small persistent thread pool that runs one kernel over split ranges.
//!
//! Spawning a thread per kernel call costs tens of microseconds; a training step runs dozens
//! of kernels. The pool keeps `threads - 1` workers that spin briefly between jobs and then
//! park on a condition variable; the calling thread runs the first range itself and spins
//! until the others are done.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_compiler::codegen::{CompiledKernel, KernelStatus};

/// Raw arguments of one kernel call, shared with the workers for its duration.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub buffers: *const *mut u8,
    pub sizes: *const i64,
}

// SAFETY: the pointers stay valid while `Pool::run` waits for every worker to finish its range,
// and the ranges write disjoint elements (the kernel contract of `CompiledKernel::run`).
unsafe impl Send for Call {}

struct Job {
    kernel: CompiledKernel,
    call: Call,
    ranges: Vec<(i64, i64)>,
    statuses: *mut KernelStatus,
}

// SAFETY: see `Call`; each worker writes only its own status slot.
unsafe impl Send for Job {}
// SAFETY: workers share the job read-only; the only writes through its pointers go to disjoint
// elements and to each range's own status slot.
unsafe impl Sync for Job {}

/// How long an idle thread spins before it parks. Kernels of one training step follow each
/// other within microseconds, and waking a parked thread costs tens of them.
const SPIN: Duration = Duration::from_micros(200);

#[derive(Default)]
struct Shared {
    /// Bumped (under `parking`) for every job.
    generation: AtomicU64,
    /// The current job; workers clone it after seeing a new generation.
    job: Mutex<Option<Arc<Job>>>,
    /// Ranges of the current job not finished yet, the caller's excluded.
    pending: AtomicUsize,
    shutdown: AtomicBool,
    /// Number of parked workers; guards the generation bump against lost wake-ups.
    parking: Mutex<usize>,
    work: Condvar,
}

/// Runs kernels on `threads` threads (the caller's included).
pub(crate) struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `threads` threads in all (at least 1).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared::default());
        let workers = (1..threads)
            .map(|worker| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || work(&shared, worker))
            })
            .collect();
        Pool { threads, shared, workers }
    }

    /// Threads in the pool, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `kernel` over `0..extent`, split into at most `threads` ranges when `split`.
    /// Returns the first nonzero status of any range.
    ///
    /// # Safety
    /// `call` must satisfy the contract of [`CompiledKernel::run`] for `0..extent`.
    pub unsafe fn run(&self, kernel: &CompiledKernel, call: Call, extent: i64, split: bool) -> KernelStatus {
        let parts = if split { (self.threads as i64).min(extent).max(1) } else { 1 };
        if parts == 1 {
            let mut status = KernelStatus::default();
            // SAFETY: the caller's contract, over the whole range.
            unsafe { kernel.run(call.buffers, call.sizes, 0, extent, &mut status) };
            return status;
        }
        let ranges: Vec<(i64, i64)> = (0..parts).map(|p| (extent * p / parts, extent * (p + 1) / parts)).collect();
        let mut statuses = vec![KernelStatus::default(); ranges.len()];
        let shared = &self.shared;
        let job = Arc::new(Job { kernel: kernel.clone(), call, ranges, statuses: statuses.as_mut_ptr() });
        shared.pending.store(job.ranges.len() - 1, Ordering::Release);
        *lock(&shared.job) = Some(Arc::clone(&job));
        {
            let parked = lock(&shared.parking);
            shared.generation.fetch_add(1, Ordering::AcqRel);
            if *parked > 0 {
                shared.work.notify_all();
            }
        }
        // SAFETY: range 0 is the caller's share; its status slot is its own.
        unsafe { run_range(&job, 0) };
        let started = Instant::now();
        let mut spins = 0u32;
        while shared.pending.load(Ordering::Acquire) > 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) && started.elapsed() > SPIN {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        *lock(&shared.job) = None;
        statuses.into_iter().find(|s| s[0] != 0).unwrap_or_default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs range `index` of `job`.
///
/// # Safety
/// The job's pointers are valid until every range has finished (the pool waits for that).
unsafe fn run_range(job: &Job, index: usize) {
    let (start, end) = job.ranges[index];
    // SAFETY: the status slot `index` belongs to this range alone; the kernel contract is the
    // submitter's.
    unsafe {
        let status = job.statuses.add(index);
        job.kernel.run(job.call.buffers, job.call.sizes, start, end, &mut *status);
    }
}

/// Waits for a generation other than `seen` (spinning first, then parked); `None` on shutdown.
fn next_generation(shared: &Shared, seen: u64) -> Option<u64> {
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return None;
        }
        let generation = shared.generation.load(Ordering::Acquire);
        if generation != seen {
            return Some(generation);
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(64) || started.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        let mut parked = lock(&shared.parking);
        *parked += 1;
        while !shared.shutdown.load(Ordering::Acquire) && shared.generation.load(Ordering::Acquire) == seen {
            parked = shared.work.wait(parked).unwrap_or_else(|e| e.into_inner());
        }
        *parked -= 1;
    }
}

fn work(shared: &Shared, worker: usize) {
    let mut seen = 0;
    while let Some(generation) = next_generation(shared, seen) {
        seen = generation;
        let Some(job) = lock(&shared.job).clone() else { continue };
        if worker < job.ranges.len() {
            // SAFETY: the submitter waits until `pending` reaches 0 before releasing the job.
            unsafe { run_range(&job, worker) };
            shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _parked = lock(&self.shared.parking);
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.work.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
