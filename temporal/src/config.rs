//! The training configuration: one TOML file (`configs/*.toml`), every key also a flag of
//! `temporal train`; the command line wins. The fully resolved configuration is written to the
//! run folder as `config.toml`, which `--resume` and `temporal predict` read back.

use crate::data::FrameMode;
use crate::loss::LossConfig;
use crate::model::Config as ModelConfig;
use anyhow::{Context, Result};
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
    /// Adam learning rate.
    pub lr: f64,
    /// Gradient-norm clipping.
    pub clip: f64,
    /// The model.
    pub model: ModelConfig,
    /// The loss.
    pub loss: LossConfig,
    /// k-fold by video: validate on fold K of N instead of the official validation set.
    pub fold: Option<crate::data::folds::Fold>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::from("data/sample"),
            cache: None,
            features: vec!["hog".to_string()],
            tasks: Task::ALL.to_vec(),
            frames: FrameMode::Annotated,
            epochs: 50,
            seed: 0,
            device: "auto".to_string(),
            threads: None,
            out: None,
            seg_len: 250,
            streams: 8,
            batch_size: 256,
            lr: 5e-5,
            clip: 5.0,
            model: ModelConfig::default(),
            loss: LossConfig::default(),
            fold: None,
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
            model
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 1, "no system config in {}", dir.display());
    }
}
