//! The run folder `runs/<name>/`: resolved config, per-epoch metrics, checkpoints, plots, and the
//! state `--resume` needs.
//!
//! ```text
//! config.toml                      the fully resolved TrainConfig
//! metrics.jsonl                    one EpochMetrics object per epoch
//! normalisation.safetensors        mean/std of the training features
//! checkpoints/{best,best-va,best-expr,best-au,last}.safetensors   PyTorch state_dict names
//! state/optimizer.safetensors      the optimizer state of `last` (moments or momentum buffers)
//! state/progress.json              epochs done and best scores (written last at each epoch)
//! plots/*.png, train.log
//! ```
//! Every file is written under a temporary name and renamed, so a crash leaves the previous
//! epoch's files intact.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use shared::metrics::MtlScore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// The checkpoints a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Checkpoint {
    /// Best validation P_MTL.
    Best,
    /// Best mean CCC of valence and arousal.
    BestVa,
    /// Best expression macro F1.
    BestExpr,
    /// Best mean AU F1.
    BestAu,
    /// The latest epoch.
    Last,
}

impl Checkpoint {
    /// File stem.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::Best => "best",
            Checkpoint::BestVa => "best-va",
            Checkpoint::BestExpr => "best-expr",
            Checkpoint::BestAu => "best-au",
            Checkpoint::Last => "last",
        }
    }
}

/// What one epoch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate of the epoch's first training step (the schedule's; 0 in records written
    /// before the field existed).
    #[serde(default)]
    pub lr: f64,
    /// Mean training loss over the steps.
    pub loss: f64,
    /// Mean training loss per task head.
    pub losses: BTreeMap<String, f64>,
    /// Validation scores.
    pub validation: MtlScore,
    /// Validation P_MTL (also in `validation`; here for quick reading).
    pub p_mtl: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
    /// Training frames per second.
    pub train_fps: f64,
    /// Validation inference frames per second.
    pub val_fps: f64,
}

/// Bookkeeping written at the end of each epoch; `--resume` starts after `epochs_done`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Best score so far per checkpoint name.
    pub best: BTreeMap<String, f64>,
}

/// Paths of a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder.
    pub root: PathBuf,
}

impl RunDir {
    /// Create the folder and its sub-folders.
    pub fn create(root: &Path) -> Result<RunDir> {
        for sub in ["checkpoints", "state", "plots"] {
            std::fs::create_dir_all(root.join(sub))
                .with_context(|| format!("cannot create the run folder {}", root.display()))?;
        }
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    /// An existing run folder.
    pub fn open(root: &Path) -> Result<RunDir> {
        if !root.join("config.toml").exists() {
            bail!(
                "{} is not a run folder (no config.toml); train one with `temporal train`",
                root.display()
            );
        }
        Ok(RunDir {
            root: root.to_path_buf(),
        })
    }

    /// `config.toml`.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    /// `normalisation.safetensors`.
    pub fn normalisation(&self) -> PathBuf {
        self.root.join("normalisation.safetensors")
    }
    /// `checkpoints/<name>.safetensors`.
    pub fn checkpoint(&self, c: Checkpoint) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{}.safetensors", c.name()))
    }
    /// `state/optimizer.safetensors`.
    pub fn optimizer(&self) -> PathBuf {
        self.root.join("state").join("optimizer.safetensors")
    }
    /// `state/progress.json`.
    pub fn progress(&self) -> PathBuf {
        self.root.join("state").join("progress.json")
    }
    /// `plots/`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// Write text atomically.
    pub fn write_text(&self, path: &Path, text: &str) -> Result<()> {
        shared::atomic::write_atomically(path, |w| w.write_all(text.as_bytes()))?;
        Ok(())
    }

    /// Rewrite `metrics.jsonl` with these epochs (used at each epoch: atomic, never half a line).
    pub fn write_metrics(&self, epochs: &[EpochMetrics]) -> Result<()> {
        let mut text = String::new();
        for e in epochs {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        self.write_text(&self.metrics(), &text)
    }

    /// Read `metrics.jsonl`.
    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        let path = self.metrics();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}:{}: not an epoch record", path.display(), i + 1))
            })
            .collect()
    }

    /// Read `state/progress.json` (the default when absent).
    pub fn read_progress(&self) -> Result<Progress> {
        let path = self.progress();
        if !path.exists() {
            return Ok(Progress::default());
        }
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable progress record", path.display()))
    }
}

/// Save every variable of `vs` under its PyTorch name (atomically).
pub fn save_weights(vs: &VarStore, path: &Path) -> Result<()> {
    crate::model::checkpoint::save(vs, path, None)?;
    Ok(())
}

/// Load a checkpoint into `vs` strictly (see [`crate::model::checkpoint::load_strict`]).
pub fn load_weights(vs: &mut VarStore, path: &Path) -> Result<()> {
    crate::model::checkpoint::load_strict(vs, path)?;
    Ok(())
}
