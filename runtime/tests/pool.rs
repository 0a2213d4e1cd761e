//! The thread pool under oversubscription: more threads than cores, kernels whose ranges
//! alternate between 2 and all of the threads, and an in-place param update, for thousands of
//! calls. Every element of every output is checked on every call, and a watchdog turns a hang
//! into a failure.
//!
//! This is how the pool's old race was found: a worker woken for one kernel could run another
//! kernel's range (twice), so outputs came back with a stale range and the pool later hung.
//! `KILN_POOL_CALLS` sets the number of calls per configuration (default 10,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kiln_compiler::prelude::*;
use kiln_runtime::function;

/// Elements of the elementwise kernel (its outer extent: one range per thread).
const WIDE: usize = 18_000;
/// Columns of the reduction kernel, whose outer extent is 2 (two ranges, whatever the threads).
const COLUMNS: usize = 9_000;
/// A call that makes no progress for this long is a hang.
const STALL: Duration = Duration::from_secs(30);

/// Runs `calls` calls on `threads` threads and checks every output element of each;
/// `progress` counts finished calls.
fn run_alternating(threads: usize, calls: u64, progress: &AtomicU64) -> std::result::Result<(), String> {
    let mut f = alternating_function().map_err(|e| e.to_string())?;
    if f.kernel_count() != 4 {
        return Err(format!("expected reduction, elementwise, reduction, elementwise kernels, got:\n{}", f.listing()));
    }
    f.set_threads(threads);
    for call in 0..calls {
        // Inputs change every call, so a range left from the previous call shows.
        let level = (call % 4) as f64;
        let rows = Value::f32([2, COLUMNS], (0..2 * COLUMNS).map(|i| (level + (i / COLUMNS) as f64) as f32).collect());
        let x: Vec<f64> = (0..WIDE).map(|i| ((call as usize + i) % 5) as f64).collect();
        let out =
            f.call(&[rows, Value::f32([WIDE], x.iter().map(|&v| v as f32).collect())]).map_err(|e| e.to_string())?;
        // `w` starts at 0 and flips between 0 and 1 on every call; every value here is an
        // integer below 2^24, so exact in f32 whatever the order of summation.
        let w = (call % 2) as f64;
        let y: Vec<f64> = x.iter().map(|x| 3.0 * x + w).collect();
        let row_sums = [COLUMNS as f64 * level, COLUMNS as f64 * (level + 1.0)];
        let weighted = [level * y[..COLUMNS].iter().sum::<f64>(), (level + 1.0) * y[COLUMNS..].iter().sum::<f64>()];
        let z: Vec<f64> = y.iter().map(|y| 2.0 * y + weighted[0] + weighted[1]).collect();
        let expected = [&row_sums[..], &y, &weighted[..], &z];
        for (number, (output, expected)) in out.iter().zip(expected).enumerate() {
            let output = output.to_f64_vec();
            let wrong: Vec<usize> = (0..expected.len()).filter(|&i| output[i] != expected[i]).collect();
            if let (Some(&first), Some(&last)) = (wrong.first(), wrong.last()) {
                return Err(format!(
                    "{threads} threads, call {call}: {} elements of output {number} are wrong (from {first} to \
                     {last}; element {first} is {}, expected {})",
                    wrong.len(),
                    output[first],
                    expected[first]
                ));
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Four kernels that alternate outer extents 2 and 18,000 (the listing is checked above):
/// row sums, `y = 3x + w`, row sums of `rows * y`, and `z = 2y + sum` fused with the in-place
/// update `w = 1 - w`.
fn alternating_function() -> Result<kiln_runtime::Function> {
    let g = Graph::new();
    let rows = g.input("rows", [2, COLUMNS])?;
    let x = g.input("x", [WIDE])?;
    let w = g.param("w", [WIDE], Init::ZEROS)?;
    let row_sums = rows.sum(&[1], false)?;
    let y = x * 3.0 + w;
    let weighted = (rows * y.reshape([2, COLUMNS])?).sum(&[1], false)?;
    let z = y * 2.0 + weighted.sum_all()?;
    function(&g, &[rows, x], &[row_sums, y, weighted, z], &[(w, w * -1.0 + 1.0)])
}

/// Runs [`run_alternating`] on its own thread; fails if it errs or if no call finishes for
/// [`STALL`] (the stuck thread is left behind; the test process ends with the harness).
fn check_with_watchdog(threads: usize) {
    let calls = std::env::var("KILN_POOL_CALLS").ok().and_then(|c| c.parse().ok()).unwrap_or(10_000);
    let progress = Arc::new(AtomicU64::new(0));
    let (done, finished) = std::sync::mpsc::channel();
    let counter = Arc::clone(&progress);
    std::thread::spawn(move || {
        let _ = done.send(run_alternating(threads, calls, &counter));
    });
    let mut last = 0;
    loop {
        match finished.recv_timeout(STALL) {
            Ok(result) => {
                if let Err(message) = result {
                    panic!("{message}");
                }
                return;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                assert!(
                    now != last,
                    "{threads} threads: hung after {now} of {calls} calls (no call finished in {STALL:?})"
                );
                last = now;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{threads} threads: the calling thread panicked")
            }
        }
    }
}

#[test]
fn sixteen_threads_on_few_cores_return_every_range_of_every_call() {
    check_with_watchdog(16);
}

#[test]
fn four_threads_return_every_range_of_every_call() {
    check_with_watchdog(4);
}
