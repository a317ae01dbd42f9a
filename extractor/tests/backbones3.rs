//! RegNetX/Y and EfficientNet against timm and torchvision, with either library's names.
//!
//! Parity: `tests/fixtures/backbones3/` holds small variants built by the libraries' own
//! constructors (`scripts/fixtures/backbone3_fixture.py`): one set of seeded random weights
//! (randomised BatchNorm statistics) per case, saved under timm's AND torchvision's names, with
//! each library's pooled features and last feature map for two images. Every case must load
//! strictly in either layout and reproduce both outputs within 1e-4 of their scale.
//! Names: `keys.json` holds the parameter names and shapes of the full-size models as timm and
//! torchvision create them; the built-in models must have exactly the native library's names and
//! shapes, and a file with either library's full key list must load strictly (written here as
//! zero-filled sparse safetensors) and give the pooled size that library's model has.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use extractor::backbones::{
    self, efficientnet, regnet, Backbone, BackboneConfig, Output, BUILTIN_NAMES,
};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

mod common;
use common::{assert_close, Fixtures};

fn fixtures() -> PathBuf {
    Fixtures::at("backbones3").0
}
fn case(name: &str) -> serde_json::Value {
    Fixtures::at("backbones3").case(name)
}
fn config(case: &serde_json::Value) -> BackboneConfig {
    Fixtures::at("backbones3").config(case)
}
fn images(case: &serde_json::Value) -> Tensor {
    Fixtures::at("backbones3").images(case)
}
fn expected(case: &serde_json::Value) -> HashMap<String, Tensor> {
    Fixtures::at("backbones3").expected(case)
}
fn read_json(file: &str) -> serde_json::Value {
    Fixtures::at("backbones3").json(file)
}

/// Builds the case with `output = pooled` and `output = map`, checks metadata and both outputs
/// against the reference library's.
fn parity(name: &str) {
    let case = case(name);
    let want = expected(&case);
    let x = images(&case);
    for (output, key) in [(Output::Pooled, "output"), (Output::Map, "output_map")] {
        let mut cfg = config(&case);
        cfg.output = Some(output);
        let bb = backbones::build(&cfg, Device::Cpu).unwrap();
        let what = format!("{name} {}", output.as_str());
        assert_eq!(
            x.size()[2],
            i64::from(bb.input_size()),
            "{what}: image size"
        );
        let want = &want[key];
        let shape: Vec<usize> = want.size()[1..].iter().map(|&d| d as usize).collect();
        assert_eq!(bb.output_shape(), shape, "{what}: output_shape");
        let bytes = std::fs::read(cfg.weights.as_ref().unwrap()).unwrap();
        let id = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        assert_eq!(bb.weights_id(), id, "{what}: weights_id");
        let got = bb.forward(&x);
        assert_eq!(got.kind(), Kind::Float);
        assert_close(&got, want, &what);
        // The two images differ, and so must their features (the comparison is not vacuous).
        assert!((got.get(0) - got.get(1)).abs().max().double_value(&[]) > 1e-3);
        if output == Output::Map {
            assert!(
                bb.preprocessing().contains("spatial map 2x2 tokens"),
                "{what}"
            );
        }
    }
}

#[test]
fn regnet_x_matches_timm_and_torchvision_with_either_names() {
    parity("regnet_x_small.timm");
    parity("regnet_x_small.torchvision");
}

#[test]
fn regnet_y_with_squeeze_excitation_matches_timm_and_torchvision_with_either_names() {
    parity("regnet_y_small.timm");
    parity("regnet_y_small.torchvision");
}

#[test]
fn efficientnet_with_repeated_separable_blocks_matches_timm_and_torchvision_with_either_names() {
    parity("efficientnet_small_d12.timm");
    parity("efficientnet_small_d12.torchvision");
}

#[test]
fn efficientnet_with_single_blocks_matches_timm_and_torchvision_with_either_names() {
    parity("efficientnet_small_d05.timm");
    parity("efficientnet_small_d05.torchvision");
}

#[test]
fn tf_efficientnet_matches_timm_s_tensorflow_port_with_same_padding() {
    parity("tf_efficientnet_small_d12.timm");
}

#[test]
fn tensorflow_ported_weights_compute_differently_under_the_pytorch_name() {
    // Same file, names and shapes: only the backbone name tells the padding and eps apart.
    let case = case("tf_efficientnet_small_d12.timm");
    let mut cfg = config(&case);
    cfg.name = "efficientnet_b2".into();
    let bb = backbones::build(&cfg, Device::Cpu).unwrap();
    let want = &expected(&case)["output"];
    let err = (bb.forward(&images(&case)) - want)
        .abs()
        .max()
        .double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    assert!(err > 1e-2 * scale, "error {err} at scale {scale}");
}

#[test]
fn a_timm_pytorch_state_dict_loads_through_the_name_map_like_its_safetensors() {
    let case = case("regnet_y_small.timm");
    let mut cfg = config(&case);
    cfg.weights = Some(fixtures().join("regnet_y_small.timm.pth"));
    let bb = backbones::build(&cfg, Device::Cpu).unwrap();
    assert_close(
        &bb.forward(&images(&case)),
        &expected(&case)["output"],
        "regnet_y_small.timm.pth",
    );
}

#[test]
fn the_layout_is_detected_from_the_names_and_the_sizes_come_from_the_file() {
    let tv =
        regnet::RegNet::new(&config(&case("regnet_y_small.torchvision")), Device::Cpu).unwrap();
    let timm = regnet::RegNet::new(&config(&case("regnet_y_small.timm")), Device::Cpu).unwrap();
    assert_eq!(tv.layout(), Some(regnet::Layout::Torchvision));
    assert_eq!(timm.layout(), Some(regnet::Layout::Timm));
    assert_eq!(tv.spec(), timm.spec());
    let widths: Vec<i64> = tv.spec().stages.iter().map(|s| s.width).collect();
    let depths: Vec<usize> = tv.spec().stages.iter().map(|s| s.depth).collect();
    assert_eq!(
        (tv.spec().stem, widths, depths),
        (16, vec![16, 24, 32, 56], vec![1, 1, 2, 1])
    );
    assert!(tv.spec().se);

    let cfg = config(&case("efficientnet_small_d12.torchvision"));
    let tv = efficientnet::EfficientNet::new(&cfg, Device::Cpu).unwrap();
    let cfg = config(&case("efficientnet_small_d12.timm"));
    let timm = efficientnet::EfficientNet::new(&cfg, Device::Cpu).unwrap();
    assert_eq!(tv.layout(), Some(efficientnet::Layout::Torchvision));
    assert_eq!(timm.layout(), Some(efficientnet::Layout::Timm));
    assert_eq!(tv.spec(), timm.spec());
    // B2's repeats (1.2 x B0's, rounded up): the first stage has a second block, with a skip.
    let repeats: Vec<usize> = tv.spec().stages.iter().map(Vec::len).collect();
    assert_eq!(repeats, [2, 3, 3, 4, 4, 5, 2]);
}

/// `name -> shape` of a key list in keys.json, without the classifier (`fc.`, `head.fc.`,
/// `classifier.`), which the backbones do not build.
fn key_list(v: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let name = kv[0].as_str().unwrap().to_string();
            let shape = kv[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            (name, shape)
        })
        .collect()
}

fn without_classifier(keys: &BTreeMap<String, Vec<i64>>) -> BTreeMap<String, Vec<i64>> {
    keys.iter()
        .filter(|(n, _)| {
            !["fc.", "head.fc.", "classifier."]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

fn vars(vs: &tch::nn::VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect()
}

/// A safetensors file with these names and shapes, float16, zero-filled and sparse (the data
/// region is a hole, so a full-size key list costs no disk).
fn sparse_safetensors(path: &Path, keys: &BTreeMap<String, Vec<i64>>) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in keys {
        let bytes = 2 * shape.iter().product::<i64>() as usize;
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.set_len((8 + text.len() + offset) as u64).unwrap();
}

#[test]
fn full_size_models_have_the_libraries_names_and_load_either_librarys_full_key_list() {
    let keys = read_json("keys.json");
    let dir = tempfile::tempdir().unwrap();
    // The TensorFlow ports have timm's names and shapes only.
    for (name, pytorch) in [
        ("tf_efficientnet_b0", "efficientnet_b0"),
        ("tf_efficientnet_b2", "efficientnet_b2"),
    ] {
        assert!(BUILTIN_NAMES.contains(&name), "{name}");
        let timm = key_list(&keys[name]["timm"]);
        let m = efficientnet::EfficientNet::new(&BackboneConfig::named(name), Device::Cpu).unwrap();
        assert_eq!(vars(m.var_store()), without_classifier(&timm), "{name}");
        assert_eq!(timm, key_list(&keys[pytorch]["timm"]), "{name}");
    }
    for name in [
        "regnet_x_400mf",
        "regnet_x_800mf",
        "regnet_y_400mf",
        "regnet_y_800mf",
        "efficientnet_b0",
        "efficientnet_b2",
    ] {
        assert!(BUILTIN_NAMES.contains(&name), "{name}");
        let timm = key_list(&keys[name]["timm"]);
        let tv = key_list(&keys[name]["torchvision"]);
        let cfg = BackboneConfig::named(name);
        // Published sizes, native names: torchvision's for RegNet, timm's for EfficientNet.
        let (built, native, pooled_native) = if name.starts_with("regnet") {
            let m = regnet::RegNet::new(&cfg, Device::Cpu).unwrap();
            (vars(m.var_store()), &tv, m.output_shape())
        } else {
            let m = efficientnet::EfficientNet::new(&cfg, Device::Cpu).unwrap();
            (vars(m.var_store()), &timm, m.output_shape())
        };
        assert_eq!(
            built,
            without_classifier(native),
            "{name}: names and shapes"
        );
        let classifier_in = |keys: &BTreeMap<String, Vec<i64>>| {
            [
                "fc.weight",
                "head.fc.weight",
                "classifier.weight",
                "classifier.1.weight",
            ]
            .iter()
            .find_map(|k| keys.get(*k))
            .unwrap()[1] as usize
        };
        assert_eq!(
            pooled_native,
            vec![classifier_in(native)],
            "{name}: pooled size"
        );
        // Either library's full state dict (classifier included) loads strictly, and the pooled
        // size is that library's classifier input (timm's RegNets are narrower than
        // torchvision's at the same name).
        for (layout, list) in [("timm", &timm), ("torchvision", &tv)] {
            let file = dir.path().join(format!("{name}.{layout}.safetensors"));
            sparse_safetensors(&file, list);
            let mut cfg = BackboneConfig::named(name);
            cfg.weights = Some(file.clone());
            let bb = backbones::build(&cfg, Device::Cpu)
                .unwrap_or_else(|e| panic!("{name} with {layout} names: {e:#}"));
            assert_eq!(
                bb.output_shape(),
                vec![classifier_in(list)],
                "{name} {layout}"
            );
            std::fs::remove_file(&file).unwrap();
        }
    }
}

#[test]
fn published_input_sizes_and_map_shapes_follow_the_five_halvings() {
    for (name, size, tokens, channels) in [
        ("regnet_x_400mf", 224, 49, 400),
        ("regnet_y_800mf", 224, 49, 784),
        ("efficientnet_b0", 224, 49, 1280),
        ("efficientnet_b2", 260, 81, 1408),
    ] {
        let mut cfg = BackboneConfig::named(name);
        cfg.output = Some(Output::Map);
        let bb = backbones::build(&cfg, Device::Cpu).unwrap();
        assert_eq!(bb.input_size(), size, "{name}");
        assert_eq!(bb.output_shape(), vec![tokens, channels], "{name}");
        let x = Tensor::rand([1, 3, size as i64, size as i64], (Kind::Float, Device::Cpu));
        assert_eq!(
            bb.forward(&x).size(),
            [1, tokens as i64, channels as i64],
            "{name}"
        );
    }
}

#[test]
fn a_timm_file_with_a_missing_and_an_unknown_tensor_is_one_error_naming_both_by_their_names() {
    let case = case("regnet_y_small.timm");
    let src = fixtures().join(case["config"]["weights"].as_str().unwrap());
    let mut tensors = Tensor::read_safetensors(&src).unwrap();
    tensors.retain(|(n, _)| n != "s3.b2.se.fc1.bias");
    tensors.push((
        "s3.b2.se.gate.weight".into(),
        Tensor::zeros([4], (Kind::Float, Device::Cpu)),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.safetensors");
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let mut cfg = config(&case);
    cfg.weights = Some(file.clone());
    let err = format!("{:#}", backbones::build(&cfg, Device::Cpu).err().unwrap());
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("timm names"), "{err}");
    assert!(
        err.contains("missing     trunk_output.block3.block3-1.f.se.fc1.bias"),
        "{err}"
    );
    assert!(err.contains("unexpected  s3.b2.se.gate.weight"), "{err}");
}

#[test]
fn a_regnet_y_file_without_squeeze_excitation_does_not_load_as_regnet_y() {
    // The X fixture's weights under a Y name: the sizes come from the file, SE from the name.
    let mut cfg = config(&case("regnet_x_small.timm"));
    cfg.name = "regnet_y_400mf".into();
    let err = format!("{:#}", backbones::build(&cfg, Device::Cpu).err().unwrap());
    assert!(
        err.contains("missing     trunk_output.block1.block1-0.f.se.fc1.weight"),
        "{err}"
    );
}

#[test]
fn regnet_and_efficientnet_refuse_size_overrides_they_do_not_have() {
    let mut cfg = BackboneConfig::named("efficientnet_b2");
    cfg.layers = Some(vec![1, 1, 1, 1]);
    let err = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("layers"), "{err}");
    let mut cfg = BackboneConfig::named("regnet_x_800mf");
    cfg.out_dim = Some(512);
    let err = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("out_dim = 512") && err.contains("672"),
        "{err}"
    );
}
