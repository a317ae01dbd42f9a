//! Parity of the ABAW5 systems of issue 16 with their PyTorch references in
//! `scripts/fixtures/abaw5_refs.py`: the polarity-gated VA head (`PolarityVA`) with its losses,
//! and the multi-rate AU encoder (`MultiRateAU`).
//!
//! Each `tests/fixtures/<case>.safetensors` (written by `scripts/fixtures/abaw5_fixture.py`, see
//! its docstring) holds the reference's whole state dict as `state.<name>`, the inputs and the
//! reference's evaluation-mode outputs; the metadata holds the state-dict names and shapes and the
//! loss values. Here the model is built from the same sizes, must have exactly those names and
//! shapes, the state dict is loaded strictly, and the outputs must agree within 1e-5.

mod common;
use common::Fixture;
use tch::{nn, Device, Kind, Tensor};
use temporal::loss::{mtl_loss, LabelTensors, LossConfig, VaLoss};
use temporal::model::config::{HeadKinds, VaHead};
use temporal::model::multirate::{Multirate, MultirateConfig};
use temporal::model::{checkpoint, Arch, Config, HeadTask, TemporalMtl};

const FORMAT: &str = "abaw5-parity-v1";
const TOL: f64 = 1e-5;

impl Fixture {
    fn load(case: &str) -> Fixture {
        Fixture::read(case, FORMAT, "abaw5_fixture.py")
    }

    fn int(&self, key: &str) -> i64 {
        self.doc["args"][key]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: args.{key}", self.case))
    }

    fn float(&self, key: &str) -> f64 {
        self.doc["args"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: args.{key}", self.case))
    }

    /// Loads the reference state dict strictly into `vs`, after checking the names and shapes.
    fn load_into(&self, vs: &mut nn::VarStore) {
        assert_eq!(
            checkpoint::named_shapes(vs),
            self.names_and_shapes(),
            "{}: the Rust model has the reference's names and shapes",
            self.case
        );
        let dir = tempfile::tempdir().unwrap();
        checkpoint::load_strict(vs, &self.state_dict_file(dir.path())).expect("strict load");
    }

    fn loss(&self, name: &str) -> f64 {
        self.doc["losses"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: no loss {name}", self.case))
    }
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.size(), reference.size(), "{what}: shapes differ");
    let d = (ours.to_kind(Kind::Double) - reference.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[]);
    assert!(d <= TOL, "{what}: max |rust - torch| = {d:e} > {TOL:e}");
}

/// The model of `configs/systems/polarity-va.toml` at the fixture's sizes.
fn polarity_model(fx: &Fixture) -> (nn::VarStore, TemporalMtl) {
    let cfg = Config {
        arch: Arch::None,
        feat_dim: fx.int("d"),
        hidden: fx.int("hidden"),
        dropout: fx.float("dropout"),
        tasks: vec![HeadTask::Valence, HeadTask::Arousal],
        heads: HeadKinds {
            va: VaHead::Polarity,
            ..HeadKinds::default()
        },
        ..Config::default()
    };
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TemporalMtl::new(&vs.root(), &cfg);
    fx.load_into(&mut vs);
    (vs, model)
}

#[test]
fn the_polarity_va_model_equals_the_reference_and_gates_to_exactly_plus_or_minus_one() {
    tch::set_num_threads(1);
    let fx = Fixture::load("polarity_va");
    let (_vs, model) = polarity_model(&fx);
    // Twelve frames as one segment of twelve.
    let x = fx.get("x").unsqueeze(0);
    let (out, _) = tch::no_grad(|| model.forward_t(&x, None, None, false));
    for name in [
        "valence_polarity",
        "arousal_polarity",
        "valence_regressor",
        "arousal_regressor",
        "valence",
        "arousal",
    ] {
        assert_close(
            name,
            &out.by_task[name].squeeze_dim(0),
            fx.get(&format!("out.{name}")),
        );
    }
    // The fixture has every class as some frame's arg-max: the gated values hold exact -1 and
    // +1, and the regressors' values elsewhere.
    for task in ["valence", "arousal"] {
        let gated = Vec::<f32>::try_from(out.by_task[task].view([-1])).unwrap();
        let class = Vec::<i64>::try_from(
            fx.get(&format!("out.{task}_polarity"))
                .argmax(-1, false)
                .view([-1]),
        )
        .unwrap();
        let reg =
            Vec::<f32>::try_from(out.by_task[&format!("{task}_regressor")].view([-1])).unwrap();
        for ((g, c), r) in gated.iter().zip(&class).zip(&reg) {
            let want = match c {
                0 => -1.0,
                2 => 1.0,
                _ => *r,
            };
            assert_eq!(*g, want, "{task}: class {c}");
        }
        assert!(class.contains(&0) && class.contains(&1) && class.contains(&2));
    }
}

#[test]
fn the_polarity_losses_equal_the_reference_cross_entropy_and_ccc_on_non_extreme_frames() {
    tch::set_num_threads(1);
    let fx = Fixture::load("polarity_va");
    let (_vs, model) = polarity_model(&fx);
    let x = fx.get("x").unsqueeze(0);
    let (out, _) = tch::no_grad(|| model.forward_t(&x, None, None, false));
    let n = x.size()[1];
    let labels = LabelTensors {
        va: fx.get("y").unsqueeze(0),
        expr: Tensor::full([1, n], -1, (Kind::Int64, Device::Cpu)),
        au: Tensor::full([1, n, 12], -1.0, (Kind::Float, Device::Cpu)),
    };
    let cfg = LossConfig {
        va_loss: VaLoss::Ccc,
        va_extreme: fx.doc["extreme"].as_f64(),
        ..LossConfig::default()
    };
    let valid = Tensor::ones([1, n], (Kind::Bool, Device::Cpu));
    let (_, parts) = mtl_loss(&out, &labels, &valid, &cfg);
    for name in ["valence_polarity", "arousal_polarity", "valence", "arousal"] {
        let (ours, reference) = (parts[name], fx.loss(name));
        assert!(
            (ours - reference).abs() <= TOL * (1.0 + reference.abs()),
            "{name}: rust {ours} vs torch {reference}"
        );
    }
}

fn multirate_config(fx: &Fixture) -> Config {
    Config {
        arch: Arch::Multirate,
        feat_dim: fx.int("feat_dim"),
        d_model: fx.int("d_model"),
        n_heads: fx.int("n_heads"),
        ff: fx.int("ff"),
        n_layers: fx.int("n_layers"),
        dropout: fx.float("dropout"),
        tasks: vec![HeadTask::Au],
        ..Config::default()
    }
}

#[test]
fn the_multirate_model_equals_the_reference_with_and_without_padding() {
    tch::set_num_threads(1);
    let fx = Fixture::load("multirate_au");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TemporalMtl::new(&vs.root(), &multirate_config(&fx));
    fx.load_into(&mut vs);
    let x = fx.get("x");
    let (out, states) = tch::no_grad(|| model.forward_t(x, None, None, false));
    assert!(states.is_empty(), "no carried state");
    assert_eq!(out.by_task.keys().collect::<Vec<_>>(), ["au"]);
    assert_close("AU logits", &out.by_task["au"], fx.get("out.logits"));
    let pad = fx.get("pad").to_kind(Kind::Bool);
    let (out, _) = tch::no_grad(|| model.forward_t(x, Some(&pad), None, false));
    assert_close(
        "AU logits with key padding",
        &out.by_task["au"],
        fx.get("out.padded"),
    );
}

#[test]
fn each_multirate_pipeline_equals_the_reference_pipeline() {
    tch::set_num_threads(1);
    let fx = Fixture::load("multirate_au");
    let c = multirate_config(&fx);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let encoder = Multirate::new(
        &vs.root(),
        MultirateConfig {
            feat_dim: c.feat_dim,
            d_model: c.d_model,
            n_heads: c.n_heads,
            ff: c.ff,
            n_layers: c.n_layers,
            dropout: c.dropout,
        },
    );
    fx.load_into(&mut vs);
    let pipes = tch::no_grad(|| encoder.pipelines(fx.get("x"), None, false));
    for (name, ours) in ["a", "b", "c"].iter().zip(&pipes) {
        assert_close(
            &format!("pipeline {name}"),
            ours,
            fx.get(&format!("out.pipe_{name}")),
        );
    }
    let w = Vec::<f32>::try_from(encoder.pipeline_weights()).unwrap();
    let reference: Vec<f64> = fx.doc["pipeline_weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (a, b) in w.iter().zip(&reference) {
        assert!(
            (*a as f64 - b).abs() < TOL,
            "pipeline weights {w:?} vs {reference:?}"
        );
    }
}
