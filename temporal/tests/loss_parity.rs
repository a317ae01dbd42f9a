//! Parity of the ABAW5 (Wang et al.) losses with the PyTorch references of
//! `scripts/fixtures/loss_refs.py`: cross-entropy + lambda x soft dice (with and without class
//! 7), and the focal AU loss with a fixed and a frequency-derived alpha; values and gradients
//! with respect to the logits within 1e-5.
//!
//! `tests/fixtures/bagged_losses.safetensors` is written by `scripts/fixtures/loss_fixture.py`
//! (see its docstring): inputs, the float64 reference values in the metadata, and the reference
//! gradients.

mod common;
use common::Fixture;
use tch::{Device, Kind, Tensor};
use temporal::loss::{
    focal_alpha_auto, mtl_loss, soft_dice_loss, AuLoss, ExprLoss, FocalAlpha, LabelTensors,
    LossConfig, Weights,
};
use temporal::model::Outputs;

const FORMAT: &str = "loss-parity-v1";
const TOL: f64 = 1e-5;

impl Fixture {
    fn load() -> Fixture {
        Fixture::read("bagged_losses", FORMAT, "loss_fixture.py")
    }
}

impl Fixture {
    fn loss(&self, name: &str) -> f64 {
        self.doc["losses"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("no loss {name}"))
    }

    fn vec_f64(&self, name: &str) -> Vec<f64> {
        Vec::<f32>::try_from(self.get(name))
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn counts(&self, name: &str) -> Vec<u64> {
        Vec::<i64>::try_from(self.get(name))
            .unwrap()
            .into_iter()
            .map(|c| c as u64)
            .collect()
    }
}

fn close(what: &str, ours: f64, reference: f64) {
    let d = (ours - reference).abs();
    assert!(
        d <= TOL * reference.abs().max(1.0),
        "{what}: rust {ours} vs torch {reference} (|d| = {d:e})"
    );
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.size(), reference.size(), "{what}: shapes differ");
    let d = (ours.to_kind(Kind::Double) - reference.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d <= TOL, "{what}: max |rust - torch| = {d:e} > {TOL:e}");
}

/// The loss of one head `task` with logits `x [N, C]` (one segment of N frames, all valid) and
/// its gradient with respect to `x`.
fn loss_and_grad(task: &str, x: &Tensor, labels: &LabelTensors, cfg: &LossConfig) -> (f64, Tensor) {
    let leaf = x.detach().copy().set_requires_grad(true);
    let n = x.size()[0];
    let out = Outputs {
        by_task: [(task.to_string(), leaf.unsqueeze(0))]
            .into_iter()
            .collect(),
        deferred: Default::default(),
        au_probabilities: false,
    };
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let (total, parts) = mtl_loss(&out, labels, &valid, cfg);
    total.backward();
    (parts[task], leaf.grad())
}

fn labels(fx: &Fixture, n: i64) -> LabelTensors {
    LabelTensors {
        va: Tensor::full([1, n, 2], -5.0, (Kind::Float, Device::Cpu)),
        expr: fx.get("expr.target").view([1, n]),
        au: fx.get("au.y").view([1, n, 12]),
    }
}

#[test]
fn cross_entropy_plus_dice_equals_the_reference_with_and_without_other() {
    tch::set_num_threads(1);
    let fx = Fixture::load();
    let x = fx.get("expr.logits");
    let n = x.size()[0];
    let lab = labels(&fx, n);
    // The crate's `auto` weights of the counts are the reference's.
    let auto = temporal::loss::class_weights_auto(&fx.counts("expr.counts"));
    for (a, b) in auto.iter().zip(fx.vec_f64("expr.weights")) {
        close("auto class weight", *a, b);
    }
    let lambda = fx.doc["lambda"].as_f64().unwrap();
    for (case, drop_other) in [("ce_dice", false), ("ce_dice_drop_other", true)] {
        let cfg = LossConfig {
            expr_loss: ExprLoss::CeDice,
            dice_weight: lambda,
            drop_other,
            expr_class_weights: Weights::Values(auto.clone()),
            ..LossConfig::default()
        };
        let (value, grad) = loss_and_grad("expr", x, &lab, &cfg);
        close(case, value, fx.loss(case));
        assert_close(
            &format!("d {case} / d logits"),
            &grad.squeeze_dim(0),
            fx.get(&format!("grad.{case}")),
        );
    }
}

#[test]
fn the_soft_dice_term_alone_equals_the_reference() {
    tch::set_num_threads(1);
    let fx = Fixture::load();
    let x = fx
        .get("expr.logits")
        .detach()
        .copy()
        .set_requires_grad(true);
    let n = x.size()[0];
    let onehot = fx.get("expr.target").one_hot(8).to_kind(Kind::Float);
    let rows = Tensor::ones([n], (Kind::Float, Device::Cpu));
    let d = soft_dice_loss(&x.softmax(-1, Kind::Float), &onehot, &rows);
    close("soft dice", d.double_value(&[]), fx.loss("dice_only"));
    d.backward();
    assert_close("d dice / d logits", &x.grad(), fx.get("grad.dice_only"));
}

#[test]
fn the_focal_loss_equals_the_reference_for_fixed_and_frequency_alphas() {
    tch::set_num_threads(1);
    let fx = Fixture::load();
    let x = fx.get("au.logits");
    let n = x.size()[0];
    let lab = labels(&fx, n);
    let freq = focal_alpha_auto(&fx.counts("au.pos"), &fx.counts("au.neg"));
    for (a, b) in freq.iter().zip(fx.vec_f64("au.alpha_frequency")) {
        close("frequency alpha", *a, b);
    }
    let gammas = &fx.doc["gammas"];
    let alphas = &fx.doc["alphas"];
    for (case, alpha) in [
        (
            "focal_fixed",
            FocalAlpha::Fixed(alphas["focal_fixed"].as_f64().unwrap()),
        ),
        ("focal_frequency", FocalAlpha::PerAu(freq.clone())),
        (
            "focal_gamma_half",
            FocalAlpha::Fixed(alphas["focal_gamma_half"].as_f64().unwrap()),
        ),
    ] {
        let cfg = LossConfig {
            au_loss: AuLoss::Focal,
            focal_alpha: alpha,
            focal_gamma: gammas[case].as_f64().unwrap(),
            ..LossConfig::default()
        };
        let (value, grad) = loss_and_grad("au", x, &lab, &cfg);
        close(case, value, fx.loss(case));
        assert_close(
            &format!("d {case} / d logits"),
            &grad.squeeze_dim(0),
            fx.get(&format!("grad.{case}")),
        );
    }
}
