//! Per-epoch resampling of the training frames of a frame-level model (`arch = "none"`), as the
//! ABAW5 LRP-ARL-FF entry trains: each epoch draws a uniform fraction of the training frames and,
//! in addition, a fraction of the frames where a rare AU is active.
//!
//! What it does: [`Resample`] is the `[resample]` table of a training config (flags
//! `--resample-uniform`, `--resample-rare`); [`Resample::rows`] picks the rows of one epoch from
//! the training labels, seeded by the epoch: `round(uniform * N)` rows of all N without
//! replacement, then `round(rare * M)` rows of the M rows whose AU label is valid and has at least
//! one of `rare_aus` active, also without replacement (so a rare frame can appear twice in an
//! epoch, once from each draw: that is the oversampling). The defaults (`uniform = 1`,
//! `rare = 0`) give every frame once.
//!
//! What it does not: order the rows into batches ([`super::streams::StreamPlan::frame_batches`]
//! shuffles and deals them) or resample segment models (their carried state needs whole
//! videos; the training config refuses the combination).

use anyhow::{bail, Result};
use rand::seq::index::sample;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use shared::tasks::AUS;
use shared::FrameLabels;

/// The AUs the ABAW5 LRP-ARL-FF entry oversamples.
pub const PAPER_RARE_AUS: [&str; 5] = ["AU2", "AU15", "AU23", "AU24", "AU26"];

/// `[resample]`: which training frames an epoch of a frame-level model visits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resample {
    /// Fraction of all training frames drawn uniformly each epoch, in (0, 1] (1 = every frame).
    pub uniform: f64,
    /// Fraction of the frames with a rare AU active drawn in addition each epoch, in [0, 1].
    pub rare: f64,
    /// The rare AUs (ABAW names, e.g. `AU2`).
    pub rare_aus: Vec<String>,
}

impl Default for Resample {
    fn default() -> Self {
        Resample {
            uniform: 1.0,
            rare: 0.0,
            rare_aus: PAPER_RARE_AUS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Resample {
    /// True when an epoch is every frame once.
    pub fn is_off(&self) -> bool {
        self.uniform == 1.0 && self.rare == 0.0
    }

    /// Checks the fractions and AU names.
    pub fn validate(&self) -> Result<()> {
        if !(self.uniform > 0.0 && self.uniform <= 1.0) {
            bail!(
                "resample.uniform = {}: the fraction of training frames per epoch must be in (0, 1]",
                self.uniform
            );
        }
        if !(0.0..=1.0).contains(&self.rare) {
            bail!(
                "resample.rare = {}: the fraction of rare-AU frames per epoch must be in [0, 1]",
                self.rare
            );
        }
        self.rare_columns().map(|_| ())
    }

    /// The AU columns of `rare_aus`.
    fn rare_columns(&self) -> Result<Vec<usize>> {
        self.rare_aus
            .iter()
            .map(|name| {
                AUS.iter().position(|a| a == name).ok_or_else(|| {
                    anyhow::anyhow!(
                        "resample.rare_aus: unknown AU {name:?}; the AUs are {}",
                        AUS.join(", ")
                    )
                })
            })
            .collect()
    }

    /// The rows of one epoch (see the module documentation), in no particular order.
    pub fn rows(&self, labels: &[FrameLabels], seed: u64) -> Result<Vec<usize>> {
        let columns = self.rare_columns()?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = labels.len();
        let take = ((self.uniform * n as f64).round() as usize).min(n);
        let mut rows = sample(&mut rng, n, take).into_vec();
        if self.rare > 0.0 {
            let rare: Vec<usize> = labels
                .iter()
                .enumerate()
                .filter(|(_, l)| l.aus.is_some_and(|a| columns.iter().any(|&c| a[c])))
                .map(|(i, _)| i)
                .collect();
            let take = ((self.rare * rare.len() as f64).round() as usize).min(rare.len());
            rows.extend(
                sample(&mut rng, rare.len(), take)
                    .into_iter()
                    .map(|i| rare[i]),
            );
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize, rare_every: usize) -> Vec<FrameLabels> {
        (0..n)
            .map(|i| {
                let mut aus = [false; 12];
                aus[1] = i % rare_every == 0; // AU2
                aus[6] = true; // AU12, common
                FrameLabels {
                    aus: Some(aus),
                    ..FrameLabels::default()
                }
            })
            .collect()
    }

    #[test]
    fn defaults_visit_every_frame_once() {
        let r = Resample::default();
        assert!(r.is_off());
        let mut rows = r.rows(&labels(50, 5), 1).unwrap();
        rows.sort();
        assert_eq!(rows, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_paper_recipe_draws_a_tenth_plus_a_fifth_of_the_rare_frames() {
        let r = Resample {
            uniform: 0.1,
            rare: 0.2,
            ..Resample::default()
        };
        let l = labels(1000, 10); // 100 frames with AU2
        let rows = r.rows(&l, 3).unwrap();
        assert_eq!(rows.len(), 100 + 20);
        let extra = &rows[100..];
        assert!(extra.iter().all(|&i| i % 10 == 0), "{extra:?}");
        let mut uniform = rows[..100].to_vec();
        uniform.sort();
        uniform.dedup();
        assert_eq!(uniform.len(), 100, "the uniform draw has no repeats");
        assert_ne!(r.rows(&l, 4).unwrap(), rows, "another epoch, other frames");
        assert_eq!(r.rows(&l, 3).unwrap(), rows, "seeded");
    }

    #[test]
    fn bad_fractions_and_unknown_aus_are_refused_with_the_key() {
        let bad = |r: Resample| r.validate().unwrap_err().to_string();
        assert!(bad(Resample {
            uniform: 0.0,
            ..Resample::default()
        })
        .contains("resample.uniform"));
        assert!(bad(Resample {
            rare: 1.5,
            ..Resample::default()
        })
        .contains("resample.rare"));
        let e = bad(Resample {
            rare_aus: vec!["AU3".into()],
            ..Resample::default()
        });
        assert!(e.contains("AU3") && e.contains("AU26"), "{e}");
    }
}
