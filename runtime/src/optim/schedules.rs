//! Learning-rate schedules: the rate to feed at each step, computed on the host.
//!
//! In: a step number. Out: the learning rate to feed at that step.
//!
//! The rate is a fed scalar of the compiled step ([`super::Schedule`]), so a schedule costs
//! nothing at compilation: call [`LrSchedule::at`] and feed the result.

/// How the learning rate moves with the step (counting from 1), PyTorch's schedulers as pure
/// functions of the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// The rate times `gamma` every `every` steps (`StepLR`).
    Step {
        /// Steps between decays.
        every: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// The rate times `gamma` every step (`ExponentialLR`).
    Exponential {
        /// Factor per step.
        gamma: f64,
    },
    /// From 0 up to the rate over `warmup` steps, linearly (`LinearLR` from 0).
    LinearWarmup {
        /// Steps to reach the base rate.
        warmup: u64,
    },
    /// A linear warm-up over `warmup` steps, then a cosine from the rate down to `floor`
    /// (a fraction of it) at step `total` (`CosineAnnealingLR` after a warm-up).
    WarmupCosine {
        /// Steps of linear warm-up.
        warmup: u64,
        /// The step at which the cosine reaches the floor; after it the rate stays there.
        total: u64,
        /// The final rate, as a fraction of the base rate.
        floor: f64,
    },
}

impl LrSchedule {
    /// The rate at `step` (from 1) for base rate `lr`.
    pub fn at(&self, lr: f64, step: u64) -> f64 {
        let step = step.max(1);
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { every, gamma } => lr * gamma.powi(((step - 1) / every.max(1)) as i32),
            LrSchedule::Exponential { gamma } => lr * gamma.powi((step - 1) as i32),
            LrSchedule::LinearWarmup { warmup } => lr * (step as f64 / warmup.max(1) as f64).min(1.0),
            LrSchedule::WarmupCosine { warmup, total, floor } => {
                if step <= warmup {
                    return lr * step as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                lr * (floor + (1.0 - floor) * cosine)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LrSchedule;

    #[test]
    fn schedules_follow_pytorch() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert_eq!(LrSchedule::Constant.at(0.1, 7), 0.1);
        let step = LrSchedule::Step { every: 3, gamma: 0.5 };
        let rates: Vec<f64> = (1..=7).map(|s| step.at(1.0, s)).collect();
        assert_eq!(rates, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
        assert!(close(LrSchedule::Exponential { gamma: 0.9 }.at(2.0, 3), 2.0 * 0.81));
        let warmup = LrSchedule::LinearWarmup { warmup: 4 };
        assert_eq!([1, 2, 4, 9].map(|s| warmup.at(1.0, s)), [0.25, 0.5, 1.0, 1.0]);
        let cosine = LrSchedule::WarmupCosine { warmup: 2, total: 12, floor: 0.1 };
        assert!(close(cosine.at(1.0, 1), 0.5) && close(cosine.at(1.0, 2), 1.0));
        assert!(close(cosine.at(1.0, 7), 0.1 + 0.9 * 0.5), "half way down: {}", cosine.at(1.0, 7));
        assert!(close(cosine.at(1.0, 12), 0.1) && close(cosine.at(1.0, 50), 0.1));
    }
}
