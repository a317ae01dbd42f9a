//! The system configs of `configs/systems/` end to end on generated data: each trains, predicts
//! the validation and test videos, is scored, beats the chance baseline of the same data on what
//! it trains (P_MTL, or the AU F1 of an AU-only system), and writes a valid MTL submission.

use shared::abaw::{read_mtl_submission, read_test_list};
use std::collections::BTreeMap;
use std::path::Path;
use tests::{run, run_ok, synthetic_sample, synthetic_token_sample, workspace_root};

/// 10 videos of 240 frames with synthetic 32-dim features that carry the labels.
fn sample(dir: &Path) {
    synthetic_sample(dir, 10, 240, Some(32), 5);
}

/// A score (`p_mtl`, `f1_au`, ...) from `temporal evaluate --json`.
fn score(json: &Path, key: &str) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v[key].as_f64().unwrap()
}

/// Train `config` on the sample's feature set `features`, predict, evaluate against chance on
/// `metric` and submit; returns the run folder.
fn run_system(
    config: &str,
    dir: &Path,
    data: &Path,
    features: &str,
    metric: &str,
) -> std::path::PathBuf {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = dir.join("run");
    let cfg = workspace_root().join(config);
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            &s(&cfg),
            "--data",
            &s(data),
            "--features",
            features,
            "--threads",
            "1",
            "--out",
            &s(&run),
        ],
    );
    for split in ["validation", "test"] {
        run_ok(
            "temporal",
            &[
                "predict",
                "--run",
                &s(&run),
                "--split",
                split,
                "--out",
                &s(&dir.join("preds").join(split)),
            ],
        );
    }
    run_ok(
        "temporal",
        &[
            "baseline",
            "--data",
            &s(data),
            "--split",
            "validation",
            "--out",
            &s(&dir.join("chance")),
        ],
    );
    let labels = data.join("validation_set_annotations.txt");
    for (name, preds) in [
        ("model", dir.join("preds/validation")),
        ("chance", dir.join("chance")),
    ] {
        run_ok(
            "temporal",
            &[
                "evaluate",
                "--pred",
                &s(&preds),
                "--labels",
                &s(&labels),
                "--json",
                &s(&dir.join(format!("{name}.json"))),
            ],
        );
    }
    let (model, chance) = (
        score(&dir.join("model.json"), metric),
        score(&dir.join("chance.json"), metric),
    );
    assert!(
        model > chance + 0.1,
        "{config}: validation {metric} {model:.3} does not beat chance {chance:.3}"
    );
    let submission = dir.join("submission.txt");
    let test_list = data.join("test_set_list.txt");
    run_ok(
        "temporal",
        &[
            "submit",
            &s(&dir.join("preds/test")),
            "--format",
            "mtl",
            "--test-list",
            &s(&test_list),
            "--out",
            &s(&submission),
        ],
    );
    let rows = read_mtl_submission(&submission).unwrap();
    let listed = read_test_list(&test_list).unwrap();
    assert_eq!(
        rows.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        listed,
        "{config}: one submission row per test-list frame, in its order"
    );
    run
}

#[test]
fn the_mtca_system_trains_predicts_beats_chance_and_submits_with_amtl_checkpoint_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data);
    let run = run_system(
        "configs/systems/mtca.toml",
        dir.path(),
        &data,
        "synthetic",
        "p_mtl",
    );
    // The checkpoint holds the public AMTL's names: no `heads.` prefix, no encoder.
    let bytes = std::fs::read(run.join("checkpoints/best.safetensors")).unwrap();
    let names: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    for expected in [
        "au.sc",
        "au.class_linears.11.bn.num_batches_tracked",
        "au.gnn.bnv.running_var",
        "va.fc.weight",
        "va.bn.running_mean",
        "ex.fc.bias",
        "attention.W_q.weight",
        "attention.W_k.weight",
        "attention.w_v.weight",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    let prefixes = ["au.", "va.", "ex.", "attention."];
    assert!(
        names
            .iter()
            .all(|n| prefixes.iter().any(|p| n.starts_with(p))),
        "only AMTL names: {names:?}"
    );
}

/// Names and shapes of a safetensors file, with `prefix` stripped (the fixtures keep the state
/// dict under `state.`).
fn shapes(path: &Path, prefix: &str) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter_map(|(name, t)| {
            name.strip_prefix(prefix)
                .map(|n| (n.to_string(), t.shape().to_vec()))
        })
        .collect()
}

/// The fixture `amtl.safetensors` holds the `state_dict()` of the PyTorch AMTL with the public
/// names (`scripts/fixtures/affect_fixture.py`, channel width 16). A run of mtca.toml on 32-dim
/// features must have exactly its names, with the shapes it has at 32 channels: what
/// `load_state_dict(strict=True)` checks. (`scripts/fixtures/check_amtl_checkpoint.py` does the
/// load in PyTorch and compares the outputs with `temporal predict`.)
#[test]
fn an_mtca_checkpoint_has_the_names_and_shapes_of_the_public_amtl_state_dict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 6, 60, Some(32), 2);
    let run = dir.path().join("run");
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            workspace_root()
                .join("configs/systems/mtca.toml")
                .to_str()
                .unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--features",
            "synthetic",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
            run.to_str().unwrap(),
        ],
    );
    let ours = shapes(&run.join("checkpoints/best.safetensors"), "");
    let fixture = workspace_root().join("temporal/tests/fixtures/amtl.safetensors");
    let public: BTreeMap<String, Vec<usize>> = shapes(&fixture, "state.")
        .into_iter()
        .map(|(n, s)| {
            (
                n,
                s.into_iter()
                    .map(|d| if d == 16 { 32 } else { d })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(ours, public);
}

#[test]
fn the_lrp_arl_ff_system_trains_on_tokens_beats_chance_on_au_f1_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_token_sample(&data, 10, 240, 49, 32, 5);
    let run = run_system(
        "configs/systems/lrp-arl-ff.toml",
        dir.path(),
        &data,
        "synthetic-tokens",
        "f1_au",
    );
    let names = shapes(&run.join("checkpoints/best.safetensors"), "");
    for expected in [
        "au.lrp.lanets.3.conv2.weight",
        "au.arl.class_linears.11.bn.running_var",
        "au.arl.classifier.weight",
        "au.backbone_fc.weight",
        "au.fusion.weight_token",
        "au.fusion.encoder.layers.1.self_attn.in_proj_weight",
    ] {
        assert!(names.contains_key(expected), "{expected} not in {names:?}");
    }
    assert_eq!(names["au.lrp.lanets.0.conv1.weight"], [4, 32]);
}

#[test]
fn a_token_system_on_pooled_features_is_refused_with_what_to_extract() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 4, 30, Some(8), 3);
    let out = run(
        "temporal",
        &[
            "train",
            "--config",
            workspace_root()
                .join("configs/systems/lrp-arl-ff.toml")
                .to_str()
                .unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--features",
            "synthetic",
            "--out",
            dir.path().join("run").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token system") && err.contains("--output map") && err.contains("synthetic"),
        "{err}"
    );
    assert!(
        !dir.path().join("run/checkpoints").exists(),
        "nothing trained"
    );
}
