//! Which kernels split across the pool's threads: those measured faster split.
//!
//! In: for each kernel run of a call, whether the kernel may split and its work (the product
//! of its extents under the call's sizes), then how long a trial run took. Out: whether this
//! run splits.
//!
//! A kernel that may split runs its first [`TRIALS`] runs alternately split and on the
//! calling thread (split first), each timed; from then on it splits only if its fastest
//! split run beat its fastest run on one thread, and measures again after
//! [`MEASURE_AGAIN_AFTER`] runs. Dispatch to the pool costs a few
//! microseconds, and some kernels (a scatter-add writing rows both threads touch, a
//! memory-bound update) gain nothing from a second core, so a fixed size threshold keeps some
//! kernels off the pool that would gain and splits some that lose.
//!
//! Results do not depend on the choice: every kernel gives the same bits on any number of
//! threads. The choice holds for the work it was measured at; a call with other sizes
//! measures again.

use std::time::Duration;

/// Timed runs before a kernel's choice is made: half split, half on one thread.
pub const TRIALS: u32 = 6;

/// Runs after which a choice is measured again (the load of the machine's other cores
/// changes).
pub const MEASURE_AGAIN_AFTER: u32 = 1000;

/// How one run of a kernel goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    /// Measured: split or not by the kernel's choice.
    Chosen(bool),
    /// A trial, split or not, to be timed and [`SplitChoices::record`]ed.
    Trial(bool),
}

impl Run {
    /// Whether this run splits.
    pub(crate) fn split(self) -> bool {
        match self {
            Run::Chosen(split) | Run::Trial(split) => split,
        }
    }
}

/// What is known of one kernel.
#[derive(Clone, Debug, Default)]
struct Choice {
    /// The work the trials ran at.
    work: i64,
    /// Trial runs so far.
    trials: u32,
    /// Fastest trial on one thread, and split.
    fastest: [Option<Duration>; 2],
    /// Runs since the choice was made.
    since: u32,
}

impl Choice {
    /// Whether the kernel splits, once its trials are done.
    fn decided(&self) -> Option<bool> {
        match self.fastest {
            [Some(one), Some(split)] if self.trials >= TRIALS => Some(split < one),
            _ => None,
        }
    }
}

/// The split choices of a program's kernels.
#[derive(Clone, Debug)]
pub(crate) struct SplitChoices {
    kernels: Vec<Choice>,
}

impl SplitChoices {
    /// No measurements yet for `kernels` kernels.
    pub(crate) fn new(kernels: usize) -> SplitChoices {
        SplitChoices { kernels: vec![Choice::default(); kernels] }
    }

    /// How kernel `number`, which may split, runs at `work`.
    pub(crate) fn run(&mut self, number: usize, work: i64) -> Run {
        let choice = &mut self.kernels[number];
        if choice.work != work || choice.since >= MEASURE_AGAIN_AFTER {
            *choice = Choice { work, ..Choice::default() };
        }
        match choice.decided() {
            Some(split) => {
                choice.since += 1;
                Run::Chosen(split)
            }
            None => Run::Trial(choice.trials.is_multiple_of(2)),
        }
    }

    /// Records a trial run of kernel `number`.
    pub(crate) fn record(&mut self, number: usize, split: bool, elapsed: Duration) {
        let choice = &mut self.kernels[number];
        choice.trials += 1;
        let fastest = &mut choice.fastest[usize::from(split)];
        *fastest = Some(fastest.map_or(elapsed, |f| f.min(elapsed)));
    }

    /// The choice made for kernel `number`, once its trials are done: `Some(true)` if it splits.
    pub(crate) fn chosen(&self, number: usize) -> Option<bool> {
        self.kernels[number].decided()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(us: u64) -> Duration {
        Duration::from_micros(us)
    }

    /// Runs the trials of kernel 0 at `work`, split runs taking `split` µs and the others `one`.
    fn trials(choices: &mut SplitChoices, work: i64, one: u64, split: u64) -> Vec<bool> {
        let mut order = Vec::new();
        for _ in 0..TRIALS {
            let Run::Trial(splits) = choices.run(0, work) else { panic!("a trial expected") };
            order.push(splits);
            choices.record(0, splits, micros(if splits { split } else { one }));
        }
        order
    }

    #[test]
    fn trials_alternate_and_the_faster_way_is_kept() {
        let mut choices = SplitChoices::new(2);
        assert_eq!(trials(&mut choices, 1000, 80, 50), [true, false, true, false, true, false]);
        assert_eq!(choices.run(0, 1000), Run::Chosen(true));
        assert_eq!(choices.chosen(0), Some(true));
        assert_eq!(choices.chosen(1), None, "the other kernel has not run");
    }

    #[test]
    fn a_kernel_slower_split_stays_on_one_thread() {
        let mut choices = SplitChoices::new(1);
        trials(&mut choices, 1000, 81, 274);
        assert_eq!(choices.run(0, 1000), Run::Chosen(false));
    }

    #[test]
    fn other_sizes_are_measured_again() {
        let mut choices = SplitChoices::new(1);
        trials(&mut choices, 1000, 81, 274);
        assert_eq!(choices.run(0, 5000), Run::Trial(true));
        assert_eq!(choices.chosen(0), None);
    }

    #[test]
    fn a_choice_is_measured_again_after_a_thousand_runs() {
        let mut choices = SplitChoices::new(1);
        trials(&mut choices, 1000, 81, 274);
        for _ in 0..MEASURE_AGAIN_AFTER {
            assert_eq!(choices.run(0, 1000), Run::Chosen(false));
        }
        assert_eq!(trials(&mut choices, 1000, 81, 40), [true, false, true, false, true, false]);
        assert_eq!(choices.run(0, 1000), Run::Chosen(true));
    }

    #[test]
    fn the_fastest_trial_of_each_way_decides_not_the_last() {
        let mut choices = SplitChoices::new(1);
        let times = [(true, 500), (false, 90), (true, 60), (false, 95), (true, 400), (false, 99)];
        for (split, us) in times {
            assert_eq!(choices.run(0, 7), Run::Trial(split));
            choices.record(0, split, micros(us));
        }
        assert_eq!(choices.run(0, 7), Run::Chosen(true), "60 µs split beats 90 µs on one thread");
    }
}
