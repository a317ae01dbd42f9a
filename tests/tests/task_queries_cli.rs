//! `configs/systems/task-queries.toml` end to end on generated data: the ABAW7 task-queries model
//! with the AU-assisted GCN trains on the synthetic sample's patch tokens (all three tasks from
//! one module), predicts the validation and test videos, beats the chance baseline on P_MTL and
//! on each task, writes a valid MTL submission, and its checkpoint holds the reference's names
//! (scripts/fixtures/task_queries_refs.py). On pooled features it refuses to start, naming the
//! feature set and both shapes.

use std::collections::BTreeMap;
use std::path::Path;
use tests::{
    predict_both_splits, run, run_ok, submit_in_test_list_order, synthetic_sample,
    synthetic_token_sample, validation_scores_and_chance, workspace_root,
};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Names and shapes of a safetensors file.
fn shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, t)| (name.to_string(), t.shape().to_vec()))
        .collect()
}

fn config() -> String {
    s(&workspace_root().join("configs/systems/task-queries.toml"))
}

#[test]
fn the_task_queries_system_trains_on_tokens_beats_chance_on_every_task_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    // 16 tokens (a 4 x 4 patch grid) of 32 dims per frame.
    synthetic_token_sample(&data, 10, 240, 16, 32, 5);
    let run = dir.join("run");
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            &config(),
            "--data",
            &s(&data),
            "--features",
            "synthetic-tokens",
            "--threads",
            "1",
            "--out",
            &s(&run),
        ],
    );
    let names = shapes(&run.join("checkpoints/best.safetensors"));
    for expected in [
        "compress.0.weight",
        "compress.2.bias",
        "token_pos",
        "queries",
        "query_pos",
        "blocks.0.multihead_attn.in_proj_weight",
        "blocks.3.self_attn.out_proj.weight",
        "blocks.3.norm3.weight",
        "gcn.0.bnv.running_mean",
        "gcn.2.U.weight",
        "masks",
        "au_fc.weight",
        "expr_fc.bias",
        "va_fc.weight",
    ] {
        assert!(names.contains_key(expected), "{expected} not in {names:?}");
    }
    assert!(!names.contains_key("blocks.0.self_attn.in_proj_weight"));
    assert_eq!(names["compress.0.weight"], [512, 32, 1]);
    assert_eq!(names["token_pos"], [16, 128]);
    assert_eq!(names["queries"], [22, 128]);
    assert_eq!(names["gcn.1.bnv.weight"], [22]);

    predict_both_splits(&run, &dir.join("preds"));
    let (model, chance) = validation_scores_and_chance(dir, &data, &dir.join("preds/validation"));
    let score = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    for (key, margin) in [
        ("p_mtl", 0.2),
        ("f1_au", 0.05),
        ("f1_expr", 0.05),
        ("ccc_valence", 0.05),
        ("ccc_arousal", 0.05),
    ] {
        let (m, c) = (score(&model, key), score(&chance, key));
        assert!(
            m > c + margin,
            "validation {key} {m:.3} does not beat chance {c:.3} by {margin}"
        );
    }
    submit_in_test_list_order(&dir.join("preds/test"), &data, &dir.join("submission.txt"));
}

#[test]
fn the_task_queries_system_on_pooled_features_names_the_set_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 4, 30, Some(8), 3);
    let out = run(
        "temporal",
        &[
            "train",
            "--config",
            &config(),
            "--data",
            &s(&data),
            "--features",
            "synthetic",
            "--out",
            &s(&dir.path().join("run")),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token system")
            && err.contains("synthetic")
            && err.contains("one vector")
            && err.contains("[8]")
            && err.contains("289 x 1536")
            && err.contains("--output map"),
        "{err}"
    );
    assert!(
        !dir.path().join("run/checkpoints").exists(),
        "nothing trained"
    );
}
