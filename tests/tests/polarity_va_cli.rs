//! `configs/systems/polarity-va.toml` end to end on generated data: the ABAW5 polarity-gated VA
//! system (Wang et al.) trains its polarity classifiers and then its regressors in one run,
//! predicts the validation and test videos in one `temporal predict` (extreme frames at exactly
//! -1 or +1), beats the chance baseline on the mean CCC and writes a valid MTL submission.

use shared::abaw::read_predictions;
use std::path::Path;
use tests::{
    predict_both_splits, run, run_ok, submit_in_test_list_order, synthetic_sample,
    validation_scores_and_chance, workspace_root,
};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn config() -> String {
    s(&workspace_root().join("configs/systems/polarity-va.toml"))
}

#[test]
fn the_polarity_va_system_trains_in_two_stages_gates_extremes_beats_chance_on_ccc_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    // 20 videos: extreme labels (|y| >= 0.9) on both sides for valence and arousal.
    synthetic_sample(&data, 20, 240, Some(32), 5);
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
            "synthetic",
            "--threads",
            "1",
            "--out",
            &s(&run),
        ],
    );
    // Both stages ran in the run: the classifiers' loss first, the regressors' after.
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |m: &serde_json::Value, k: &str| m["losses"].get(k).is_some();
    assert!(
        has(&metrics[0], "valence_polarity") && !has(&metrics[0], "valence"),
        "epoch 1 trains the classifiers alone: {}",
        metrics[0]
    );
    let last = metrics.last().unwrap();
    assert!(
        has(last, "valence") && has(last, "arousal") && !has(last, "arousal_polarity"),
        "the last epoch trains the regressors alone: {last}"
    );

    predict_both_splits(&run, &dir.join("preds"));
    // The classifiers call some validation frames extreme: exactly -1 or +1 there, and values
    // strictly inside (-1, 1) from the regressors elsewhere.
    let mut extreme = 0;
    let mut inside = 0;
    for entry in std::fs::read_dir(dir.join("preds/validation")).unwrap() {
        for (_, p) in read_predictions(&entry.unwrap().path()).unwrap() {
            for v in [p.valence, p.arousal] {
                if v == -1.0 || v == 1.0 {
                    extreme += 1;
                } else {
                    assert!(v > -1.0 && v < 1.0, "{v}");
                    inside += 1;
                }
            }
        }
    }
    assert!(
        extreme > 0 && inside > extreme,
        "{extreme} gated values, {inside} regressed"
    );

    let (model, chance) = validation_scores_and_chance(dir, &data, &dir.join("preds/validation"));
    let ccc = |r: &serde_json::Value| {
        (r["ccc_valence"].as_f64().unwrap() + r["ccc_arousal"].as_f64().unwrap()) / 2.0
    };
    let (model, chance) = (ccc(&model), ccc(&chance));
    assert!(
        model > chance + 0.1,
        "validation mean CCC {model:.3} does not beat chance {chance:.3}"
    );
    submit_in_test_list_order(&dir.join("preds/test"), &data, &dir.join("submission.txt"));
}

#[test]
fn polarity_epochs_without_the_polarity_head_or_with_no_epoch_left_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 4, 30, Some(8), 3);
    let train = |extra: &[&str]| {
        let out_dir = s(&dir.path().join("run"));
        let data = s(&data);
        let cfg = config();
        let mut args = vec![
            "train",
            "--config",
            cfg.as_str(),
            "--data",
            data.as_str(),
            "--features",
            "synthetic",
            "--out",
            out_dir.as_str(),
        ];
        args.extend_from_slice(extra);
        let out = run("temporal", &args);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = train(&["--epochs", "10"]);
    assert!(
        err.contains("polarity_epochs = 10") && err.contains("epochs = 10"),
        "{err}"
    );
    // `--tasks au` drops the VA head, and with it the classifiers the first stage would train.
    let err = train(&["--tasks", "au"]);
    assert!(
        err.contains("polarity_epochs") && err.contains("va = \"polarity\""),
        "{err}"
    );
    assert!(
        !dir.path().join("run/checkpoints").exists(),
        "nothing trained"
    );
}
