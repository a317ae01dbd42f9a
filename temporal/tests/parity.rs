//! Parity of the Rust temporal model and loss with the PyTorch reference `TemporalMTL`.
//!
//! For each arch x topology, `tests/fixtures/<arch>_<topology>.safetensors` (written by
//! `scripts/fixtures/temporal_fixture.py`, see its docstring and the `model` module docs) holds the
//! reference's state-dict names, shapes and weight digests, two segments of inputs, the reference
//! outputs and losses. Here the same weights are generated, checked against the digests, written
//! as a safetensors state dict, loaded strictly, and the two segments replayed.

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};
use temporal::loss::{mtl_loss, LabelTensors, LossConfig};
use temporal::model::{checkpoint, Config, TemporalMtl};

const ARCHS: [&str; 3] = ["gru", "lstm", "transformer"];
const TOPOLOGIES: [&str; 3] = ["basic", "share-bottom", "feedback"];
const FORMAT: &str = "temporal-parity-v1";
const TOL: f64 = 1e-5;

fn fixture_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{case}.safetensors"))
}

fn cases() -> Vec<String> {
    ARCHS
        .iter()
        .flat_map(|a| TOPOLOGIES.iter().map(move |t| format!("{a}_{t}")))
        .collect()
}

/// One fixture file: its bytes and header metadata.
struct Fixture {
    case: String,
    bytes: Vec<u8>,
    doc: serde_json::Value,
}

impl Fixture {
    fn load(case: &str) -> Fixture {
        let path = fixture_path(case);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with scripts/fixtures/temporal_fixture.py",
                path.display()
            )
        });
        let (_, header) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let meta = header.metadata().as_ref().expect("fixture metadata");
        let doc: serde_json::Value =
            serde_json::from_str(&meta["fixture"]).expect("fixture metadata is JSON");
        assert_eq!(doc["format"], FORMAT, "{case}: fixture format");
        Fixture {
            case: case.to_string(),
            bytes,
            doc,
        }
    }

    fn json(&self, key: &str) -> serde_json::Value {
        let v = self.doc[key].clone();
        assert!(!v.is_null(), "{}: no {key} in the fixture", self.case);
        v
    }

    fn config(&self) -> Config {
        serde_json::from_value(self.json("config")).expect("fixture config is a model Config")
    }

    /// `[(name, shape, digest)]` in the reference's state_dict order.
    fn state_dict(&self) -> Vec<(String, Vec<i64>, String)> {
        serde_json::from_value(self.json("state_dict")).expect("state_dict entries")
    }

    fn tensor(&self, name: &str) -> Tensor {
        let st = SafeTensors::deserialize(&self.bytes).expect("fixture tensors");
        let view = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.case));
        let kind = match view.dtype() {
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::I64 => Kind::Int64,
            safetensors::Dtype::U8 => Kind::Uint8,
            d => panic!("{}: {name}: unexpected dtype {d:?}", self.case),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Tensor::from_data_size(view.data(), &shape, kind)
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fixture's weight generator (documented in scripts/fixtures/temporal_fixture.py).
fn generated(name: &str, shape: &[i64]) -> Vec<f32> {
    let n: i64 = shape.iter().product();
    let seed = fnv1a64(name.as_bytes());
    let v = (0..n as u64).map(|i| {
        let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 48) as i64 - 32768) as f32 / 32768.0
    });
    let is_norm_weight = name
        .strip_suffix(".weight")
        .and_then(|s| s.rsplit('.').next())
        .is_some_and(|m| m.starts_with("norm"));
    if shape.len() == 2 {
        let mut e = 0;
        while 4i64.pow(e + 1) < shape[1] {
            e += 1;
        }
        let s = 0.5f32.powi(e as i32);
        v.map(|x| x * s).collect()
    } else if is_norm_weight {
        v.map(|x| 1.0 + x / 4.0).collect()
    } else {
        v.map(|x| x / 8.0).collect()
    }
}

fn digest(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    format!("{:016x}", fnv1a64(&bytes))
}

/// Builds the case's model and loads the generated reference weights through a safetensors
/// state dict, strictly.
fn loaded_model(fx: &Fixture, dir: &Path) -> (nn::VarStore, TemporalMtl) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = TemporalMtl::new(&vs.root(), &fx.config());
    let mut named = Vec::new();
    for (name, shape, want) in fx.state_dict() {
        let values = generated(&name, &shape);
        assert_eq!(
            digest(&values),
            want,
            "{}: generated weights differ for {name}",
            fx.case
        );
        named.push((name, Tensor::from_slice(&values).view(shape.as_slice())));
    }
    let path = dir.join(format!("{}.safetensors", fx.case));
    Tensor::write_safetensors(&named, &path).unwrap();
    checkpoint::load_strict(&mut vs, &path).unwrap_or_else(|e| panic!("{}: {e}", fx.case));
    (vs, model)
}

fn assert_close(case: &str, what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{case}: {what}: shape");
    let got = got.to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    let excess = ((&got - &want).abs() - (want.abs() * TOL + TOL))
        .max()
        .double_value(&[]);
    let worst = (&got - &want).abs().max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "{case}: {what}: differs from PyTorch by up to {worst}"
    );
}

fn assert_close_f64(case: &str, what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL + TOL * want.abs(),
        "{case}: {what}: {got} vs PyTorch {want}"
    );
}

#[test]
fn generator_matches_published_test_vectors() {
    // FNV-1a 64 of "a" (Fowler/Noll/Vo test suite) and the first splitmix64 output for seed 0
    // (Vigna's reference implementation): the generator is the documented one, not our own.
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    let mut z = 0x9e37_79b9_7f4a_7c15u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    assert_eq!(z, 0xe220_a839_7b1d_cdaf);
}

#[test]
fn var_store_names_and_shapes_are_the_pytorch_state_dict() {
    tch::set_num_threads(1);
    for case in cases() {
        let fx = Fixture::load(&case);
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = TemporalMtl::new(&vs.root(), &fx.config());
        let want: BTreeMap<String, Vec<i64>> = fx
            .state_dict()
            .into_iter()
            .map(|(name, shape, _)| (name, shape))
            .collect();
        let got = checkpoint::named_shapes(&vs);
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{case}: missing {missing:?}, extra {extra:?}"
        );
        assert_eq!(got, want, "{case}: shapes");
    }
}

#[test]
fn outputs_and_losses_match_pytorch_over_two_carried_segments() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let fx = Fixture::load(&case);
        let (_vs, model) = loaded_model(&fx, dir.path());
        let losses = fx.json("losses");
        let options = fx.json("loss_options");
        let opt_cfg: LossConfig =
            serde_json::from_value(options["config"].clone()).expect("a LossConfig in the fixture");
        let keep = fx.tensor("keep").to_kind(Kind::Bool);
        let mut states = None;
        for k in 0..2 {
            let seg = format!("seg{k}");
            let x = fx.tensor(&format!("{seg}.x"));
            let pad = fx.tensor(&format!("{seg}.pad")).to_kind(Kind::Bool);
            let carried = match (k, &states) {
                (1, Some(s)) => Some(temporal::model::States::carry(s, &keep)),
                _ => None,
            };
            let (out, new_states) =
                tch::no_grad(|| model.forward_t(&x, Some(&pad), carried.as_ref(), false));
            for (task, y) in &out.by_task {
                let want = fx.tensor(&format!("{seg}.out.{task}"));
                assert_close(&case, &format!("{seg} {task}"), y, &want);
            }
            let labels = LabelTensors {
                va: fx.tensor(&format!("{seg}.va")),
                expr: fx.tensor(&format!("{seg}.expr")),
                au: fx.tensor(&format!("{seg}.au")),
            };
            let valid = pad.logical_not();
            for (cfg, want, name) in [
                (LossConfig::default(), &losses[&seg], "reference loss"),
                (opt_cfg.clone(), &options[&seg], "loss with options"),
            ] {
                let (total, parts) = mtl_loss(&out, &labels, &valid, &cfg);
                assert_close_f64(
                    &case,
                    &format!("{seg} {name} total"),
                    total.double_value(&[]),
                    want["total"].as_f64().unwrap(),
                );
                for (task, v) in &parts {
                    assert_close_f64(
                        &case,
                        &format!("{seg} {name} {task}"),
                        *v,
                        want[task].as_f64().unwrap(),
                    );
                }
                assert_eq!(parts.len(), 4, "{case}: {name}: tasks");
            }
            states = Some(new_states);
        }
    }
}

#[test]
fn a_checkpoint_for_other_hyper_parameters_is_refused() {
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    let fx = Fixture::load("gru_feedback");
    let (vs, _) = loaded_model(&fx, dir.path());
    let path = dir.path().join("saved.safetensors");
    checkpoint::save(&vs, &path, None).unwrap();
    // Same arch, basic topology: the tops and the feedback input are unexpected.
    let mut other = nn::VarStore::new(Device::Cpu);
    let cfg = Config {
        topology: temporal::model::Topology::Basic,
        ..fx.config()
    };
    let _m = TemporalMtl::new(&other.root(), &cfg);
    let err = checkpoint::load_strict(&mut other, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unexpected: tops."), "{err}");
    // The saved file round-trips into the right model bit for bit.
    let mut same = nn::VarStore::new(Device::Cpu);
    let _m = TemporalMtl::new(&same.root(), &fx.config());
    checkpoint::load_strict(&mut same, &path).unwrap();
    for (name, t) in vs.variables() {
        assert!(t.equal(&same.variables()[&name]), "{name}");
    }
}
