//! Predictions paired with labels: every annotated frame of an MTL annotation file with the row
//! or decision scored for it, in annotation order, for `temporal evaluate`, `smooth --tune` and
//! `ensemble --method best-per-task`.
//!
//! What it does: for a submission file, every annotated frame must have exactly one row and every
//! row must be annotated; for a prediction folder, every annotated frame must have a row, and rows
//! of frames that are not annotated are passed over. A missing frame is an error naming the
//! predictions, the annotation file, how many frames and which (up to five).
//!
//! What it does not: score (see `shared::metrics`), or read the files' formats (`shared::abaw`).

use anyhow::{bail, Result};
use shared::abaw::{
    read_mtl_annotations, read_mtl_submission, read_prediction_dir, FrameRef, MtlAnnotations,
    PredictionSet,
};
use shared::{Decision, FrameLabels, Prediction, VideoId, N_AU};
use std::collections::HashMap;
use std::path::Path;

/// Annotated frames paired with what is scored for them, in annotation order.
pub struct Aligned {
    /// The labels of each annotated frame.
    pub labels: Vec<FrameLabels>,
    /// The decisions, one per label.
    pub decisions: Vec<Decision>,
    /// The probabilities behind the decisions (prediction folders only).
    pub predictions: Option<Vec<Prediction>>,
}

/// Read a submission and pair each annotated frame with its decision (see the module docs).
pub fn align_submission(pred: &Path, labels: &Path) -> Result<Aligned> {
    let truth = read_mtl_annotations(labels)?;
    let decisions = read_mtl_submission(pred)?;
    let (gold, chosen) = align(&truth.rows, &decisions, pred, labels)?;
    Ok(Aligned {
        labels: gold,
        decisions: chosen,
        predictions: None,
    })
}

/// Read a prediction folder and pair each annotated frame with its prediction and decision.
pub fn align_prediction_dir(
    dir: &Path,
    labels: &Path,
    thresholds: &[f32; N_AU],
) -> Result<Aligned> {
    let truth = read_mtl_annotations(labels)?;
    let preds = read_prediction_dir(dir)?;
    let located = annotated_rows(&preds, &truth, dir)?;
    let predictions: Vec<Prediction> = located
        .iter()
        .map(|(video, row, _)| preds[*video][*row].1)
        .collect();
    Ok(Aligned {
        labels: located.iter().map(|(_, _, l)| *l).collect(),
        decisions: predictions.iter().map(|p| p.decide(thresholds)).collect(),
        predictions: Some(predictions),
    })
}

/// For each annotated frame, in annotation order: its video, the index of its row in that
/// video's predictions, and its labels. Rows that are not annotated are passed over. Errors
/// (naming `source`, the annotation file, how many and which frames) if an annotated frame has
/// no row.
pub fn annotated_rows<'a>(
    preds: &'a PredictionSet,
    truth: &MtlAnnotations,
    source: &Path,
) -> Result<Vec<(&'a VideoId, usize, FrameLabels)>> {
    let mut out = Vec::with_capacity(truth.rows.len());
    let mut missing: Vec<&FrameRef> = Vec::new();
    for (frame, labels) in &truth.rows {
        let found = preds.get_key_value(&frame.video).and_then(|(video, rows)| {
            rows.binary_search_by_key(&frame.frame, |(f, _)| *f)
                .ok()
                .map(|i| (video, i))
        });
        match found {
            Some((video, i)) => out.push((video, i, *labels)),
            None => missing.push(frame),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: {} of the {} annotated frames in {} have no prediction (first: {}); \
             predict every annotated frame (are these the predictions of the same split?)",
            source.display(),
            missing.len(),
            truth.rows.len(),
            truth.path.display(),
            examples(&missing)
        );
    }
    Ok(out)
}

/// Pair every annotated frame with its decision, in annotation order.
fn align(
    truth: &[(FrameRef, FrameLabels)],
    decisions: &[(FrameRef, Decision)],
    pred: &Path,
    labels: &Path,
) -> Result<(Vec<FrameLabels>, Vec<Decision>)> {
    let by_frame: HashMap<&FrameRef, &Decision> = decisions.iter().map(|(f, d)| (f, d)).collect();
    let annotated: HashMap<&FrameRef, ()> = truth.iter().map(|(f, _)| (f, ())).collect();
    let missing: Vec<&FrameRef> = truth
        .iter()
        .map(|(f, _)| f)
        .filter(|f| !by_frame.contains_key(f))
        .collect();
    let unknown: Vec<&FrameRef> = decisions
        .iter()
        .map(|(f, _)| f)
        .filter(|f| !annotated.contains_key(f))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} of the {} annotated frames in {} have no prediction (first: {}); \
             predict every annotated frame",
            pred.display(),
            missing.len(),
            truth.len(),
            labels.display(),
            examples(&missing)
        );
    }
    if !unknown.is_empty() {
        bail!(
            "{}: {} predicted frames are not annotated in {} (first: {}); \
             is this the right annotation file?",
            pred.display(),
            unknown.len(),
            labels.display(),
            examples(&unknown)
        );
    }
    let gold = truth.iter().map(|(_, l)| *l).collect();
    let chosen = truth.iter().map(|(f, _)| *by_frame[f]).collect();
    Ok((gold, chosen))
}

/// Up to five frame names, and how many more.
fn examples(frames: &[&FrameRef]) -> String {
    let shown: Vec<String> = frames.iter().take(5).map(|f| f.image_name()).collect();
    let more = frames.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
