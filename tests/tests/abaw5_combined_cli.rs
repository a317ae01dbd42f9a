//! The ABAW5 system of Wang et al. as its paper submits it: the polarity-gated VA run, the
//! bagged expression committee (rule vote) and the multi-rate AU run, each trained by its own
//! config over the same cache, combined by `ensemble --method best-per-task` into one MTL
//! submission. The choice made on validation takes each task from the member built for it, the
//! combination beats chance on every task, and the choice applied to the test predictions
//! (`--config`) gives a valid submission in test-list order.

use std::path::Path;
use tests::{
    predict_both_splits, run_ok, submit_in_test_list_order, synthetic_sample,
    validation_scores_and_chance, workspace_root,
};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `temporal train --config configs/systems/<system>.toml` on the sample, short.
fn train(system: &str, data: &Path, out: &Path, extra: &[&str]) {
    let cfg = workspace_root().join(format!("configs/systems/{system}.toml"));
    let (cfg, data, out) = (s(&cfg), s(data), s(out));
    let mut args = vec![
        "train",
        "--config",
        &cfg,
        "--data",
        &data,
        "--features",
        "synthetic",
        "--threads",
        "1",
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    run_ok("temporal", &args);
}

#[test]
fn the_three_abaw5_recipes_combine_best_per_task_into_one_submission() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    synthetic_sample(&data, 20, 240, Some(32), 9);
    let runs = dir.join("runs");
    train(
        "polarity-va",
        &data,
        &runs.join("polarity-va"),
        &["--epochs", "12", "--polarity-epochs", "4"],
    );
    train(
        "multirate-au",
        &data,
        &runs.join("multirate-au"),
        &["--epochs", "6"],
    );
    for seed in ["0", "1"] {
        let out = runs.join("bagged-expr").join(format!("s{seed}"));
        train(
            "bagged-expr",
            &data,
            &out,
            &["--epochs", "8", "--seed", seed],
        );
    }
    for run in [
        "polarity-va",
        "multirate-au",
        "bagged-expr/s0",
        "bagged-expr/s1",
    ] {
        predict_both_splits(&runs.join(run), &dir.join("preds").join(run));
    }
    let preds = dir.join("preds");
    let committee = dir.join("committee");
    run_ok(
        "temporal",
        &[
            "ensemble",
            &s(&preds.join("bagged-expr/s0/validation")),
            &s(&preds.join("bagged-expr/s1/validation")),
            "--method",
            "rule-vote",
            "--out",
            &s(&committee.join("validation")),
        ],
    );
    run_ok(
        "temporal",
        &[
            "ensemble",
            &s(&preds.join("bagged-expr/s0/test")),
            &s(&preds.join("bagged-expr/s1/test")),
            "--config",
            &s(&committee.join("validation/ensemble.json")),
            "--out",
            &s(&committee.join("test")),
        ],
    );
    let members = |split: &str| {
        [
            s(&preds.join("polarity-va").join(split)),
            s(&committee.join(split)),
            s(&preds.join("multirate-au").join(split)),
        ]
    };
    let combined = dir.join("combined");
    let labels = data.join("validation_set_annotations.txt");
    let [va, expr, au] = members("validation");
    run_ok(
        "temporal",
        &[
            "ensemble",
            &va,
            &expr,
            &au,
            "--method",
            "best-per-task",
            "--labels",
            &s(&labels),
            "--out",
            &s(&combined.join("validation")),
        ],
    );
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(combined.join("validation/ensemble.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            &saved["choice"]["va"],
            &saved["choice"]["expr"],
            &saved["choice"]["au"]
        ),
        (&0.into(), &1.into(), &2.into()),
        "each task from the member built for it: {}",
        saved["choice"]
    );
    let (model, chance) = validation_scores_and_chance(dir, &data, &combined.join("validation"));
    for key in ["ccc_valence", "ccc_arousal", "f1_expr", "f1_au"] {
        let (m, c) = (model[key].as_f64().unwrap(), chance[key].as_f64().unwrap());
        assert!(
            m > c + 0.05,
            "{key}: combined {m:.3} does not beat chance {c:.3}"
        );
    }
    let [va, expr, au] = members("test");
    run_ok(
        "temporal",
        &[
            "ensemble",
            &va,
            &expr,
            &au,
            "--config",
            &s(&combined.join("validation/ensemble.json")),
            "--out",
            &s(&combined.join("test")),
        ],
    );
    submit_in_test_list_order(&combined.join("test"), &data, &dir.join("submission.txt"));
}
