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
//! What it does not: know any architecture (builders pass the names they ignore), or accept a
//! checkpoint that pickles anything but tensors and plain data (see [`super::pth`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// Names or shapes do not match the model built from the config.
    #[error("{}", mismatch_message(.path, .model, .missing, .unexpected, .misshaped))]
    Mismatch {
        /// The weights file.
        path: PathBuf,
        /// The backbone the config built.
        model: String,
        /// Tensors the model has and the file lacks: (name, model shape).
        missing: Vec<(String, Vec<i64>)>,
        /// Tensors the file has and the model lacks: (name, file shape).
        unexpected: Vec<(String, Vec<i64>)>,
        /// Tensors in both with different shapes: (name, model shape, file shape).
        misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    },
}

fn mismatch_message(
    path: &Path,
    model: &str,
    missing: &[(String, Vec<i64>)],
    unexpected: &[(String, Vec<i64>)],
    misshaped: &[(String, Vec<i64>, Vec<i64>)],
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
            return Ok(Self {
                path: path.to_path_buf(),
                format: WeightsFormat::Pth,
                tensors,
                sha256: file_sha256(path)?,
            });
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
        Ok(Self {
            path: path.to_path_buf(),
            format: WeightsFormat::Safetensors,
            tensors,
            sha256,
        })
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
                    misshaped.push((name.clone(), var.size(), meta.shape.clone()))
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
                model: model.to_string(),
                missing,
                unexpected,
                misshaped,
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
        for (name, src) in loaded {
            if let Some(var) = vars.get(&name) {
                let mut var = var.shallow_clone();
                var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
            }
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

/// Serialises seeded initialisations: libtorch has one global generator per device.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Builds a model's variables on the CPU from `seed` (so "seed:N" gives the same numbers on every
/// device and whatever other threads do), overwrites them from `weights` if given (see
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
