//! Model check of the thread pool's protocol with loom: every interleaving (up to a bound on
//! preemptions) of a caller and two workers running jobs of alternating sizes, as the pool
//! does for kernels of outer extent 2 and wide ones.
//!
//! The protocol is `runtime/src/pool/crew.rs`, compiled here against loom's threads, atomics,
//! mutexes and condition variables instead of the standard library's (the `sync` module below
//! stands in for `runtime/src/pool/sync.rs`), so what is checked is the code the pool runs.
//! Loom reports a data race on the parts' results (a result read before the part that wrote
//! it is known to have finished), a deadlock (a lost wake-up), or a failed assertion (a part
//! run other than once, or for a job it was not posted for).

/// loom's primitives under the names `crew.rs` imports; spinning is one poll, then the lock
/// path, so every interleaving of the parking protocol is explored.
mod sync {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub(crate) use loom::thread::{JoinHandle, spawn};

    pub(crate) struct Backoff;

    impl Backoff {
        pub(crate) fn new() -> Backoff {
            Backoff
        }

        pub(crate) fn keep_spinning(&mut self) -> bool {
            false
        }
    }
}

#[path = "../src/pool/crew.rs"]
mod crew;

use crew::{Crew, Job, Parts};
use loom::cell::UnsafeCell;

/// A job's work: one cell per part, counting how often that part ran.
struct Tally {
    runs: Vec<UnsafeCell<u32>>,
}

// SAFETY: each part writes only its own cell; the caller reads them after the job finished
// (which is what the model checks).
unsafe impl Sync for Tally {}

impl Tally {
    fn new(parts: usize) -> Tally {
        Tally { runs: (0..parts).map(|_| UnsafeCell::new(0)).collect() }
    }
}

impl Parts for Tally {
    fn run_part(&self, part: usize) {
        assert!(part < self.runs.len(), "part {part} run for a job of {} parts", self.runs.len());
        // SAFETY: cell `part` belongs to this part alone (loom checks it).
        self.runs[part].with_mut(|runs| unsafe { *runs += 1 });
    }
}

/// Runs jobs of `sizes` parts, one after the other, on a crew of two workers, and checks after
/// each that every part ran exactly once.
fn run_jobs(sizes: &'static [usize]) {
    let mut builder = loom::model::Builder::new();
    // Three threads with locks and condition variables: bounding preemptions keeps the model
    // within seconds while still covering every order of post, take, park and count-down.
    builder.preemption_bound = Some(2);
    builder.check(move || {
        let mut crew = Crew::new(2);
        assert_eq!(crew.workers(), 2);
        for &parts in sizes {
            let job = Job::new(Tally::new(parts), parts);
            crew.run(&job);
            for (part, runs) in job.work.runs.iter().enumerate() {
                // SAFETY: `run` returned, so every part finished (loom checks the ordering).
                let runs = runs.with(|runs| unsafe { *runs });
                assert_eq!(runs, 1, "part {part} of a job of {parts} parts ran {runs} times");
            }
        }
        drop(crew);
    });
}

#[test]
fn every_part_runs_once_for_jobs_using_all_threads() {
    run_jobs(&[3]);
}

#[test]
fn every_part_runs_once_when_job_sizes_alternate() {
    run_jobs(&[2, 3]);
}
