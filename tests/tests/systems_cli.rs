//! The system configs of `configs/systems/` end to end on generated data: each trains, predicts
//! the validation and test videos, is scored, beats the chance baseline of the same data, and
//! writes a valid MTL submission.

use shared::abaw::{read_mtl_submission, read_test_list};
use std::path::Path;
use tests::{run_ok, synthetic_sample, workspace_root};

/// 10 videos of 240 frames with synthetic 32-dim features that carry the labels.
fn sample(dir: &Path) {
    synthetic_sample(dir, 10, 240, Some(32), 5);
}

/// P_MTL from `temporal evaluate --json`.
fn p_mtl(json: &Path) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v["p_mtl"].as_f64().unwrap()
}

/// Train `config` on the sample, predict, evaluate against chance and submit; returns the run
/// folder.
fn run_system(config: &str, dir: &Path, data: &Path) -> std::path::PathBuf {
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
            "synthetic",
            "--epochs",
            "20",
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
        p_mtl(&dir.join("model.json")),
        p_mtl(&dir.join("chance.json")),
    );
    assert!(
        model > chance + 0.1,
        "{config}: validation P_MTL {model:.3} does not beat chance {chance:.3}"
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
    let run = run_system("configs/systems/mtca.toml", dir.path(), &data);
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
