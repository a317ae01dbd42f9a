//! Model weights as safetensors files whose names and shapes are the PyTorch reference's
//! `state_dict` (so `TemporalMTL.load_state_dict(strict=True)` accepts them, and ours accept theirs).
//!
//! What it does: [`load_strict`] fills a var store from a file and fails, naming the file and the
//! tensors, on any missing, unexpected or mis-shaped tensor (f16 / bf16 / f64 files are converted
//! to the var store's kind). [`save`] writes every variable crash-safely (temporary file + rename).
//! [`named_shapes`] lists a var store's names and shapes.
//!
//! What it does not: decide which checkpoint to keep (`best`, `last`: the trainer does), or store
//! optimiser state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// How many names an error message lists before "and N more".
const LIST_MAX: usize = 6;

/// A checkpoint that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read.
    #[error("{path}: cannot read the checkpoint: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a safetensors checkpoint ({message}); re-save it with safetensors")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A tensor of a kind that cannot hold weights.
    #[error("{path}: tensor `{name}` has dtype {dtype}; weights must be f32, f16, bf16 or f64")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// Names or shapes differ from the model's.
    #[error(
        "{path}: the checkpoint does not match the model ({details}); it was written for other \
         hyper-parameters: build the model from the run's config.toml (arch, topology, sizes, tasks, feat_dim)"
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Missing, unexpected and mis-shaped tensors.
        details: String,
    },
    /// Writing failed.
    #[error("{path}: cannot write the checkpoint: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// Every variable's name and shape, sorted by name.
pub fn named_shapes(vs: &VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(name, t)| (name, t.size()))
        .collect()
}

fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(LIST_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LIST_MAX {
        s.push_str(&format!(" and {} more", names.len() - LIST_MAX));
    }
    s
}

fn kind_of(dtype: safetensors::Dtype) -> Option<Kind> {
    match dtype {
        safetensors::Dtype::F32 => Some(Kind::Float),
        safetensors::Dtype::F16 => Some(Kind::Half),
        safetensors::Dtype::BF16 => Some(Kind::BFloat16),
        safetensors::Dtype::F64 => Some(Kind::Double),
        // BatchNorm's `num_batches_tracked`.
        safetensors::Dtype::I64 => Some(Kind::Int64),
        _ => None,
    }
}

fn dtype_of(kind: Kind) -> Option<safetensors::Dtype> {
    match kind {
        Kind::Float => Some(safetensors::Dtype::F32),
        Kind::Half => Some(safetensors::Dtype::F16),
        Kind::BFloat16 => Some(safetensors::Dtype::BF16),
        Kind::Double => Some(safetensors::Dtype::F64),
        Kind::Int64 => Some(safetensors::Dtype::I64),
        _ => None,
    }
}

/// Fills every variable of `vs` from the safetensors file `path`, strictly: the file must hold
/// exactly the var store's names, each with the same shape (PyTorch's `strict=True`).
///
/// On error no variable has been changed.
pub fn load_strict(vs: &mut VarStore, path: &Path) -> Result<(), CheckpointError> {
    let bytes = std::fs::read(path).map_err(|cause| CheckpointError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let file =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let vars = vs.variables();
    let mut missing: Vec<String> = vars
        .keys()
        .filter(|n| file.tensor(n).is_err())
        .cloned()
        .collect();
    let mut unexpected: Vec<String> = file
        .names()
        .into_iter()
        .filter(|n| !vars.contains_key(*n))
        .cloned()
        .collect();
    let mut shapes = Vec::new();
    for (name, var) in &vars {
        if let Ok(view) = file.tensor(name) {
            let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if found != var.size() {
                shapes.push(format!("{name}: model {:?}, file {:?}", var.size(), found));
            }
        }
    }
    if !missing.is_empty() || !unexpected.is_empty() || !shapes.is_empty() {
        missing.sort();
        unexpected.sort();
        shapes.sort();
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("{} missing: {}", missing.len(), list(&missing)));
        }
        if !unexpected.is_empty() {
            parts.push(format!(
                "{} unexpected: {}",
                unexpected.len(),
                list(&unexpected)
            ));
        }
        if !shapes.is_empty() {
            parts.push(format!(
                "{} with another shape: {}",
                shapes.len(),
                list(&shapes)
            ));
        }
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            details: parts.join("; "),
        });
    }
    let mut loaded = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let view = file.tensor(name).expect("checked above");
        let kind = kind_of(view.dtype()).ok_or_else(|| CheckpointError::Dtype {
            path: path.to_path_buf(),
            name: name.clone(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let src = Tensor::f_from_data_size(view.data(), &var.size(), kind).map_err(|e| {
            CheckpointError::Format {
                path: path.to_path_buf(),
                message: format!("{name}: {e}"),
            }
        })?;
        loaded.push((var, src));
    }
    tch::no_grad(|| {
        for (var, src) in loaded {
            let mut var = var.shallow_clone();
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(())
}

/// Writes every variable of `vs` to the safetensors file `path` (names as in the var store,
/// so the reference's `state_dict` names), with optional string `metadata` in the header.
///
/// The file appears complete or not at all.
pub fn save(
    vs: &VarStore,
    path: &Path,
    metadata: Option<HashMap<String, String>>,
) -> Result<(), CheckpointError> {
    let write_err = |message: String| CheckpointError::Write {
        path: path.to_path_buf(),
        message,
    };
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut buffers = Vec::with_capacity(vars.len());
    for (name, t) in &vars {
        let dtype = dtype_of(t.kind()).ok_or_else(|| {
            write_err(format!("{name} has kind {:?}, not a float kind", t.kind()))
        })?;
        let t = t.detach().to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut buf = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut buf, numel)
            .map_err(|e| write_err(format!("{name}: {e}")))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dtype, shape, buf));
    }
    let views = buffers
        .iter()
        .map(|(name, dtype, shape, buf)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), buf)
                .map(|v| (name.as_str(), v))
                .map_err(|e| write_err(format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes =
        safetensors::tensor::serialize(views, &metadata).map_err(|e| write_err(e.to_string()))?;
    shared::atomic::write_atomically(path, |w| w.write_all(&bytes))
        .map_err(|e| write_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(shape_b: i64) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = (&root / "a").randn_standard("weight", &[2, 3]);
        let _ = (&root / "b").randn_standard("bias", &[shape_b]);
        vs
    }

    #[test]
    fn save_then_load_restores_values_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = store(4);
        save(&a, &path, None).unwrap();
        let mut b = store(4);
        load_strict(&mut b, &path).unwrap();
        for (name, t) in a.variables() {
            assert_eq!(t, b.variables()[&name], "{name}");
        }
        assert_eq!(
            named_shapes(&b),
            BTreeMap::from([
                ("a.weight".to_string(), vec![2, 3]),
                ("b.bias".to_string(), vec![4])
            ])
        );
    }

    #[test]
    fn load_is_strict_about_names_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        save(&store(4), &path, None).unwrap();
        let mut other_shape = store(5);
        let before = other_shape.variables()["b.bias"].copy();
        let err = load_strict(&mut other_shape, &path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.bias: model [5], file [4]") && err.contains("w.safetensors"),
            "{err}"
        );
        assert_eq!(
            other_shape.variables()["b.bias"],
            before,
            "a failed load changed a variable"
        );

        let mut extra = store(4);
        let _ = extra.root().zeros("c", &[1]);
        let err = load_strict(&mut extra, &path).unwrap_err().to_string();
        assert!(err.contains("1 missing: c"), "{err}");

        let mut fewer = VarStore::new(Device::Cpu);
        let _ = (fewer.root() / "a").zeros("weight", &[2, 3]);
        let err = load_strict(&mut fewer, &path).unwrap_err().to_string();
        assert!(err.contains("1 unexpected: b.bias"), "{err}");
    }
}
