//! `temporal submit`: challenge submission files from a folder of prediction CSVs.
//!
//! What it does:
//! - `--format mtl`: one MTL submission file at `--out` (header
//!   `image,valence,arousal,expression,aus`), one row per frame of the test list, in test-list
//!   order.
//! - `--format va|expr|au`: the per-task layout, one `<video>.txt` per video in the folder
//!   `--out`, videos in the order they first appear in the test list. A per-task file has one
//!   line per frame from frame 1 (line i+1 is frame i), so each video's file covers frames
//!   1..=the largest frame the test list names for it, and every one of those frames needs a
//!   prediction (listed or not).
//! - Decisions are [`shared::Prediction::decide`]: VA clipped to [-1, 1], argmax expression,
//!   AU active when its probability reaches its threshold (`--au-thresholds`: one number for
//!   all 12, or the JSON file `temporal evaluate --tune-thresholds` writes; 0.5 by default).
//! - `--other-threshold T|FILE`: a frame whose top expression probability is below T is
//!   submitted as Other (class 7) ([`super::other`]; the file `temporal evaluate
//!   --tune-other-threshold` writes). Predictions of a `drop_other` run (marker
//!   `drop-other.json`) are refused without it, with the command that makes the file.
//! - A frame the submission needs but the predictions lack is an error naming the video and the
//!   frame (up to five, and how many in all); nothing is written then.
//!
//! What it does not: fill missing frames (`temporal predict` already fills frames without a face
//! from the nearest frame that has one), smooth or ensemble.

use super::other::{apply_other_threshold, parse_other_threshold, require_threshold};
use super::thresholds::parse_au_thresholds;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use shared::abaw::{
    read_prediction_dir, read_test_list, write_mtl_submission, write_per_task_submission, FrameRef,
    PerTask, PredictionSet,
};
use shared::{Decision, VideoId, N_AU};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Write ABAW submission files from prediction CSVs.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Folder of prediction CSVs (`<video>.csv`) covering the test frames.
    #[arg(value_name = "PREDS")]
    pub preds: PathBuf,
    /// Submission format: one MTL file, or the per-task layout of one challenge.
    #[arg(long, value_enum, default_value_t = Format::Mtl)]
    pub format: Format,
    /// Test list: one `video/00001.jpg` per line; fixes the rows and their order.
    #[arg(long, value_name = "FILE")]
    pub test_list: PathBuf,
    /// Where to write: the MTL file (`--format mtl`) or the folder of `<video>.txt` files.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// AU decision thresholds: one number for all 12 AUs, or a JSON file written by
    /// `temporal evaluate --tune-thresholds`.
    #[arg(long, value_name = "0.5|TUNED.json", default_value = "0.5")]
    pub au_thresholds: String,
    /// Call a frame Other (class 7) where its top expression probability is below this: a
    /// number, or the JSON file written by `temporal evaluate --tune-other-threshold` (needed
    /// for predictions of a model trained with drop_other = true).
    #[arg(long, value_name = "T|FILE.json")]
    pub other_threshold: Option<String>,
}

/// A submission format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One multi-task file `image,valence,arousal,expression,aus`.
    Mtl,
    /// Per-task valence-arousal files.
    Va,
    /// Per-task expression files.
    Expr,
    /// Per-task action unit files.
    Au,
}

/// The prediction of `video`, `frame`, if there is one.
fn lookup<'a>(
    preds: &'a PredictionSet,
    video: &VideoId,
    frame: u32,
) -> Option<&'a shared::Prediction> {
    let rows = preds.get(video)?;
    rows.binary_search_by_key(&frame, |(f, _)| *f)
        .ok()
        .map(|i| &rows[i].1)
}

/// Error listing the frames without a prediction (video and frame of up to five, and the count).
fn missing_error(missing: &[FrameRef], needed: usize, test_list: &Path) -> anyhow::Error {
    let shown: Vec<String> = missing
        .iter()
        .take(5)
        .map(|f| format!("video {} frame {}", f.video, f.frame))
        .collect();
    anyhow::anyhow!(
        "{} of the {needed} frames the submission needs (test list {}) have no prediction: {}{}; \
         predict every test frame (`temporal predict --split test` fills frames without a face \
         from the nearest frame)",
        missing.len(),
        test_list.display(),
        shown.join(", "),
        if missing.len() > shown.len() {
            format!(" and {} more", missing.len() - shown.len())
        } else {
            String::new()
        }
    )
}

/// The MTL submission rows: one decision per test-list frame, in test-list order. Errors if a
/// listed frame has no prediction (`test_list_path` is named in the message).
pub fn mtl_rows(
    preds: &PredictionSet,
    test_list: &[FrameRef],
    thresholds: &[f32; N_AU],
    test_list_path: &Path,
) -> Result<Vec<(FrameRef, Decision)>> {
    let mut rows = Vec::with_capacity(test_list.len());
    let mut missing = Vec::new();
    for f in test_list {
        match lookup(preds, &f.video, f.frame) {
            Some(p) => rows.push((f.clone(), p.decide(thresholds))),
            None => missing.push(f.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(missing_error(&missing, test_list.len(), test_list_path));
    }
    Ok(rows)
}

/// The per-task submission of each video, in test-list order of first appearance: decisions for
/// frames 1..=the largest listed frame of the video (index 0 is frame 1). Errors if any of those
/// frames has no prediction.
pub fn per_task_rows(
    preds: &PredictionSet,
    test_list: &[FrameRef],
    thresholds: &[f32; N_AU],
    test_list_path: &Path,
) -> Result<Vec<(VideoId, Vec<Decision>)>> {
    let mut order: Vec<VideoId> = Vec::new();
    let mut last: BTreeMap<&VideoId, u32> = BTreeMap::new();
    for f in test_list {
        let entry = last.entry(&f.video).or_insert_with(|| {
            order.push(f.video.clone());
            0
        });
        *entry = (*entry).max(f.frame);
    }
    let mut out = Vec::with_capacity(order.len());
    let mut missing = Vec::new();
    let mut needed = 0usize;
    for video in order {
        let n = last[&video];
        needed += n as usize;
        let mut decisions = Vec::with_capacity(n as usize);
        for frame in 1..=n {
            match lookup(preds, &video, frame) {
                Some(p) => decisions.push(p.decide(thresholds)),
                None => missing.push(FrameRef {
                    video: video.clone(),
                    frame,
                }),
            }
        }
        out.push((video, decisions));
    }
    if !missing.is_empty() {
        return Err(missing_error(&missing, needed, test_list_path));
    }
    Ok(out)
}

/// Run the command: read the predictions and the test list, write the submission, say where.
pub fn run(args: &SubmitArgs) -> Result<()> {
    let thresholds = parse_au_thresholds(&args.au_thresholds)?;
    require_threshold(&args.preds, args.other_threshold.as_deref())?;
    let other = args
        .other_threshold
        .as_deref()
        .map(parse_other_threshold)
        .transpose()?;
    let mut preds = read_prediction_dir(&args.preds)?;
    if let Some(t) = other {
        let n = apply_other_threshold(&mut preds, t);
        println!("Other threshold {t}: {n} frames below it are submitted as Other (class 7)");
    }
    let test_list = read_test_list(&args.test_list)?;
    if test_list.is_empty() {
        bail!(
            "{}: the test list names no frame; pass the challenge's test list",
            args.test_list.display()
        );
    }
    let context = || format!("predictions in {}", args.preds.display());
    let task = match args.format {
        Format::Mtl => {
            let rows =
                mtl_rows(&preds, &test_list, &thresholds, &args.test_list).with_context(context)?;
            write_mtl_submission(&args.out, &rows)?;
            println!(
                "MTL submission of {} frames written to {}",
                rows.len(),
                args.out.display()
            );
            return Ok(());
        }
        Format::Va => PerTask::Va,
        Format::Expr => PerTask::Expr,
        Format::Au => PerTask::Au,
    };
    let videos =
        per_task_rows(&preds, &test_list, &thresholds, &args.test_list).with_context(context)?;
    for (video, decisions) in &videos {
        write_per_task_submission(&args.out, task, video, decisions)?;
    }
    println!(
        "{} submission of {} videos ({} frames) written to {}",
        task.folder(),
        videos.len(),
        videos.iter().map(|(_, d)| d.len()).sum::<usize>(),
        args.out.display()
    );
    Ok(())
}
