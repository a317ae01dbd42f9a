//! `temporal evaluate`: score predictions against MTL annotations with the challenge metrics.
//!
//! What it does:
//! - `--pred FILE`: an MTL submission file (decisions). Every annotated frame must have exactly
//!   one row and every row must be annotated; otherwise the error says which frames and how many.
//! - `--pred DIR`: a folder of prediction CSVs (`<video>.csv`). Every annotated frame must have a
//!   row; rows of frames that are not annotated are allowed and left out (predictions may cover
//!   every frame of a video). Decisions are made as a submission makes them
//!   ([`shared::Prediction::decide`]) with `--au-thresholds` (0.5 by default), so a folder scores
//!   exactly what the submission `temporal submit` writes from it scores.
//! - `--tune-thresholds OUT.json` (folders only): per-AU thresholds that maximise each AU's F1
//!   on these labels ([`shared::metrics::tune_au_thresholds`]), written as
//!   `{"AU1": 0.45, ...}` for `temporal submit --au-thresholds`.
//! - `--tune-other-threshold OUT.json` (folders only): the threshold t on the top expression
//!   probability below which a frame is called Other (class 7) that maximises the expression F1
//!   on these labels ([`super::other::tune_other_threshold`]), written as
//!   `{"other_threshold": t}` for `temporal submit --other-threshold` (keep it beside the AU
//!   thresholds of the same predictions). `--other-threshold` scores with such a threshold.
//! - `--json OUT`: the scores ([`EvaluationReport`]: the fields of [`MtlScore`] plus the
//!   expression confusion matrix and the AU thresholds used), and beside it, with the same stem,
//!   `<stem>-confusion.png` and `<stem>-au-f1.png` ([`super::eval_plots`]).
//!
//! What it does not: smooth, ensemble or write submissions, or decide which labels to use.

use super::align::{align_prediction_dir, align_submission, Aligned};
use super::eval_plots::{au_f1_png, confusion_png};
use super::other::{
    decide_expression, parse_other_threshold, tune_other_threshold, write_other_threshold,
};
use super::thresholds::parse_au_thresholds;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use shared::abaw::write_au_thresholds;
use shared::metrics::{
    confusion_matrix, score_decisions, score_predictions, tune_au_thresholds, MtlScore,
};
use shared::{N_AU, N_EXPR};
use std::path::{Path, PathBuf};

/// Score an MTL submission file or a folder of prediction CSVs against an MTL annotation file.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// What to score: an MTL submission file (header `image,valence,arousal,expression,aus`) or
    /// a folder of prediction CSVs (`<video>.csv`, as `temporal predict|smooth|ensemble` write).
    #[arg(long, value_name = "FILE|DIR")]
    pub pred: PathBuf,
    /// MTL annotation file with the true labels (e.g. validation_set_annotations.txt).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Also write the scores as JSON to this file, and beside it `<stem>-confusion.png` (8x8
    /// expression confusion matrix) and `<stem>-au-f1.png` (F1 of each AU).
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Prediction folders only: tune one threshold per AU on these labels (best F1 on the grid
    /// 0.05..0.95) and write them to this JSON file, for `temporal submit --au-thresholds`.
    #[arg(long, value_name = "OUT.json")]
    pub tune_thresholds: Option<PathBuf>,
    /// Prediction folders only: AU decision thresholds, one number for all 12 AUs or a JSON
    /// file written by `--tune-thresholds` [default: 0.5].
    #[arg(long, value_name = "0.5|FILE.json")]
    pub au_thresholds: Option<String>,
    /// Prediction folders only: tune the threshold on the top expression probability below
    /// which a frame is called Other (class 7; for models trained with drop_other = true) and
    /// write it to this JSON file, for `temporal submit --other-threshold`.
    #[arg(long, value_name = "OUT.json")]
    pub tune_other_threshold: Option<PathBuf>,
    /// Prediction folders only: call a frame Other (class 7) where its top expression
    /// probability is below this (a number, or the file --tune-other-threshold wrote).
    #[arg(long, value_name = "T|FILE.json")]
    pub other_threshold: Option<String>,
}

/// What `--json` writes: the scores, the expression confusion matrix and the thresholds used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The challenge scores (top-level keys `p_mtl`, `ccc_valence`, ...).
    #[serde(flatten)]
    pub score: MtlScore,
    /// Expression confusion matrix `[gold][predicted]` over the frames with a valid expression.
    pub confusion_expr: Vec<Vec<u64>>,
    /// The AU thresholds the decisions were made with (absent for a submission file, whose
    /// decisions are already made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub au_thresholds: Option<[f32; N_AU]>,
    /// What was scored.
    pub pred: PathBuf,
    /// The annotation file.
    pub labels: PathBuf,
}

/// Run the command: print the table; write the JSON, the plots and the tuned thresholds if asked.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let is_dir = args.pred.is_dir();
    let needs_probabilities = args.tune_thresholds.is_some()
        || args.au_thresholds.is_some()
        || args.tune_other_threshold.is_some()
        || args.other_threshold.is_some();
    if !is_dir && needs_probabilities {
        bail!(
            "{}: --tune-thresholds, --au-thresholds, --tune-other-threshold and \
             --other-threshold need probabilities; pass the prediction folder (not a \
             submission, whose decisions are already made)",
            args.pred.display()
        );
    }
    let other = args
        .other_threshold
        .as_deref()
        .map(parse_other_threshold)
        .transpose()?;
    let thresholds = match &args.au_thresholds {
        Some(spec) => parse_au_thresholds(spec)?,
        None => shared::tasks::DEFAULT_AU_THRESHOLDS,
    };
    let mut aligned = if is_dir {
        align_prediction_dir(&args.pred, &args.labels, &thresholds)?
    } else {
        align_submission(&args.pred, &args.labels)?
    };
    if let (Some(t), Some(preds)) = (other, &aligned.predictions) {
        for (d, p) in aligned.decisions.iter_mut().zip(preds) {
            d.expression = decide_expression(p, t);
        }
    }
    let score = score_decisions(&aligned.labels, &aligned.decisions);
    println!("{}", score.table());
    if let (Some(out), Some(preds)) = (&args.tune_thresholds, &aligned.predictions) {
        let tuned = tune_au_thresholds(&aligned.labels, preds);
        write_au_thresholds(out, &tuned)?;
        let with_tuned = score_predictions(&aligned.labels, preds, &tuned);
        println!(
            "AU F1 with thresholds tuned on these labels (optimistic on the same data): {:.4}",
            with_tuned.f1_au
        );
        println!("tuned AU thresholds written to {}", out.display());
    }
    if let (Some(out), Some(preds)) = (&args.tune_other_threshold, &aligned.predictions) {
        let (t, f1) = tune_other_threshold(&aligned.labels, preds);
        write_other_threshold(out, t)?;
        println!(
            "expression F1 with Other below a top probability of {t:.2} (tuned on these labels, \
             optimistic on the same data): {f1:.4}"
        );
        println!("tuned Other threshold written to {}", out.display());
    }
    if let Some(out) = &args.json {
        let report = EvaluationReport {
            confusion_expr: expression_confusion(&aligned),
            au_thresholds: aligned.predictions.as_ref().map(|_| thresholds),
            score,
            pred: args.pred.clone(),
            labels: args.labels.clone(),
        };
        let json = serde_json::to_string_pretty(&report)?;
        shared::atomic::write_atomically(out, |w| w.write_all(json.as_bytes()))
            .with_context(|| format!("writing the scores to {}", out.display()))?;
        println!("scores written to {}", out.display());
        write_plots(out, &report);
    }
    Ok(())
}

/// Draw the two PNGs beside `json`; a missing font or a drawing error is a warning, never a
/// failed evaluation.
fn write_plots(json: &Path, report: &EvaluationReport) {
    let (confusion, au) = plot_paths(json);
    let drawn = confusion_png(&confusion, &report.confusion_expr)
        .and_then(|()| au_f1_png(&au, &report.score.f1_au_per_au));
    match drawn {
        Ok(()) => println!(
            "plots written to {} and {}",
            confusion.display(),
            au.display()
        ),
        Err(e) => tracing::warn!("plots not drawn: {e:#}"),
    }
}

/// The plot files beside a JSON file: `<stem>-confusion.png` and `<stem>-au-f1.png`.
pub fn plot_paths(json: &Path) -> (PathBuf, PathBuf) {
    let stem = json
        .file_stem()
        .map_or_else(|| "scores".into(), |s| s.to_string_lossy().into_owned());
    (
        json.with_file_name(format!("{stem}-confusion.png")),
        json.with_file_name(format!("{stem}-au-f1.png")),
    )
}

/// The 8x8 expression confusion matrix `[gold][predicted]` of aligned frames.
pub fn expression_confusion(aligned: &Aligned) -> Vec<Vec<u64>> {
    let (gold, pred): (Vec<u8>, Vec<u8>) = aligned
        .labels
        .iter()
        .zip(&aligned.decisions)
        .filter_map(|(l, d)| l.expression.map(|e| (e, d.expression)))
        .unzip();
    confusion_matrix(&pred, &gold, N_EXPR)
}

/// Score a submission file against an annotation file.
pub fn evaluate_submission(pred: &Path, labels: &Path) -> Result<MtlScore> {
    let a = align_submission(pred, labels)?;
    Ok(score_decisions(&a.labels, &a.decisions))
}

/// Score a folder of prediction CSVs against an annotation file, deciding AUs with `thresholds`.
pub fn evaluate_prediction_dir(
    dir: &Path,
    labels: &Path,
    thresholds: &[f32; N_AU],
) -> Result<MtlScore> {
    let a = align_prediction_dir(dir, labels, thresholds)?;
    Ok(score_decisions(&a.labels, &a.decisions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_paths_share_the_json_stem() {
        let (c, a) = plot_paths(Path::new("/runs/x/val-scores.json"));
        assert_eq!(c, Path::new("/runs/x/val-scores-confusion.png"));
        assert_eq!(a, Path::new("/runs/x/val-scores-au-f1.png"));
    }
}
