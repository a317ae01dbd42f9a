//! Name maps of the public checkpoint layouts (extractor/src/backbones/layouts.rs), checked on
//! the real key lists and small real checkpoints that `scripts/fixtures/layouts_fixture.py`
//! makes with timm, transformers, torchvision and arcface_torch's module
//! (extractor/tests/fixtures/layouts/): every real key list fits its layout completely;
//! transformers DINOv2 names (the hub's and transformers 5's) map onto exactly timm's DINOv2
//! names and shapes, old torchvision DenseNet keys onto the current ones; a mapped checkpoint
//! computes what the public module computes; a file that fits no layout is refused with the
//! closest one; a mapped tensor with a wrong shape names the tensor, both shapes and the layout.

use extractor::backbones::layouts::{self, pattern};
use extractor::backbones::weights::save_safetensors;
use extractor::backbones::{self, BackboneConfig, Pooling, WeightsError, WeightsFile};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layouts")
}

type Keys = BTreeMap<String, Vec<i64>>;

fn key_lists() -> BTreeMap<String, Keys> {
    let text = std::fs::read_to_string(dir().join("keys.json")).unwrap();
    let raw: BTreeMap<String, Vec<(String, Vec<i64>)>> = serde_json::from_str(&text).unwrap();
    raw.into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap()
}

/// The names and shapes the file's names map onto.
fn mapped(keys: &Keys) -> Keys {
    let names: Vec<String> = keys.keys().cloned().collect();
    let m = layouts::recognise(&names).expect("a mapped layout");
    m.names
        .iter()
        .map(|(ours, src)| {
            let shape = src.shape(|n| keys.get(n).cloned()).unwrap();
            (ours.clone(), shape)
        })
        .collect()
}

fn strip_module(keys: &Keys) -> Keys {
    keys.iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("module.").unwrap_or(k).to_string(),
                v.clone(),
            )
        })
        .collect()
}

#[test]
fn every_real_key_list_fits_its_known_layout_completely() {
    let lists = key_lists();
    let expect = [
        ("timm vit_base_patch16_224.mae", layouts::TIMM_VIT.name),
        (
            "timm vit_base_patch14_dinov2.lvd142m",
            layouts::TIMM_VIT.name,
        ),
        (
            "timm vit_small_patch14_reg4_dinov2.lvd142m",
            layouts::TIMM_VIT.name,
        ),
        ("timm densenet121", layouts::TV_DENSENET.name),
        ("torchvision densenet121", layouts::TV_DENSENET.name),
        (
            "torchvision densenet121 old keys",
            layouts::TV_DENSENET_OLD.name,
        ),
        ("timm resnet50", layouts::TV_RESNET.name),
        ("torchvision resnet50", layouts::TV_RESNET.name),
        ("arcface_torch iresnet50", layouts::ARCFACE_IRESNET.name),
        (
            "arcface_torch iresnet50 DataParallel",
            layouts::ARCFACE_IRESNET.name,
        ),
        (
            "transformers Dinov2Model dinov2-base state_dict",
            layouts::HF_DINOV2.name,
        ),
        (
            "transformers Dinov2Model small save_pretrained",
            layouts::HF_DINOV2.name,
        ),
        (
            "transformers Dinov2Model small swiglu save_pretrained",
            layouts::HF_DINOV2.name,
        ),
        (
            "transformers Dinov2WithRegistersModel small save_pretrained",
            layouts::HF_DINOV2.name,
        ),
    ];
    assert_eq!(lists.len(), expect.len(), "{:?}", lists.keys());
    for (list, layout) in expect {
        let keys = strip_module(&lists[list]);
        let (name, n, total) = layouts::closest(keys.keys().map(String::as_str));
        assert_eq!((name, n, total), (layout, keys.len(), keys.len()), "{list}");
        // Native layouts are loaded by name, the others are mapped.
        let names: Vec<String> = keys.keys().cloned().collect();
        let native = layouts::KNOWN
            .iter()
            .find(|l| l.name == layout)
            .unwrap()
            .native;
        assert_eq!(layouts::recognise(&names).is_none(), native, "{list}");
    }
}

#[test]
fn transformers_dinov2_base_maps_onto_exactly_timms_dinov2_names_and_shapes() {
    let lists = key_lists();
    let ours = mapped(&lists["transformers Dinov2Model dinov2-base state_dict"]);
    assert_eq!(ours, lists["timm vit_base_patch14_dinov2.lvd142m"]);
    // The hub's names (save_pretrained) and transformers 5's map onto the same set of patterns,
    // GELU and SwiGLU alike, and with registers onto timm's reg4 patterns.
    let patterns = |k: &Keys| k.keys().map(|n| pattern(n)).collect::<BTreeSet<_>>();
    let timm = patterns(&lists["timm vit_base_patch14_dinov2.lvd142m"]);
    for list in [
        "transformers Dinov2Model small save_pretrained",
        "transformers Dinov2Model small swiglu save_pretrained",
    ] {
        assert_eq!(patterns(&mapped(&lists[list])), timm, "{list}");
    }
    let reg = mapped(&lists["transformers Dinov2WithRegistersModel small save_pretrained"]);
    assert_eq!(
        patterns(&reg),
        patterns(&lists["timm vit_small_patch14_reg4_dinov2.lvd142m"])
    );
    // timm's reg4 pos_embed covers the patches only; the mapped one too (2x2 patches at 28 px).
    assert_eq!(reg["pos_embed"], vec![1, 4, 32]);
    assert_eq!(reg["reg_token"], vec![1, 4, 32]);
    let swiglu = mapped(&lists["transformers Dinov2Model small swiglu save_pretrained"]);
    assert_eq!(
        swiglu["blocks.0.mlp.fc1.weight"][0],
        2 * swiglu["blocks.0.mlp.fc2.weight"][1]
    );
}

#[test]
fn old_torchvision_densenet_keys_map_onto_the_current_names_and_timm_uses_torchvisions() {
    let lists = key_lists();
    assert_eq!(
        mapped(&lists["torchvision densenet121 old keys"]),
        lists["torchvision densenet121"]
    );
    assert_eq!(lists["timm densenet121"], lists["torchvision densenet121"]);
    assert_eq!(lists["timm resnet50"], lists["torchvision resnet50"]);
}

#[test]
fn our_native_models_have_the_public_names_and_shapes() {
    let lists = key_lists();
    let names = |cfg: BackboneConfig| -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let b = backbones::vit::Vit::new(&cfg, Device::Cpu).unwrap();
        save_safetensors(b.var_store(), &p).unwrap();
        WeightsFile::open(&p)
            .unwrap()
            .tensors()
            .iter()
            .map(|(k, m)| (k.clone(), m.shape.clone()))
            .collect()
    };
    let mut cfg = BackboneConfig::named("dinov2_vitb14");
    cfg.input_size = Some(518);
    assert_eq!(names(cfg), lists["timm vit_base_patch14_dinov2.lvd142m"]);
    let mut cfg = BackboneConfig::named("dinov2_vits14");
    cfg.input_size = Some(518);
    cfg.registers = Some(4);
    assert_eq!(
        names(cfg),
        lists["timm vit_small_patch14_reg4_dinov2.lvd142m"]
    );

    // The CNNs: torchvision's DenseNet-121 (1000 classes) and arcface_torch's IResNet-50, less
    // the BatchNorm counters, which the loader skips.
    let public = |list: &str| -> Keys {
        lists[list]
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let store = |vs: &tch::nn::VarStore| -> Keys {
        vs.variables()
            .into_iter()
            .map(|(k, t)| (k, t.size()))
            .collect()
    };
    let mut cfg = BackboneConfig::named("densenet121");
    cfg.num_classes = Some(1000);
    let d = backbones::DenseNet::new(&cfg, Device::Cpu).unwrap();
    assert_eq!(store(d.var_store()), public("torchvision densenet121"));
    let i = backbones::IResNet::new(&BackboneConfig::named("iresnet50"), Device::Cpu).unwrap();
    assert_eq!(store(i.var_store()), public("arcface_torch iresnet50"));
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}");
    let diff = (got - want).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{what}: max difference {diff}");
}

#[test]
fn mapped_checkpoints_compute_what_the_public_modules_compute() {
    let m = manifest();
    let mut checked = 0;
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let expected: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(dir().join(format!("{name}.expected.safetensors")))
                .unwrap()
                .into_iter()
                .collect();
        let images = &expected["images"];
        for file in case["files"].as_array().unwrap() {
            let path = dir().join(file.as_str().unwrap());
            let w = WeightsFile::open(&path).unwrap();
            assert_eq!(w.layout(), case["layout"].as_str(), "{path:?}");
            for (pooling, out) in case["outputs"].as_object().unwrap() {
                let mut cfg: BackboneConfig =
                    serde_json::from_value(case["config"].clone()).unwrap();
                cfg.weights = Some(path.clone());
                if pooling != "pooled" {
                    cfg.pooling = Some(match pooling.as_str() {
                        "cls" => Pooling::Cls,
                        "mean" => Pooling::Mean,
                        _ => Pooling::Tokens,
                    });
                }
                let b = backbones::build(&cfg, Device::Cpu)
                    .unwrap_or_else(|e| panic!("{path:?}: {e:#}"));
                assert_eq!(b.weights_id(), w.weights_id());
                let got = b.forward(images);
                close(
                    &got,
                    &expected[out.as_str().unwrap()],
                    &format!("{path:?} {pooling}"),
                );
                checked += 1;
            }
        }
    }
    // hf_dinov2 and _swiglu: 2 files x 3 poolings; _reg: 3; timm MAE: 3; MAE fine-tune: 1;
    // DenseNet: 1.
    assert_eq!(checked, 3 * 2 + 3 * 2 + 3 + 3 + 1 + 1);
}

/// A copy of `src` with each tensor renamed / replaced by `edit` (None drops it).
fn edited(
    src: &Path,
    dst: &Path,
    edit: impl Fn(String, Tensor) -> Option<(String, Tensor)>,
) -> PathBuf {
    let t: Vec<(String, Tensor)> = Tensor::read_safetensors(src)
        .unwrap()
        .into_iter()
        .filter_map(|(n, t)| edit(n, t))
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    Tensor::write_safetensors(&t, dst).unwrap();
    dst.to_path_buf()
}

fn tiny_dinov2(weights: &Path) -> BackboneConfig {
    let mut cfg: BackboneConfig = serde_json::from_value(serde_json::json!({
        "name": "dinov2_vits14", "embed_dim": 32, "depth": 2, "num_heads": 2, "input_size": 28
    }))
    .unwrap();
    cfg.weights = Some(weights.to_path_buf());
    cfg
}

#[test]
fn a_file_that_fits_no_layout_is_refused_with_the_closest_known_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = edited(
        &dir().join("timm_mae_norm.safetensors"),
        &tmp.path().join("renamed.safetensors"),
        |n, t| Some((n.replace("blocks.", "layers."), t)),
    );
    let total = WeightsFile::open(&path).unwrap().tensors().len();
    let fitting = WeightsFile::open(&path)
        .unwrap()
        .tensors()
        .keys()
        .filter(|n| !n.starts_with("layers."))
        .count();
    let mut cfg: BackboneConfig = serde_json::from_value(serde_json::json!({
        "name": "vit_b16", "embed_dim": 32, "depth": 2, "num_heads": 2, "input_size": 32
    }))
    .unwrap();
    cfg.weights = Some(path);
    let err = backbones::build(&cfg, Device::Cpu).err().unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!(
            "closest known layout: timm ViT (MAE / DINOv2) ({fitting} of {total} names match)"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("missing     blocks.0.attn.qkv.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("unexpected  layers.0.attn.qkv.weight"),
        "{msg}"
    );
    assert!(matches!(
        err.downcast_ref::<WeightsError>(),
        Some(WeightsError::Mismatch { .. })
    ));
    // A DINOv2 file given to a DenseNet: the closest layout says what the file is.
    let mut cfg = BackboneConfig::named("densenet121");
    cfg.weights = Some(dir().join("hf_dinov2_v5.safetensors"));
    let msg = format!("{:#}", backbones::build(&cfg, Device::Cpu).err().unwrap());
    assert!(
        msg.contains("The file's names follow transformers Dinov2Model"),
        "{msg}"
    );
}

#[test]
fn a_mapped_tensor_with_a_wrong_shape_names_the_tensor_both_shapes_and_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dir().join("hf_dinov2_v5.safetensors");
    // key with fewer rows: q, k and v still concatenate, to a fused qkv of the wrong size.
    let short = edited(&src, &tmp.path().join("short.safetensors"), |n, t| {
        if n == "encoder.layer.1.attention.k_proj.weight" {
            Some((n, t.narrow(0, 0, 16)))
        } else {
            Some((n, t))
        }
    });
    let msg = format!(
        "{:#}",
        backbones::build(&tiny_dinov2(&short), Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(
        msg.contains(
            "mis-shaped  blocks.1.attn.qkv.weight (from encoder.layer.1.attention.q_proj.weight + \
             encoder.layer.1.attention.k_proj.weight + encoder.layer.1.attention.v_proj.weight): \
             model [96, 32], file [80, 32]"
        ),
        "{msg}"
    );
    assert!(msg.contains("follow transformers Dinov2Model"), "{msg}");
    // key with fewer columns: q, k and v cannot be concatenated at all.
    let narrow = edited(&src, &tmp.path().join("narrow.safetensors"), |n, t| {
        if n == "encoder.layer.0.attention.k_proj.weight" {
            Some((n, t.narrow(1, 0, 16)))
        } else {
            Some((n, t))
        }
    });
    let err = WeightsFile::open(&narrow).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Layout { .. }), "{msg}");
    assert!(
        msg.contains("narrow.safetensors")
            && msg.contains("transformers Dinov2Model")
            && msg.contains("blocks.0.attn.qkv.weight")
            && msg.contains("[32, 16]")
            && msg.contains("[32, 32]"),
        "{msg}"
    );
    // a missing value projection: named as missing from the layout.
    let no_v = edited(&src, &tmp.path().join("no_v.safetensors"), |n, t| {
        (!n.starts_with("encoder.layer.0.attention.v_proj.")).then_some((n, t))
    });
    let msg = WeightsFile::open(&no_v).unwrap_err().to_string();
    assert!(
        msg.contains("encoder.layer.0.attention.v_proj.bias is not in the file")
            && msg.contains("not a complete transformers Dinov2Model checkpoint"),
        "{msg}"
    );
}

#[test]
fn a_data_parallel_module_prefix_is_removed_from_safetensors_too() {
    let tmp = tempfile::tempdir().unwrap();
    let src = dir().join("hf_dinov2_hub.safetensors");
    let prefixed = edited(&src, &tmp.path().join("dp.safetensors"), |n, t| {
        Some((format!("module.{n}"), t))
    });
    let images = Tensor::read_safetensors(dir().join("hf_dinov2.expected.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "images")
        .unwrap()
        .1;
    let a = backbones::build(&tiny_dinov2(&src), Device::Cpu).unwrap();
    let b = backbones::build(&tiny_dinov2(&prefixed), Device::Cpu).unwrap();
    assert!(a.forward(&images).equal(&b.forward(&images)));
    assert_ne!(
        a.weights_id(),
        b.weights_id(),
        "the id is the file's own hash"
    );
}
