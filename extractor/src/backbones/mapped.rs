//! Loading a weights file written with another library's parameter names through an explicit
//! name map (e.g. a timm RegNet into the torchvision-named RegNet).
//!
//! What it does: [`load_mapped`] renames every tensor of a [`WeightsFile`] to the model's native
//! name with a caller's map, then checks and copies exactly as [`WeightsFile::load_into`] does:
//! every variable must be covered once with the same shape, every tensor of the file must map to
//! a variable (except `num_batches_tracked` and native names starting with an ignored prefix),
//! otherwise nothing is copied and one error lists every difference. Missing tensors are listed
//! by native name, unexpected and mis-shaped ones by their name in the file.
//!
//! What it does not: know any architecture or detect layouts (the backbone modules do both).

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::Tensor;

use super::weights::{WeightsError, WeightsFile, WeightsFormat};

/// Copies `file` into `vs`, renaming each file tensor with `to_native` (`None`: no such tensor
/// in the model). `model` names the backbone and layout in errors; `ignored` are native-name
/// prefixes of tensors the backbone does not use (e.g. the classifier).
pub(crate) fn load_mapped(
    file: &WeightsFile,
    vs: &VarStore,
    model: &str,
    ignored: &[&str],
    to_native: &dyn Fn(&str) -> Option<String>,
) -> Result<(), WeightsError> {
    let vars = vs.variables();
    // native name -> file name, for the file tensors the model uses.
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut misshaped = Vec::new();
    for (name, meta) in file.tensors() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let native = to_native(name);
        match native.as_deref().and_then(|n| vars.get(n).map(|v| (n, v))) {
            Some((n, var)) => {
                if meta.shape != var.size() {
                    misshaped.push((name.clone(), var.size(), meta.shape.clone()));
                } else if let Some(other) = used.insert(n.to_string(), name.clone()) {
                    // Two file tensors for one variable: the second is unexpected.
                    unexpected.push((format!("{name} (as {n}, like {other})"), meta.shape.clone()));
                }
            }
            None => {
                let skip = native
                    .as_deref()
                    .is_some_and(|n| ignored.iter().any(|p| n.starts_with(p)));
                if !skip {
                    unexpected.push((name.clone(), meta.shape.clone()));
                }
            }
        }
    }
    let mut missing: Vec<(String, Vec<i64>)> = vars
        .iter()
        .filter(|(n, _)| !used.contains_key(*n) && !misshaped_native(&misshaped, n, to_native))
        .map(|(n, v)| (n.clone(), v.size()))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
        missing.sort();
        misshaped.sort();
        return Err(WeightsError::Mismatch {
            path: file.path().to_path_buf(),
            model: model.into(),
            missing,
            unexpected,
            misshaped,
            layout: Box::new(format!(
                "The file's names were read through this backbone's own timm <-> torchvision name \
                 map ({model})."
            )),
        });
    }
    let loaded = match WeightsFormat::of(file.path()) {
        WeightsFormat::Pth => super::weights::read_pth(file.path())?,
        WeightsFormat::Safetensors => {
            Tensor::read_safetensors(file.path()).map_err(|e| WeightsError::Format {
                path: file.path().to_path_buf(),
                reason: e.to_string(),
            })?
        }
    };
    let by_file: BTreeMap<&String, &String> = used.iter().map(|(n, f)| (f, n)).collect();
    let _guard = tch::no_grad_guard();
    for (name, src) in loaded {
        if let Some(native) = by_file.get(&name) {
            let mut var = vars[*native].shallow_clone();
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
    }
    Ok(())
}

/// Whether native variable `native` is already reported as mis-shaped (under its file name).
fn misshaped_native(
    misshaped: &[(String, Vec<i64>, Vec<i64>)],
    native: &str,
    to_native: &dyn Fn(&str) -> Option<String>,
) -> bool {
    misshaped
        .iter()
        .any(|(file_name, _, _)| to_native(file_name).as_deref() == Some(native))
}
