//! The trainer of one rank of a data-parallel run.
//!
//! In: a graph every rank builds alike, and [`Ranks`]. Out: a [`Trainer`] whose compiled step
//! sums each gradient across ranks (the mean) between the backward kernels that finish it and
//! the update kernels that read it, whose params start as rank 0's and stay identical on
//! every rank, bit for bit, since every rank applies the same update to the same values.

use kiln_compiler::{Error, Graph, ParamStore, Result, Value};

use super::{Objective, Settings, Trainer};
use crate::distributed::Ranks;
use crate::distributed::reducer::MpiReducer;
use crate::function::{byte_size, bytemuck_bytes, from_bytes, to_memory};

/// In debug builds, the ranks compare a hash of their params every this many steps.
pub const CHECK_EVERY: u64 = 64;

impl Trainer {
    /// Builds the training step of `objective` for this rank of a data-parallel run: each rank
    /// feeds its shard of the global batch (see [`crate::ShardedSampler`]), and the step
    /// replaces every gradient by its mean over the ranks before the optimizer reads it, so
    /// every rank takes the step a single process would take on the whole global batch (the
    /// mean of the shards' mean losses). The loss and metrics of each [`Report`](crate::Report)
    /// are means over the ranks.
    ///
    /// Every rank must build the same graph: their params (names, shapes, dtypes) are compared
    /// with rank 0's first, and a difference is an error on every rank, naming the param on
    /// the rank that has it. Then every param (optimizer state included) is set to rank 0's.
    #[track_caller]
    pub fn data_parallel<'g>(
        graph: &'g Graph,
        objective: &Objective<'g>,
        settings: &Settings<'_>,
        ranks: &Ranks,
    ) -> Result<Trainer> {
        let mut trainer =
            Trainer::build(kiln_compiler::settings::Settings::current().tier, graph, objective, settings, true)?;
        let params = trainer.params();
        check_same_params(ranks, &params)?;
        let params = broadcast_params(ranks, &params)?;
        trainer.current_mut().set_params(&params)?;
        trainer.lean.set_reducer(Box::new(MpiReducer::new(ranks)));
        trainer.diagnostic.set_reducer(Box::new(MpiReducer::new(ranks)));
        trainer.ranks = Some(ranks.clone());
        Ok(trainer)
    }

    /// The ranks of the run, for a data-parallel trainer.
    pub fn ranks(&self) -> Option<&Ranks> {
        self.ranks.as_ref()
    }

    /// True if every rank holds exactly the same params (optimizer state included), compared
    /// through a hash of their bits; true for a trainer that is not data-parallel.
    pub fn params_identical_across_ranks(&self) -> Result<bool> {
        let Some(ranks) = &self.ranks else { return Ok(true) };
        let hashes = ranks.gather(params_hash(&self.params())?, "comparing the params' hashes")?;
        Ok(hashes.iter().all(|&hash| hash == hashes[0]))
    }

    /// An error unless every rank holds the same params (`when` says at which point).
    pub(crate) fn check_identical_across_ranks(&self, when: &str) -> Result<()> {
        match (&self.ranks, self.params_identical_across_ranks()?) {
            (Some(ranks), false) => Err(Error::Distributed {
                rank: ranks.rank(),
                detail: format!("the params differ across ranks {when} (step {})", self.iteration),
            }),
            _ => Ok(()),
        }
    }

    /// After a step of a data-parallel run: the loss and metrics become their means over the
    /// ranks, and debug builds check every [`CHECK_EVERY`] steps that the params agree.
    pub(crate) fn after_data_parallel_step(
        &self,
        loss: f64,
        mut metrics: Vec<(String, f64)>,
    ) -> Result<(f64, Vec<(String, f64)>)> {
        let Some(ranks) = &self.ranks else { return Ok((loss, metrics)) };
        let mut values: Vec<f64> = std::iter::once(loss).chain(metrics.iter().map(|(_, value)| *value)).collect();
        ranks.mean(&mut values, "the mean of the loss and metrics")?;
        for ((_, metric), value) in metrics.iter_mut().zip(&values[1..]) {
            *metric = *value;
        }
        if cfg!(debug_assertions) && self.iteration.is_multiple_of(CHECK_EVERY) {
            self.check_identical_across_ranks("after the step")?;
        }
        Ok((values[0], metrics))
    }
}

/// One line per param: name, dtype and shape, in name order.
fn signature(params: &ParamStore) -> Vec<String> {
    params.iter().map(|(name, value)| format!("{name} {} {:?}", value.dtype(), value.shape())).collect()
}

/// An error on every rank unless all have rank 0's params (names, dtypes, shapes); the rank
/// whose params differ names the first that does.
fn check_same_params(ranks: &Ranks, params: &ParamStore) -> Result<()> {
    let ours = signature(params);
    let mut bytes = ours.join("\n").into_bytes();
    ranks.broadcast(&mut bytes, "comparing the params with rank 0's")?;
    let theirs: Vec<String> = String::from_utf8_lossy(&bytes).lines().map(str::to_string).collect();
    let name = |line: &str| line.split(' ').next().unwrap_or_default().to_string();
    let difference = ours
        .iter()
        .find(|line| !theirs.contains(line))
        .map(|line| match theirs.iter().find(|other| name(other) == name(line)) {
            Some(other) => format!("param `{}` is `{line}` here but `{other}` on rank 0", name(line)),
            None => format!("param `{}` (`{line}`) is not a param on rank 0", name(line)),
        })
        .or_else(|| {
            let missing = theirs.iter().find(|line| !ours.contains(line))?;
            Some(format!("rank 0 has param `{missing}`, which this rank does not"))
        });
    let differing = ranks.gather(u64::from(difference.is_some()), "comparing the params with rank 0's")?;
    let rank = ranks.rank();
    match difference {
        Some(detail) => Err(Error::Distributed { rank, detail: format!("the ranks built different graphs: {detail}") }),
        None if differing.iter().any(|&flag| flag != 0) => {
            let others: Vec<usize> = (0..differing.len()).filter(|&r| differing[r] != 0).collect();
            let detail = format!("the ranks built different graphs: rank(s) {others:?} have params unlike rank 0's");
            Err(Error::Distributed { rank, detail })
        }
        None => Ok(()),
    }
}

/// Rank 0's params, on every rank (which already hold params of the same names and shapes).
fn broadcast_params(ranks: &Ranks, params: &ParamStore) -> Result<ParamStore> {
    let mut bytes: Vec<u8> = Vec::new();
    for (name, value) in params.iter() {
        bytes.extend(value_bytes(name, value)?);
    }
    ranks.broadcast(&mut bytes, "broadcasting rank 0's params")?;
    let mut received = ParamStore::new();
    let mut offset = 0;
    for (name, value) in params.iter() {
        let len = value.numel() * byte_size(value.dtype());
        let data = from_bytes(value.dtype(), &bytes[offset..offset + len], || format!("param `{name}`"))?;
        offset += len;
        let value = Value::new(value.shape().to_vec(), data).expect("bug in kiln: a param's bytes have its size");
        received.set(name, value);
    }
    Ok(received)
}

/// A value's elements, as bytes.
fn value_bytes(name: &str, value: &Value) -> Result<Vec<u8>> {
    let memory = to_memory(value.data(), || format!("param `{name}`"))?;
    Ok(bytemuck_bytes(&memory)[..value.numel() * byte_size(value.dtype())].to_vec())
}

/// FNV-1a over every param's name and bits, in name order.
fn params_hash(params: &ParamStore) -> Result<u64> {
    let mut hash = kiln_compiler::random::FNV_OFFSET;
    for (name, value) in params.iter() {
        hash = kiln_compiler::random::fnv1a(hash, name.as_bytes());
        hash = kiln_compiler::random::fnv1a(hash, &value_bytes(name, value)?);
    }
    Ok(hash)
}
