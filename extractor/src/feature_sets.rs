//! `configs/features.toml`: named feature sets built on backbones, and extraction defaults.
//!
//! A feature set is a backbone configuration under a name; the cache folder of a set is its name
//! (`<cache>/<set>/<video>.h5`). A name given to `--backbone` that is not a set of the file but a
//! built-in backbone (`iresnet50`, `hog`, `torchscript:<file>`, ...) makes a set of that name with
//! default settings. A set may say `output = "map"` (CNN backbones: the last spatial feature map
//! as tokens); `extract --output` overriding a set's output changes its folder (see
//! [`crate::extract`]). It does not build backbones or read frames.

use crate::backbones::BackboneConfig;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesFile {
    /// Defaults of `extractor extract` that the command line overrides.
    #[serde(default)]
    pub extract: ExtractDefaults,
    /// Feature sets by name.
    #[serde(default)]
    pub sets: BTreeMap<String, BackboneConfig>,
}

/// `[extract]`: defaults for the flags of the same names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractDefaults {
    /// Data root (`--data`).
    pub data: Option<PathBuf>,
    /// Cache root (`--out`).
    pub out: Option<PathBuf>,
    /// Feature sets to extract when `--backbone` is absent.
    #[serde(default)]
    pub backbones: Vec<String>,
    /// Frames per forward pass (`--batch-size`).
    pub batch_size: Option<usize>,
    /// `auto`, `cpu`, `cuda`, `cuda:N` (`--device`).
    pub device: Option<String>,
    /// `f32` or `f16` (`--dtype`).
    pub dtype: Option<String>,
}

impl FeaturesFile {
    /// Read and parse the file; errors name the file and, from toml, the line.
    pub fn load(path: &Path) -> Result<FeaturesFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the feature config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid feature config", path.display()))
    }

    /// The backbone configuration of a set, or a default one for a built-in backbone name.
    pub fn resolve(&self, name: &str, config_path: &Path) -> Result<BackboneConfig> {
        if let Some(cfg) = self.sets.get(name) {
            return Ok(cfg.clone());
        }
        if crate::backbones::is_builtin(name) {
            return Ok(BackboneConfig::named(name));
        }
        let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
        bail!(
            "unknown feature set or backbone {name:?}: {} defines [{}]; built-in backbones are {}",
            config_path.display(),
            known.join(", "),
            crate::backbones::BUILTIN_NAMES.join(", ")
        )
    }
}
