//! Frozen parts of a model (`--freeze PART`): which variables a part names, and keeping them as
//! they are through training.
//!
//! What it does: [`Frozen::resolve`] reads the parts against a var store's names (a part `au`
//! names every variable whose name starts with `au.` or `heads.au.`, so it works for a
//! frame-level model, whose heads are at the root as in MTL-ABAW4's `AMTL`, and for a temporal
//! model, whose heads are under `heads.`); it sets `requires_grad` to false on the part's
//! parameters (so autograd computes no gradient for them and the optimizer, which takes only
//! variables that require a gradient, leaves them out) and keeps the list of the part's other
//! variables, the BatchNorm running statistics. Those are updated in place by every forward pass
//! in training mode; [`Frozen::hold`] copies them before a training step and [`Held::restore`]
//! writes the copies back after it, so that a frozen part's running statistics end the step
//! bit-identical. (The forward pass itself still normalises a frozen BatchNorm with the batch's
//! statistics, as PyTorch does for a module whose parameters are frozen but which is in training
//! mode, and dropout inside a frozen part stays active; only what is stored is kept.)
//!
//! What it does not: save anything (frozen variables are saved in checkpoints like the others),
//! or decide the parts of a model (the var store's names do).

use std::collections::BTreeSet;
use tch::nn::VarStore;
use tch::Tensor;

/// The parts a `--freeze` value can name in a var store: the first component of every variable
/// name, and the second one of names under `heads.`.
pub fn parts(names: impl IntoIterator<Item = impl AsRef<str>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in names {
        let mut it = name.as_ref().split('.');
        if let Some(first) = it.next() {
            out.insert(first.to_string());
            if first == "heads" {
                if let Some(second) = it.next() {
                    out.insert(second.to_string());
                }
            }
        }
    }
    out
}

/// True when the variable `name` belongs to the part `part` (`part.` or `heads.part.`).
pub fn in_part(name: &str, part: &str) -> bool {
    let under = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix(part))
            .is_some_and(|rest| rest.starts_with('.'))
    };
    under("") || under("heads.")
}

/// A `--freeze` part the model does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--freeze {part}: the model has no part {part:?} (no variable named {part}.* or \
     heads.{part}.*); its parts are: {}",
    parts.join(", ")
)]
pub struct UnknownPart {
    /// The part asked for.
    pub part: String,
    /// The parts the model has.
    pub parts: Vec<String>,
}

/// The frozen variables of a var store (see the module documentation).
#[derive(Debug, Default)]
pub struct Frozen {
    /// Names of the frozen parameters (now without gradient).
    params: BTreeSet<String>,
    /// The frozen parts' other variables (BatchNorm running statistics), by name.
    buffers: Vec<(String, Tensor)>,
}

/// Copies of the frozen buffers taken by [`Frozen::hold`].
#[derive(Debug)]
pub struct Held(Vec<(Tensor, Tensor)>);

impl Frozen {
    /// Freeze the `parts` of `vs`: every variable under one of them that requires a gradient
    /// stops requiring it; the others are kept as buffers to restore. An empty `parts` freezes
    /// nothing. Errors on a part that names no variable, listing the parts there are.
    pub fn resolve(vs: &VarStore, parts_asked: &[String]) -> Result<Frozen, UnknownPart> {
        let vars = vs.variables();
        for part in parts_asked {
            if !vars.keys().any(|n| in_part(n, part)) {
                return Err(UnknownPart {
                    part: part.clone(),
                    parts: parts(vars.keys()).into_iter().collect(),
                });
            }
        }
        let mut frozen = Frozen::default();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            if !parts_asked.iter().any(|p| in_part(name, p)) {
                continue;
            }
            let t = &vars[name];
            if t.requires_grad() {
                let _ = t.set_requires_grad(false);
                frozen.params.insert(name.clone());
            } else {
                frozen.buffers.push((name.clone(), t.shallow_clone()));
            }
        }
        Ok(frozen)
    }

    /// True when `name` is a frozen variable (parameter or buffer).
    pub fn contains(&self, name: &str) -> bool {
        self.params.contains(name) || self.buffers.iter().any(|(n, _)| n == name)
    }

    /// Number of frozen parameters and of frozen buffers.
    pub fn counts(&self) -> (usize, usize) {
        (self.params.len(), self.buffers.len())
    }

    /// Copies of the frozen buffers' current values.
    pub fn hold(&self) -> Held {
        tch::no_grad(|| {
            Held(
                self.buffers
                    .iter()
                    .map(|(_, t)| (t.shallow_clone(), t.copy()))
                    .collect(),
            )
        })
    }
}

impl Held {
    /// Copies of these variables' current values (any variables, e.g. a model's buffers).
    pub fn of<'a>(vars: impl IntoIterator<Item = &'a Tensor>) -> Held {
        tch::no_grad(|| {
            Held(
                vars.into_iter()
                    .map(|t| (t.shallow_clone(), t.copy()))
                    .collect(),
            )
        })
    }

    /// Write the copies back into their variables.
    pub fn restore(self) {
        tch::no_grad(|| {
            for (mut var, value) in self.0 {
                var.copy_(&value);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let r = vs.root();
        let _ = (&r / "au" / "fc").zeros("weight", &[2, 2]);
        let _ = (&r / "au" / "bn").zeros_no_train("running_mean", &[2]);
        let _ = (&r / "aux").zeros("weight", &[1]);
        let _ = (&r / "heads" / "va").zeros("weight", &[1]);
        let _ = (&r / "bottom").zeros("weight_ih_l0", &[3]);
        vs
    }

    #[test]
    fn a_part_names_its_own_prefix_or_the_same_under_heads() {
        assert!(in_part("au.fc.weight", "au"));
        assert!(in_part("heads.au.net.0.weight", "au"));
        assert!(!in_part("aux.weight", "au"));
        assert!(!in_part("tops.au.rnn.weight", "au"));
        assert!(in_part("heads.au.x", "heads"));
        assert!(in_part("bottom.rnn.weight_ih_l0", "bottom"));
    }

    #[test]
    fn freezing_stops_gradients_and_keeps_the_buffers_apart() {
        let vs = store();
        let frozen = Frozen::resolve(&vs, &["au".to_string(), "va".to_string()]).unwrap();
        let vars = vs.variables();
        assert!(!vars["au.fc.weight"].requires_grad());
        assert!(!vars["heads.va.weight"].requires_grad());
        assert!(vars["aux.weight"].requires_grad());
        assert!(vars["bottom.weight_ih_l0"].requires_grad());
        assert_eq!(frozen.counts(), (2, 1));
        assert!(frozen.contains("au.bn.running_mean"));
        assert!(!frozen.contains("aux.weight"));
        let held = frozen.hold();
        let _ = vars["au.bn.running_mean"]
            .shallow_clone()
            .fill_(3.0)
            .sum(Kind::Float);
        held.restore();
        assert_eq!(
            vars["au.bn.running_mean"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn an_unknown_part_is_an_error_listing_the_parts() {
        let vs = store();
        let err = Frozen::resolve(&vs, &["expr".to_string()]).unwrap_err();
        assert_eq!(err.parts, ["au", "aux", "bottom", "heads", "va"]);
        let msg = err.to_string();
        assert!(
            msg.contains("--freeze expr") && msg.contains("au, aux, bottom, heads, va"),
            "{msg}"
        );
    }
}
