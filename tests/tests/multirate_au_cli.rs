//! `configs/systems/multirate-au.toml` end to end on generated data: the multi-rate temporal
//! Transformer (ABAW5, Wang et al.) trains on 256-frame segments, predicts the validation and
//! test videos, beats the chance baseline on the AU F1, writes a valid MTL submission, and its
//! checkpoint holds the reference module's parameter names.

use std::collections::BTreeMap;
use std::path::Path;
use tests::{
    predict_both_splits, run_ok, submit_in_test_list_order, synthetic_sample,
    validation_scores_and_chance, workspace_root,
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

#[test]
fn the_multirate_au_system_trains_on_segments_beats_chance_on_au_f1_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    // 20 videos of 240 frames: a 256-frame segment is a whole video.
    synthetic_sample(&data, 20, 240, Some(32), 5);
    let run = dir.join("run");
    let cfg = workspace_root().join("configs/systems/multirate-au.toml");
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            &s(&cfg),
            "--data",
            &s(&data),
            "--features",
            "synthetic",
            "--threads",
            "1",
            "--out",
            &s(&run),
        ],
    );
    predict_both_splits(&run, &dir.join("preds"));
    let (model, chance) = validation_scores_and_chance(dir, &data, &dir.join("preds/validation"));
    let (model, chance) = (
        model["f1_au"].as_f64().unwrap(),
        chance["f1_au"].as_f64().unwrap(),
    );
    assert!(
        model > chance + 0.1,
        "validation AU F1 {model:.3} does not beat chance {chance:.3}"
    );
    submit_in_test_list_order(&dir.join("preds/test"), &data, &dir.join("submission.txt"));

    // The reference MultiRateAU's names: three pipelines, no heads.
    let names = shapes(&run.join("checkpoints/best.safetensors"));
    let d = 256;
    for (name, shape) in [
        ("in_proj.weight", vec![d, 32]),
        (
            "pipe_a.encoder.layers.0.self_attn.in_proj_weight",
            vec![3 * d, d],
        ),
        ("pipe_a.fc.weight", vec![12, d]),
        ("pipe_b.down.weight", vec![d, d, 3]),
        ("pipe_b.fc.bias", vec![12]),
        ("pipe_c.down.bias", vec![d]),
        ("pipe_c.encoder.layers.0.norm2.weight", vec![d]),
        ("pipe_c.fc.weight", vec![12, d]),
        ("pipeline_logits", vec![3]),
    ] {
        assert_eq!(names.get(name), Some(&shape), "{name} in {names:?}");
    }
    assert!(
        names.keys().all(|n| n == "pipeline_logits"
            || ["in_proj.", "pipe_a.", "pipe_b.", "pipe_c."]
                .iter()
                .any(|p| n.starts_with(p))),
        "only the multi-rate encoder's names: {names:?}"
    );
}

#[test]
fn the_multirate_encoder_refuses_other_tasks_than_the_aus() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 4, 30, Some(8), 3);
    let cfg = workspace_root().join("configs/systems/multirate-au.toml");
    let out = tests::run(
        "temporal",
        &[
            "train",
            "--config",
            &s(&cfg),
            "--data",
            &s(&data),
            "--features",
            "synthetic",
            "--tasks",
            "va,au",
            "--out",
            &s(&dir.path().join("run")),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("multirate") && err.contains("tasks = [au]") && err.contains("--tasks au"),
        "{err}"
    );
}
