//! `configs/systems/bagged-expr.toml` end to end on generated data: a sweep of bagged members
//! (different seeds, so different bootstrap samples) trains, each member predicts the validation
//! and test videos, `temporal ensemble --method rule-vote` combines them (checked frame by frame
//! against the rule), the committee beats the chance baseline on the expression F1, the saved
//! ensemble applies to the test predictions and writes a valid MTL submission. The paper's second
//! scheme for Other: a member trained with `drop_other = true` never predicts class 7, and the
//! threshold tuned on its validation predictions decides Other in its submission.

use shared::abaw::{read_mtl_submission, read_prediction_dir, read_test_list, PredictionSet};
use std::path::{Path, PathBuf};
use tests::{run, run_ok, synthetic_sample, workspace_root};

const PRIORITY: [usize; 4] = [2, 3, 5, 1];

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A score (`f1_expr`, ...) from `temporal evaluate --json`.
fn score(json: &Path, key: &str) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v[key].as_f64().unwrap()
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Every frame of the ensemble follows the rule: the first priority class some member
/// predicts, else a class with the most member votes. Returns how many frames the priority
/// decided.
fn check_rule(members: &[PredictionSet], ensemble: &PredictionSet) -> usize {
    let mut by_priority = 0;
    for (video, rows) in ensemble {
        for (i, (frame, p)) in rows.iter().enumerate() {
            let votes: Vec<usize> = members
                .iter()
                .map(|m| argmax(&m[video][i].1.expression))
                .collect();
            let got = argmax(&p.expression);
            match PRIORITY.iter().find(|k| votes.contains(k)) {
                Some(&k) => {
                    assert_eq!(got, k, "{video} frame {frame}: votes {votes:?}");
                    by_priority += 1;
                }
                None => {
                    let count = |c: usize| votes.iter().filter(|&&v| v == c).count();
                    let most = votes.iter().map(|&v| count(v)).max().unwrap();
                    assert_eq!(count(got), most, "{video} frame {frame}: votes {votes:?}");
                }
            }
        }
    }
    by_priority
}

#[test]
fn a_bagged_expression_committee_trains_votes_by_rule_beats_chance_and_submits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 10, 240, Some(32), 5);
    let sweep_out = dir.path().join("sweep");
    let sweep = dir.path().join("bagged.toml");
    std::fs::write(
        &sweep,
        format!(
            "name = \"bagged\"\nbase = {:?}\nout = {:?}\nseeds = [0, 1, 2]\narchs = [\"none\"]\n\
             topologies = [\"basic\"]\nfeatures = [[\"synthetic\"]]\n",
            s(&workspace_root().join("configs/systems/bagged-expr.toml")),
            s(&sweep_out)
        ),
    )
    .unwrap();
    let mut runs: Vec<PathBuf> = Vec::new();
    for i in 0..3 {
        let index = i.to_string();
        run_ok(
            "temporal",
            &[
                "train",
                "--sweep",
                &s(&sweep),
                "--sweep-index",
                &index,
                "--data",
                &s(&data),
                "--threads",
                "1",
            ],
        );
        let run = sweep_out.join(format!("none-basic-s{i}-synthetic"));
        let log = std::fs::read_to_string(run.join("train.log")).unwrap();
        assert!(
            log.contains("bootstrap:") && log.contains(&format!("seed {i}")),
            "{log}"
        );
        for split in ["validation", "test"] {
            run_ok(
                "temporal",
                &["predict", "--run", &s(&run), "--split", split],
            );
        }
        runs.push(run);
    }
    let labels = data.join("validation_set_annotations.txt");

    // Bad input: a priority class outside 0..7.
    let out = run(
        "temporal",
        &[
            "ensemble",
            &s(&sweep_out),
            "--method",
            "rule-vote",
            "--priority",
            "2,9",
            "--out",
            &s(&dir.path().join("bad")),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"9\" is not an expression class"), "{err}");

    // The rule vote over the sweep's finished members.
    let vote = dir.path().join("vote");
    run_ok(
        "temporal",
        &[
            "ensemble",
            &s(&sweep_out),
            "--split",
            "validation",
            "--method",
            "rule-vote",
            "--priority",
            "2,3,5,1",
            "--labels",
            &s(&labels),
            "--out",
            &s(&vote),
        ],
    );
    let members: Vec<PredictionSet> = runs
        .iter()
        .map(|r| read_prediction_dir(&r.join("predictions/validation")).unwrap())
        .collect();
    let combined = read_prediction_dir(&vote).unwrap();
    let decided = check_rule(&members, &combined);
    assert!(decided > 0, "no frame had a priority class");

    // Scores: the committee and chance.
    run_ok(
        "temporal",
        &[
            "baseline",
            "--data",
            &s(&data),
            "--split",
            "validation",
            "--out",
            &s(&dir.path().join("chance")),
        ],
    );
    for (name, preds) in [
        ("vote", vote.clone()),
        ("chance", dir.path().join("chance")),
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
                &s(&dir.path().join(format!("{name}.json"))),
            ],
        );
    }
    let (model, chance) = (
        score(&dir.path().join("vote.json"), "f1_expr"),
        score(&dir.path().join("chance.json"), "f1_expr"),
    );
    assert!(
        model > chance + 0.1,
        "rule-vote committee expression F1 {model:.3} does not beat chance {chance:.3}"
    );

    // The saved ensemble on the test predictions, then the submission.
    let test_vote = dir.path().join("vote-test");
    let test_members: Vec<String> = runs
        .iter()
        .map(|r| s(&r.join("predictions/test")))
        .collect();
    let mut args = vec!["ensemble".to_string()];
    args.extend(test_members);
    args.extend([
        "--config".into(),
        s(&vote.join("ensemble.json")),
        "--out".into(),
        s(&test_vote),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok("temporal", &args);
    let submission = dir.path().join("submission.txt");
    let test_list = data.join("test_set_list.txt");
    run_ok(
        "temporal",
        &[
            "submit",
            &s(&test_vote),
            "--test-list",
            &s(&test_list),
            "--out",
            &s(&submission),
        ],
    );
    let rows = read_mtl_submission(&submission).unwrap();
    assert_eq!(
        rows.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        read_test_list(&test_list).unwrap(),
        "one submission row per test-list frame, in its order"
    );
}

#[test]
fn a_member_trained_without_other_gets_other_from_the_tuned_threshold_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 10, 240, Some(32), 5);
    let system =
        std::fs::read_to_string(workspace_root().join("configs/systems/bagged-expr.toml")).unwrap();
    assert!(
        system.contains("\n[loss]\n"),
        "the system config has a [loss] table"
    );
    let config = dir.path().join("drop-other.toml");
    std::fs::write(
        &config,
        system.replace("\n[loss]\n", "\n[loss]\ndrop_other = true\n"),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            &s(&config),
            "--data",
            &s(&data),
            "--features",
            "synthetic",
            "--threads",
            "1",
            "--out",
            &s(&run_dir),
        ],
    );
    for split in ["validation", "test"] {
        run_ok(
            "temporal",
            &["predict", "--run", &s(&run_dir), "--split", split],
        );
        let preds = run_dir.join("predictions").join(split);
        assert!(
            preds.join("drop-other.json").is_file(),
            "{split}: no marker"
        );
        let set = read_prediction_dir(&preds).unwrap();
        assert!(
            set.values().flatten().all(|(_, p)| p.expression[7] == 0.0),
            "{split}: class 7 has probability 0"
        );
    }
    let (val, test) = (
        run_dir.join("predictions/validation"),
        run_dir.join("predictions/test"),
    );
    let labels = data.join("validation_set_annotations.txt");
    let threshold = run_dir.join("other-threshold.json");
    run_ok(
        "temporal",
        &[
            "evaluate",
            "--pred",
            &s(&val),
            "--labels",
            &s(&labels),
            "--tune-thresholds",
            &s(&run_dir.join("au-thresholds.json")),
            "--tune-other-threshold",
            &s(&threshold),
        ],
    );
    run_ok(
        "temporal",
        &[
            "baseline",
            "--data",
            &s(&data),
            "--split",
            "validation",
            "--out",
            &s(&dir.path().join("chance")),
        ],
    );
    for (name, preds, other) in [
        ("plain", &val, None),
        ("other", &val, Some(&threshold)),
        ("chance", &dir.path().join("chance"), None),
    ] {
        let json = s(&dir.path().join(format!("{name}.json")));
        let mut args: Vec<String> = vec![
            "evaluate".into(),
            "--pred".into(),
            s(preds),
            "--labels".into(),
            s(&labels),
            "--json".into(),
            json,
        ];
        if let Some(t) = other {
            args.extend(["--other-threshold".into(), s(t)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok("temporal", &args);
    }
    let f1 = |name: &str| score(&dir.path().join(format!("{name}.json")), "f1_expr");
    assert!(
        f1("other") >= f1("plain"),
        "the tuned threshold lowers the validation F1: {} < {}",
        f1("other"),
        f1("plain")
    );
    assert!(
        f1("other") > f1("chance") + 0.1,
        "drop_other member with the threshold: F1 {:.3} vs chance {:.3}",
        f1("other"),
        f1("chance")
    );

    // Submit: refused without the threshold, Other below it with it.
    let test_list = data.join("test_set_list.txt");
    let submission = dir.path().join("submission.txt");
    let out = run(
        "temporal",
        &[
            "submit",
            &s(&test),
            "--test-list",
            &s(&test_list),
            "--out",
            &s(&submission),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("drop-other.json") && err.contains("--tune-other-threshold"),
        "{err}"
    );
    run_ok(
        "temporal",
        &[
            "submit",
            &s(&test),
            "--test-list",
            &s(&test_list),
            "--out",
            &s(&submission),
            "--other-threshold",
            &s(&threshold),
        ],
    );
    let t: f32 =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&threshold).unwrap())
            .unwrap()["other_threshold"]
            .as_f64()
            .unwrap() as f32;
    let preds = read_prediction_dir(&test).unwrap();
    let rows = read_mtl_submission(&submission).unwrap();
    assert_eq!(rows.len(), read_test_list(&test_list).unwrap().len());
    for (f, d) in &rows {
        let (_, p) = preds[&f.video]
            .iter()
            .find(|(frame, _)| *frame == f.frame)
            .unwrap();
        let top = p.expression.iter().cloned().fold(0.0f32, f32::max);
        let want = if top < t {
            7
        } else {
            argmax(&p.expression) as u8
        };
        assert_eq!(d.expression, want, "{f:?}: top {top}, threshold {t}");
    }
}
