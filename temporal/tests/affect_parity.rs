//! Parity of the AU-graph heads and their losses with the PyTorch references of
//! `scripts/fixtures/affect_refs.py` (ME-GraphAU's `Head`, MTL-ABAW4's `AMTL`, the WAL, CCC and
//! class-balanced cross-entropy losses).
//!
//! Each `tests/fixtures/<case>.safetensors` (written by `scripts/fixtures/affect_fixture.py`, see
//! its docstring) holds the reference's whole state dict as `state.<name>`, the inputs and the
//! reference outputs; the metadata holds the state-dict names and shapes and the loss values.
//! Here the state dict is loaded strictly into the Rust module and the outputs compared.

mod common;
use common::Fixture;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};
use temporal::loss::{mtl_loss, wal_weights, AuLoss, LabelTensors, LossConfig, VaLoss, Weights};
use temporal::model::anfl::{Anfl, AnflConfig};
use temporal::model::config::{AuHead, ExprHead, HeadKinds, VaHead};
use temporal::model::{checkpoint, Arch, Config, HeadTask, Outputs, TemporalMtl};

const FORMAT: &str = "affect-parity-v1";
const TOL: f64 = 1e-5;

impl Fixture {
    fn load(case: &str) -> Fixture {
        Fixture::read(case, FORMAT, "affect_fixture.py")
    }

    fn loss(&self, name: &str) -> f64 {
        self.doc["losses"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no loss {name}", self.case))
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    let d = max_abs_diff(ours, reference);
    assert!(d <= TOL, "{what}: max |rust - torch| = {d:e} > {TOL:e}");
}

/// An ANFL head under the var store's root with the fixture's weights loaded strictly.
fn anfl_from(fx: &Fixture, dir: &Path) -> (nn::VarStore, Anfl) {
    let args = &fx.doc["args"];
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = Anfl::new(
        vs.root(),
        AnflConfig {
            channels: args["in_channels"].as_i64().unwrap(),
            nodes: args["num_classes"].as_i64().unwrap(),
            neighbors: args["neighbor_num"].as_i64().unwrap(),
            dropout: args["drop"].as_f64().unwrap(),
        },
    );
    assert_eq!(
        checkpoint::named_shapes(&vs),
        fx.names_and_shapes(),
        "{}: the Rust head has ME-GraphAU Head's names and shapes",
        fx.case
    );
    checkpoint::load_strict(&mut vs, &fx.state_dict_file(dir)).expect("strict load");
    (vs, head)
}

/// Evaluation output, then one training forward: its output and the running statistics after it.
fn check_anfl_case(case: &str) {
    let fx = Fixture::load(case);
    let dir = tempfile::tempdir().unwrap();
    let (vs, head) = anfl_from(&fx, dir.path());
    let x = fx.get("x");
    let out = tch::no_grad(|| head.forward_t(x, None, false));
    assert_close(
        &format!("{case}: evaluation output"),
        &out,
        fx.get("eval.out"),
    );

    let out = head.forward_t(x, None, true);
    assert_close(
        &format!("{case}: training output"),
        &out,
        fx.get("train.out"),
    );
    let vars = vs.variables();
    let mut checked = 0;
    for (name, reference) in &fx.tensors {
        if let Some(var) = name.strip_prefix("train.state.") {
            let ours = &vars[var];
            if reference.kind() == Kind::Int64 {
                assert_eq!(
                    ours.int64_value(&[]),
                    reference.int64_value(&[]),
                    "{case}: {var}"
                );
            } else {
                assert_close(
                    &format!("{case}: {var} after one training batch"),
                    ours,
                    reference,
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 3 * 13,
        "{case}: running statistics of 13 BatchNorms checked"
    );
}

#[test]
fn the_anfl_head_equals_me_graphau_head_in_evaluation_and_in_a_training_batch() {
    check_anfl_case("anfl_head");
}

#[test]
fn the_anfl_graph_keeps_every_tied_neighbour_as_me_graphau_does() {
    let fx = Fixture::load("anfl_ties");
    assert_eq!(fx.doc["ties"], true, "the ties fixture has ties");
    check_anfl_case("anfl_ties");
}

/// The model `configs/systems/mtca.toml` describes, at the fixture's width.
fn mtca_config(feat_dim: i64) -> Config {
    Config {
        arch: Arch::None,
        feat_dim,
        tasks: HeadTask::ALL.to_vec(),
        heads: HeadKinds {
            va: VaHead::TanhBn,
            expr: ExprHead::AuAttention,
            au: AuHead::Anfl,
            ..HeadKinds::default()
        },
        anfl_neighbors: 4,
        anfl_dropout: 0.5,
        ..Config::default()
    }
}

#[test]
fn an_mtca_model_has_exactly_the_public_amtl_state_dict_and_its_outputs() {
    let fx = Fixture::load("amtl");
    let c = fx.doc["args"]["in_channels"].as_i64().unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TemporalMtl::new(&vs.root(), &mtca_config(c));
    assert_eq!(checkpoint::named_shapes(&vs), fx.names_and_shapes());
    let dir = tempfile::tempdir().unwrap();
    checkpoint::load_strict(&mut vs, &fx.state_dict_file(dir.path())).expect("strict load");

    // Ten frames as one segment of ten: the heads read them one by one.
    let x = fx.get("x").unsqueeze(0);
    let (out, _) = tch::no_grad(|| model.forward_t(&x, None, None, false));
    assert!(out.au_probabilities, "ANFL outputs are probabilities");
    let va = fx.get("out.va");
    let get = |name: &str| out.by_task[name].squeeze_dim(0);
    assert_close("valence", &get("valence").squeeze_dim(-1), &va.select(1, 0));
    assert_close("arousal", &get("arousal").squeeze_dim(-1), &va.select(1, 1));
    assert_close("expression logits", &get("expr"), fx.get("out.ex"));
    assert_close("AU probabilities", &get("au"), fx.get("out.au"));
}

#[test]
fn a_head_chosen_for_a_task_that_is_not_trained_is_a_config_error() {
    let mut cfg = mtca_config(16);
    cfg.tasks = vec![HeadTask::Valence, HeadTask::Arousal, HeadTask::Expr];
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("au-attention") && err.contains("`au`"),
        "{err}"
    );
    cfg.heads.expr = ExprHead::Linear;
    cfg.heads.au = AuHead::Anfl;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("anfl"), "{err}");
    cfg.heads.au = AuHead::Mlp;
    assert!(cfg.validate().is_ok());
    cfg.topology = temporal::model::Topology::ShareBottom;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("needs an encoder"), "{err}");
}

/// Labels of `n` frames where only the given task's labels are valid.
fn labels(n: i64, va: Option<&Tensor>, expr: Option<&Tensor>, au: Option<&Tensor>) -> LabelTensors {
    LabelTensors {
        va: va
            .map(|t| t.unsqueeze(0))
            .unwrap_or_else(|| Tensor::full([1, n, 2], -5.0, (Kind::Float, Device::Cpu))),
        expr: expr
            .map(|t| t.unsqueeze(0))
            .unwrap_or_else(|| Tensor::full([1, n], -1, (Kind::Int64, Device::Cpu))),
        au: au
            .map(|t| t.unsqueeze(0))
            .unwrap_or_else(|| Tensor::full([1, n, 12], -1.0, (Kind::Float, Device::Cpu))),
    }
}

fn outputs(pairs: Vec<(&str, Tensor)>, au_probabilities: bool) -> Outputs {
    Outputs {
        by_task: pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.unsqueeze(0)))
            .collect(),
        deferred: Default::default(),
        au_probabilities,
    }
}

fn close(what: &str, ours: f64, reference: f64) {
    assert!(
        (ours - reference).abs() <= TOL * (1.0 + reference.abs()),
        "{what}: rust {ours} vs torch {reference}"
    );
}

#[test]
fn wal_on_anfl_probabilities_equals_me_graphau_weighted_asymmetric_loss() {
    let fx = Fixture::load("losses");
    let rates: Vec<f64> = Vec::<f32>::try_from(fx.get("wal.rates"))
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let w = wal_weights(&rates);
    let reference: Vec<f64> = Vec::<f32>::try_from(fx.get("wal.weights"))
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    for (a, b) in w.iter().zip(&reference) {
        close("WAL weight", *a, *b);
    }
    let p = fx.get("au.p").set_requires_grad(true);
    let n = p.size()[0];
    let out = outputs(vec![("au", p.shallow_clone())], true);
    let cfg = LossConfig {
        au_loss: AuLoss::Wal,
        au_weights: Weights::Values(w),
        ..LossConfig::default()
    };
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let (total, parts) = mtl_loss(
        &out,
        &labels(n, None, None, Some(fx.get("au.y"))),
        &valid,
        &cfg,
    );
    close("WAL", parts["au"], fx.loss("wal"));
    total.backward();
    assert_close(
        "dWAL/dp (clamped logs give 0)",
        &p.grad(),
        fx.get("wal.grad"),
    );
}

#[test]
fn ccc_va_loss_and_class_balanced_cross_entropy_equal_the_references() {
    let fx = Fixture::load("losses");
    let va = fx.get("va.pred");
    let n = va.size()[0];
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let out = outputs(
        vec![
            ("valence", va.narrow(1, 0, 1)),
            ("arousal", va.narrow(1, 1, 1)),
            ("expr", fx.get("ce.logits").shallow_clone()),
        ],
        false,
    );
    // Class-balanced weights from the counts; the weighted mean makes their scale irrelevant.
    let counts: Vec<u64> = Vec::<i64>::try_from(fx.get("ce.counts"))
        .unwrap()
        .into_iter()
        .map(|c| c as u64)
        .collect();
    let cfg = LossConfig {
        va_loss: VaLoss::Ccc,
        expr_class_weights: Weights::Values(temporal::loss::class_weights_auto(&counts)),
        ..LossConfig::default()
    };
    let lab = labels(
        n,
        Some(fx.get("va.target")),
        Some(fx.get("ce.target")),
        None,
    );
    let (_, parts) = mtl_loss(&out, &lab, &valid, &cfg);
    close(
        "1 - CCC valence",
        parts["valence"],
        1.0 - fx.loss("ccc_valence"),
    );
    close(
        "1 - CCC arousal",
        parts["arousal"],
        1.0 - fx.loss("ccc_arousal"),
    );
    close(
        "(1 - CCC_v) + (1 - CCC_a)",
        parts["valence"] + parts["arousal"],
        fx.loss("ccc_va_loss"),
    );
    close(
        "class-balanced cross-entropy (weighted mean)",
        parts["expr"],
        fx.loss("balanced_ce_weighted_mean"),
    );
}

#[test]
fn the_circle_loss_and_bce_plus_circle_equal_the_lrp_arl_ff_references() {
    let fx = Fixture::load("losses");
    let s = fx.get("circle.logits");
    let y = fx.get("circle.y");
    let per_frame = temporal::loss::circle_loss(s, y);
    close(
        "circle loss",
        per_frame.mean(Kind::Double).double_value(&[]),
        fx.loss("circle"),
    );
    let n = s.size()[0];
    let out = outputs(vec![("au", s.shallow_clone())], false);
    let cfg = LossConfig {
        au_loss: AuLoss::BceCircle,
        ..LossConfig::default()
    };
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let (_, parts) = mtl_loss(&out, &labels(n, None, None, Some(y)), &valid, &cfg);
    close("BCE + circle", parts["au"], fx.loss("bce_plus_circle"));
}

/// The LRP-ARL-FF model of a fixture, its weights loaded strictly.
fn check_lrp_arl_ff(case: &str) {
    use temporal::model::lrp_arl_ff::{Fusion, LrpArlFf, LrpArlFfConfig};
    let fx = Fixture::load(case);
    let a = &fx.doc["args"];
    let int = |k: &str| a[k].as_i64().unwrap_or_else(|| panic!("{case}: args.{k}"));
    let fusion = match a["fusion"].as_str().unwrap() {
        "fixed" => Fusion::Fixed(a["fusion_weight"].as_f64().unwrap()),
        _ => Fusion::Attention {
            heads: int("heads"),
            ff_dim: int("ff_dim"),
            layers: int("layers"),
            dropout: a["dropout"].as_f64().unwrap(),
        },
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = LrpArlFf::new(
        &vs.root(),
        LrpArlFfConfig {
            channels: int("in_channels"),
            num_lanets: int("num_lanets"),
            reduction: int("reduction"),
            neighbors: int("neighbor_num"),
            fusion,
        },
    );
    assert_eq!(
        checkpoint::named_shapes(&vs),
        fx.names_and_shapes(),
        "{case}"
    );
    let dir = tempfile::tempdir().unwrap();
    checkpoint::load_strict(&mut vs, &fx.state_dict_file(dir.path())).expect("strict load");
    let logits = tch::no_grad(|| model.forward_t(fx.get("x"), None, false));
    assert_close(&format!("{case}: logits"), &logits, fx.get("out.logits"));
}

#[test]
fn lrp_arl_ff_with_a_fixed_fusion_weight_equals_the_reference() {
    check_lrp_arl_ff("lrp_arl_ff_fixed");
}

#[test]
fn lrp_arl_ff_with_attention_fusion_equals_the_reference() {
    check_lrp_arl_ff("lrp_arl_ff_attention");
}
