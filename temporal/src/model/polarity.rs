//! The valence-arousal head of the ABAW5 VA entry of Wang et al.
//! (`../shared/papers/abaw5-va-expr-au.txt`, section 2): polarity classifiers that send the
//! extreme frames to exactly -1 or +1, and regressors for the others. `[model.heads] va =
//! "polarity"`. No public code: the reference is `PolarityVA` in
//! `scripts/fixtures/abaw5_refs.py`, whose parameter names this module creates (under the heads'
//! root, which is the model's root with `arch = "none"`):
//! - `polarity.valence.net.{0,3}`, `polarity.arousal.net.{0,3}`: per task a 3-class classifier
//!   `Linear(d, hidden) - ReLU - Dropout - Linear(hidden, 3)` over the classes
//!   [`POLARITY_CLASSES`] = (label -1, in between, label +1);
//! - `regressor.valence.{hidden,out}`: `hv = ReLU(hidden(x))`, `v = tanh(out(dropout(hv)))`;
//! - `regressor.arousal.{hidden,out}`: `ha = ReLU(hidden(x))`,
//!   `a = tanh(out(dropout(concat(ha, hv))))`: the arousal regressor also reads the valence
//!   regressor's hidden features (not detached: the two regressors train together).
//!
//! [`PolarityVa::forward_t`] gives, per frame, the gated values `valence` / `arousal` ([`gate`]:
//! -1 where the classifier's arg-max is class 0, +1 where it is class 2, the regressor's value
//! otherwise), the classifiers' logits (`valence_polarity`, `arousal_polarity`, `[.., 3]`) and the
//! regressors' own values (`valence_regressor`, `arousal_regressor`). The losses
//! ([`crate::loss::mtl_loss`]) are the cross-entropy of the classifiers against the polarity of
//! the label (|label| >= `va_extreme`, 1 by default, the paper's "exactly -1 or 1") and the CCC
//! loss of the regressors over the frames whose label is not extreme; `polarity_epochs` of the
//! training config trains the classifiers first and the regressors after, in one run
//! ([`crate::train`]).
//!
//! Choices the paper leaves open (mine, also in `configs/systems/polarity-va.toml`): one hidden
//! layer of `hidden` units (`[model] hidden`) in each classifier and regressor; `tanh` on the
//! regressors' outputs (labels lie in [-1, 1]); dropout (`[model] dropout`) after the hidden
//! layers; the arg-max decides the polarity (no tuned threshold); frame-level, on the features of
//! one or several joined feature sets with `arch = "none"` (any encoder may feed the head).
//!
//! What it does not: compute the losses (that is [`crate::loss`]) or decide the stages (that is
//! the trainer).

use super::kernels::dropout::dropout;
use super::layers::torch_linear;
use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

/// The polarity classes, in the order of the classifiers' outputs.
pub const POLARITY_CLASSES: [&str; 3] = ["-1", "between", "+1"];

/// Gated prediction: `-1` where `polarity_logits [.., 3]` has its arg-max at class 0, `+1` at
/// class 2, `value [.., 1]` elsewhere (ties go to the lower class, as `argmax` does).
pub fn gate(polarity_logits: &Tensor, value: &Tensor) -> Tensor {
    let class = polarity_logits.argmax(-1, true);
    let low = class.eq(0);
    let high = class.eq(2);
    value.masked_fill(&low, -1.0).masked_fill(&high, 1.0)
}

/// `Linear(d, hidden) - ReLU - Dropout - Linear(hidden, 3)` (`net.0`, `net.3`).
#[derive(Debug)]
struct Classifier {
    l0: nn::Linear,
    l3: nn::Linear,
}

impl Classifier {
    fn new(p: nn::Path, d: i64, hidden: i64) -> Self {
        let net = &p / "net";
        Classifier {
            l0: torch_linear(&net / 0, d, hidden),
            l3: torch_linear(&net / 3, hidden, POLARITY_CLASSES.len() as i64),
        }
    }

    fn forward_t(&self, x: &Tensor, p: f64, train: bool) -> Tensor {
        dropout(&x.apply(&self.l0).relu(), p, train).apply(&self.l3)
    }
}

/// The polarity-gated valence-arousal head (see the module documentation).
#[derive(Debug)]
pub struct PolarityVa {
    valence_polarity: Classifier,
    arousal_polarity: Classifier,
    valence_hidden: nn::Linear,
    valence_out: nn::Linear,
    arousal_hidden: nn::Linear,
    arousal_out: nn::Linear,
    dropout: f64,
}

impl PolarityVa {
    /// Creates the head under `p` for features `d` wide and hidden layers `hidden` wide.
    pub fn new(p: &nn::Path, d: i64, hidden: i64, dropout: f64) -> Self {
        let reg = p / "regressor";
        PolarityVa {
            valence_polarity: Classifier::new(p / "polarity" / "valence", d, hidden),
            arousal_polarity: Classifier::new(p / "polarity" / "arousal", d, hidden),
            valence_hidden: torch_linear(&reg / "valence" / "hidden", d, hidden),
            valence_out: torch_linear(&reg / "valence" / "out", hidden, 1),
            arousal_hidden: torch_linear(&reg / "arousal" / "hidden", d, hidden),
            arousal_out: torch_linear(&reg / "arousal" / "out", 2 * hidden, 1),
            dropout,
        }
    }

    /// Valence features `xv [.., d]` and arousal features `xa [.., d]` (the same tensor with a
    /// shared encoder) -> the outputs by name (see the module documentation); dropout only when
    /// `train`.
    pub fn forward_t(&self, xv: &Tensor, xa: &Tensor, train: bool) -> BTreeMap<String, Tensor> {
        let p = self.dropout;
        let pv = self.valence_polarity.forward_t(xv, p, train);
        let pa = self.arousal_polarity.forward_t(xa, p, train);
        let hv = dropout(&xv.apply(&self.valence_hidden).relu(), p, train);
        let ha = dropout(&xa.apply(&self.arousal_hidden).relu(), p, train);
        let v = hv.apply(&self.valence_out).tanh();
        let a = Tensor::cat(&[&ha, &hv], -1).apply(&self.arousal_out).tanh();
        let mut out = BTreeMap::new();
        out.insert("valence".to_string(), gate(&pv, &v));
        out.insert("arousal".to_string(), gate(&pa, &a));
        out.insert("valence_polarity".to_string(), pv);
        out.insert("arousal_polarity".to_string(), pa);
        out.insert("valence_regressor".to_string(), v);
        out.insert("arousal_regressor".to_string(), a);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn polarity_gating_gives_exactly_minus_one_and_plus_one_where_the_classifier_says_so() {
        // Five frames: class 0 (-1), class 2 (+1), class 1 (the regressor), a tie between
        // classes 0 and 2 (argmax takes the first: -1), and class 1 again.
        let logits = Tensor::from_slice(&[
            3.0f32, 0.0, -1.0, //
            0.0, 1.0, 5.0, //
            0.0, 2.0, 1.9, //
            4.0, 0.0, 4.0, //
            -9.0, -8.0, -9.0,
        ])
        .view([5, 3]);
        let value = Tensor::from_slice(&[0.3f32, -0.7, 0.25, 0.9, -0.99]).view([5, 1]);
        let gated = Vec::<f32>::try_from(gate(&logits, &value).view([-1])).unwrap();
        assert_eq!(gated, [-1.0, 1.0, 0.25, -1.0, -0.99]);
    }

    /// The whole head with hand-set classifier weights: classifier outputs decide, regressor
    /// values pass through elsewhere.
    #[test]
    fn the_head_gates_its_regressors_with_its_classifiers() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let head = PolarityVa::new(&vs.root(), 2, 4, 0.0);
        // Valence classifier: hidden = relu([x0, -x0, 0, 0]), logits = (h1 - h0, 0.5, h0 - h1):
        // x0 > 0.5 -> +1, x0 < -0.5 -> -1, in between -> the regressor.
        tch::no_grad(|| {
            let set = |t: &Tensor, values: &[f32]| {
                let v = Tensor::from_slice(values).view(t.size().as_slice());
                t.shallow_clone().copy_(&v);
            };
            let c = &head.valence_polarity;
            set(&c.l0.ws, &[1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
            set(c.l0.bs.as_ref().unwrap(), &[0.0; 4]);
            // logits = [h1 - h0, 0.5, h0 - h1]
            set(
                &c.l3.ws,
                &[-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0],
            );
            set(c.l3.bs.as_ref().unwrap(), &[0.0, 0.5, 0.0]);
            // The arousal classifier always says "in between".
            let a = &head.arousal_polarity;
            set(&a.l3.ws, &[0.0; 12]);
            set(a.l3.bs.as_ref().unwrap(), &[0.0, 1.0, 0.0]);
        });
        let x = Tensor::from_slice(&[2.0f32, 0.0, -3.0, 1.0, 0.2, 0.0]).view([3, 2]);
        let out = head.forward_t(&x, &x, false);
        let v = Vec::<f32>::try_from(out["valence"].view([-1])).unwrap();
        let reg = Vec::<f32>::try_from(out["valence_regressor"].view([-1])).unwrap();
        assert_eq!(v[0], 1.0);
        assert_eq!(v[1], -1.0);
        assert_eq!(
            v[2], reg[2],
            "x0 = 0.2: logits (-0.4, 0.5, 0.4) -> the regressor"
        );
        assert!(reg[2].abs() < 1.0);
        let a = out["arousal"].view([-1]);
        let a_reg = out["arousal_regressor"].view([-1]);
        assert!(a.equal(&a_reg), "the arousal classifier never gates");
        assert_eq!(out["valence_polarity"].size(), [3, 3]);
    }

    /// A stage trains its parts alone: the other parts get no gradient (and so no update from
    /// the optimizer, which skips parameters without one).
    #[test]
    fn each_polarity_stage_gives_gradients_to_its_own_parts_only() {
        use crate::loss::{mtl_loss, LabelTensors, LossConfig, PolarityStage, VaLoss};
        use crate::model::Outputs;
        use tch::Kind;
        tch::set_num_threads(1);
        tch::manual_seed(4);
        let n = 16;
        // labels spread over [-1, 1]: both extremes and values in between
        let y = Tensor::linspace(-1.0, 1.0, n, (Kind::Float, Device::Cpu));
        let labels = LabelTensors {
            va: Tensor::stack(&[&y, &y.flip([0])], -1).unsqueeze(0),
            expr: Tensor::full([1, n], -1, (Kind::Int64, Device::Cpu)),
            au: Tensor::full([1, n, 12], -1.0, (Kind::Float, Device::Cpu)),
        };
        let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
        for (stage, trained, untouched) in [
            (PolarityStage::Classifiers, "polarity.", "regressor."),
            (PolarityStage::Regressors, "regressor.", "polarity."),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let head = PolarityVa::new(&vs.root(), 3, 4, 0.0);
            let x = Tensor::randn([1, n, 3], (Kind::Float, Device::Cpu));
            let out = Outputs {
                by_task: head.forward_t(&x, &x, true),
                deferred: Default::default(),
                au_probabilities: false,
            };
            let cfg = LossConfig {
                va_loss: VaLoss::Ccc,
                va_extreme: Some(0.9),
                polarity_stage: stage,
                ..LossConfig::default()
            };
            let (total, parts) = mtl_loss(&out, &labels, &valid, &cfg);
            total.backward();
            for (name, var) in vs.variables() {
                if name.starts_with(trained) {
                    assert!(var.grad().defined(), "{stage:?}: {name} has no gradient");
                } else {
                    assert!(name.starts_with(untouched));
                    assert!(!var.grad().defined(), "{stage:?}: {name} has a gradient");
                }
            }
            let names: Vec<&str> = parts.keys().map(|k| k.as_str()).collect();
            match stage {
                PolarityStage::Classifiers => {
                    assert_eq!(names, ["arousal_polarity", "valence_polarity"])
                }
                _ => assert_eq!(names, ["arousal", "valence"]),
            }
        }
    }
}
