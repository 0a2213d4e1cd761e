//! Which examples each process of a data-parallel run trains on.
//!
//! In: a data set's length, the global batch, this process's rank among `ranks`, a seed. Out:
//! at each step, this rank's shard of the global batch: the global batch is a slice of a
//! permutation of the data set (the same on every rank, reshuffled every epoch), and rank `r`
//! takes its `r`-th equal part. Shards of one step are disjoint and together are the global
//! batch, so the mean of the ranks' mean gradients is the gradient of the global batch's mean
//! loss: a single process fed the whole global batch trains the same model.

use kiln_compiler::random;
use kiln_compiler::{Error, Location, Result};

/// Disjoint, seeded, per-epoch reshuffled shards of a data set, one per rank.
///
/// ```
/// use kiln_runtime::ShardedSampler;
/// let first = ShardedSampler::new(100, 10, 0, 2, 7)?;
/// let second = ShardedSampler::new(100, 10, 1, 2, 7)?;
/// let whole = ShardedSampler::new(100, 10, 0, 1, 7)?;
/// assert_eq!([first.batch(3), second.batch(3)].concat(), whole.batch(3));
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShardedSampler {
    len: usize,
    global_batch: usize,
    rank: usize,
    ranks: usize,
    seed: u64,
}

impl ShardedSampler {
    /// Samples `global_batch` examples of `0..len` per step, of which this rank (`rank` of
    /// `ranks`) gets `global_batch / ranks`. The global batch must split evenly across the
    /// ranks and fit in the data set; the examples left over by the last whole batch of an
    /// epoch are skipped that epoch (a different few each epoch).
    #[track_caller]
    pub fn new(len: usize, global_batch: usize, rank: usize, ranks: usize, seed: u64) -> Result<ShardedSampler> {
        let location = Location::caller();
        let fault = if ranks == 0 || rank >= ranks {
            Some(format!("rank {rank} is not one of {ranks} ranks"))
        } else if global_batch == 0 || !global_batch.is_multiple_of(ranks) {
            Some(format!("a global batch of {global_batch} does not split evenly across {ranks} ranks"))
        } else if global_batch > len {
            Some(format!("a global batch of {global_batch} is more than the {len} examples"))
        } else {
            None
        };
        match fault {
            Some(detail) => Err(Error::Argument { op: "ShardedSampler::new", detail, location }),
            None => Ok(ShardedSampler { len, global_batch, rank, ranks, seed }),
        }
    }

    /// Whole global batches per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        (self.len / self.global_batch) as u64
    }

    /// The order of the data set in `epoch`: a permutation of `0..len`, the same on every rank.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let key = random::draw_key(self.seed, epoch);
        let mut order: Vec<usize> = (0..self.len).collect();
        // Fisher-Yates, drawing from kiln's counter-based generator.
        for i in (1..self.len).rev() {
            let draw =
                u64::from(random::bits(key, 2 * i as u64)) << 32 | u64::from(random::bits(key, 2 * i as u64 + 1));
            order.swap(i, (draw % (i as u64 + 1)) as usize);
        }
        order
    }

    /// This rank's examples at `step` (from 0): its part of the step's global batch.
    pub fn batch(&self, step: u64) -> Vec<usize> {
        let (epoch, within) = (step / self.steps_per_epoch(), (step % self.steps_per_epoch()) as usize);
        let local = self.global_batch / self.ranks;
        let start = within * self.global_batch + self.rank * local;
        self.permutation(epoch)[start..start + local].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_of_a_step_are_disjoint_and_make_up_the_global_batch() -> Result<()> {
        let ranks: Vec<ShardedSampler> = (0..4).map(|r| ShardedSampler::new(50, 12, r, 4, 3)).collect::<Result<_>>()?;
        let whole = ShardedSampler::new(50, 12, 0, 1, 3)?;
        for step in 0..10 {
            let mut shards: Vec<usize> = ranks.iter().flat_map(|sampler| sampler.batch(step)).collect();
            assert_eq!(shards, whole.batch(step));
            shards.sort_unstable();
            shards.dedup();
            assert_eq!(shards.len(), 12, "shards of step {step} overlap");
        }
        Ok(())
    }

    #[test]
    fn an_epoch_visits_distinct_examples_and_the_next_epoch_reshuffles() -> Result<()> {
        let sampler = ShardedSampler::new(40, 8, 1, 2, 9)?;
        let epoch: Vec<usize> = (0..5).flat_map(|step| sampler.batch(step)).collect();
        let mut distinct = epoch.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 20, "rank 1 saw an example twice in one epoch");
        let next: Vec<usize> = (5..10).flat_map(|step| sampler.batch(step)).collect();
        assert_ne!(epoch, next, "the second epoch repeats the first's order");
        assert_eq!(sampler.permutation(0), ShardedSampler::new(40, 8, 0, 2, 9)?.permutation(0));
        assert_ne!(sampler.permutation(0), ShardedSampler::new(40, 8, 1, 2, 10)?.permutation(0));
        Ok(())
    }

    #[test]
    fn a_batch_that_does_not_split_evenly_is_an_error_naming_both_numbers() {
        let error = ShardedSampler::new(100, 10, 0, 3, 0).unwrap_err().to_string();
        assert!(error.contains("10") && error.contains("3 ranks"), "{error}");
        assert!(ShardedSampler::new(100, 10, 2, 2, 0).is_err());
        assert!(ShardedSampler::new(5, 10, 0, 2, 0).is_err());
    }
}
