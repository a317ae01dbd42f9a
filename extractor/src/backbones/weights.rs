//! Backbone weights: safetensors files and PyTorch checkpoints addressed by their public
//! (PyTorch) parameter names.
//!
//! What it does: [`WeightsFile::open`] reads a safetensors header (names, shapes, dtypes), or a
//! `.pth` / `.pt` / `.bin` checkpoint through [`super::pth`] (no Python, nothing executed), and
//! hashes the file (`sha256:<hex>`, the cache's `weights` attribute), so builders can size a
//! model from the checkpoint before creating it; [`WeightsFile::load_into`] copies every tensor
//! into a [`tch::nn::VarStore`] by name, converting to float32, after checking that names and
//! shapes match exactly. A mismatch is one error that lists every missing, unexpected and
//! mis-shaped tensor with its shapes and names the file. [`seeded`] builds a model's variables
//! from a fixed seed, reproducibly, whatever the target device.
//!
//! A file in a known public layout that is not ours (transformers DINOv2, old torchvision
//! DenseNet keys; see [`super::layouts`]) is recognised at open: its names and shapes are
//! presented as ours (builders size models from them as from a native file) and its tensors are
//! renamed, concatenated or folded at load. A mismatch also names the closest known layout and
//! how many of the file's names fit it; a mapped tensor that does not fit names the layout and
//! the file's tensors it came from.
//!
//! What it does not: know any architecture (builders pass the names they ignore), or accept a
//! checkpoint that pickles anything but tensors and plain data (see [`super::pth`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::layouts::{self, Mapping, Source};
use super::pth::PthError;
use sha2::{Digest, Sha256};
use tch::{nn::VarStore, Device, Tensor};

/// Errors reading or matching a weights file; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{path}: cannot read weights: {cause}")]
    Io {
        /// The weights file.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a safetensors file ({reason}); convert the checkpoint with safetensors.torch.save_file(model.state_dict(), ...)")]
    Format {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A PyTorch checkpoint that cannot be read.
    #[error("{path}: cannot read this PyTorch checkpoint: {reason}")]
    Pth {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A PyTorch checkpoint that pickles more than tensors and plain data.
    #[error("{path}: refused: the checkpoint's pickle names {globals:?}, which are not tensors or plain containers; loading it in Python could run code. Nothing was executed. If you trust the file, keep only its state dict in Python (sd = torch.load(f, weights_only=False), then torch.save of the dict of tensors), or convert it with safetensors.torch.save_file")]
    Unsafe {
        /// The checkpoint.
        path: PathBuf,
        /// `module.name` of each global outside the allowed list.
        globals: Vec<String>,
    },
    /// A file in a known layout whose tensors do not fit together after mapping.
    #[error("{path}: the file's names follow {layout}, but {tensor} cannot be made from them: {why}; the file is not a complete {layout} checkpoint")]
    Layout {
        /// The weights file.
        path: PathBuf,
        /// The layout recognised.
        layout: String,
        /// Our tensor name.
        tensor: String,
        /// What does not fit.
        why: String,
    },
    /// Names or shapes do not match the model built from the config.
    #[error("{}", mismatch_message(.path, .model, .missing, .unexpected, .misshaped, .layout))]
    Mismatch {
        /// The weights file.
        path: PathBuf,
        /// The backbone the config built (boxed, as `layout`: keeps the error small).
        model: Box<str>,
        /// Tensors the model has and the file lacks: (name, model shape).
        missing: Vec<(String, Vec<i64>)>,
        /// Tensors the file has and the model lacks: (name, file shape).
        unexpected: Vec<(String, Vec<i64>)>,
        /// Tensors in both with different shapes: (name, model shape, file shape).
        misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
        /// Which layout the file's names were mapped from (and from which file tensors each
        /// mis-shaped one came), or the closest known layout of an unmapped file (boxed: keeps
        /// the error small).
        layout: Box<String>,
    },
}

fn mismatch_message(
    path: &Path,
    model: &str,
    missing: &[(String, Vec<i64>)],
    unexpected: &[(String, Vec<i64>)],
    misshaped: &[(String, Vec<i64>, Vec<i64>)],
    layout: &str,
) -> String {
    let mut s = format!(
        "{}: weights do not match backbone `{model}` ({} missing, {} unexpected, {} mis-shaped)",
        path.display(),
        missing.len(),
        unexpected.len(),
        misshaped.len()
    );
    for (name, shape) in missing {
        let _ = write!(s, "\n  missing     {name} {shape:?}");
    }
    for (name, shape) in unexpected {
        let _ = write!(s, "\n  unexpected  {name} {shape:?}");
    }
    for (name, model_shape, file_shape) in misshaped {
        let _ = write!(
            s,
            "\n  mis-shaped  {name}: model {model_shape:?}, file {file_shape:?}"
        );
    }
    if !layout.is_empty() {
        let _ = write!(s, "\n{layout}");
    }
    s.push_str(
        "\nCheck the backbone name and its size overrides (layers, width, embed_dim, depth, \
         num_heads, ...) against the checkpoint, or rename the tensors to the public names.",
    );
    s
}

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// safetensors dtype name, e.g. `F32`, `F16`, `BF16`, `I64` (libtorch's kind name, e.g.
    /// `Float`, `Half`, for a PyTorch checkpoint).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<i64>,
}

/// The container of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// safetensors.
    Safetensors,
    /// A `torch.save` zip archive (`.pth`, `.pt`, `.bin`).
    Pth,
}

impl WeightsFormat {
    /// By the file's extension: `.pth`, `.pt` and `.bin` are PyTorch checkpoints, anything
    /// else safetensors.
    pub fn of(path: &Path) -> WeightsFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("pth" | "pt" | "bin") => WeightsFormat::Pth,
            _ => WeightsFormat::Safetensors,
        }
    }
}

/// A weights file whose names and shapes have been read and whose bytes have been hashed.
#[derive(Debug, Clone)]
pub struct WeightsFile {
    path: PathBuf,
    format: WeightsFormat,
    tensors: BTreeMap<String, TensorMeta>,
    sha256: String,
    /// The file's own names (after a `module.` prefix is removed).
    raw_names: Vec<String>,
    /// Whether every name in the file had a `module.` prefix (removed).
    module_prefix: bool,
    /// Our names -> the file's, for a file in a non-native known layout.
    mapping: Option<Mapping>,
}

impl WeightsFile {
    /// Reads the names and shapes of `path` (a safetensors header, or a whole PyTorch
    /// checkpoint) and hashes the whole file.
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        if WeightsFormat::of(path) == WeightsFormat::Pth {
            let tensors = read_pth(path)?
                .into_iter()
                .map(|(name, t)| {
                    let dtype = format!("{:?}", t.kind());
                    (
                        name,
                        TensorMeta {
                            dtype,
                            shape: t.size(),
                        },
                    )
                })
                .collect();
            return Self::with_layout(path, WeightsFormat::Pth, tensors, file_sha256(path)?);
        }
        let io = |cause| WeightsError::Io {
            path: path.to_path_buf(),
            cause,
        };
        let format = |reason: String| WeightsError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len)
            .map_err(|_| format("shorter than the 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > 100_000_000 || header_len + 8 > file_len {
            return Err(format(format!(
                "header length {header_len} does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
            .map_err(|e| format(format!("header is not valid safetensors JSON: {e}")))?;
        let mut tensors = BTreeMap::new();
        let mut end = 0usize;
        for (name, info) in meta.tensors() {
            end = end.max(info.data_offsets.1);
            tensors.insert(
                name,
                TensorMeta {
                    dtype: format!("{:?}", info.dtype),
                    shape: info.shape.iter().map(|&d| d as i64).collect(),
                },
            );
        }
        if 8 + header_len + end as u64 != file_len {
            return Err(format(format!(
                "data ends at byte {} but the file has {file_len} bytes (truncated or padded)",
                8 + header_len + end as u64
            )));
        }
        let sha256 = file_sha256(path)?;
        Self::with_layout(path, WeightsFormat::Safetensors, tensors, sha256)
    }

    /// Removes a `module.` prefix, recognises the layout and presents the names as ours.
    fn with_layout(
        path: &Path,
        format: WeightsFormat,
        raw: BTreeMap<String, TensorMeta>,
        sha256: String,
    ) -> Result<Self, WeightsError> {
        let module_prefix = !raw.is_empty() && raw.keys().all(|k| k.starts_with("module."));
        let raw: BTreeMap<String, TensorMeta> = raw
            .into_iter()
            .map(|(k, m)| match module_prefix {
                true => (k["module.".len()..].to_string(), m),
                false => (k, m),
            })
            .collect();
        let raw_names: Vec<String> = raw.keys().cloned().collect();
        let mapping = layouts::recognise(&raw_names);
        let tensors = match &mapping {
            None => raw,
            Some(m) => {
                let mut out = BTreeMap::new();
                for (ours, src) in &m.names {
                    let shape =
                        src.shape(|n| raw.get(n).map(|t| t.shape.clone()))
                            .map_err(|why| WeightsError::Layout {
                                path: path.to_path_buf(),
                                layout: m.layout.to_string(),
                                tensor: ours.clone(),
                                why,
                            })?;
                    let dtype = raw[src.inputs()[0]].dtype.clone();
                    out.insert(ours.clone(), TensorMeta { dtype, shape });
                }
                out
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            format,
            tensors,
            sha256,
            raw_names,
            module_prefix,
            mapping,
        })
    }

    /// The known layout the file's names were mapped from, if not native.
    pub fn layout(&self) -> Option<&str> {
        self.mapping.as_ref().map(|m| m.layout)
    }

    /// The file's own tensor names (a `module.` prefix removed), before any layout mapping.
    pub fn file_names(&self) -> &[String] {
        &self.raw_names
    }

    /// The note a mismatch ends with: the mapped layout, or the closest known one.
    fn layout_note(&self) -> String {
        match &self.mapping {
            Some(m) => format!(
                "The file's names follow {} and were mapped onto the model's (names above are the model's).",
                m.layout
            ),
            None => {
                let (name, n, total) = layouts::closest(self.raw_names.iter().map(String::as_str));
                format!("closest known layout: {name} ({n} of {total} names match)")
            }
        }
    }

    /// For a mapped file, `name (from a + b)`; else `name`.
    fn describe(&self, name: &str) -> String {
        match self.mapping.as_ref().and_then(|m| m.names.get(name)) {
            Some(Source::Rename(n)) if n == name => name.to_string(),
            Some(src) => format!("{name} (from {})", src.inputs().join(" + ")),
            None => name.to_string(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sha256:<hex>` of the file's bytes, as recorded in the feature cache.
    pub fn weights_id(&self) -> String {
        format!("sha256:{}", self.sha256)
    }

    /// The shape of tensor `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[i64]> {
        self.tensors.get(name).map(|m| m.shape.as_slice())
    }

    /// Whether the file has a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensors of the header, by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.tensors
    }

    /// The number of indexed children `<prefix>.<i>.` in the file (e.g. blocks of a stage):
    /// one more than the largest index seen, 0 if none.
    pub fn count_children(&self, prefix: &str) -> usize {
        let p = format!("{prefix}.");
        self.tensors
            .keys()
            .filter_map(|k| k.strip_prefix(&p))
            .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)
    }

    /// Copies the file's tensors into `vs` by name (converted to the variables' kind and device).
    ///
    /// Every variable of `vs` must be in the file with the same shape, and every tensor of the
    /// file must be a variable, except names ending in `num_batches_tracked` (a BatchNorm counter
    /// unused at inference) and names starting with one of `ignored` (parts of public
    /// checkpoints the backbone does not use, e.g. a classification `head.`). Otherwise nothing
    /// is copied and the error lists every difference.
    pub fn load_into(
        &self,
        vs: &VarStore,
        model: &str,
        ignored: &[&str],
    ) -> Result<(), WeightsError> {
        let vars = vs.variables();
        let skip = |name: &str| {
            name.ends_with("num_batches_tracked") || ignored.iter().any(|p| name.starts_with(p))
        };
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for (name, var) in &vars {
            match self.tensors.get(name) {
                None => missing.push((name.clone(), var.size())),
                Some(meta) if meta.shape != var.size() => {
                    misshaped.push((self.describe(name), var.size(), meta.shape.clone()))
                }
                Some(_) => {}
            }
        }
        let unexpected: Vec<(String, Vec<i64>)> = self
            .tensors
            .iter()
            .filter(|(name, _)| !vars.contains_key(*name) && !skip(name))
            .map(|(name, meta)| (name.clone(), meta.shape.clone()))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
            missing.sort();
            misshaped.sort();
            return Err(WeightsError::Mismatch {
                path: self.path.clone(),
                model: model.into(),
                missing,
                unexpected,
                misshaped,
                layout: Box::new(self.layout_note()),
            });
        }
        let loaded = match self.format {
            WeightsFormat::Pth => read_pth(&self.path)?,
            WeightsFormat::Safetensors => {
                Tensor::read_safetensors(&self.path).map_err(|e| WeightsError::Format {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?
            }
        };
        let _guard = tch::no_grad_guard();
        let loaded: std::collections::HashMap<String, Tensor> = loaded
            .into_iter()
            .map(|(name, t)| match name.strip_prefix("module.") {
                Some(rest) if self.module_prefix => (rest.to_string(), t),
                _ => (name, t),
            })
            .collect();
        for (name, var) in &vars {
            let src = match self.mapping.as_ref().and_then(|m| m.names.get(name)) {
                Some(src) => src.build(|n| loaded.get(n).map(Tensor::shallow_clone)),
                None => loaded.get(name).map(Tensor::shallow_clone),
            };
            let src = src.ok_or_else(|| WeightsError::Layout {
                path: self.path.clone(),
                layout: self.layout().unwrap_or("native names").to_string(),
                tensor: name.clone(),
                why: "its tensor is listed in the header but not in the data".into(),
            })?;
            let mut var = var.shallow_clone();
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
        Ok(())
    }
}

/// [`super::pth::read`], its error naming `path`.
pub(crate) fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>, WeightsError> {
    let path_buf = path.to_path_buf();
    super::pth::read(path).map_err(|e| match e {
        PthError::Io(cause) => WeightsError::Io {
            path: path_buf,
            cause,
        },
        PthError::Format(reason) => WeightsError::Pth {
            path: path_buf,
            reason,
        },
        PthError::Unsafe(globals) => WeightsError::Unsafe {
            path: path_buf,
            globals,
        },
    })
}

/// sha256 of a file's bytes as lowercase hex (streamed, any size).
pub fn file_sha256(path: &Path) -> Result<String, WeightsError> {
    let io = |cause| WeightsError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Serialises seeded initialisations: libtorch has one global generator per device. Code that
/// draws from it on another thread at the same moment (random test inputs, dropout) still shifts
/// the numbers; the extractor does neither while it builds its backbone.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Builds a model's variables on the CPU from `seed` (so "seed:N" gives the same numbers on every
/// device, and whatever other threads initialise; see [`INIT_LOCK`]), overwrites them from `weights` if given (see
/// [`WeightsFile::load_into`]; `model` and `ignored` are passed on), freezes them and moves them
/// to `device`. `build` creates the variables under the root path and returns the model.
pub fn init_vars<M>(
    seed: u64,
    weights: Option<&WeightsFile>,
    model: &str,
    ignored: &[&str],
    device: Device,
    build: impl FnOnce(&tch::nn::Path) -> anyhow::Result<M>,
) -> anyhow::Result<(VarStore, M)> {
    let mut vs = VarStore::new(Device::Cpu);
    let built = {
        let _lock = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed as i64);
        build(&vs.root())?
    };
    vs.freeze();
    if let Some(w) = weights {
        w.load_into(&vs, model, ignored)?;
    }
    if device != Device::Cpu {
        vs.set_device(device);
    }
    Ok((vs, built))
}

/// Writes every variable of `vs` to a safetensors file at `path` under its name, whatever its
/// memory layout (channels-last convolution weights are written as contiguous copies), so that
/// the file loads with [`WeightsFile`] and in PyTorch.
pub fn save_safetensors(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    Tensor::write_safetensors(&named, path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// The cache's `weights` attribute: the file's `sha256:<hex>`, or `seed:N` without a file.
pub fn weights_id(weights: Option<&WeightsFile>, seed: u64) -> String {
    weights.map_or_else(|| format!("seed:{seed}"), WeightsFile::weights_id)
}
