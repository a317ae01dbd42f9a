//! Staged training (`temporal train --init-from RUN [--init-checkpoint NAME] [--freeze PART]`):
//! a run that starts from another run's weights, as MTL-ABAW4 trains the AU part first and then
//! the expression and valence-arousal heads with the AU part frozen.
//!
//! What it does: [`init_from`] copies into a new model every tensor of the source run's
//! checkpoint (`checkpoints/<name>.safetensors`, `best` by default) whose name and shape match a
//! variable of the model, BatchNorm running statistics included; a name present in both with
//! other shapes is an error that names both runs and lists every mismatch
//! (`name: this model's shape [..] vs the run's shape [..]`); names on one side only are
//! reported (logged) and those variables keep their initialisation. [`source_normalisation`]
//! gives the source run's feature normalisation, which the new run adopts so that the copied
//! (and perhaps frozen) weights see their inputs scaled as they were trained.
//!
//! What it does not: freeze anything (`crate::optim::freeze`), or continue a run (`--resume`
//! restores a run's own state, optimizer included; a staged run starts a fresh optimizer).

use crate::data::normalise::Normalisation;
use crate::run_dir::{Checkpoint, RunDir};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// What [`init_from`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// The checkpoint read.
    pub checkpoint: PathBuf,
    /// Tensors copied.
    pub copied: Vec<String>,
    /// Model variables the checkpoint lacks (left at their initialisation).
    pub only_model: Vec<String>,
    /// Checkpoint tensors the model lacks (ignored).
    pub only_source: Vec<String>,
}

/// The checkpoint file `name` of the run folder `run`, checked to exist.
pub fn source_checkpoint(run: &Path, name: Checkpoint) -> Result<PathBuf> {
    let dir = RunDir::open(run).with_context(|| format!("--init-from {}", run.display()))?;
    let path = dir.checkpoint(name);
    if !path.exists() {
        bail!(
            "--init-from {}: the run has no checkpoint {} ({}); choose another with \
             --init-checkpoint (best, best-va, best-expr, best-au, last)",
            run.display(),
            name.name(),
            path.display()
        );
    }
    Ok(path)
}

/// Copy the matching tensors of the run `source`'s checkpoint `name` into `vs` (see the module
/// documentation); `this_run` names the new run in errors. On error nothing has been changed.
pub fn init_from(
    vs: &VarStore,
    source: &Path,
    name: Checkpoint,
    this_run: &Path,
) -> Result<InitReport> {
    let path = source_checkpoint(source, name)?;
    let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)
        .with_context(|| {
            format!(
                "--init-from {}: reading {}",
                source.display(),
                path.display()
            )
        })?
        .into_iter()
        .collect();
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut report = InitReport {
        checkpoint: path.clone(),
        ..InitReport::default()
    };
    let mut mismatches = Vec::new();
    for (n, var) in &vars {
        match tensors.get(n) {
            None => report.only_model.push(n.clone()),
            Some(t) if t.size() != var.size() => mismatches.push(format!(
                "{n}: this model's shape {:?} vs the run's shape {:?}",
                var.size(),
                t.size()
            )),
            Some(_) => report.copied.push(n.clone()),
        }
    }
    report.only_source = tensors
        .keys()
        .filter(|n| !vars.contains_key(*n))
        .cloned()
        .collect();
    if !mismatches.is_empty() {
        bail!(
            "--init-from {}: {} tensors of {} have other shapes in the model of this run ({}): {}. \
             Build this run with the source run's sizes and features (its config.toml).",
            source.display(),
            mismatches.len(),
            path.display(),
            this_run.display(),
            mismatches.join("; ")
        );
    }
    tch::no_grad(|| {
        for n in &report.copied {
            let mut var = vars[n].shallow_clone();
            var.copy_(&tensors[n].to_kind(var.kind()).to_device(var.device()));
        }
    });
    Ok(report)
}

/// The source run's feature normalisation, if it has one of `dim` columns.
pub fn source_normalisation(source: &Path, dim: usize) -> Result<Option<Normalisation>> {
    let path = RunDir::open(source)?.normalisation();
    if !path.exists() {
        return Ok(None);
    }
    let norm = Normalisation::load(&path)?;
    Ok((norm.mean.numel() == dim).then_some(norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::save_weights;
    use tch::{nn, Device, Kind};

    fn run_with(dir: &Path, shapes: &[(&str, i64)]) -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        for (name, n) in shapes {
            let (path, leaf) = name.rsplit_once('.').unwrap();
            let mut p = vs.root();
            for part in path.split('.') {
                p = &p / part;
            }
            let _ = p.var(
                leaf,
                &[*n],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            );
        }
        let rd = RunDir::create(dir).unwrap();
        std::fs::write(rd.config(), "").unwrap();
        save_weights(&vs, &rd.checkpoint(Checkpoint::Best)).unwrap();
        vs
    }

    #[test]
    fn matching_tensors_are_copied_and_the_others_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let source = run_with(&src, &[("au.w", 3), ("au.b", 2), ("old.w", 1)]);
        let vs = VarStore::new(Device::Cpu);
        let r = vs.root();
        let w = (&r / "au").zeros("w", &[3]);
        let b = (&r / "au").zeros("b", &[2]);
        let new = (&r / "ex").zeros("w", &[4]);
        let report = init_from(&vs, &src, Checkpoint::Best, &tmp.path().join("new")).unwrap();
        assert_eq!(report.copied, ["au.b", "au.w"]);
        assert_eq!(report.only_model, ["ex.w"]);
        assert_eq!(report.only_source, ["old.w"]);
        let vars = source.variables();
        assert!(w.equal(&vars["au.w"]) && b.equal(&vars["au.b"]));
        assert_eq!(new.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn other_shapes_are_an_error_naming_both_runs_and_every_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        run_with(&src, &[("au.w", 3), ("au.b", 2)]);
        let vs = VarStore::new(Device::Cpu);
        let w = (vs.root() / "au").zeros("w", &[5]);
        let _ = (vs.root() / "au").zeros("b", &[2]);
        let err = init_from(&vs, &src, Checkpoint::Best, Path::new("runs/new"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&src.display().to_string())
                && err.contains("runs/new")
                && err.contains("au.w: this model's shape [5] vs the run's shape [3]"),
            "{err}"
        );
        assert_eq!(
            w.abs().sum(Kind::Float).double_value(&[]),
            0.0,
            "nothing copied"
        );
        let err = init_from(&vs, &src, Checkpoint::BestAu, Path::new("runs/new")).unwrap_err();
        assert!(err.to_string().contains("no checkpoint best-au"), "{err}");
        let err = init_from(
            &vs,
            &tmp.path().join("nothing"),
            Checkpoint::Best,
            Path::new("x"),
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("not a run folder"));
    }
}
