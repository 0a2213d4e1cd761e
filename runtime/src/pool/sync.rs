//! The primitives the pool's protocol (`crew.rs`) is written against: the standard library's,
//! and the idle policy (spin about 200 µs, then park).
//!
//! In: nothing. Out: the atomics, locks and park/unpark the pool uses (loom's under `cfg(loom)`).
//!
//! The loom model check (`runtime/tests/pool_loom.rs`) compiles the same `crew.rs` against a
//! module of this name that re-exports loom's versions instead, so the protocol it checks is the
//! code the pool runs.

use std::time::{Duration, Instant};

pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
pub(crate) use std::thread::{JoinHandle, spawn};

/// How long an idle thread spins before it parks. Kernels of one training step follow each
/// other within microseconds, and waking a parked thread costs tens of them.
const SPIN: Duration = Duration::from_micros(200);

/// Spinning with a time limit: `keep_spinning` is true for about [`SPIN`] after `new`.
pub(crate) struct Backoff {
    started: Instant,
    spins: u32,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { started: Instant::now(), spins: 0 }
    }

    /// Pauses the processor briefly and tells whether to poll again (`false`: time to park).
    /// Reads the clock every 64 polls only, since a poll takes nanoseconds.
    pub(crate) fn keep_spinning(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        if self.spins.is_multiple_of(64) && self.started.elapsed() > SPIN {
            return false;
        }
        std::hint::spin_loop();
        true
    }
}
