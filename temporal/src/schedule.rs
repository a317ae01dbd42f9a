//! Learning-rate schedules, per training step: `constant`, `cosine` (after an optional linear
//! warm-up: the ABAW7 task-queries recipe) and `step` (multiply by `lr_gamma` at the start of
//! each epoch of `lr_steps`: the LRP-ARL-FF recipe).
//!
//! What it does: [`Schedule::lr`] is a pure function of the epoch, the step within it and the
//! number of steps of that epoch, so a resumed run follows exactly the schedule of an
//! uninterrupted one (nothing to save). Training time is counted in epochs: before step `s` of
//! `n` in epoch `k` (1-based), `t = k - 1 + s / n` epochs are done.
//! - warm-up (any schedule, `warmup_epochs = W > 0`): while `t < W`, the rate is
//!   `lr (t + 1/n) / W`, rising linearly from `lr / (W n)` at the first step to `lr` at the last
//!   step of epoch W;
//! - `constant`: `lr` after the warm-up;
//! - `cosine`: `lr (1 + cos(pi (t - W) / (E - W))) / 2` after the warm-up, from `lr` at the
//!   first step after it down towards 0 at the last step of the last epoch E (as
//!   MTL-ABAW4's `adjust_learning_rate`, which is this with W = 0);
//! - `step`: `lr gamma^k` with k the number of epochs of `lr_steps` that are <= the current
//!   epoch (so `lr_steps = [4, 6, 8]` gives lr in epochs 1-3, lr/10 in 4-5, ...); constant
//!   within an epoch.
//!
//! What it does not: change the optimizer (the trainer sets the rate before each step), or
//! adapt to the validation score.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The shape of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The same rate throughout (after any warm-up).
    #[default]
    Constant,
    /// Cosine decay to 0 at the last epoch (after any warm-up).
    Cosine,
    /// Multiplied by `lr_gamma` at the start of each epoch listed in `lr_steps`.
    Step,
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Step => "step",
        })
    }
}

/// A learning-rate schedule over a run's epochs (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The shape.
    pub kind: ScheduleKind,
    /// The base (peak) learning rate.
    pub lr: f64,
    /// Epochs of the run (the cosine reaches 0 at the end of the last).
    pub epochs: usize,
    /// Epochs of linear warm-up.
    pub warmup_epochs: usize,
    /// `step`: the 1-based epochs at whose start the rate is multiplied by `gamma`.
    pub lr_steps: Vec<usize>,
    /// `step`: the factor.
    pub gamma: f64,
}

impl Schedule {
    /// Check the values; the messages name the configuration keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.warmup_epochs > self.epochs {
            return Err(format!(
                "warmup_epochs = {} is more than the run's {} epochs",
                self.warmup_epochs, self.epochs
            ));
        }
        if self.kind == ScheduleKind::Step {
            if self.lr_steps.is_empty() {
                return Err(
                    "schedule = \"step\" needs the epochs where the rate drops: lr_steps = [4, 6, 8]"
                        .to_string(),
                );
            }
            if let Some(0) = self.lr_steps.iter().min() {
                return Err("lr_steps: epochs are 1-based (0 is not an epoch)".to_string());
            }
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(format!("lr_gamma = {}: must be finite and > 0", self.gamma));
        }
        Ok(())
    }

    /// The learning rate of step `step` (0-based) of the `steps` steps of epoch `epoch`
    /// (1-based).
    pub fn lr(&self, epoch: usize, step: usize, steps: usize) -> f64 {
        let n = steps.max(1) as f64;
        let done = epoch.saturating_sub(1) as f64 + step as f64 / n;
        let warm = self.warmup_epochs as f64;
        let warm_factor = if done < warm {
            ((done + 1.0 / n) / warm).min(1.0)
        } else {
            1.0
        };
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine if done < warm => 1.0,
            ScheduleKind::Cosine => {
                let span = (self.epochs as f64 - warm).max(f64::MIN_POSITIVE);
                let progress = ((done - warm) / span).clamp(0.0, 1.0);
                0.5 * (1.0 + (PI * progress).cos())
            }
            ScheduleKind::Step => {
                let drops = self.lr_steps.iter().filter(|&&e| e <= epoch).count();
                self.gamma.powi(drops as i32)
            }
        };
        if warm_factor == 1.0 && factor == 1.0 {
            self.lr
        } else {
            self.lr * warm_factor * factor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind, epochs: usize, warmup_epochs: usize) -> Schedule {
        Schedule {
            kind,
            lr: 1e-3,
            epochs,
            warmup_epochs,
            lr_steps: vec![4, 6, 8],
            gamma: 0.1,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-3)
    }

    #[test]
    fn constant_is_the_base_rate_at_every_step() {
        let s = schedule(ScheduleKind::Constant, 5, 0);
        for (e, t) in [(1, 0), (3, 7), (5, 9)] {
            assert_eq!(s.lr(e, t, 10), 1e-3);
        }
    }

    /// 6 epochs with 5 of warm-up (the ABAW7 recipe), 4 steps per epoch: the rate rises
    /// linearly over the first 20 steps to the base rate, then the cosine takes it from the base
    /// rate towards 0 over the last epoch.
    #[test]
    fn cosine_warms_up_linearly_then_decays_to_zero_at_the_last_epoch() {
        let s = schedule(ScheduleKind::Cosine, 6, 5);
        let all: Vec<f64> = (1..=6)
            .flat_map(|e| (0..4).map(move |t| (e, t)))
            .map(|(e, t)| s.lr(e, t, 4))
            .collect();
        for (i, lr) in all.iter().take(20).enumerate() {
            assert!(
                close(*lr, 1e-3 * (i + 1) as f64 / 20.0),
                "warm-up step {i}: {lr}"
            );
        }
        for (j, lr) in all[20..].iter().enumerate() {
            let want = 1e-3 * 0.5 * (1.0 + (PI * j as f64 / 4.0).cos());
            assert!(close(*lr, want), "cosine step {j}: {lr} vs {want}");
        }
        assert_eq!(all[20], 1e-3);
        // without warm-up: the base rate at the first step, half of it at mid-run, ~0 at the end
        let s = schedule(ScheduleKind::Cosine, 10, 0);
        assert_eq!(s.lr(1, 0, 100), 1e-3);
        assert!(close(s.lr(6, 0, 100), 0.5e-3));
        assert!(s.lr(10, 99, 100) < 1e-3 * 1e-3);
        let mut prev = f64::INFINITY;
        for e in 1..=10 {
            for t in 0..100 {
                let lr = s.lr(e, t, 100);
                assert!(lr < prev && lr > 0.0);
                prev = lr;
            }
        }
    }

    #[test]
    fn step_decay_multiplies_by_gamma_at_the_listed_epochs() {
        let s = schedule(ScheduleKind::Step, 15, 0);
        let per_epoch: Vec<f64> = (1..=15).map(|e| s.lr(e, 3, 10)).collect();
        let want = [
            1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6,
            1e-6,
        ];
        for (e, (got, want)) in per_epoch.iter().zip(want).enumerate() {
            assert!(close(*got, want), "epoch {}: {got} vs {want}", e + 1);
        }
        assert_eq!(s.lr(4, 0, 10), s.lr(4, 9, 10), "constant within an epoch");
    }

    #[test]
    fn bad_schedules_name_their_key() {
        let mut s = schedule(ScheduleKind::Cosine, 3, 4);
        assert!(s.validate().unwrap_err().contains("warmup_epochs"));
        s = schedule(ScheduleKind::Step, 3, 0);
        s.lr_steps.clear();
        assert!(s.validate().unwrap_err().contains("lr_steps"));
        s.lr_steps = vec![0];
        assert!(s.validate().unwrap_err().contains("1-based"));
        s = schedule(ScheduleKind::Step, 3, 0);
        s.gamma = 0.0;
        assert!(s.validate().unwrap_err().contains("lr_gamma"));
    }
}
