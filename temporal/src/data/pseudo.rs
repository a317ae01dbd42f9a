//! Pseudo-labels (`temporal train --pseudo-labels PREDS`): the invalid labels of the training
//! videos filled from another model's predictions, as the ABAW7 task-queries system fills its
//! missing labels.
//!
//! What it does: [`fill`] reads a predictions folder (`<video>.csv` as `temporal predict` writes
//! them; `temporal predict --split train` scores the training videos) and, for every training
//! frame that has an annotation line, fills each task whose label is invalid: valence and
//! arousal as predicted (clipped to [-1, 1]), the expression as the argmax of the probabilities
//! (the first on ties), the 12 AUs as probability >= 0.5. Valid labels are never changed, and
//! neither is the validation split (a k-fold's validation videos included: the caller fills the
//! training side after the split), so scores stay honest. It returns what it filled per task and
//! the training videos the folder has no predictions for (left as they are; the trainer logs
//! them).
//!
//! What it does not: add frames without an annotation line, weight pseudo-labels differently
//! from real ones in the loss, tune AU thresholds (0.5, the decision `temporal submit` makes
//! without a thresholds file), or check which model made the predictions.

use super::labels::SplitLabels;
use anyhow::{Context, Result};
use shared::abaw::read_prediction_dir;
use shared::{VideoId, N_AU};
use std::collections::BTreeMap;
use std::path::Path;

/// The AU decision of a pseudo-label: active where the predicted probability is at least this.
pub const AU_THRESHOLD: f32 = 0.5;

/// What [`fill`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filled {
    /// Frames whose valence and arousal were filled.
    pub va: usize,
    /// Frames whose expression was filled.
    pub expr: usize,
    /// Frames whose 12 AUs were filled.
    pub au: usize,
    /// Training frames with an invalid label and no prediction row.
    pub frames_without_prediction: usize,
    /// Training videos the folder has no predictions for.
    pub videos_without_predictions: Vec<VideoId>,
}

/// Fills the invalid labels of `train` from the predictions in `preds` (see the module docs).
/// Errors name the folder, or the file and line of a malformed prediction.
pub fn fill(train: &mut SplitLabels, preds: &Path) -> Result<Filled> {
    let set = read_prediction_dir(preds)
        .with_context(|| format!("--pseudo-labels {}", preds.display()))?;
    let au_thresholds = [AU_THRESHOLD; N_AU];
    let mut done = Filled::default();
    for (video, frames) in train.videos.iter_mut() {
        let Some(rows) = set.get(video) else {
            done.videos_without_predictions.push(video.clone());
            continue;
        };
        let by_frame: BTreeMap<u32, _> = rows.iter().map(|(f, p)| (*f, p)).collect();
        for (frame, labels) in frames.iter_mut() {
            let incomplete = labels.valence.is_none()
                || labels.arousal.is_none()
                || labels.expression.is_none()
                || labels.aus.is_none();
            if !incomplete {
                continue;
            }
            let Some(p) = by_frame.get(frame) else {
                done.frames_without_prediction += 1;
                continue;
            };
            let d = p.decide(&au_thresholds);
            if labels.valence.is_none() || labels.arousal.is_none() {
                done.va += 1;
                labels.valence.get_or_insert(d.valence);
                labels.arousal.get_or_insert(d.arousal);
            }
            if labels.expression.is_none() {
                done.expr += 1;
                labels.expression = Some(d.expression);
            }
            if labels.aus.is_none() {
                done.au += 1;
                labels.aus = Some(d.aus);
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Split;
    use shared::abaw::write_prediction_dir;
    use shared::{FrameLabels, Prediction, N_EXPR};
    use std::path::PathBuf;

    fn id(s: &str) -> VideoId {
        VideoId::new(s).unwrap()
    }

    fn prediction(valence: f32, top: usize, au_on: &[usize]) -> Prediction {
        let mut expression = [0.02; N_EXPR];
        expression[top] = 1.0 - 0.02 * (N_EXPR as f32 - 1.0);
        let mut aus = [0.2; N_AU];
        for &a in au_on {
            aus[a] = 0.9;
        }
        Prediction {
            valence,
            arousal: -valence,
            expression,
            aus,
        }
    }

    #[test]
    fn only_invalid_labels_are_filled_and_valid_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = shared::abaw::PredictionSet::new();
        set.insert(
            id("a"),
            vec![
                (1, prediction(0.5, 3, &[0, 11])),
                (2, prediction(1.7, 6, &[])),
                (3, prediction(-0.2, 1, &[4])),
            ],
        );
        write_prediction_dir(dir.path(), &set).unwrap();
        let valid = FrameLabels {
            valence: Some(0.1),
            arousal: Some(0.2),
            expression: Some(0),
            aus: Some([false; N_AU]),
        };
        let mut train = SplitLabels {
            split: Split::Train,
            source: PathBuf::from("train.txt"),
            videos: [
                (
                    id("a"),
                    vec![
                        (1, FrameLabels::default()),
                        (2, valid),
                        (
                            3,
                            FrameLabels {
                                expression: Some(5),
                                ..Default::default()
                            },
                        ),
                        (4, FrameLabels::default()),
                    ],
                ),
                (id("b"), vec![(1, FrameLabels::default())]),
            ]
            .into_iter()
            .collect(),
        };
        let done = fill(&mut train, dir.path()).unwrap();
        assert_eq!(
            done,
            Filled {
                va: 2,
                expr: 1,
                au: 2,
                frames_without_prediction: 1,
                videos_without_predictions: vec![id("b")],
            }
        );
        let a = &train.videos[&id("a")];
        let mut au0 = [false; N_AU];
        au0[0] = true;
        au0[11] = true;
        assert_eq!(
            a[0].1,
            FrameLabels {
                valence: Some(0.5),
                arousal: Some(-0.5),
                expression: Some(3),
                aus: Some(au0),
            }
        );
        assert_eq!(a[1].1, valid, "a fully valid frame is left alone");
        assert_eq!(a[2].1.expression, Some(5), "a valid expression is kept");
        assert_eq!(a[2].1.valence, Some(-0.2));
        assert_eq!(a[3].1, FrameLabels::default(), "no prediction row: left");
        assert_eq!(train.videos[&id("b")][0].1, FrameLabels::default());
    }

    #[test]
    fn a_folder_without_predictions_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut train = SplitLabels {
            split: Split::Train,
            source: PathBuf::from("train.txt"),
            videos: BTreeMap::new(),
        };
        let err = format!("{:#}", fill(&mut train, dir.path()).unwrap_err());
        assert!(
            err.contains("--pseudo-labels") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
