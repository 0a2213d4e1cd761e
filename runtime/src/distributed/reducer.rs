//! The gradient sums of a compiled step, as MPI non-blocking all-reduces.
//!
//! In: buffers of `f32` handed over by the running program (see `crate::reduce`). Out: each
//! buffer summed over every rank, in place, once waited for. A sum is one `MPI_Iallreduce`
//! from a copy of the buffer into the buffer itself (a copy rather than `MPI_IN_PLACE`, which
//! the bindings do not export); the copies are kept between calls, so a step allocates nothing.

use kiln_compiler::{Error, Result};
use mpi::ffi;

use super::{Ranks, check, count, null_request, wait};
use crate::reduce::Reducer;

/// Sums a compiled step's gradients across the ranks of `ranks`.
pub(crate) struct MpiReducer {
    ranks: Ranks,
    slots: Vec<Slot>,
}

/// One sum: its request while it travels, and the copy it sends from.
struct Slot {
    request: Option<ffi::MPI_Request>,
    send: Vec<f32>,
    name: String,
}

// SAFETY: the requests are handles owned by this reducer alone; MPI runs serialised (see
// `Shared`), and a reducer is used by one call of one function at a time.
unsafe impl Send for MpiReducer {}

impl MpiReducer {
    pub(crate) fn new(ranks: &Ranks) -> MpiReducer {
        MpiReducer { ranks: ranks.clone(), slots: Vec::new() }
    }
}

impl Reducer for MpiReducer {
    fn ranks(&self) -> usize {
        self.ranks.size()
    }

    unsafe fn start(&mut self, data: *mut f32, len: usize, name: &str) -> Result<usize> {
        let rank = self.ranks.rank();
        let ticket = match self.slots.iter().position(|slot| slot.request.is_none()) {
            Some(free) => free,
            None => {
                self.slots.push(Slot { request: None, send: Vec::new(), name: String::new() });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[ticket];
        slot.send.clear();
        // SAFETY: the caller promises `len` floats at `data`.
        slot.send.extend_from_slice(unsafe { std::slice::from_raw_parts(data, len) });
        slot.name = format!("the sum of {name} across ranks");
        let mut request = null_request();
        // SAFETY: the copy lives in the slot until the request completes (the slot is not
        // reused before `wait`), and the caller keeps `data` untouched until then.
        let code = unsafe {
            ffi::MPI_Iallreduce(
                slot.send.as_ptr().cast(),
                data.cast(),
                count(len, &slot.name, rank)?,
                ffi::RSMPI_FLOAT,
                ffi::RSMPI_SUM,
                self.ranks.raw(),
                &mut request,
            )
        };
        check(code, &slot.name, rank)?;
        slot.request = Some(request);
        Ok(ticket)
    }

    fn wait(&mut self, ticket: usize) -> Result<()> {
        let rank = self.ranks.rank();
        let slot = self.slots.get_mut(ticket).ok_or_else(|| Error::Bug(format!("no sum has ticket {ticket}")))?;
        let mut request = slot.request.take().ok_or_else(|| Error::Distributed {
            rank,
            detail: format!("bug in kiln: {} was waited for twice", slot.name),
        })?;
        wait(self.ranks.raw(), &mut request, &slot.name, rank, self.ranks.size(), self.ranks.timeout)
    }
}
