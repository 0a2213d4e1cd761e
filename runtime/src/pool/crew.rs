//! The pool's protocol, apart from what a job computes: a crew of worker threads, each with a
//! mailbox of its own, and jobs that count down their own unfinished parts.
//!
//! In: a job whose work is split into `parts` numbered parts ([`Parts`]). Out: when
//! [`Crew::run`] returns, every part of that job has run exactly once (part 0 on the calling
//! thread, part `p` on worker `p`), and everything the parts wrote is visible to the caller.
//!
//! # Protocol
//! - Worker `p` owns a mailbox that holds at most one job. There is no shared "current job":
//!   `run` posts the job into the mailboxes of workers `1..parts` only, runs part 0 itself, and
//!   waits until the job's own countdown (started at `parts - 1`) reaches zero.
//! - A worker takes the job out of its mailbox under the mailbox's lock, runs its own part of
//!   that job, and counts that job down once. Then it waits for its next letter.
//!
//! Why each part runs exactly once, for the job it was posted for:
//! - The job travels in the mailbox; a worker never looks anywhere else for work. Taking a
//!   letter empties the mailbox, so one post is one run.
//! - The countdown belongs to the job. A worker late from one job can only count that job down;
//!   the next job has a fresh count. (The pool this replaces had one shared `pending` counter and
//!   one "current job" slot read after a generation number: a worker woken for one job could
//!   pick up the next, run its range twice and decrement `pending` twice, so the caller went on
//!   before a range was written, and later waited forever.)
//! - The caller posts the next job only after every part of this one has finished, so a mailbox
//!   is always empty when posted to, and the pointers a job carries outlive every part that
//!   uses them. After counting down, a worker touches only the countdown, which its `Arc` of the
//!   job keeps alive.
//! - No wake-up is lost: a post and a worker's decision to park are both made under the
//!   mailbox's lock (the worker checks for a letter under it before it waits, the poster
//!   notifies when the worker said it waits). Likewise the last part to finish notifies under
//!   the countdown's lock, and the caller checks the count under it before it waits.
//! - Idle threads spin on an atomic hint for about 200 µs before they park (see `sync.rs`):
//!   kernels of one training step follow each other within microseconds.
//!
//! `runtime/tests/pool_loom.rs` model-checks this file with loom: every interleaving of a caller
//! and two workers over jobs of alternating sizes, for data races, lost wake-ups and parts run
//! other than once.

use super::sync::{Arc, AtomicBool, AtomicUsize, Backoff, Condvar, JoinHandle, Mutex, MutexGuard, Ordering, spawn};

/// Work split into numbered parts that may run at the same time on different threads.
pub(crate) trait Parts: Send + Sync + 'static {
    /// Runs part `part`; called exactly once for each part of a job.
    fn run_part(&self, part: usize);
}

/// One job: its work and the number of its parts still running on workers.
pub(crate) struct Job<W> {
    pub(crate) work: W,
    parts: usize,
    unfinished: Countdown,
}

impl<W: Parts> Job<W> {
    /// A job of `parts` parts (at least 1).
    pub(crate) fn new(work: W, parts: usize) -> Arc<Job<W>> {
        assert!(parts >= 1, "bug in kiln: a job of no parts");
        Arc::new(Job { work, parts, unfinished: Countdown::new(parts - 1) })
    }
}

/// Worker threads, each waiting on its own mailbox for jobs.
pub(crate) struct Crew<W> {
    mailboxes: Vec<Arc<Mailbox<Arc<Job<W>>>>>,
    threads: Vec<JoinHandle<()>>,
}

impl<W: Parts> Crew<W> {
    /// A crew of `workers` threads (besides the caller's).
    pub(crate) fn new(workers: usize) -> Crew<W> {
        let mailboxes: Vec<Arc<Mailbox<Arc<Job<W>>>>> = (0..workers).map(|_| Arc::new(Mailbox::new())).collect();
        let threads = mailboxes
            .iter()
            .enumerate()
            .map(|(index, mailbox)| {
                let mailbox = Arc::clone(mailbox);
                spawn(move || serve(&mailbox, index + 1))
            })
            .collect();
        Crew { mailboxes, threads }
    }

    /// Worker threads, the caller's excluded.
    pub(crate) fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// Runs every part of `job` (part 0 on this thread, part `p` on worker `p`) and returns when
    /// all have finished. `&mut self`: one job at a time, which keeps every mailbox empty when
    /// posted to.
    pub(crate) fn run(&mut self, job: &Arc<Job<W>>) {
        assert!(
            job.parts <= self.mailboxes.len() + 1,
            "bug in kiln: a job of {} parts for {} threads",
            job.parts,
            self.mailboxes.len() + 1
        );
        for mailbox in &self.mailboxes[..job.parts - 1] {
            mailbox.post(Arc::clone(job));
        }
        // Waits for the workers' parts even if part 0 unwinds: they may use memory of the
        // caller's frame.
        let _finished = WaitOnDrop(&job.unfinished);
        job.work.run_part(0);
    }
}

impl<W> Drop for Crew<W> {
    fn drop(&mut self) {
        for mailbox in &self.mailboxes {
            mailbox.close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A worker's life: take a job, run part `part` of it, count it down; until the crew closes.
fn serve<W: Parts>(mailbox: &Mailbox<Arc<Job<W>>>, part: usize) {
    while let Some(job) = mailbox.take() {
        job.work.run_part(part);
        job.unfinished.count_down();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A slot for one letter, with a flag that a spinning reader polls without the lock.
struct Mailbox<T> {
    /// Set (under the lock) when a letter is posted or the mailbox closed; cleared when the
    /// letter is taken. Only a hint for spinning: decisions are made under the lock.
    ready: AtomicBool,
    inside: Mutex<Inside<T>>,
    posted: Condvar,
}

struct Inside<T> {
    letter: Option<T>,
    closed: bool,
    /// The reader is parked on `posted` (or about to be: it holds the lock until it waits).
    waiting: bool,
}

impl<T> Mailbox<T> {
    fn new() -> Mailbox<T> {
        Mailbox {
            ready: AtomicBool::new(false),
            inside: Mutex::new(Inside { letter: None, closed: false, waiting: false }),
            posted: Condvar::new(),
        }
    }

    fn post(&self, letter: T) {
        let mut inside = lock(&self.inside);
        debug_assert!(inside.letter.is_none(), "bug in kiln: a job posted to a worker still busy");
        inside.letter = Some(letter);
        self.ready.store(true, Ordering::Release);
        if inside.waiting {
            self.posted.notify_one();
        }
    }

    fn close(&self) {
        let mut inside = lock(&self.inside);
        inside.closed = true;
        self.ready.store(true, Ordering::Release);
        if inside.waiting {
            self.posted.notify_one();
        }
    }

    /// The next letter (spinning on the hint first, then parked); `None` once closed.
    fn take(&self) -> Option<T> {
        let mut backoff = Backoff::new();
        while !self.ready.load(Ordering::Acquire) {
            if !backoff.keep_spinning() {
                break;
            }
        }
        let mut inside = lock(&self.inside);
        loop {
            if let Some(letter) = inside.letter.take() {
                self.ready.store(inside.closed, Ordering::Relaxed);
                return Some(letter);
            }
            if inside.closed {
                return None;
            }
            inside.waiting = true;
            inside = self.posted.wait(inside).unwrap_or_else(|poisoned| poisoned.into_inner());
            inside.waiting = false;
        }
    }
}

/// A count of unfinished parts that one thread waits on (spinning first, then parked).
struct Countdown {
    left: AtomicUsize,
    /// Whether the waiter is parked on `zero` (or about to be: it holds the lock until it waits).
    waiting: Mutex<bool>,
    zero: Condvar,
}

impl Countdown {
    fn new(count: usize) -> Countdown {
        Countdown { left: AtomicUsize::new(count), waiting: Mutex::new(false), zero: Condvar::new() }
    }

    /// One part finished: its writes happen before the waiter's return.
    fn count_down(&self) {
        let before = self.left.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "bug in kiln: a part of a job finished twice");
        if before == 1 {
            let waiting = lock(&self.waiting);
            if *waiting {
                self.zero.notify_one();
            }
        }
    }

    /// Returns once the count is zero.
    fn wait(&self) {
        let mut backoff = Backoff::new();
        while self.left.load(Ordering::Acquire) != 0 {
            if !backoff.keep_spinning() {
                break;
            }
        }
        if self.left.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut waiting = lock(&self.waiting);
        while self.left.load(Ordering::Acquire) != 0 {
            *waiting = true;
            waiting = self.zero.wait(waiting).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *waiting = false;
    }
}

/// Waits on a countdown when dropped (at the end of [`Crew::run`], or while unwinding from it).
struct WaitOnDrop<'a>(&'a Countdown);

impl Drop for WaitOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}
