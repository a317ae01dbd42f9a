//! PyTorch checkpoints read without Python: `tests/fixtures/pth/` holds the DenseNet parity
//! weights saved by `torch.save` the ways researchers' checkpoints come
//! (`scripts/fixtures/pth_fixture.py`). Every wrapper reads as the same tensors as the
//! safetensors file, a backbone loaded from the `.pth` computes bit for bit what it computes from
//! the safetensors, float16 / bfloat16 / strided tensors come back as saved, and hostile or
//! broken files are refused with an error naming the file, without running anything.

use extractor::backbones::{self, pth, BackboneConfig, WeightsError, WeightsFile};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn pth_file(name: &str) -> PathBuf {
    fixtures().join("pth").join(name)
}

/// The DenseNet parity weights from their safetensors file, sorted by name.
fn reference() -> Vec<(String, Tensor)> {
    let mut t = Tensor::read_safetensors(fixtures().join("densenet_small.safetensors")).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn sorted(mut t: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn every_wrapper_reads_as_the_same_state_dict() {
    let want = reference();
    for file in ["plain.pth", "model_key.pth", "dataparallel.pth"] {
        let got = sorted(pth::read(&pth_file(file)).unwrap());
        let names = |t: &[(String, Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want), "{file}: names");
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g.kind(), w.kind(), "{file}: {name} kind");
            assert!(g.equal(w), "{file}: {name} differs");
        }
    }
}

#[test]
fn half_and_bfloat16_tensors_keep_their_dtype_and_values() {
    let want = reference();
    for (file, kind) in [("half.pth", Kind::Half), ("bfloat16.pth", Kind::BFloat16)] {
        let got = pth::read(&pth_file(file)).unwrap();
        assert_eq!(got.len(), 12, "{file}");
        for (name, g) in &got {
            let w = &want.iter().find(|(n, _)| n == name).unwrap().1;
            if w.is_floating_point() {
                assert_eq!(g.kind(), kind, "{file}: {name}");
                assert!(g.equal(&w.to_kind(kind)), "{file}: {name} differs");
            } else {
                assert!(g.equal(w), "{file}: {name} differs");
            }
        }
    }
}

#[test]
fn strided_views_are_rebuilt_from_their_storage() {
    let got = pth::read(&pth_file("strided.pth")).unwrap();
    let base = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([4, 6]);
    let w = &got.iter().find(|(n, _)| n == "w").unwrap().1;
    let x = &got.iter().find(|(n, _)| n == "x").unwrap().1;
    assert!(w.equal(&base.tr()), "the transposed view");
    assert!(
        x.equal(&base.view([-1]).narrow(0, 5, 12).view([3, 4])),
        "the view with a storage offset"
    );
}

#[test]
fn a_backbone_from_the_pth_computes_exactly_what_it_computes_from_safetensors() {
    let config = |weights: PathBuf| BackboneConfig {
        name: "densenet121".into(),
        growth: Some(8),
        block_config: Some(vec![2, 2, 2, 2]),
        init_features: Some(16),
        input_size: Some(64),
        weights: Some(weights),
        ..BackboneConfig::default()
    };
    tch::manual_seed(1);
    let images = Tensor::rand([3, 3, 64, 64], (Kind::Float, Device::Cpu));
    let from_safetensors = backbones::build(
        &config(fixtures().join("densenet_small.safetensors")),
        Device::Cpu,
    )
    .unwrap();
    let want = tch::no_grad(|| from_safetensors.forward(&images));
    for file in ["plain.pth", "model_key.pth", "dataparallel.pth"] {
        let bb = backbones::build(&config(pth_file(file)), Device::Cpu).unwrap();
        let got = tch::no_grad(|| bb.forward(&images));
        assert!(got.equal(&want), "{file}: features differ");
        assert!(
            bb.weights_id().starts_with("sha256:"),
            "{file}: the cache records the file's hash"
        );
    }
}

#[test]
fn hostile_pickles_are_refused_without_running_anything() {
    let marker = Path::new("/tmp/affect-toolkit-pth-fixture-was-executed");
    let _ = std::fs::remove_file(marker);
    for (file, global) in [
        ("hostile_reduce.pth", "posix.system"),
        ("hostile_class.pth", "__main__.Settings"),
    ] {
        let path = pth_file(file);
        match pth::read(&path).unwrap_err() {
            pth::PthError::Unsafe(globals) => assert_eq!(globals, vec![global.to_string()]),
            other => panic!("{file}: {other}"),
        }
        let err = WeightsFile::open(&path).unwrap_err();
        assert!(matches!(err, WeightsError::Unsafe { .. }), "{file}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains(global), "{msg}");
        assert!(msg.contains("Nothing was executed"), "{msg}");
    }
    assert!(!marker.exists(), "the hostile payload ran");
}

#[test]
fn a_truncated_checkpoint_names_the_file_and_the_cause() {
    let err = WeightsFile::open(&pth_file("truncated.pth")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Pth { .. }), "{msg}");
    assert!(
        msg.contains("truncated.pth") && msg.contains("truncated"),
        "{msg}"
    );
}

#[test]
fn a_checkpoint_with_wrong_shapes_lists_them() {
    // the DenseNet checkpoint loaded into a DenseNet of another growth rate
    let cfg = BackboneConfig {
        name: "densenet121".into(),
        growth: Some(4),
        block_config: Some(vec![2, 2, 2, 2]),
        init_features: Some(16),
        input_size: Some(64),
        weights: Some(pth_file("plain.pth")),
        ..BackboneConfig::default()
    };
    let msg = format!("{:#}", backbones::build(&cfg, Device::Cpu).err().unwrap());
    assert!(
        msg.contains("plain.pth") && msg.contains("mis-shaped"),
        "{msg}"
    );
}
