//! Data-parallel training over MPI (the `mpi` feature): the processes of a run and what they
//! exchange.
//!
//! In: the processes `mpirun` started, each building the same graph. Out: [`Ranks`], this
//! process's place among them and the collectives the trainer needs (the gradient sums of
//! the compiled step, the parameter broadcast at start, the hash that proves every rank holds
//! the same parameters, the mean of the reported metrics).
//!
//! Every collective is non-blocking and polled against a deadline ([`Ranks::set_timeout`]):
//! when another rank has died, stopped or hangs, this one prints which collective timed out
//! and stops every rank (`MPI_Abort`) instead of waiting forever. A rank whose own code fails
//! should do the same with [`Ranks::abort`], so the others stop at once with its error.

pub(crate) mod reducer;

use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_compiler::{Error, Result};
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};

/// How long a collective may wait for the other ranks by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// This process's place in a data-parallel run, and the run's collectives.
///
/// Cheap to clone: every clone (the trainer's, its reducers') shares one MPI environment,
/// which is finalised when the last clone goes.
///
/// ```no_run
/// use kiln_runtime::distributed::Ranks;
/// let ranks = Ranks::init()?;
/// println!("rank {} of {}", ranks.rank(), ranks.size());
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone)]
pub struct Ranks {
    shared: Arc<Shared>,
    timeout: Duration,
}

struct Shared {
    /// kiln's own communicator (a duplicate of the world), so its collectives never meet the
    /// program's other messages.
    communicator: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised with `MPI_THREAD_SERIALIZED` (checked in `init`): any thread may
// call it, one at a time. kiln calls it only through `&mut` reducers and from the thread
// stepping the trainer, so calls never overlap.
unsafe impl Send for Shared {}
// SAFETY: as above; the shared state itself is never mutated.
unsafe impl Sync for Shared {}

impl std::fmt::Debug for Ranks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranks").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

impl Ranks {
    /// Initialises MPI (once per process; under `mpirun`, or alone as a single rank).
    pub fn init() -> Result<Ranks> {
        let failed = |detail: String| Error::Distributed { rank: 0, detail };
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized).ok_or_else(|| {
            failed("MPI is already initialised in this process; make one `Ranks` and clone it".into())
        })?;
        if threading < mpi::Threading::Serialized {
            return Err(failed(format!("this MPI offers {threading:?} threading; kiln needs Serialized")));
        }
        let communicator = universe.world().duplicate();
        let (rank, size) = (communicator.rank() as usize, communicator.size() as usize);
        Ok(Ranks {
            shared: Arc::new(Shared { communicator, rank, size, _universe: universe }),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.shared.rank
    }

    /// How many processes take part.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// How long a collective may wait for the other ranks before this rank stops the run
    /// (default [`DEFAULT_TIMEOUT`]). Applies to trainers built from this value afterwards.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The counter to feed an in-graph random draw (`Graph::random_normal(.., counter)`) at
    /// `step`: distinct for every (step, rank), so ranks draw different examples and no draw
    /// repeats across steps.
    pub fn random_counter(&self, step: u64) -> i64 {
        (step * self.size() as u64 + self.rank() as u64) as i64
    }

    /// A reducer that replaces a compiled function's reduced buffers by their mean across
    /// these ranks (see [`crate::function_reducing`] and [`crate::Function::set_reducer`]).
    pub fn reducer(&self) -> Box<dyn crate::reduce::Reducer> {
        Box::new(reducer::MpiReducer::new(self))
    }

    /// Prints `error` on standard error as this rank's and stops every rank of the run
    /// (`MPI_Abort`), so the others do not wait for this one until their timeout.
    pub fn abort(&self, error: &Error) -> ! {
        eprintln!("kiln: rank {} of {} failed, stopping every rank: {error}", self.rank(), self.size());
        // SAFETY: the communicator is valid while `self` lives; MPI_Abort does not return.
        unsafe { ffi::MPI_Abort(self.raw(), 1) };
        unreachable!("MPI_Abort returned")
    }

    /// Waits until every rank has arrived here.
    pub fn barrier(&self, what: &str) -> Result<()> {
        let mut request = null_request();
        // SAFETY: `request` is written by MPI and polled to completion by `finish`.
        check(unsafe { ffi::MPI_Ibarrier(self.raw(), &mut request) }, what, self.rank())?;
        self.finish(&mut request, what)
    }

    /// Rank 0's `bytes` on every rank (their length included).
    pub fn broadcast(&self, bytes: &mut Vec<u8>, what: &str) -> Result<()> {
        let mut len = [bytes.len() as u64];
        // SAFETY: both buffers live and are untouched until `finish` returns.
        unsafe { self.wait_broadcast(len.as_mut_ptr().cast(), 1, ffi::RSMPI_UINT64_T, what)? };
        bytes.resize(len[0] as usize, 0);
        // SAFETY: as above.
        unsafe { self.wait_broadcast(bytes.as_mut_ptr().cast(), bytes.len(), ffi::RSMPI_UINT8_T, what) }
    }

    /// `value` of every rank, by rank.
    pub fn gather(&self, value: u64, what: &str) -> Result<Vec<u64>> {
        let mut all = vec![0u64; self.size()];
        let mut request = null_request();
        let send = [value];
        // SAFETY: `send` and `all` (one u64 per rank) live and are untouched until `finish`.
        let code = unsafe {
            ffi::MPI_Iallgather(
                send.as_ptr().cast(),
                1,
                ffi::RSMPI_UINT64_T,
                all.as_mut_ptr().cast(),
                1,
                ffi::RSMPI_UINT64_T,
                self.raw(),
                &mut request,
            )
        };
        check(code, what, self.rank())?;
        self.finish(&mut request, what)?;
        Ok(all)
    }

    /// The mean over ranks of each of `values`, in place.
    pub fn mean(&self, values: &mut [f64], what: &str) -> Result<()> {
        let send = values.to_vec();
        let mut request = null_request();
        // SAFETY: `send` and `values` live and are untouched until `finish`.
        let code = unsafe {
            ffi::MPI_Iallreduce(
                send.as_ptr().cast(),
                values.as_mut_ptr().cast(),
                count(values.len(), what, self.rank())?,
                ffi::RSMPI_DOUBLE,
                ffi::RSMPI_SUM,
                self.raw(),
                &mut request,
            )
        };
        check(code, what, self.rank())?;
        self.finish(&mut request, what)?;
        values.iter_mut().for_each(|value| *value /= self.size() as f64);
        Ok(())
    }

    /// Broadcasts `len` elements of `datatype` at `data` from rank 0 and waits.
    ///
    /// # Safety
    /// `data` must hold `len` elements of `datatype`, untouched until this returns.
    unsafe fn wait_broadcast(
        &self,
        data: *mut c_void,
        len: usize,
        datatype: ffi::MPI_Datatype,
        what: &str,
    ) -> Result<()> {
        let mut request = null_request();
        // SAFETY: the caller's promise.
        let code =
            unsafe { ffi::MPI_Ibcast(data, count(len, what, self.rank())?, datatype, 0, self.raw(), &mut request) };
        check(code, what, self.rank())?;
        self.finish(&mut request, what)
    }

    /// Polls `request` until it completes. Past the deadline the other ranks are not coming:
    /// this rank prints what it waited for and stops the run, since returning would leave MPI
    /// writing into memory the caller is about to free.
    fn finish(&self, request: &mut ffi::MPI_Request, what: &str) -> Result<()> {
        wait(self.raw(), request, what, self.rank(), self.size(), self.timeout)
    }

    fn raw(&self) -> ffi::MPI_Comm {
        self.shared.communicator.as_raw()
    }
}

fn null_request() -> ffi::MPI_Request {
    // SAFETY: reading a constant MPI exports.
    unsafe { ffi::RSMPI_REQUEST_NULL }
}

/// `len` as MPI's element count, or an error naming `what` when it does not fit.
fn count(len: usize, what: &str, rank: usize) -> Result<i32> {
    i32::try_from(len).map_err(|_| Error::Distributed {
        rank,
        detail: format!("{what}: {len} elements are more than one MPI message carries"),
    })
}

fn check(code: i32, what: &str, rank: usize) -> Result<()> {
    match code {
        0 => Ok(()),
        code => Err(Error::Distributed { rank, detail: format!("{what}: MPI returned error code {code}") }),
    }
}

/// Polls `request` on `communicator` until it completes or `timeout` passes; then stops the
/// run with a message naming `what` (see [`Ranks::finish`]).
fn wait(
    communicator: ffi::MPI_Comm,
    request: &mut ffi::MPI_Request,
    what: &str,
    rank: usize,
    size: usize,
    timeout: Duration,
) -> Result<()> {
    let started = Instant::now();
    let mut polls = 0u64;
    loop {
        let mut done = 0;
        // SAFETY: `request` came from a non-blocking call of ours and is not yet complete.
        check(unsafe { ffi::MPI_Test(request, &mut done, ffi::RSMPI_STATUS_IGNORE) }, what, rank)?;
        if done != 0 {
            return Ok(());
        }
        polls += 1;
        // Spin briefly (a sum over shared memory completes in microseconds), then yield the
        // core to the other ranks.
        if polls > 1000 {
            std::thread::sleep(Duration::from_micros(50));
        }
        if started.elapsed() > timeout {
            eprintln!(
                "kiln: rank {rank} of {size}: {what} did not complete within {timeout:?}: another rank has stopped, \
                 died or hangs; stopping every rank"
            );
            // SAFETY: the communicator is valid; MPI_Abort does not return.
            unsafe { ffi::MPI_Abort(communicator, 2) };
            unreachable!("MPI_Abort returned");
        }
    }
}
