//! `temporal predict`: batch scoring of a split with a trained run.
//!
//! Every video of the split is streamed through the chosen checkpoint with the hidden state
//! carried from segment to segment, and `<out>/<video>.csv` gets one row per frame to score
//! (the annotated frames, or every frame of the test list); a frame without features takes the
//! nearest frame's prediction. A run trained with `drop_other` writes class 7 (Other) at
//! probability 0 and leaves the marker `drop-other.json` in the folder (`crate::post::other`),
//! so that `submit` asks for the tuned Other threshold. It does not smooth, ensemble or threshold (see `smooth`, `ensemble`,
//! `submit`).

use crate::config::TrainConfig;
use crate::data::normalise::Normalisation;
use crate::data::{FeatureStore, Split, SplitData, SplitLabels};
use crate::infer::{infer_rows, inference_plan, scored_predictions};
use crate::loss::without_other;
use crate::model::kernels::choice::{self, KernelPolicy};
use crate::model::TemporalMtl;
use crate::run_dir::{load_weights, Checkpoint, RunDir};
use anyhow::{bail, Result};
use clap::Args;
use shared::abaw::{prediction_path, write_predictions};
use shared::device::parse_device;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// Score every video of a split with a trained run.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The run folder made by `temporal train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Which checkpoint of the run.
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: Checkpoint,
    /// Which split: the validation videos, the held-out test list, or the official training
    /// videos (for another run's `train --pseudo-labels`).
    #[arg(long, value_enum, default_value = "validation")]
    pub split: Split,
    /// Output folder for `<video>.csv` [default: <run>/predictions/<split>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Data root [default: the run's].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Feature cache root [default: the run's].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// auto, cpu, cuda, cuda:N [default: the run's].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Where the features are kept: in memory, or read from the cache step by step; auto
    /// streams a split whose f32 features would take more than half the available memory
    /// [default: the run's].
    #[arg(long, value_enum, value_name = "STORE")]
    pub feature_store: Option<FeatureStore>,
    /// Kernel of GRU/LSTM layers: auto times packed, aten and addmm on the first segment of each
    /// shape and keeps the fastest (cached per machine in
    /// $XDG_CACHE_HOME/affect-toolkit/kernels.json; the choice is logged).
    #[arg(long, value_enum, default_value = "auto")]
    pub kernel: KernelPolicy,
}

/// Run the command.
pub fn run(args: &PredictArgs) -> Result<()> {
    choice::configure(args.kernel);
    let dir = RunDir::open(&args.run)?;
    let mut cfg = TrainConfig::load(&dir.config())?;
    if let Some(d) = &args.data {
        cfg.data = d.clone();
    }
    if args.cache.is_some() {
        cfg.cache = args.cache.clone();
    }
    if let Some(d) = &args.device {
        cfg.device = d.clone();
    }
    if let Some(store) = args.feature_store {
        cfg.feature_store = store;
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| dir.root.join("predictions").join(args.split.name()));
    let n = predict(&dir, &cfg, args.checkpoint, args.split, &out)?;
    choice::log_decisions();
    println!(
        "{n} videos of the {} split scored -> {}",
        args.split.name(),
        out.display()
    );
    Ok(())
}

/// Write the predictions of a split; returns the number of videos.
pub fn predict(
    dir: &RunDir,
    cfg: &TrainConfig,
    ckpt: Checkpoint,
    split: Split,
    out: &Path,
) -> Result<usize> {
    let device = parse_device(&cfg.device)?;
    let labels = match split {
        Split::Validation => crate::train::labelled_splits(cfg)?.1,
        _ => SplitLabels::load(&cfg.data, split)?,
    };
    let mut data = SplitData::load(
        &cfg.cache_root(),
        &cfg.features,
        &labels,
        cfg.frames,
        cfg.feature_store,
        device,
    )?;
    if data.dim() as i64 != cfg.model.feat_dim {
        bail!(
            "the features {} have {} dims but the run {} was trained on {} dims; \
             use the same feature sets (and extraction settings) as the run",
            cfg.features.join("+"),
            data.dim(),
            dir.root.display(),
            cfg.model.feat_dim
        );
    }
    if data.tokens as i64 != cfg.model.tokens {
        bail!(
            "the features {} have {} tokens per frame but the run {} was trained on {}; \
             use the same feature sets (and --output of the extraction) as the run",
            cfg.features.join("+"),
            data.tokens,
            dir.root.display(),
            cfg.model.tokens
        );
    }
    data.normalise(&Normalisation::load(&dir.normalisation())?)?;
    let mut vs = VarStore::new(device);
    let model = TemporalMtl::new(&vs.root(), &cfg.model);
    let path = dir.checkpoint(ckpt);
    if !path.exists() {
        bail!(
            "{} does not exist: has the run finished an epoch?",
            path.display()
        );
    }
    load_weights(&mut vs, &path)?;
    let mut rows = infer_rows(&model, &data, &inference_plan(&data, cfg));
    if cfg.loss.drop_other {
        rows = without_other(&rows);
    }
    let preds = scored_predictions(&data, &rows);
    for (video, rows) in &preds {
        write_predictions(&prediction_path(out, video), rows)?;
    }
    if cfg.loss.drop_other {
        crate::post::other::write_marker(out, &dir.root)?;
    } else {
        crate::post::other::clear_marker(out)?;
    }
    Ok(preds.len())
}
