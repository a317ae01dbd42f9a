//! `temporal baseline`: chance-level predictions, the floor every model must beat.
//!
//! Each frame to score gets labels drawn at random (seeded) from the training split's label
//! distribution: valence and arousal from a normal with the training mean and standard deviation
//! (clipped to [-1, 1]), the expression from the training class frequencies (written as a one-hot
//! probability row), each AU from its training frequency (probability 0 or 1). Such predictions
//! carry no information about the frame, so their score is what chance gives on this data.
//! It does not look at features or train anything.

use crate::data::{Split, SplitLabels};
use anyhow::{bail, Result};
use clap::Args;
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Normal;
use shared::abaw::{prediction_path, write_predictions};
use shared::{FrameLabels, Prediction, N_AU, N_EXPR};
use std::path::PathBuf;

/// Write chance-level predictions for a split (drawn from the training label distribution).
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Data root with the annotation files.
    #[arg(long, value_name = "DIR", default_value = "data/sample")]
    pub data: PathBuf,
    /// Which split to predict.
    #[arg(long, value_enum, default_value = "validation")]
    pub split: Split,
    /// Output folder for `<video>.csv`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the draws.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
}

/// The training label distribution.
#[derive(Debug, Clone)]
pub struct LabelPriors {
    /// Mean and standard deviation of valence.
    pub valence: (f64, f64),
    /// Mean and standard deviation of arousal.
    pub arousal: (f64, f64),
    /// Relative frequency of each expression class.
    pub expression: [f64; N_EXPR],
    /// Frequency of each AU being active.
    pub aus: [f64; N_AU],
}

impl LabelPriors {
    /// Count the valid labels (each task over its own valid frames).
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a FrameLabels>) -> LabelPriors {
        let (mut v, mut a) = (Vec::new(), Vec::new());
        let mut expr = [0f64; N_EXPR];
        let (mut au, mut n_au) = ([0f64; N_AU], 0f64);
        for l in labels {
            v.extend(l.valence.map(f64::from));
            a.extend(l.arousal.map(f64::from));
            if let Some(k) = l.expression {
                expr[k as usize] += 1.0;
            }
            if let Some(x) = l.aus {
                n_au += 1.0;
                for (c, on) in au.iter_mut().zip(x) {
                    *c += f64::from(u8::from(on));
                }
            }
        }
        let moments = |x: &[f64]| {
            if x.is_empty() {
                return (0.0, 0.0);
            }
            let m = x.iter().sum::<f64>() / x.len() as f64;
            (
                m,
                (x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / x.len() as f64).sqrt(),
            )
        };
        let total: f64 = expr.iter().sum();
        LabelPriors {
            valence: moments(&v),
            arousal: moments(&a),
            expression: expr.map(|c| {
                if total > 0.0 {
                    c / total
                } else {
                    1.0 / N_EXPR as f64
                }
            }),
            aus: au.map(|c| if n_au > 0.0 { c / n_au } else { 0.0 }),
        }
    }

    /// One random prediction.
    pub fn draw(&self, rng: &mut impl Rng) -> Prediction {
        let gauss = |(m, s): (f64, f64), rng: &mut dyn rand::RngCore| {
            let x = Normal::new(m, s.max(1e-9))
                .expect("finite moments")
                .sample(rng);
            x.clamp(-1.0, 1.0) as f32
        };
        let classes =
            WeightedIndex::new(self.expression).expect("non-negative weights, not all zero");
        let mut expression = [0f32; N_EXPR];
        expression[classes.sample(rng)] = 1.0;
        let aus = self.aus.map(|p| {
            if rng.gen_bool(p.clamp(0.0, 1.0)) {
                1.0
            } else {
                0.0
            }
        });
        Prediction {
            valence: gauss(self.valence, rng),
            arousal: gauss(self.arousal, rng),
            expression,
            aus,
        }
    }
}

/// Run the command.
pub fn run(args: &BaselineArgs) -> Result<()> {
    if args.split == Split::Train {
        bail!("--split train: a baseline is scored on the validation or test split");
    }
    let train = SplitLabels::load(&args.data, Split::Train)?;
    let priors = LabelPriors::from_labels(train.videos.values().flatten().map(|(_, l)| l));
    let target = SplitLabels::load(&args.data, args.split)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    for (video, frames) in &target.videos {
        let rows: Vec<(u32, Prediction)> = frames
            .iter()
            .map(|(f, _)| (*f, priors.draw(&mut rng)))
            .collect();
        write_predictions(&prediction_path(&args.out, video), &rows)?;
    }
    println!(
        "chance predictions for {} frames of {} videos ({} split) -> {}",
        target.n_frames(),
        target.videos.len(),
        args.split.name(),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_count_each_task_over_its_valid_frames() {
        let mut a = FrameLabels {
            valence: Some(0.5),
            arousal: Some(-0.5),
            expression: Some(2),
            aus: None,
        };
        let b = FrameLabels {
            valence: Some(-0.5),
            arousal: None,
            expression: Some(2),
            aus: Some([true; N_AU]),
        };
        a.aus = Some([false; N_AU]);
        let c = FrameLabels {
            expression: Some(4),
            ..Default::default()
        };
        let p = LabelPriors::from_labels([&a, &b, &c]);
        assert_eq!(p.valence, (0.0, 0.5));
        assert_eq!(p.arousal, (-0.5, 0.0));
        assert_eq!(p.expression[2], 2.0 / 3.0);
        assert_eq!(p.expression[4], 1.0 / 3.0);
        assert_eq!(p.aus, [0.5; N_AU]);
    }

    #[test]
    fn draws_follow_the_priors() {
        let mut p = LabelPriors {
            valence: (0.2, 0.1),
            arousal: (0.0, 0.0),
            expression: [0.0; N_EXPR],
            aus: [0.0; N_AU],
        };
        p.expression[5] = 1.0;
        p.aus[3] = 1.0;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let draws: Vec<Prediction> = (0..2000).map(|_| p.draw(&mut rng)).collect();
        let mean_v = draws.iter().map(|d| d.valence as f64).sum::<f64>() / 2000.0;
        assert!((mean_v - 0.2).abs() < 0.01, "{mean_v}");
        assert!(draws
            .iter()
            .all(|d| d.expression[5] == 1.0 && d.aus[3] == 1.0 && d.aus[0] == 0.0));
    }
}
