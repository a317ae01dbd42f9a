//! `temporal bench-read`: how fast the trainer's streamed reader delivers a feature cache.
//!
//! What it does: every frame of every video of the chosen feature sets becomes one split (as
//! `--frames all` would), read from the cache step by step ([`FeatureStore::Stream`]) in
//! batches of `--batch` frames through [`crate::step::gather_features`], the very call a
//! training or inference step makes, with the reader thread one step ahead as in training.
//! `--order shuffled` draws random frames across videos (a frame-level model's epoch); `video`
//! takes consecutive frames video by video (a sequence model's segments, inference). It reports
//! megabytes per second of features as stored on disk (MB = 2^20 bytes; f16 counts 2 bytes a
//! value) and frames per second, and can write the exact rows it read (`--plan-out`) so that
//! another reader (`scripts/bench/h5py_read.py`) reads the same rows in the same batches.
//!
//! What it does not: normalise (a run does, on the reader thread), train, or drop the page
//! cache: both sides of a comparison should read a warm (or an equally cold) cache.

use crate::data::rows::FeatureStore;
use crate::data::streams::StreamPlan;
use crate::data::{FrameMode, Split, SplitData, SplitLabels};
use crate::step::gather_features;
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use shared::cache;
use std::path::PathBuf;
use std::time::Instant;
use tch::Device;

/// Measure the streamed feature reader on a cache.
#[derive(Debug, Args)]
pub struct BenchReadArgs {
    /// Feature cache root (holds one folder per feature set).
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Feature sets joined by frame, comma-separated (as `train --features`).
    #[arg(long, value_name = "SET,...", value_delimiter = ',', required = true)]
    pub features: Vec<String>,
    /// Frames per batch.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,
    /// Batches to read [default: every frame once].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Random frames across videos, or consecutive frames video by video.
    #[arg(long, value_enum, default_value = "shuffled")]
    pub order: ReadOrder,
    /// Seed of the shuffled order.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Write the rows read, `{"batches": [[[file, row], ...], ...]}`, to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    /// Write the result as JSON to this file (it is always printed).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// libtorch threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The order frames are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadOrder {
    /// Random frames across videos, as a frame-level model's epoch.
    Shuffled,
    /// Consecutive frames, video after video.
    Video,
}

/// What one measurement found.
#[derive(Debug, Serialize)]
pub struct ReadReport {
    /// Frames read.
    pub frames: usize,
    /// Bytes of features behind them, as stored.
    pub bytes: u64,
    /// Wall-clock seconds of the reading loop.
    pub seconds: f64,
    /// bytes / 2^20 / seconds.
    pub mb_per_s: f64,
    /// frames / seconds.
    pub frames_per_s: f64,
    /// The order.
    pub order: ReadOrder,
    /// Frames per batch.
    pub batch: usize,
    /// Values per frame (tokens x dims).
    pub values_per_frame: usize,
}

/// Run the command.
pub fn run(args: &BenchReadArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n as i32);
    }
    // Absolute paths in --plan-out, whatever folder another reader runs in.
    let cache_root = std::path::absolute(&args.cache)?;
    let first = &args.features[0];
    let videos = cache::list_videos(&cache_root, first)?;
    if videos.is_empty() {
        bail!(
            "{}: no video files of feature set {first:?}; run `extractor extract` first (or check --cache)",
            cache_root.join(first).display()
        );
    }
    let labels = SplitLabels {
        split: Split::Train,
        source: cache_root.clone(),
        videos: videos.into_iter().map(|v| (v, Vec::new())).collect(),
    };
    let data = SplitData::load(
        &cache_root,
        &args.features,
        &labels,
        FrameMode::All,
        FeatureStore::Stream,
        Device::Cpu,
    )?;
    let source = data.features.source().expect("a streamed split");
    let spans: Vec<(usize, usize)> = data.videos.iter().map(|v| (v.start, v.len())).collect();
    let plan = match args.order {
        ReadOrder::Shuffled => StreamPlan::shuffled_frames(&spans, args.batch, args.seed),
        ReadOrder::Video => {
            let all: Vec<usize> = (0..data.n_rows()).collect();
            StreamPlan::frame_batches(&spans, &all, args.batch, None)
        }
    };
    let n_steps = args.steps.unwrap_or(usize::MAX).min(plan.n_steps());
    // The real rows of each step (padding positions repeat row 0 and are not counted).
    let real: Vec<Vec<usize>> = (0..n_steps)
        .map(|t| {
            plan.streams
                .iter()
                .filter_map(|s| s.get(t))
                .map(|seg| seg.row)
                .collect()
        })
        .collect();
    let frames: usize = real.iter().map(Vec::len).sum();
    let bytes: u64 = real
        .iter()
        .flatten()
        .map(|&r| source.row_bytes(r) as u64)
        .sum();
    if let Some(path) = &args.plan_out {
        let batches: Vec<Vec<(PathBuf, usize)>> = real
            .iter()
            .map(|rows| rows.iter().flat_map(|&r| source.location(r)).collect())
            .collect();
        let text = serde_json::to_string(&serde_json::json!({ "batches": batches }))?;
        shared::atomic::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
    }

    let bar = ProgressBar::new(frames as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "reading [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    data.features
        .prefetch((0..n_steps).map(|t| plan.step_rows(t)).collect());
    for (t, rows) in real.iter().enumerate() {
        let x = gather_features(&data, &plan.step(t, Device::Cpu));
        debug_assert_eq!(x.size()[0] * x.size()[1], args.batch as i64);
        bar.inc(rows.len() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let report = ReadReport {
        frames,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / (1u64 << 20) as f64 / seconds.max(1e-9),
        frames_per_s: frames as f64 / seconds.max(1e-9),
        order: args.order,
        batch: args.batch,
        values_per_frame: source.width(),
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &args.json {
        shared::atomic::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
    }
    Ok(())
}
