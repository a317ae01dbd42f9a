//! `temporal evaluate` end to end on generated data: a submission made from the true labels
//! scores what the definition of the metrics says, and a submission with frames missing or
//! unknown is refused with a message naming them.

use shared::abaw::{read_mtl_annotations, write_mtl_submission, FrameRef};
use shared::{Decision, N_AU, N_EXPR};
use std::path::Path;
use tests::{run, run_ok};

/// Generate a small sample (annotations only) into `dir`.
fn sample(dir: &Path) {
    run_ok(
        "extractor",
        &[
            "sample-data",
            "--out",
            dir.to_str().unwrap(),
            "--videos",
            "6",
            "--frames",
            "120",
            "--no-frames",
        ],
    );
}

/// The decision that copies the labels (0 / false where a label is invalid: those frames are not scored).
fn perfect(rows: &[(FrameRef, shared::FrameLabels)]) -> Vec<(FrameRef, Decision)> {
    rows.iter()
        .map(|(f, l)| {
            (
                f.clone(),
                Decision {
                    valence: l.valence.unwrap_or(0.0),
                    arousal: l.arousal.unwrap_or(0.0),
                    expression: l.expression.unwrap_or(0),
                    aus: l.aus.unwrap_or([false; N_AU]),
                },
            )
        })
        .collect()
}

#[test]
fn perfect_submission_scores_by_definition() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let labels = dir.path().join("validation_set_annotations.txt");
    let truth = read_mtl_annotations(&labels).unwrap();
    let sub = dir.path().join("sub.txt");
    write_mtl_submission(&sub, &perfect(&truth.rows)).unwrap();
    let json = dir.path().join("scores.json");
    let table = run_ok(
        "temporal",
        &[
            "evaluate",
            "--pred",
            sub.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(table.contains("P_MTL"), "table:\n{table}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    // Perfect VA: CCC is exactly 1. Perfect classes: F1 is 1 for every class (AU) that occurs in
    // the labels and 0 (zero_division=0) for one that never occurs, which still counts in the mean.
    let present_expr = (0..N_EXPR as u8)
        .filter(|k| truth.rows.iter().any(|(_, l)| l.expression == Some(*k)))
        .count();
    let present_au = (0..N_AU)
        .filter(|a| truth.rows.iter().any(|(_, l)| l.aus.is_some_and(|x| x[*a])))
        .count();
    let f1_expr = present_expr as f64 / N_EXPR as f64;
    let f1_au = present_au as f64 / N_AU as f64;
    let close = |key: &str, want: f64| {
        let got = s[key].as_f64().unwrap_or_else(|| panic!("no {key} in {s}"));
        assert!((got - want).abs() < 1e-9, "{key}: {got} != {want}");
    };
    close("ccc_valence", 1.0);
    close("ccc_arousal", 1.0);
    close("f1_expr", f1_expr);
    close("f1_au", f1_au);
    close("p_mtl", 1.0 + f1_expr + f1_au);
    assert_eq!(s["f1_expr_per_class"].as_array().unwrap().len(), N_EXPR);
    assert_eq!(s["f1_au_per_au"].as_array().unwrap().len(), N_AU);
}

#[test]
fn missing_and_unknown_frames_are_named() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let labels = dir.path().join("validation_set_annotations.txt");
    let truth = read_mtl_annotations(&labels).unwrap();
    let mut rows = perfect(&truth.rows);
    let dropped = rows.remove(3).0;
    let sub = dir.path().join("sub.txt");
    write_mtl_submission(&sub, &rows).unwrap();
    let out = run(
        "temporal",
        &[
            "evaluate",
            "--pred",
            sub.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&dropped.image_name()) && err.contains("1 of the"),
        "{err}"
    );

    let mut rows = perfect(&truth.rows);
    let last = rows.last().unwrap().0.clone();
    let extra = FrameRef {
        video: last.video.clone(),
        frame: 99_999,
    };
    rows.push((extra.clone(), rows[0].1));
    write_mtl_submission(&sub, &rows).unwrap();
    let out = run(
        "temporal",
        &[
            "evaluate",
            "--pred",
            sub.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&extra.image_name()) && err.contains("not annotated"),
        "{err}"
    );
}
