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
//! Bagging (ABAW5, Wang et al.): [`bootstrap_rows`] draws a run's bootstrap sample, `round(F *
//! n)` rows of the n training rows uniformly **with** replacement (`bootstrap = F` in the
//! training config, seeded from the run's seed, so members of a sweep that differ in seed train
//! on different samples, and a rerun or `--resume` on the same one). The sample is drawn once per
//! run, not per epoch; each epoch then visits it as it would visit all the rows (every sample
//! row once, or `[resample]`'s draws over the sample, [`Resample::rows_of`]). Without
//! `bootstrap` the run trains on all data without resampling (the paper's best).
//!
//! What it does not: order the rows into batches ([`super::streams::StreamPlan::frame_batches`]
//! shuffles and deals them) or resample segment models (their carried state needs whole
//! videos; the training config refuses the combination).

use anyhow::{bail, Result};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
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

/// Mixed into the run's seed for the bootstrap draw, so that it differs from the epoch draws.
const BOOTSTRAP_STREAM: u64 = 0xb007_57a9;

/// Checks `bootstrap = F`: a finite fraction > 0 (1 = a sample as large as the data).
pub fn validate_bootstrap(fraction: f64) -> Result<()> {
    if !(fraction.is_finite() && fraction > 0.0) {
        bail!(
            "bootstrap = {fraction}: the bootstrap sample is F x n training frames drawn with \
             replacement; give F > 0 (1.0 = as many frames as the data), or remove the key to \
             train on all data without resampling"
        );
    }
    Ok(())
}

/// The bootstrap sample of a run: `round(fraction * n)` rows of `0..n` drawn uniformly with
/// replacement, seeded by `seed` (see the module documentation), in draw order.
pub fn bootstrap_rows(n: usize, fraction: f64, seed: u64) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ BOOTSTRAP_STREAM);
    let take = (fraction * n as f64).round() as usize;
    (0..take).map(|_| rng.gen_range(0..n)).collect()
}

impl Resample {
    /// As [`Resample::rows`], over the subset `subset` of the rows of `labels` (e.g. a bootstrap
    /// sample, repeats allowed): the rows of one epoch, as rows of `labels`.
    pub fn rows_of(
        &self,
        labels: &[FrameLabels],
        subset: &[usize],
        seed: u64,
    ) -> Result<Vec<usize>> {
        let picked: Vec<FrameLabels> = subset.iter().map(|&r| labels[r]).collect();
        Ok(self
            .rows(&picked, seed)?
            .into_iter()
            .map(|i| subset[i])
            .collect())
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

    #[test]
    fn bootstrap_samples_are_reproducible_from_the_seed_and_differ_between_seeds() {
        let a = bootstrap_rows(1000, 1.0, 7);
        assert_eq!(a, bootstrap_rows(1000, 1.0, 7), "seeded");
        assert_ne!(
            a,
            bootstrap_rows(1000, 1.0, 8),
            "another member, another sample"
        );
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&r| r < 1000));
        // With replacement: about 1 - 1/e = 63% distinct rows, so some repeat, some are left out.
        let mut distinct = a.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            (550..720).contains(&distinct.len()),
            "{} distinct rows of 1000",
            distinct.len()
        );
    }

    #[test]
    fn a_bootstrap_sample_has_f_times_n_rows() {
        for (n, f, want) in [(1000, 0.5, 500), (10, 1.0, 10), (7, 2.0, 14), (3, 0.5, 2)] {
            assert_eq!(bootstrap_rows(n, f, 1).len(), want, "n {n}, F {f}");
        }
        assert!(bootstrap_rows(0, 1.0, 1).is_empty());
        assert!(validate_bootstrap(0.0)
            .unwrap_err()
            .to_string()
            .contains("bootstrap = 0"));
        assert!(validate_bootstrap(f64::NAN).is_err());
        validate_bootstrap(1.0).unwrap();
    }

    #[test]
    fn resampling_a_subset_returns_rows_of_the_whole_split() {
        let l = labels(100, 10);
        let subset: Vec<usize> = vec![10, 10, 3, 50, 99];
        let mut all = Resample::default().rows_of(&l, &subset, 2).unwrap();
        all.sort();
        assert_eq!(all, vec![3, 10, 10, 50, 99]);
        // The rare draw picks among the subset's rare frames (10 twice, 50).
        let r = Resample {
            uniform: 0.4,
            rare: 1.0,
            ..Resample::default()
        };
        let rows = r.rows_of(&l, &subset, 2).unwrap();
        assert_eq!(rows.len(), 2 + 3);
        assert!(rows[2..].iter().all(|&i| i == 10 || i == 50), "{rows:?}");
    }
}
