//! The native backbones against PyTorch, and their weights handling.
//!
//! Parity: `tests/fixtures/` holds small variants of every backbone built with the PyTorch
//! reference modules (`scripts/fixtures/backbone_fixture.py`, random seeded weights with
//! randomised BatchNorm statistics), PNG images already at each input size, and the reference
//! outputs; each Rust backbone must reproduce them within 1e-4 of the outputs' scale.
//! Weights: a file with a missing, an unexpected and a mis-shaped tensor is one error listing all
//! three; output sizes come from the checkpoint; the full-size configs build with the published
//! parameter counts and round-trip through safetensors.
//! Spatial maps (`output = "map"`): the IResNet map through flatten, `fc` and `features` is the
//! PyTorch embedding; the DenseNet map averaged over its tokens is the pooled output; the shape a
//! map backbone declares is the shape it returns, `[49, C]` at the published sizes; backbones
//! without a spatial map refuse `output = "map"` and say what to use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use extractor::backbones::{
    self, weights::save_safetensors, Backbone, BackboneConfig, DenseNet, IResNet, Output, Pooling,
    Vit, WeightsError,
};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

mod common;
use common::{assert_close, Fixtures};

fn fixtures() -> PathBuf {
    Fixtures::at("").0
}
fn case(name: &str) -> serde_json::Value {
    Fixtures::at("").case(name)
}
fn config(case: &serde_json::Value) -> BackboneConfig {
    Fixtures::at("").config(case)
}
fn images(case: &serde_json::Value) -> Tensor {
    Fixtures::at("").images(case)
}
fn expected(case: &serde_json::Value) -> HashMap<String, Tensor> {
    Fixtures::at("").expected(case)
}

fn sha256_id(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Builds the case's backbone, checks its metadata, and compares its output with `output`.
fn parity(name: &str) -> (Box<dyn Backbone>, serde_json::Value) {
    let case = case(name);
    let cfg = config(&case);
    let bb = backbones::build(&cfg, Device::Cpu).unwrap();
    let x = images(&case);
    assert_eq!(
        x.size()[2],
        i64::from(bb.input_size()),
        "{name}: image size"
    );
    let want = &expected(&case)["output"];
    assert_eq!(
        bb.output_shape(),
        want.size()[1..]
            .iter()
            .map(|&d| d as usize)
            .collect::<Vec<_>>(),
        "{name}: output_shape"
    );
    let file = match &cfg.weights {
        Some(w) => w.clone(),
        None => PathBuf::from(cfg.name.strip_prefix("torchscript:").unwrap()),
    };
    assert_eq!(bb.weights_id(), sha256_id(&file), "{name}: weights_id");
    let got = bb.forward(&x);
    assert_eq!(got.kind(), Kind::Float);
    assert_close(&got, want, name);
    // The two images differ, and so must their embeddings (the comparison is not vacuous).
    assert!((got.get(0) - got.get(1)).abs().max().double_value(&[]) > 1e-3);
    (bb, case)
}

#[test]
fn iresnet_matches_pytorch() {
    let (bb, _) = parity("iresnet_small");
    assert_eq!(bb.name(), "iresnet50");
    assert_eq!(
        bb.preprocessing(),
        "RGB 112x112, pixels/255, (x - mean) / std, mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]"
    );
}

#[test]
fn densenet_matches_pytorch() {
    parity("densenet_small");
}

#[test]
fn mae_vit_matches_pytorch() {
    parity("vit_small");
}

#[test]
fn dinov2_with_registers_matches_pytorch_for_every_pooling() {
    let (_, case) = parity("dinov2_small");
    let want = expected(&case);
    let x = images(&case);
    for (pooling, key) in [
        (Pooling::Mean, "output_mean"),
        (Pooling::Tokens, "output_tokens"),
    ] {
        let mut cfg = config(&case);
        cfg.pooling = Some(pooling);
        let bb = backbones::build(&cfg, Device::Cpu).unwrap();
        // 56 px / patch 14 = 4 x 4 patch tokens of width 32.
        let shape = if pooling == Pooling::Tokens {
            vec![16, 32]
        } else {
            vec![32]
        };
        assert_eq!(bb.output_shape(), shape);
        assert_close(&bb.forward(&x), &want[key], key);
    }
}

#[test]
fn dinov2_swiglu_with_resampled_pos_embed_matches_pytorch() {
    let (_, case) = parity("dinov2_swiglu_resampled");
    let cfg = config(&case);
    let vit = Vit::new(&cfg, Device::Cpu).unwrap();
    let spec = vit.spec();
    // Read from the checkpoint: pos_embed of 1 + 4x4 rows, no registers, packed SwiGLU of 128.
    assert!(spec.pos_has_prefix);
    assert_eq!((spec.pos_grid, spec.registers), (4, 0));
    assert_eq!(spec.ffn, backbones::Ffn::Swiglu);
    assert_eq!(spec.mlp_hidden, 128);
}

#[test]
fn torchscript_matches_pytorch() {
    let (bb, _) = parity("torchscript");
    assert_eq!(
        bb.preprocessing(),
        "RGB 32x32, pixels/255, (x - mean) / std, mean [0.4, 0.5, 0.6], std [0.2, 0.25, 0.3]"
    );
}

#[test]
fn torchscript_declarations_are_checked_at_load() {
    let case = case("torchscript");
    let mut cfg = config(&case);
    cfg.out_dim = Some(7);
    let err = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("dry forward") && err.contains("[1, 6]"),
        "{err}"
    );
    assert!(err.contains("tiny_conv.pt"), "{err}");
    let mut cfg = config(&case);
    cfg.mean = None;
    let err = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`mean`"), "{err}");
    let mut cfg = config(&case);
    cfg.weights = Some(fixtures().join("vit_small.safetensors"));
    let err = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("weights") && err.contains("own weights"),
        "{err}"
    );
}

#[test]
fn mismatched_weights_list_every_difference() {
    let case = case("iresnet_small");
    let cfg = config(&case);
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(cfg.weights.as_ref().unwrap()).unwrap();
    tensors.retain(|(n, _)| n != "fc.bias");
    for (n, t) in tensors.iter_mut() {
        if n == "bn2.weight" {
            *t = Tensor::ones([5], (Kind::Float, Device::Cpu));
        }
    }
    tensors.push((
        "extra.weight".into(),
        Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
    ));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&tensors, &bad).unwrap();
    let mut cfg_bad = cfg.clone();
    cfg_bad.weights = Some(bad.clone());
    let err = IResNet::new(&cfg_bad, Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(
        msg.contains("1 missing, 1 unexpected, 1 mis-shaped"),
        "{msg}"
    );
    assert!(msg.contains("missing     fc.bias [16]"), "{msg}");
    assert!(msg.contains("unexpected  extra.weight [2, 3]"), "{msg}");
    assert!(
        msg.contains("mis-shaped  bn2.weight: model [64], file [5]"),
        "{msg}"
    );
    match err.downcast_ref::<WeightsError>() {
        Some(WeightsError::Mismatch {
            missing,
            unexpected,
            misshaped,
            ..
        }) => {
            assert_eq!(missing, &vec![("fc.bias".to_string(), vec![16])]);
            assert_eq!(unexpected, &vec![("extra.weight".to_string(), vec![2, 3])]);
            assert_eq!(
                misshaped,
                &vec![("bn2.weight".to_string(), vec![64], vec![5])]
            );
        }
        other => panic!("expected a Mismatch, got {other:?}"),
    }
    // The right file with the wrong architecture override is the same kind of listing.
    let mut wrong_layers = cfg.clone();
    wrong_layers.layers = Some(vec![1, 2, 1, 1]);
    let msg = backbones::build(&wrong_layers, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("missing     layer2.1.conv1.weight [16, 16, 3, 3]"),
        "{msg}"
    );
    // Not a safetensors file at all.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let mut cfg_junk = cfg;
    cfg_junk.weights = Some(junk);
    let msg = backbones::build(&cfg_junk, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("junk.safetensors") && msg.contains("not a safetensors file"),
        "{msg}"
    );
}

#[test]
fn output_sizes_come_from_the_checkpoint() {
    // IResNet: the fixture's fc is 16 wide; the config need not say so.
    let mut cfg = config(&case("iresnet_small"));
    cfg.out_dim = None;
    let bb = backbones::build(&cfg, Device::Cpu).unwrap();
    assert_eq!(bb.output_shape(), vec![16]);
    // ... and a contradicting out_dim is an error.
    cfg.out_dim = Some(512);
    let msg = backbones::build(&cfg, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("out_dim = 512") && msg.contains("16"), "{msg}");

    // DenseNet: growth 8, blocks [2,2,2,2], init 16 -> 16+16=32 channels, halved by each of the
    // three transitions and grown back by 16: 32 pooled channels; classifier 7 when present.
    let small = |num_classes: Option<i64>| BackboneConfig {
        growth: Some(8),
        block_config: Some(vec![2, 2, 2, 2]),
        init_features: Some(16),
        input_size: Some(64),
        num_classes,
        ..BackboneConfig::named("densenet121")
    };
    let with7 = DenseNet::new(&small(Some(7)), Device::Cpu).unwrap();
    assert_eq!(with7.output_shape(), vec![7]);
    let dir = tempfile::tempdir().unwrap();
    let file7 = dir.path().join("d7.safetensors");
    save_safetensors(with7.var_store(), &file7).unwrap();
    let mut from_file = small(None);
    from_file.weights = Some(file7.clone());
    let loaded = backbones::build(&from_file, Device::Cpu).unwrap();
    assert_eq!(loaded.output_shape(), vec![7]);
    let x = Tensor::rand([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    assert_close(&loaded.forward(&x), &with7.forward(&x), "densenet reload");

    let pooled_file = dir.path().join("pooled.safetensors");
    let no_head: Vec<(String, Tensor)> = with7
        .var_store()
        .variables()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("classifier."))
        .map(|(n, t)| (n, t.contiguous()))
        .collect();
    Tensor::write_safetensors(&no_head, &pooled_file).unwrap();
    from_file.weights = Some(pooled_file);
    let pooled = backbones::build(&from_file, Device::Cpu).unwrap();
    assert_eq!(pooled.output_shape(), vec![32]);
    assert_eq!(pooled.forward(&x).size(), vec![2, 32]);
}

/// Sum of the sizes of the learned parameters (BatchNorm running statistics excluded).
fn n_params(vs: &tch::nn::VarStore) -> i64 {
    vs.variables()
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

#[test]
fn full_size_configs_have_the_published_shapes() {
    let x112 = Tensor::rand([1, 3, 112, 112], (Kind::Float, Device::Cpu));
    let x224 = Tensor::rand([1, 3, 224, 224], (Kind::Float, Device::Cpu));

    // Parameter counts of the PyTorch peer's modules (sum of p.numel() over parameters()).
    let ir50 = IResNet::new(&BackboneConfig::named("iresnet50"), Device::Cpu).unwrap();
    assert_eq!(n_params(ir50.var_store()), 43_590_848);
    assert_eq!(ir50.input_size(), 112);
    assert_eq!(ir50.forward(&x112).size(), vec![1, 512]);
    let ir100 = IResNet::new(&BackboneConfig::named("iresnet100"), Device::Cpu).unwrap();
    assert_eq!(n_params(ir100.var_store()), 65_156_160);
    drop(ir100);

    // torchvision DenseNet-121: 7,978,856 with 1000 classes; 342 classes: -1025*1000 + 1025*342.
    let dn = DenseNet::new(&BackboneConfig::named("densenet121"), Device::Cpu).unwrap();
    assert_eq!(
        n_params(dn.var_store()),
        7_978_856 - 1025 * 1000 + 1025 * 342
    );
    assert_eq!(dn.forward(&x224).size(), vec![1, 342]);

    // ViT-B/16: patch 768*3*16*16+768, cls 768, pos 197*768, 12 blocks of (2 norms 4*768,
    // qkv 768*2304+2304, proj 768*768+768, fc1 768*3072+3072, fc2 3072*768+768), fc_norm 2*768.
    let block = 4 * 768
        + (768 * 2304 + 2304)
        + (768 * 768 + 768)
        + (768 * 3072 + 3072)
        + (3072 * 768 + 768);
    let vit = Vit::new(&BackboneConfig::named("vit_b16"), Device::Cpu).unwrap();
    assert_eq!(
        n_params(vit.var_store()),
        (768 * 3 * 16 * 16 + 768) + 768 + 197 * 768 + 12 * block + 2 * 768
    );
    assert_eq!(vit.forward(&x224).size(), vec![1, 768]);
    drop(vit);

    // DINOv2 ViT-S/14 at 224: 16x16 patches, pos 257 rows, blocks with two 384-wide gammas.
    let block = 4 * 384
        + (384 * 1152 + 1152)
        + (384 * 384 + 384)
        + (384 * 1536 + 1536)
        + (1536 * 384 + 384)
        + 2 * 384;
    let s14 = Vit::new(&BackboneConfig::named("dinov2_vits14"), Device::Cpu).unwrap();
    assert_eq!(
        n_params(s14.var_store()),
        (384 * 3 * 14 * 14 + 384) + 384 + 257 * 384 + 12 * block + 2 * 384
    );
    assert_eq!(s14.output_shape(), vec![384]);
    let tokens = BackboneConfig {
        pooling: Some(Pooling::Tokens),
        ..BackboneConfig::named("dinov2_vits14")
    };
    assert_eq!(
        backbones::build(&tokens, Device::Cpu)
            .unwrap()
            .output_shape(),
        vec![256, 384]
    );
}

#[test]
fn full_size_weights_round_trip_through_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::rand([1, 3, 112, 112], (Kind::Float, Device::Cpu));
    let cfg = BackboneConfig {
        seed: 11,
        ..BackboneConfig::named("iresnet50")
    };
    let src = IResNet::new(&cfg, Device::Cpu).unwrap();
    let file = dir.path().join("iresnet50.safetensors");
    save_safetensors(src.var_store(), &file).unwrap();
    let loaded = backbones::build(
        &BackboneConfig {
            weights: Some(file.clone()),
            ..BackboneConfig::named("iresnet50")
        },
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(loaded.weights_id(), sha256_id(&file));
    assert!(loaded.forward(&x).equal(&src.forward(&x)));
    // The seed-0 model differs, so the equality above came from the file.
    let seed0 = backbones::build(&BackboneConfig::named("iresnet50"), Device::Cpu).unwrap();
    assert!(!seed0.forward(&x).equal(&src.forward(&x)));
}

#[test]
fn configs_parse_from_toml_and_reject_foreign_fields() {
    let cfg: BackboneConfig = toml::from_str(
        r#"
        name = "dinov2_vitl14"
        weights = "w/dinov2_vitl14.safetensors"
        input_size = 224
        pooling = "tokens"
        ffn = "swiglu"
        mean = [0.5, 0.5, 0.5]
        "#,
    )
    .unwrap();
    assert_eq!(cfg.pooling, Some(Pooling::Tokens));
    assert_eq!(cfg.ffn, Some(backbones::Ffn::Swiglu));
    assert_eq!(cfg.seed, 0);
    assert!(cfg.check_fields().is_ok());
    let typo =
        toml::from_str::<BackboneConfig>("name = \"vit_b16\"\nweigths = \"w.safetensors\"\n")
            .unwrap_err()
            .to_string();
    assert!(typo.contains("unknown field `weigths`"), "{typo}");

    let vit_with_layers = BackboneConfig {
        layers: Some(vec![1, 1, 1, 1]),
        ..BackboneConfig::named("vit_b16")
    };
    let msg = backbones::build(&vit_with_layers, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("`vit_b16`") && msg.contains("layers"), "{msg}");

    let msg = backbones::build(&BackboneConfig::named("resnet51"), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("unknown backbone `resnet51`") && msg.contains("iresnet100"),
        "{msg}"
    );
    assert!(backbones::is_builtin("dinov2_vitg14"));
    assert!(backbones::is_builtin("torchscript:model.pt"));
    assert!(!backbones::is_builtin("torchscript:"));

    let bad_heads = BackboneConfig {
        embed_dim: Some(30),
        num_heads: Some(4),
        ..BackboneConfig::named("vit_b16")
    };
    let msg = backbones::build(&bad_heads, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("num_heads 4 must divide embed_dim 30"),
        "{msg}"
    );
}

/// `cfg` with `output` set.
fn with_output(cfg: &BackboneConfig, output: Output) -> BackboneConfig {
    BackboneConfig {
        output: Some(output),
        ..cfg.clone()
    }
}

/// A variable of a backbone's var store by its PyTorch name.
fn var(vs: &tch::nn::VarStore, name: &str) -> Tensor {
    vs.variables()
        .remove(name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

/// Eval-mode BatchNorm of `[N, C]` with the `prefix.*` parameters and running statistics of `vs`.
fn batch_norm_1d(vs: &tch::nn::VarStore, prefix: &str, x: &Tensor) -> Tensor {
    let v = |n: &str| var(vs, &format!("{prefix}.{n}"));
    (x - v("running_mean")) / (v("running_var") + 1e-5).sqrt() * v("weight") + v("bias")
}

#[test]
fn iresnet_embedding_is_fc_and_features_applied_to_the_flattened_map() {
    // The fixture has PyTorch's weights with randomised BatchNorm statistics and its embedding.
    let case = case("iresnet_small");
    let cfg = with_output(&config(&case), Output::Map);
    let net = IResNet::new(&cfg, Device::Cpu).unwrap();
    let x = images(&case);
    let map = net.forward(&x);
    // width 8: 64 channels in the last stage; 112 px halved 4 times: 7 x 7.
    assert_eq!(net.output_shape(), vec![49, 64]);
    assert_eq!(map.size(), vec![2, 49, 64]);
    assert!(map.equal(&net.forward_map(&x)));
    assert!(
        net.preprocessing()
            .ends_with("; spatial map 7x7 tokens (bn2 output, row-major over h, w)"),
        "{}",
        net.preprocessing()
    );
    // Tokens back to PyTorch's flatten order (c, h, w), then fc and the features BatchNorm.
    let flat = map.transpose(1, 2).reshape([2, 64 * 49]);
    let vs = net.var_store();
    let fc = flat.matmul(&var(vs, "fc.weight").tr()) + var(vs, "fc.bias");
    let embedding = batch_norm_1d(vs, "features", &fc);
    assert_close(&embedding, &expected(&case)["output"], "fc(features(map))");
    let pooled = backbones::build(&with_output(&cfg, Output::Pooled), Device::Cpu).unwrap();
    let diff = (&embedding - pooled.forward(&x))
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        diff <= 1e-5,
        "map -> embedding vs the pooled backbone: {diff}"
    );
    assert!(net.forward_pooled(&x).equal(&pooled.forward(&x)));
}

#[test]
fn densenet_map_averaged_over_tokens_is_the_pooled_feature() {
    // The fixture's weights (randomised BatchNorm statistics) without the classifier, at 224 px:
    // a 7 x 7 map of 32 channels.
    let case = case("densenet_small");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no_classifier.safetensors");
    let fixture = Tensor::read_safetensors(config(&case).weights.unwrap()).unwrap();
    let no_head: Vec<(String, Tensor)> = fixture
        .into_iter()
        .filter(|(n, _)| !n.starts_with("classifier."))
        .collect();
    Tensor::write_safetensors(&no_head, &file).unwrap();
    let cfg = BackboneConfig {
        weights: Some(file),
        input_size: Some(224),
        ..config(&case)
    };
    let map_bb = backbones::build(&with_output(&cfg, Output::Map), Device::Cpu).unwrap();
    let pooled_bb = backbones::build(&cfg, Device::Cpu).unwrap();
    assert_eq!(map_bb.output_shape(), vec![49, 32]);
    assert_eq!(pooled_bb.output_shape(), vec![32]);
    assert!(
        map_bb.preprocessing().ends_with(
            "; spatial map 7x7 tokens (features.norm5 + ReLU output, row-major over h, w)"
        ),
        "{}",
        map_bb.preprocessing()
    );
    assert_eq!(map_bb.weights_id(), pooled_bb.weights_id());
    let x = Tensor::rand([3, 3, 224, 224], (Kind::Float, Device::Cpu));
    let map = map_bb.forward(&x);
    assert_eq!(map.size(), vec![3, 49, 32]);
    let pooled = pooled_bb.forward(&x);
    let diff = (map.mean_dim(1, false, Kind::Float) - &pooled)
        .abs()
        .max()
        .double_value(&[]);
    assert!(diff <= 1e-5, "mean of the map tokens vs pooled: {diff}");
    // After ReLU the map is non-negative, and not all zero (the comparison is not vacuous).
    assert!(map.min().double_value(&[]) >= 0.0);
    assert!(pooled.abs().max().double_value(&[]) > 1e-3);
}

#[test]
fn densenet_map_through_pool_and_classifier_is_the_pytorch_output() {
    let case = case("densenet_small");
    let cfg = with_output(&config(&case), Output::Map);
    let net = DenseNet::new(&cfg, Device::Cpu).unwrap();
    let x = images(&case);
    // 64 px: stem 32, max pool 16, three transitions 8, 4, 2.
    assert_eq!(net.output_shape(), vec![4, 32]);
    let map = net.forward(&x);
    let vs = net.var_store();
    let logits = map
        .mean_dim(1, false, Kind::Float)
        .matmul(&var(vs, "classifier.weight").tr())
        + var(vs, "classifier.bias");
    assert_close(&logits, &expected(&case)["output"], "classifier(mean(map))");
    assert!(net.forward_pooled(&x).size() == vec![2, 10]);
}

#[test]
fn map_shape_declared_is_the_shape_returned_at_any_input_size() {
    let dense = |input: u32| BackboneConfig {
        growth: Some(4),
        block_config: Some(vec![1, 1, 1, 1]),
        init_features: Some(8),
        input_size: Some(input),
        output: Some(Output::Map),
        ..BackboneConfig::named("densenet121")
    };
    let ires = |input: u32| BackboneConfig {
        layers: Some(vec![1, 1, 1, 1]),
        width: Some(4),
        input_size: Some(input),
        output: Some(Output::Map),
        ..BackboneConfig::named("iresnet18")
    };
    for input in [33u32, 50, 64, 97, 112, 224] {
        for cfg in [dense(input), ires(input)] {
            let bb = backbones::build(&cfg, Device::Cpu).unwrap();
            let s = i64::from(input);
            let y = bb.forward(&Tensor::rand([2, 3, s, s], (Kind::Float, Device::Cpu)));
            let mut want = vec![2];
            want.extend(bb.output_shape().iter().map(|&d| d as i64));
            assert_eq!(y.size(), want, "{} at {input} px", cfg.name);
            let side = (bb.output_shape()[0] as f64).sqrt() as usize;
            assert_eq!(side * side, bb.output_shape()[0], "a square map");
            let text = format!("spatial map {side}x{side} tokens");
            assert!(bb.preprocessing().contains(&text), "{}", bb.preprocessing());
        }
    }
    // Too small an input for the DenseNet's stem and transitions: an error saying so.
    let msg = backbones::build(&dense(8), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("`densenet121`") && msg.contains("input_size 8"),
        "{msg}"
    );
}

#[test]
fn full_size_cnn_maps_are_49_tokens_of_their_last_channels() {
    let x112 = Tensor::rand([1, 3, 112, 112], (Kind::Float, Device::Cpu));
    let x224 = Tensor::rand([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let map = |name: &str| with_output(&BackboneConfig::named(name), Output::Map);
    let ir50 = backbones::build(&map("iresnet50"), Device::Cpu).unwrap();
    assert_eq!(ir50.output_shape(), vec![49, 512]);
    assert_eq!(ir50.forward(&x112).size(), vec![1, 49, 512]);
    assert!(ir50.preprocessing().contains("spatial map 7x7 tokens"));
    drop(ir50);
    // The default DenseNet has a 342-wide classifier; the map is before it: 1024 channels.
    let dn = backbones::build(&map("densenet121"), Device::Cpu).unwrap();
    assert_eq!(dn.output_shape(), vec![49, 1024]);
    assert_eq!(dn.forward(&x224).size(), vec![1, 49, 1024]);
    // `out_dim` keeps meaning the pooled output, so the reference's `densenet` set (out_dim =
    // 342) can write its map too.
    let with_out_dim = BackboneConfig {
        out_dim: Some(342),
        ..map("densenet121")
    };
    assert!(backbones::build(&with_out_dim, Device::Cpu).is_ok());
}

#[test]
fn map_output_on_a_backbone_without_a_spatial_map_is_an_error_saying_what_to_use() {
    let cfg: BackboneConfig = toml::from_str("name = \"iresnet100\"\noutput = \"map\"\n").unwrap();
    assert_eq!(cfg.output(), Output::Map);
    assert!(cfg.check_fields().is_ok());
    let bad = toml::from_str::<BackboneConfig>("name = \"iresnet100\"\noutput = \"maps\"\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("pooled") && bad.contains("map"), "{bad}");
    for (name, hint) in [
        ("hog", "drop `--output map`"),
        ("vit_b16", "--output tokens"),
        ("dinov2_vitb14", "--output tokens"),
        ("torchscript:model.pt", "export it to return [tokens, dim]"),
    ] {
        let cfg = with_output(&BackboneConfig::named(name), Output::Map);
        let msg = backbones::build(&cfg, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains(&format!("backbone `{name}` has no spatial feature map"))
                && msg.contains(hint),
            "{msg}"
        );
        // `pooled` is what every backbone writes: allowed everywhere.
        assert!(with_output(&cfg, Output::Pooled).check_fields().is_ok());
    }
}

/// `output = "tokens"` is the ViT family's `pooling = "tokens"`: every patch token, class and
/// registers dropped; a CNN is told to use its map, HOG to stay pooled.
#[test]
fn tokens_output_gives_a_vit_every_patch_token_and_is_refused_elsewhere() {
    let small = |name: &str, side: u32| BackboneConfig {
        embed_dim: Some(16),
        depth: Some(1),
        num_heads: Some(2),
        input_size: Some(side),
        ..BackboneConfig::named(name)
    };
    // 2 x 2 patches each: 16 px patches at 32 px, 14 px patches at 28 px.
    for (name, side, patches) in [("vit_b16", 32, 4), ("dinov2_vitb14", 28, 4)] {
        let small = |name: &str| small(name, side);
        let images = Tensor::rand(
            [2, 3, side as i64, side as i64],
            (tch::Kind::Float, Device::Cpu),
        );
        let tokens = with_output(&small(name), Output::Tokens);
        let bb = Vit::new(&tokens, Device::Cpu).unwrap();
        assert_eq!(bb.output_shape(), [patches, 16], "{name}");
        // The second build reads the first one's weights: a seeded init would race with the
        // other tests of this binary drawing from libtorch's one global generator.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vit.safetensors");
        save_safetensors(bb.var_store(), &file).unwrap();
        let via_pooling = BackboneConfig {
            pooling: Some(Pooling::Tokens),
            weights: Some(file),
            ..small(name)
        };
        assert_eq!(via_pooling.output(), Output::Tokens);
        let same = backbones::build(&via_pooling, Device::Cpu).unwrap();
        assert!(tch::no_grad(|| bb
            .forward(&images)
            .equal(&same.forward(&images))));
        // `--output pooled` on a `pooling = "tokens"` set pools (the family's default).
        let pooled = backbones::build(&with_output(&via_pooling, Output::Pooled), Device::Cpu);
        assert_eq!(pooled.unwrap().output_shape(), [16], "{name}");
    }
    for (name, hint) in [
        ("iresnet50", "--output map"),
        ("resnet50", "--output map"),
        ("hog", "keep the output pooled"),
    ] {
        let msg = with_output(&BackboneConfig::named(name), Output::Tokens)
            .check_fields()
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!("backbone `{name}` has no patch tokens")) && msg.contains(hint),
            "{msg}"
        );
    }
}
