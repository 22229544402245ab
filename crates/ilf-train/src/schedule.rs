//! How many optimizer steps a run takes, and the learning rate at each.
//!
//! An epoch of `n` micro-batches with `accumulation` micro-batches per step takes
//! `ceil(n / accumulation)` optimizer steps, the last one possibly over fewer micro-batches (its
//! gradient is then the mean over those): the updates the Hugging Face Trainer's loop performs
//! since Transformers 4.46. Its scheduler is sized with the floor instead, so its rate reaches
//! zero early; here the schedule spans the steps actually taken. Transformers 4.12, which the
//! paper used, floored and carried the remainder into the next epoch: with the paper's 78
//! examples and batch 32 that gave 4 updates over 2 epochs where this gives 6.

/// The step plan of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    /// Micro-batches per epoch.
    pub micro_batches_per_epoch: usize,
    /// Micro-batches accumulated into one optimizer step.
    pub accumulation: usize,
    pub epochs: usize,
}

impl StepPlan {
    /// Plans `epochs` passes over `examples` examples in micro-batches of `micro_batch`,
    /// `batch` examples per optimizer step (`batch` must be a multiple of `micro_batch`).
    pub fn new(examples: usize, batch: usize, micro_batch: usize, epochs: usize) -> Self {
        Self {
            micro_batches_per_epoch: examples.div_ceil(micro_batch),
            accumulation: (batch / micro_batch).max(1),
            epochs,
        }
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.micro_batches_per_epoch.div_ceil(self.accumulation)
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.epochs
    }

    /// The micro-batch index range (within its epoch) of step `step_in_epoch`.
    pub fn micro_batches_of(&self, step_in_epoch: usize) -> std::ops::Range<usize> {
        let start = step_in_epoch * self.accumulation;
        start..(start + self.accumulation).min(self.micro_batches_per_epoch)
    }
}

/// Transformers' `get_linear_schedule_with_warmup`: linear warm-up from 0 over `warmup` steps,
/// then linear decay to 0 at `total` steps. `step` is 0-based (the rate used by update `step+1`).
pub fn linear_lr(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let remaining = total.saturating_sub(step) as f64;
    peak * (remaining / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_up_per_epoch() {
        let plan = StepPlan::new(78, 32, 1, 2);
        assert_eq!(plan.steps_per_epoch(), 3);
        assert_eq!(plan.total_steps(), 6);
        assert_eq!(plan.micro_batches_of(2), 64..78);
        let plan = StepPlan::new(10, 4, 2, 1);
        assert_eq!((plan.micro_batches_per_epoch, plan.accumulation), (5, 2));
        assert_eq!(plan.micro_batches_of(2), 4..5);
    }

    #[test]
    fn linear_schedule_matches_transformers() {
        // No warm-up: full rate at step 0, decaying to 0 at `total`.
        assert_eq!(linear_lr(1.0, 0, 0, 4), 1.0);
        assert_eq!(linear_lr(1.0, 1, 0, 4), 0.75);
        assert_eq!(linear_lr(1.0, 3, 0, 4), 0.25);
        // Warm-up of 2 over 6 steps: 0, 0.5, then 1 decaying over the remaining 4.
        let lrs: Vec<f64> = (0..6).map(|s| linear_lr(2.0, s, 2, 6)).collect();
        assert_eq!(lrs, vec![0.0, 1.0, 2.0, 1.5, 1.0, 0.5]);
    }
}
