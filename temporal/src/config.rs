//! The training configuration: one TOML file (`configs/*.toml`), every key also a flag of
//! `temporal train`; the command line wins. The fully resolved configuration is written to the
//! run folder as `config.toml`, which `--resume` and `temporal predict` read back.

use crate::data::resample::Resample;
use crate::data::{FeatureStore, FrameMode};
use crate::loss::LossConfig;
use crate::model::Config as ModelConfig;
use crate::optim::{OptimConfig, OptimizerKind};
use crate::run_dir::Checkpoint;
use crate::schedule::{Schedule, ScheduleKind};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use shared::tasks::Task;
use std::path::{Path, PathBuf};

/// Everything a training run depends on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data root with the annotation files (and `cropped_aligned/`).
    pub data: PathBuf,
    /// Feature cache root [default: `<data>/features`].
    pub cache: Option<PathBuf>,
    /// Feature sets joined by frame, in column order.
    pub features: Vec<String>,
    /// Task groups trained: `va`, `expr`, `au`.
    pub tasks: Vec<Task>,
    /// Sequence frames: `annotated` or `all`.
    pub frames: FrameMode,
    /// Where the features are kept: `auto` (in memory when they take at most half the available
    /// memory, else read from the cache step by step), `memory` or `stream`.
    pub feature_store: FeatureStore,
    /// Training epochs.
    pub epochs: usize,
    /// Seed of the initialisation, the data order and dropout.
    pub seed: u64,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// libtorch threads [default: all cores].
    pub threads: Option<usize>,
    /// Run folder [default: `runs/<arch>-<topology>`].
    pub out: Option<PathBuf>,
    /// Segment length l (frames).
    pub seg_len: usize,
    /// Parallel streams B (segments per step).
    pub streams: usize,
    /// Frames per training step of a frame-level model (`arch = "none"`), drawn shuffled.
    pub batch_size: usize,
    /// Which training frames an epoch of a frame-level model visits (`[resample]`).
    pub resample: Resample,
    /// Bagging: train on a bootstrap sample of F x n training frames drawn with replacement,
    /// seeded from `seed` (frame-level models; see `crate::data::resample`); absent = all data
    /// without resampling.
    pub bootstrap: Option<f64>,
    /// Base optimizer: `adam` (the reference's), `adamw` or `sgd`.
    pub optimizer: OptimizerKind,
    /// Learning rate (the schedule's peak).
    pub lr: f64,
    /// Weight decay: L2 added to the gradient (`adam`, `sgd`, as PyTorch's) or decoupled
    /// (`adamw`).
    pub weight_decay: f64,
    /// SGD momentum (no dampening).
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    pub nesterov: bool,
    /// Sharpness-aware minimisation: the radius rho of the ascent step (0 = off; 0.05 in SAM's
    /// and MTL-ABAW4's defaults). Each step then runs forward and backward twice.
    pub sam_rho: f64,
    /// Gradient-norm clipping (of SAM's second gradient when SAM is on).
    pub clip: f64,
    /// Learning-rate schedule per step: `constant`, `cosine` (to 0 at the last epoch) or `step`.
    pub schedule: ScheduleKind,
    /// Epochs of linear warm-up from 0 to `lr` before the schedule.
    pub warmup_epochs: usize,
    /// `schedule = "step"`: the 1-based epochs at whose start the rate is multiplied by
    /// `lr_gamma`.
    pub lr_steps: Vec<usize>,
    /// `schedule = "step"`: the factor.
    pub lr_gamma: f64,
    /// Staged training: start from the weights of this run folder (every tensor whose name and
    /// shape match; see `crate::staged`).
    pub init_from: Option<PathBuf>,
    /// The checkpoint of `init_from` to start from.
    #[serde(with = "checkpoint_name")]
    pub init_checkpoint: Checkpoint,
    /// Parts of the model left as they are (`au` freezes `au.*` and `heads.au.*`): no updates,
    /// BatchNorm running statistics kept.
    pub freeze: Vec<String>,
    /// The model.
    pub model: ModelConfig,
    /// The loss.
    pub loss: LossConfig,
    /// Polarity-gated VA head (`[model.heads] va = "polarity"`): the first N epochs train the
    /// polarity classifiers alone (cross-entropy), the later ones the regressors alone (on the
    /// frames whose label is not extreme); 0 trains both together from the first epoch.
    pub polarity_epochs: usize,
    /// k-fold by video: validate on fold K of N instead of the official validation set.
    pub fold: Option<crate::data::folds::Fold>,
    /// How the training videos are dealt into the folds of `fold`: `round-robin` by id or
    /// `frames` (folds of similar frame counts).
    pub fold_scheme: crate::data::folds::FoldRule,
    /// Pseudo-labels: a predictions folder whose outputs fill the invalid labels of the
    /// training videos (`crate::data::pseudo`); none by default.
    pub pseudo_labels: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("data/sample"),
            cache: None,
            features: vec!["hog".to_string()],
            tasks: Task::ALL.to_vec(),
            frames: FrameMode::Annotated,
            feature_store: FeatureStore::Auto,
            epochs: 50,
            seed: 0,
            device: "auto".to_string(),
            threads: None,
            out: None,
            seg_len: 250,
            streams: 8,
            batch_size: 256,
            resample: Resample::default(),
            bootstrap: None,
            optimizer: OptimizerKind::Adam,
            lr: 5e-5,
            weight_decay: 0.0,
            momentum: 0.9,
            nesterov: false,
            sam_rho: 0.0,
            clip: 5.0,
            schedule: ScheduleKind::Constant,
            warmup_epochs: 0,
            lr_steps: Vec::new(),
            lr_gamma: 0.1,
            init_from: None,
            init_checkpoint: Checkpoint::Best,
            freeze: Vec::new(),
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            polarity_epochs: 0,
            fold: None,
            fold_scheme: Default::default(),
            pseudo_labels: None,
        }
    }
}

impl TrainConfig {
    /// Read a TOML file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the training config {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("{}: invalid training config", path.display()))
    }

    /// The resolved cache root.
    pub fn cache_root(&self) -> PathBuf {
        self.cache
            .clone()
            .unwrap_or_else(|| self.data.join("features"))
    }

    /// The resolved run folder.
    pub fn run_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!("{}-{}", self.model.arch, self.model.topology))
        })
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// The optimizer settings.
    pub fn optim_config(&self) -> OptimConfig {
        OptimConfig {
            kind: self.optimizer,
            lr: self.lr,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            nesterov: self.nesterov,
            sam_rho: self.sam_rho,
            freeze: self.freeze.clone(),
        }
    }

    /// The loss of epoch `epoch` (1-based): with `polarity_epochs` > 0, the polarity classifiers
    /// alone up to that epoch, the regressors alone after it.
    pub fn loss_for_epoch(&self, loss: &LossConfig, epoch: usize) -> LossConfig {
        use crate::loss::PolarityStage;
        let mut l = loss.clone();
        if self.polarity_epochs > 0 {
            l.polarity_stage = if epoch <= self.polarity_epochs {
                PolarityStage::Classifiers
            } else {
                PolarityStage::Regressors
            };
        }
        l
    }

    /// The learning-rate schedule over `epochs`.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.schedule,
            lr: self.lr,
            epochs: self.epochs,
            warmup_epochs: self.warmup_epochs,
            lr_steps: self.lr_steps.clone(),
            gamma: self.lr_gamma,
        }
    }

    /// Check the training options (optimizer, schedule) that can be checked without a model.
    pub fn validate(&self) -> Result<()> {
        self.optim_config().validate()?;
        if let Err(e) = self.schedule().validate() {
            bail!("{e}");
        }
        self.resample.validate()?;
        if let Err(e) = self.loss.validate() {
            bail!("{e}");
        }
        if self.polarity_epochs > 0 {
            if self.model.heads.va != crate::model::config::VaHead::Polarity {
                bail!(
                    "polarity_epochs = {}: the staged polarity training needs [model.heads] \
                     va = \"polarity\"; set polarity_epochs = 0 (--polarity-epochs 0) or choose that head",
                    self.polarity_epochs
                );
            }
            if self.polarity_epochs >= self.epochs {
                bail!(
                    "polarity_epochs = {} but epochs = {}: the regressors would never train; \
                     use more epochs than polarity_epochs (--epochs, --polarity-epochs)",
                    self.polarity_epochs,
                    self.epochs
                );
            }
        }
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            bail!(
                "clip = {}: the gradient-norm clip must be a positive number (5 in the reference); \
                 0 would scale every gradient to 0",
                self.clip
            );
        }
        if let Some(f) = self.bootstrap {
            crate::data::resample::validate_bootstrap(f)?;
            if !self.model.arch.is_frame_level() {
                bail!(
                    "bootstrap = {f} draws single training frames with replacement, for \
                     frame-level models (arch = \"none\"); arch = \"{}\" trains on whole videos \
                     with a carried state: remove `bootstrap`",
                    self.model.arch
                );
            }
        }
        if !self.resample.is_off() && !self.model.arch.is_frame_level() {
            bail!(
                "resampling (resample.uniform {}, resample.rare {}) draws single frames, for \
                 frame-level models (arch = \"none\"); arch = \"{}\" trains on whole videos \
                 with a carried state: remove the [resample] settings",
                self.resample.uniform,
                self.resample.rare,
                self.model.arch
            );
        }
        Ok(())
    }
}

/// A [`Checkpoint`] in TOML by its file stem (`best`, `best-va`, `best-expr`, `best-au`, `last`).
mod checkpoint_name {
    use crate::run_dir::Checkpoint;
    use clap::ValueEnum;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Checkpoint, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Checkpoint, D::Error> {
        let name = String::deserialize(d)?;
        Checkpoint::value_variants()
            .iter()
            .find(|c| c.name() == name)
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = Checkpoint::value_variants()
                    .iter()
                    .map(|c| c.name())
                    .collect();
                serde::de::Error::custom(format!(
                    "unknown checkpoint {name:?}; one of {}",
                    names.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, Topology};

    /// Every training config shipped in `configs/` parses, and the reference ones say what their
    /// file name says.
    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut reference = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") || name == "features" {
                continue;
            }
            let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            if let Some((arch, topology)) = name.split_once('-') {
                let arch: Arch = toml::Value::String(arch.into()).try_into().unwrap();
                let topology: Topology = toml::Value::String(topology.into()).try_into().unwrap();
                assert_eq!(
                    (cfg.model.arch, cfg.model.topology),
                    (arch, topology),
                    "{name}"
                );
                assert_eq!(
                    (cfg.seg_len, cfg.streams, cfg.lr, cfg.epochs),
                    (250, 8, 5e-5, 50),
                    "{name}"
                );
                reference += 1;
            }
        }
        assert_eq!(reference, 9, "one reference config per arch x topology");
    }

    /// Every system config in `configs/systems/` parses and describes a model that can be built.
    #[test]
    fn system_configs_parse_and_describe_valid_models() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/systems");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let cfg = TrainConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            let mut model = cfg.model.clone();
            model.tasks = crate::model::HeadTask::for_tasks(&cfg.tasks);
            if model.heads.au == crate::model::AuHead::LrpArlFf {
                // a token system: its features are an IResNet map, 7 x 7 tokens of 512
                (model.tokens, model.feat_dim) = (49, 512);
            }
            if model.heads.all == crate::model::config::JointHead::TaskQueries {
                // a token system: its features are DINOv2's patches, 17 x 17 tokens of 1536
                (model.tokens, model.feat_dim) = (289, 1536);
            }
            model
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 1, "no system config in {}", dir.display());
    }
}
