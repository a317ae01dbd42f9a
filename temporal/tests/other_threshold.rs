//! The Other threshold end to end through the binary: `temporal evaluate
//! --tune-other-threshold` on validation predictions of a `drop_other` model writes the
//! threshold, `temporal submit --other-threshold` applies it (the submission changes exactly on
//! the frames whose top probability is below it), and `submit` refuses such predictions without
//! a threshold, or with a threshold file that does not exist, saying how to make one.
//!
//! The predictions are generated: a model that never says Other (class 7 at probability 0), sure
//! of itself on frames of classes 0..6 and unsure (flat over 0..6) on frames labelled Other.

mod common;
use common::{s, temporal_err, temporal_ok};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::abaw::{
    prediction_path, read_mtl_submission, read_prediction_dir, write_mtl_annotations,
    write_predictions, write_test_list, FrameRef, PredictionSet,
};
use shared::{FrameLabels, Prediction, VideoId, N_AU, N_EXPR};
use std::path::Path;
use temporal::post::other::{decide_expression, read_other_threshold, write_marker};

/// Labels and the predictions of a `drop_other` model: 3 videos of 80 frames, classes drawn
/// every 10 frames, a quarter of them Other.
fn generate(seed: u64) -> (Vec<(FrameRef, FrameLabels)>, PredictionSet) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut labels = Vec::new();
    let mut preds = PredictionSet::new();
    for v in 0..3 {
        let video = VideoId::new(format!("video{v}")).unwrap();
        let mut class = 0u8;
        let mut rows = Vec::new();
        for f in 1..=80u32 {
            if f % 10 == 1 {
                class = if rng.gen_bool(0.25) {
                    7
                } else {
                    rng.gen_range(0..7)
                };
            }
            let mut e = [0f32; N_EXPR];
            for x in e.iter_mut().take(7) {
                *x = rng.gen_range(0.5..1.0);
            }
            if class < 7 {
                // Sure: the true class (or, one time in five, another) well above the rest.
                let top = if rng.gen_bool(0.8) {
                    class as usize
                } else {
                    rng.gen_range(0..7)
                };
                e[top] += rng.gen_range(3.0..8.0);
            }
            let sum: f32 = e.iter().sum();
            rows.push((
                f,
                Prediction {
                    valence: 0.0,
                    arousal: 0.0,
                    expression: e.map(|x| x / sum),
                    aus: [0.2; N_AU],
                },
            ));
            labels.push((
                FrameRef {
                    video: video.clone(),
                    frame: f,
                },
                FrameLabels {
                    valence: Some(0.0),
                    arousal: Some(0.0),
                    expression: Some(class),
                    aus: Some([false; N_AU]),
                },
            ));
        }
        preds.insert(video, rows);
    }
    (labels, preds)
}

fn f1_expr(json: &Path) -> f64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v["f1_expr"].as_f64().unwrap()
}

#[test]
fn the_other_threshold_round_trips_from_evaluate_to_submit() {
    let dir = tempfile::tempdir().unwrap();
    let (labels, preds) = generate(16);
    let (plain, marked) = (dir.path().join("plain"), dir.path().join("marked"));
    for folder in [&plain, &marked] {
        for (video, rows) in &preds {
            write_predictions(&prediction_path(folder, video), rows).unwrap();
        }
    }
    write_marker(&marked, Path::new("runs/bagged-expr-drop-other")).unwrap();
    let annotations = dir.path().join("validation.txt");
    write_mtl_annotations(&annotations, &labels).unwrap();
    let test_list = dir.path().join("test.txt");
    let frames: Vec<FrameRef> = labels.iter().map(|(f, _)| f.clone()).collect();
    write_test_list(&test_list, &frames).unwrap();

    // evaluate: tune and write the threshold beside the AU thresholds.
    let tuned = dir.path().join("other-threshold.json");
    let au = dir.path().join("au-thresholds.json");
    let out = temporal_ok(&[
        "evaluate",
        "--pred",
        s(&marked),
        "--labels",
        s(&annotations),
        "--tune-thresholds",
        s(&au),
        "--tune-other-threshold",
        s(&tuned),
    ]);
    assert!(out.contains(s(&tuned)), "{out}");
    let t = read_other_threshold(&tuned).unwrap();
    assert!(t > 1.0 / 7.0 && t < 1.0, "tuned threshold {t}");

    // The threshold helps on these labels, and evaluate scores with it as submit decides.
    let (before, after) = (
        dir.path().join("before.json"),
        dir.path().join("after.json"),
    );
    for (json, extra) in [(&before, None), (&after, Some(s(&tuned)))] {
        let mut args = vec![
            "evaluate",
            "--pred",
            s(&marked),
            "--labels",
            s(&annotations),
            "--json",
            s(json),
        ];
        if let Some(file) = extra {
            args.extend(["--other-threshold", file]);
        }
        temporal_ok(&args);
    }
    assert!(
        f1_expr(&after) > f1_expr(&before) + 0.05,
        "F1 with the threshold {} vs without {}",
        f1_expr(&after),
        f1_expr(&before)
    );

    // submit: refused without the threshold, and with a file that is not there.
    let sub = dir.path().join("submission.txt");
    let err = temporal_err(&[
        "submit",
        s(&marked),
        "--test-list",
        s(&test_list),
        "--out",
        s(&sub),
    ]);
    assert!(
        err.contains("drop-other.json")
            && err.contains("drop_other = true")
            && err.contains("--tune-other-threshold"),
        "{err}"
    );
    assert!(!sub.exists(), "nothing written");
    let missing = dir.path().join("no-such-threshold.json");
    let err = temporal_err(&[
        "submit",
        s(&marked),
        "--test-list",
        s(&test_list),
        "--out",
        s(&sub),
        "--other-threshold",
        s(&missing),
    ]);
    assert!(
        err.contains("no-such-threshold.json") && err.contains("--tune-other-threshold"),
        "{err}"
    );

    // With the threshold: Other exactly where the top probability is below it.
    temporal_ok(&[
        "submit",
        s(&marked),
        "--test-list",
        s(&test_list),
        "--out",
        s(&sub),
        "--other-threshold",
        s(&tuned),
    ]);
    let without = dir.path().join("without.txt");
    temporal_ok(&[
        "submit",
        s(&plain),
        "--test-list",
        s(&test_list),
        "--out",
        s(&without),
    ]);
    let with_rows = read_mtl_submission(&sub).unwrap();
    let without_rows = read_mtl_submission(&without).unwrap();
    assert_eq!(with_rows.len(), frames.len());
    // The probabilities as submit reads them (the CSV's precision).
    let written = read_prediction_dir(&marked).unwrap();
    let mut changed = 0;
    for ((f, a), (g, b)) in with_rows.iter().zip(&without_rows) {
        assert_eq!(f, g);
        let p = &written[&f.video][(f.frame - 1) as usize].1;
        let top = p.expression.iter().cloned().fold(0.0f32, f32::max);
        assert_eq!(a.expression, decide_expression(p, t), "{f:?}");
        if top < t {
            assert_eq!(a.expression, 7, "{f:?}: top {top} < {t}");
            assert_ne!(b.expression, 7, "the model alone never says Other");
            changed += 1;
        } else {
            assert_eq!(a.expression, b.expression, "{f:?}: top {top} >= {t}");
        }
        assert_eq!((a.valence, a.arousal, a.aus), (b.valence, b.arousal, b.aus));
    }
    assert!(changed > 10, "{changed} frames became Other");
    // A number works as well as the file.
    let by_number = dir.path().join("by-number.txt");
    temporal_ok(&[
        "submit",
        s(&marked),
        "--test-list",
        s(&test_list),
        "--out",
        s(&by_number),
        "--other-threshold",
        &t.to_string(),
    ]);
    assert_eq!(read_mtl_submission(&by_number).unwrap(), with_rows);
}
