//! "Other" (expression class 7) by a threshold on the top probability (ABAW5, Wang et al.): a
//! model trained without class 7 (`drop_other = true`) says Other where it is unsure, i.e. where
//! its largest expression probability is below a threshold t tuned on validation.
//!
//! What it does:
//! - [`tune_other_threshold`]: the t of the grid 0.00, 0.01, ..., 1.00 whose decisions give the
//!   best expression macro F1 on labelled frames (the smallest such t on ties; t <= 1/8 never
//!   changes a decision, since the top of 8 probabilities is at least 1/8). `temporal evaluate
//!   --tune-other-threshold OUT.json` writes it.
//! - The threshold file: `{"other_threshold": 0.42}` ([`write_other_threshold`],
//!   [`read_other_threshold`]). Keep it beside the AU thresholds file of the same validation
//!   predictions (e.g. `runs/x/au-thresholds.json` and `runs/x/other-threshold.json`); `temporal
//!   submit --other-threshold FILE` (or a number) applies it, and `evaluate --other-threshold`
//!   scores with it.
//! - [`apply_other_threshold`]: every frame whose top probability is below t gets class 7 as its
//!   argmax (7 raised past the top by the ensemble's vote margin and the row renormalised), so
//!   that `decide` (and every later step) says Other there; the other frames are unchanged.
//! - The marker `drop-other.json` that `temporal predict` leaves in the predictions of a
//!   `drop_other` run ([`write_marker`]); `ensemble` and `smooth` carry it to their output
//!   ([`carry_marker`]), and `submit` refuses such predictions without `--other-threshold`
//!   ([`require_threshold`]), since their class 7 is never the argmax.
//!
//! What it does not: train, or choose the AU thresholds (`shared::metrics::tune_au_thresholds`).

use super::forced::force_class;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use shared::abaw::PredictionSet;
use shared::metrics::macro_f1;
use shared::{FrameLabels, Prediction, N_EXPR};
use std::path::Path;

/// The expression class Other.
pub const OTHER: usize = 7;

/// The marker file of predictions made by a `drop_other` run.
pub const MARKER: &str = "drop-other.json";

/// The content of an Other threshold file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherThreshold {
    /// Predict Other where the top expression probability is below this.
    pub other_threshold: f32,
}

/// The content of the marker file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    /// Always true: the model was trained without class 7.
    pub drop_other: bool,
    /// The run folder the predictions come from (or the folders an ensemble combined).
    pub from: Vec<String>,
}

/// The largest expression probability of a prediction.
fn top(p: &Prediction) -> f32 {
    p.expression
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// The expression decision with the Other threshold: 7 when the top probability is below `t`,
/// else the argmax (first on ties).
pub fn decide_expression(p: &Prediction, t: f32) -> u8 {
    if top(p) < t {
        return OTHER as u8;
    }
    let mut best = 0;
    for (k, &q) in p.expression.iter().enumerate() {
        if q > p.expression[best] {
            best = k;
        }
    }
    best as u8
}

/// The Other threshold of the grid 0.00..=1.00 (step 0.01) with the best expression macro F1 on
/// the frames with a valid expression label (smallest on ties), and that F1.
pub fn tune_other_threshold(labels: &[FrameLabels], preds: &[Prediction]) -> (f32, f64) {
    let (gold, probs): (Vec<u8>, Vec<&Prediction>) = labels
        .iter()
        .zip(preds)
        .filter_map(|(l, p)| l.expression.map(|e| (e, p)))
        .unzip();
    let mut best = (0.0f32, f64::NEG_INFINITY);
    for i in 0..=100 {
        let t = i as f32 / 100.0;
        let pred: Vec<u8> = probs.iter().map(|p| decide_expression(p, t)).collect();
        let (f1, _) = macro_f1(&pred, &gold, N_EXPR);
        if f1 > best.1 + 1e-12 {
            best = (t, f1);
        }
    }
    best
}

/// Every frame whose top expression probability is below `t` gets Other as its argmax (see the
/// module documentation); returns how many frames changed.
pub fn apply_other_threshold(preds: &mut PredictionSet, t: f32) -> usize {
    let mut changed = 0;
    for rows in preds.values_mut() {
        for (_, p) in rows.iter_mut() {
            if top(p) < t {
                let before = p.expression;
                force_class(&mut p.expression, OTHER);
                changed += usize::from(before != p.expression);
            }
        }
    }
    changed
}

/// How to make a threshold file, for error messages.
fn how_to_make(path: &Path) -> String {
    format!(
        "make it with `temporal evaluate --pred <the validation predictions of the same model> \
         --labels <validation annotations> --tune-other-threshold {}`",
        path.display()
    )
}

/// Write `{"other_threshold": t}` atomically.
pub fn write_other_threshold(path: &Path, t: f32) -> Result<()> {
    let json = serde_json::to_string_pretty(&OtherThreshold { other_threshold: t })?;
    shared::atomic::write_atomically(path, |w| w.write_all(json.as_bytes()))
        .with_context(|| format!("writing the Other threshold to {}", path.display()))
}

/// Read a threshold file; a missing file or a bad one is an error naming it and saying how to
/// make it.
pub fn read_other_threshold(path: &Path) -> Result<f32> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => bail!(
            "cannot read the Other threshold file {} ({e}); {}",
            path.display(),
            how_to_make(path)
        ),
    };
    let t: OtherThreshold = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"other_threshold\": 0.4}}; {}",
            path.display(),
            how_to_make(path)
        )
    })?;
    check(t.other_threshold).with_context(|| format!("{}", path.display()))?;
    Ok(t.other_threshold)
}

fn check(t: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&t) {
        bail!("Other threshold {t} is not a probability in [0, 1]");
    }
    Ok(())
}

/// Parse `--other-threshold`: a number in [0, 1], or a threshold file.
pub fn parse_other_threshold(spec: &str) -> Result<f32> {
    if let Ok(t) = spec.trim().parse::<f32>() {
        check(t).with_context(|| format!("--other-threshold {spec}"))?;
        return Ok(t);
    }
    read_other_threshold(Path::new(spec))
}

/// Leave the marker in a prediction folder written by the `drop_other` run `run`.
pub fn write_marker(dir: &Path, run: &Path) -> Result<()> {
    write_marker_from(dir, vec![run.display().to_string()])
}

fn write_marker_from(dir: &Path, from: Vec<String>) -> Result<()> {
    let json = serde_json::to_string_pretty(&Marker {
        drop_other: true,
        from,
    })?;
    let path = dir.join(MARKER);
    shared::atomic::write_atomically(&path, |w| w.write_all(json.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// True when `dir` holds predictions of a `drop_other` run.
pub fn has_marker(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Remove a marker left in `dir` by earlier predictions (the folder is being rewritten by a
/// model trained with class 7).
pub fn clear_marker(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER);
    if path.is_file() {
        std::fs::remove_file(&path)
            .with_context(|| format!("removing the stale marker {}", path.display()))?;
    }
    Ok(())
}

/// Write the marker in `out` when any of the input folders has it, and remove a stale one
/// otherwise (`ensemble`, `smooth`).
pub fn carry_marker(inputs: &[&Path], out: &Path) -> Result<()> {
    let from: Vec<String> = inputs
        .iter()
        .filter(|d| has_marker(d))
        .map(|d| d.display().to_string())
        .collect();
    if from.is_empty() {
        return clear_marker(out);
    }
    write_marker_from(out, from)
}

/// `submit` of predictions with the marker needs an Other threshold: the error says which
/// folder, why, and how to make one.
pub fn require_threshold(preds: &Path, given: Option<&str>) -> Result<()> {
    if given.is_none() && has_marker(preds) {
        let default = Path::new("other-threshold.json");
        bail!(
            "{}: these predictions come from a model trained with drop_other = true, which never \
             predicts class 7 (Other) by itself; pass --other-threshold FILE (or a number) to \
             say Other where the top expression probability is below it. No threshold file \
             given; {}",
            preds.join(MARKER).display(),
            how_to_make(default)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::VideoId;

    fn pred(expr: [f32; N_EXPR]) -> Prediction {
        Prediction {
            valence: 0.0,
            arousal: 0.0,
            expression: expr,
            aus: [0.0; shared::N_AU],
        }
    }

    fn label(e: u8) -> FrameLabels {
        FrameLabels {
            expression: Some(e),
            ..Default::default()
        }
    }

    #[test]
    fn unsure_frames_become_other_below_the_threshold() {
        let sure = pred([0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let unsure = pred([0.4, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(decide_expression(&unsure, 0.5), 7);
        assert_eq!(decide_expression(&unsure, 0.4), 0, "not below: kept");
        assert_eq!(decide_expression(&sure, 0.5), 0);
        let v = VideoId::new("v").unwrap();
        let mut set: PredictionSet = [(v.clone(), vec![(1, sure), (2, unsure)])].into();
        assert_eq!(apply_other_threshold(&mut set, 0.5), 1);
        let t = shared::tasks::DEFAULT_AU_THRESHOLDS;
        assert_eq!(set[&v][0].1, sure);
        assert_eq!(set[&v][1].1.decide(&t).expression, 7);
        let sum: f32 = set[&v][1].1.expression.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_tuned_threshold_separates_unsure_frames_labelled_other() {
        // Frames labelled Other have top probabilities 0.35 and 0.45; the others 0.6 and above.
        let preds = [
            pred([0.35, 0.3, 0.35, 0.0, 0.0, 0.0, 0.0, 0.0]),
            pred([0.45, 0.3, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0]),
            pred([0.6, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            pred([0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        ];
        let labels = [label(7), label(7), label(0), label(1)];
        let (t, f1) = tune_other_threshold(&labels, &preds);
        // Every t in (0.45, 0.6] is perfect; the grid's smallest is 0.46.
        assert!((t - 0.46).abs() < 1e-6, "{t}");
        // Classes 0, 1 and 7 perfect, 5 others absent: 3/8.
        assert!((f1 - 3.0 / 8.0).abs() < 1e-12, "{f1}");
    }

    #[test]
    fn threshold_files_round_trip_and_missing_files_say_how_to_make_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other-threshold.json");
        write_other_threshold(&path, 0.42).unwrap();
        assert_eq!(read_other_threshold(&path).unwrap(), 0.42);
        assert_eq!(parse_other_threshold(path.to_str().unwrap()).unwrap(), 0.42);
        assert_eq!(parse_other_threshold("0.3").unwrap(), 0.3);
        let err = format!("{:#}", parse_other_threshold("1.5").unwrap_err());
        assert!(err.contains("not a probability"), "{err}");
        let missing = dir.path().join("none.json");
        let err = format!("{:#}", read_other_threshold(&missing).unwrap_err());
        assert!(
            err.contains("none.json") && err.contains("--tune-other-threshold"),
            "{err}"
        );
        std::fs::write(&path, r#"{"AU1": 0.5}"#).unwrap();
        let err = format!("{:#}", read_other_threshold(&path).unwrap_err());
        assert!(err.contains("other_threshold"), "{err}");
    }

    #[test]
    fn the_marker_travels_and_submit_needs_a_threshold_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, out) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("out"),
        );
        for d in [&a, &b, &out] {
            std::fs::create_dir_all(d).unwrap();
        }
        carry_marker(&[&a, &b], &out).unwrap();
        assert!(!has_marker(&out));
        require_threshold(&out, None).unwrap();
        write_marker(&b, Path::new("runs/expr")).unwrap();
        carry_marker(&[&a, &b], &out).unwrap();
        assert!(has_marker(&out));
        let err = require_threshold(&out, None).unwrap_err().to_string();
        assert!(
            err.contains("drop-other.json")
                && err.contains("drop_other = true")
                && err.contains("--tune-other-threshold"),
            "{err}"
        );
        require_threshold(&out, Some("0.4")).unwrap();
        // Rewritten from unmarked inputs: the stale marker goes.
        std::fs::remove_file(b.join(MARKER)).unwrap();
        carry_marker(&[&a, &b], &out).unwrap();
        assert!(!has_marker(&out));
        require_threshold(&out, None).unwrap();
    }
}
