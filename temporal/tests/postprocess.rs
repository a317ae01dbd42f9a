//! From raw predictions to a submission: smoothing, ensembling, submission files and evaluation
//! of prediction folders, on hand-made series (values computed by hand in the comments) and on
//! generated data (noisy predictions of known labels), through the library and the binary.

mod common;
use common::{s, temporal_err, temporal_ok};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::abaw::{
    prediction_path, read_mtl_submission, read_per_task_file, read_prediction_dir,
    read_predictions, write_au_thresholds, write_mtl_annotations, write_predictions,
    write_test_list, FrameRef, PerTask, PredictionSet,
};
use shared::metrics::MtlScore;
use shared::tasks::DEFAULT_AU_THRESHOLDS;
use shared::{Decision, FrameLabels, Prediction, VideoId, N_AU, N_EXPR};
use std::collections::BTreeMap;
use std::f32::consts::TAU;
use std::path::{Path, PathBuf};
use temporal::post::ensemble::{
    check_coverage, mean_prediction, vote_ensemble, vote_prediction, EnsembleFile, VOTE_MARGIN,
};
use temporal::post::evaluate::{evaluate_prediction_dir, evaluate_submission};
use temporal::post::smooth::{
    smooth_all, smooth_video, tune, Method, Smoothing, SmoothingConfig, SmoothingFile,
};
use temporal::post::submit::{mtl_rows, per_task_rows};

// ---------- helpers ----------

fn vid(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

/// A prediction with the given VA, expression and AU probabilities (missing entries 0).
fn pred(v: f32, a: f32, expr: &[f32], aus: &[f32]) -> Prediction {
    let mut p = Prediction {
        valence: v,
        arousal: a,
        expression: [0.0; N_EXPR],
        aus: [0.0; N_AU],
    };
    p.expression[..expr.len()].copy_from_slice(expr);
    p.aus[..aus.len()].copy_from_slice(aus);
    p
}

fn close(got: f32, want: f64, what: &str) {
    assert!(
        (f64::from(got) - want).abs() < 1e-6,
        "{what}: got {got}, want {want}"
    );
}

fn write_set(dir: &Path, set: &PredictionSet) {
    for (video, rows) in set {
        write_predictions(&prediction_path(dir, video), rows).unwrap();
    }
}

/// Generated data: labels of smooth VA curves, piecewise-constant expressions and AUs, and
/// predictions = labels + uniform noise (so smoothing helps). Every 5th frame is predicted but
/// not annotated; some labels are invalid.
struct Generated {
    labels: Vec<(FrameRef, FrameLabels)>,
    preds: PredictionSet,
}

fn generate(seed: u64, videos: usize, frames: u32, noise: f32) -> Generated {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut labels = Vec::new();
    let mut preds = PredictionSet::new();
    for v in 0..videos {
        let video = vid(&format!("video{v}"));
        let (pv, pa) = (rng.gen_range(0.0..TAU), rng.gen_range(0.0..TAU));
        let mut class = 0u8;
        let mut aus = [false; N_AU];
        let mut rows = Vec::new();
        for f in 1..=frames {
            if f % 40 == 1 {
                class = rng.gen_range(0..N_EXPR as u8);
            }
            if f % 30 == 1 {
                for a in aus.iter_mut() {
                    *a = rng.gen_bool(0.3);
                }
            }
            let t = f as f32;
            let valence = 0.6 * (TAU * t / 80.0 + pv).sin();
            let arousal = 0.5 * (TAU * t / 120.0 + pa).cos();
            let mut e = [0.1f32; N_EXPR];
            e[class as usize] += 0.25;
            for x in e.iter_mut() {
                *x += rng.gen_range(0.0..0.5);
            }
            let sum: f32 = e.iter().sum();
            let mut p = Prediction {
                valence: valence + rng.gen_range(-noise..noise),
                arousal: arousal + rng.gen_range(-noise..noise),
                expression: e.map(|x| x / sum),
                aus: [0.0; N_AU],
            };
            for (a, q) in p.aus.iter_mut().enumerate() {
                let base = if aus[a] { 0.62 } else { 0.38 };
                *q = (base + rng.gen_range(-0.3f32..0.3)).clamp(0.0, 1.0);
            }
            rows.push((f, p));
            if f % 5 != 0 {
                labels.push((
                    FrameRef {
                        video: video.clone(),
                        frame: f,
                    },
                    FrameLabels {
                        valence: (f % 17 != 0).then_some(valence),
                        arousal: Some(arousal),
                        expression: (f % 23 != 0).then_some(class),
                        aus: (f % 29 != 0).then_some(aus),
                    },
                ));
            }
        }
        preds.insert(video, rows);
    }
    Generated { labels, preds }
}

// ---------- smoothing ----------

#[test]
fn smoothing_hand_made_series_with_edges_and_clipping() {
    // One video of 4 rows (frames 1, 2, 5, 6: gaps are ignored, rows are consecutive).
    // Valence 1.6 is clipped to 1 before smoothing. Mean, W = 3:
    //   valence [1, 0, 0.6, 0.3] -> [(1+0)/2, (1+0+0.6)/3, (0+0.6+0.3)/3, (0.6+0.3)/2]
    //                             = [0.5, 0.533333, 0.3, 0.45]
    // AU1 [0.2, 0.8, 0.5, 0.5] -> [0.5, 0.5, 0.6, 0.5].
    let rows = vec![
        (1, pred(1.6, -0.2, &[1.0], &[0.2])),
        (2, pred(0.0, -0.4, &[1.0], &[0.8])),
        (5, pred(0.6, -0.6, &[1.0], &[0.5])),
        (6, pred(0.3, -0.8, &[1.0], &[0.5])),
    ];
    let mean3 = Smoothing {
        method: Method::Mean,
        window: 3,
    };
    let cfg = SmoothingConfig {
        valence: mean3,
        arousal: Smoothing::NONE,
        expr: mean3,
        au: mean3,
    };
    let out = smooth_video(&rows, &cfg);
    let frames: Vec<u32> = out.iter().map(|(f, _)| *f).collect();
    assert_eq!(frames, [1, 2, 5, 6]);
    for (i, want) in [0.5, 1.6 / 3.0, 0.3, 0.45].iter().enumerate() {
        close(out[i].1.valence, *want, &format!("valence row {i}"));
    }
    // Window 1: arousal untouched.
    for i in 0..4 {
        assert_eq!(out[i].1.arousal, rows[i].1.arousal);
    }
    for (i, want) in [0.5, 0.5, 0.6, 0.5].iter().enumerate() {
        close(out[i].1.aus[0], *want, &format!("AU1 row {i}"));
    }
    assert_eq!(out[0].1.expression[0], 1.0);
}

#[test]
fn median_expression_is_renormalised() {
    // Median, W = 3 on three rows:
    //   row 0 sees rows 0-1: Neutral (0.6+0.2)/2 = 0.4, Anger (0.4+0.8)/2 = 0.6  (sum 1);
    //   row 1 sees rows 0-2: medians 0.5, 0.4, 0 (Disgust: 0, 0, 0.4) sum 0.9 -> 5/9, 4/9, 0;
    //   row 2 sees rows 1-2: 0.35, 0.45, 0.2 (sum 1).
    let rows = vec![
        (1, pred(0.0, 0.0, &[0.6, 0.4, 0.0], &[])),
        (2, pred(0.0, 0.0, &[0.2, 0.8, 0.0], &[])),
        (3, pred(0.0, 0.0, &[0.5, 0.1, 0.4], &[])),
    ];
    let cfg = SmoothingConfig {
        expr: Smoothing {
            method: Method::Median,
            window: 3,
        },
        ..SmoothingConfig::uniform(Method::Mean, temporal::post::smooth::Windows::all(1))
    };
    let out = smooth_video(&rows, &cfg);
    let want = [
        [0.4, 0.6, 0.0],
        [5.0 / 9.0, 4.0 / 9.0, 0.0],
        [0.35, 0.45, 0.2],
    ];
    for (i, w) in want.iter().enumerate() {
        for (k, &want) in w.iter().enumerate() {
            close(out[i].1.expression[k], want, &format!("row {i} class {k}"));
        }
        let sum: f32 = out[i].1.expression.iter().sum();
        close(sum, 1.0, "sum");
    }
}

#[test]
fn smoothing_never_mixes_videos() {
    // Two videos, constant 0.9 and constant -0.9 valence: any smoothing of each alone keeps it
    // constant; a window reaching across would pull the ends towards 0.
    let mut set = PredictionSet::new();
    set.insert(
        vid("a"),
        (1..=5)
            .map(|f| (f, pred(0.9, 0.0, &[1.0], &[1.0])))
            .collect(),
    );
    set.insert(
        vid("b"),
        (1..=5)
            .map(|f| (f, pred(-0.9, 0.0, &[0.0, 1.0], &[0.0])))
            .collect(),
    );
    for method in Method::ALL {
        let cfg = SmoothingConfig::uniform(method, temporal::post::smooth::Windows::all(61));
        let out = smooth_all(&set, &cfg);
        for (video, value, au) in [("a", 0.9, 1.0), ("b", -0.9, 0.0)] {
            for (_, p) in &out[&vid(video)] {
                close(p.valence, value, &format!("{method} valence of {video}"));
                close(p.aus[0], au, &format!("{method} AU1 of {video}"));
            }
        }
    }
}

#[test]
fn tuning_never_lowers_the_validation_score_and_picks_none_for_perfect_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(7, 3, 240, 0.6);
    let labels = dir.path().join("validation_set_annotations.txt");
    write_mtl_annotations(&labels, &g.labels).unwrap();
    let raw = dir.path().join("raw");
    write_set(&raw, &g.preds);

    let file = tune(&g.preds, &labels, &DEFAULT_AU_THRESHOLDS).unwrap();
    let report = file.tuning.clone().unwrap();
    for (name, t) in &report.groups {
        assert!(t.smoothed >= t.unsmoothed, "{name}: {t:?}");
    }
    assert_eq!(report.max_window, temporal::post::smooth::MAX_TUNED_WINDOW);
    let smoothed = dir.path().join("smoothed");
    write_set(&smoothed, &smooth_all(&g.preds, &file.smoothing));
    let before = evaluate_prediction_dir(&raw, &labels, &DEFAULT_AU_THRESHOLDS).unwrap();
    let after = evaluate_prediction_dir(&smoothed, &labels, &DEFAULT_AU_THRESHOLDS).unwrap();
    // The noise is strong and the signals slow: smoothing must help, and the tuner's own
    // scores are those of the written files.
    assert!(
        after.p_mtl > before.p_mtl,
        "{} -> {}",
        before.p_mtl,
        after.p_mtl
    );
    let got = [
        ("valence", after.ccc_valence),
        ("arousal", after.ccc_arousal),
        ("expr", after.f1_expr),
        ("au", after.f1_au),
    ];
    for (name, score) in got {
        assert!(
            (report.groups[name].smoothed - score).abs() < 1e-9,
            "{name}: tuner {} vs file {score}",
            report.groups[name].smoothed
        );
    }
    assert!(file.smoothing.valence.window > 1, "{:?}", file.smoothing);

    // Predictions equal to the labels: nothing beats window 1 (ties go to no smoothing).
    let mut perfect = g.preds.clone();
    for (frame, l) in &g.labels {
        let rows = perfect.get_mut(&frame.video).unwrap();
        let row = rows.iter_mut().find(|(f, _)| *f == frame.frame).unwrap();
        let mut p = pred(l.valence.unwrap_or(0.0), l.arousal.unwrap_or(0.0), &[], &[]);
        p.expression[l.expression.unwrap_or(0) as usize] = 1.0;
        for (a, &on) in l.aus.unwrap_or([false; N_AU]).iter().enumerate() {
            p.aus[a] = if on { 1.0 } else { 0.0 };
        }
        row.1 = p;
    }
    let file = tune(&perfect, &labels, &DEFAULT_AU_THRESHOLDS).unwrap();
    assert_eq!(file.smoothing.valence, Smoothing::NONE);
    assert_eq!(file.smoothing.arousal, Smoothing::NONE);
}

#[test]
fn smooth_command_tunes_writes_the_choice_and_applies_it_to_other_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(11, 2, 150, 0.5);
    let labels = dir.path().join("val.txt");
    write_mtl_annotations(&labels, &g.labels).unwrap();
    let raw = dir.path().join("raw");
    write_set(&raw, &g.preds);
    let tuned = dir.path().join("tuned");
    let stdout = temporal_ok(&["smooth", s(&raw), "--out", s(&tuned), "--tune", s(&labels)]);
    let json = tuned.join("smoothing.json");
    assert!(
        stdout.contains(s(&json)) && stdout.contains(s(&tuned)),
        "{stdout}"
    );
    let file: SmoothingFile =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        read_prediction_dir(&tuned).unwrap(),
        smooth_all(&g.preds, &file.smoothing)
    );
    // The same choice applied with --config (e.g. to test predictions) gives the same files.
    let again = dir.path().join("again");
    temporal_ok(&["smooth", s(&raw), "--out", s(&again), "--config", s(&json)]);
    assert_eq!(
        read_prediction_dir(&again).unwrap(),
        read_prediction_dir(&tuned).unwrap()
    );
    // Explicit flags.
    let flags = dir.path().join("flags");
    temporal_ok(&[
        "smooth",
        s(&raw),
        "--out",
        s(&flags),
        "--method",
        "binomial",
        "--window",
        "va=5,expr=3,au=1",
    ]);
    let b = |w| Smoothing {
        method: Method::Binomial,
        window: w,
    };
    let cfg = SmoothingConfig {
        valence: b(5),
        arousal: b(5),
        expr: b(3),
        au: b(1),
    };
    assert_eq!(
        read_prediction_dir(&flags).unwrap(),
        smooth_all(&g.preds, &cfg)
    );
    let err = temporal_err(&["smooth", s(&raw), "--out", s(&flags), "--window", "4"]);
    assert!(err.contains("not an odd number"), "{err}");
}

// ---------- ensembling ----------

#[test]
fn mean_is_weighted() {
    // Weights 0.75 / 0.25: valence 0.75*0.4 + 0.25*(-0.4) = 0.2; Neutral 0.75*1 + 0 = 0.75,
    // Anger 0.25; AU1 0.75*0.2 + 0.25*0.6 = 0.3.
    let m = mean_prediction(
        &[
            pred(0.4, 0.0, &[1.0, 0.0], &[0.2]),
            pred(-0.4, 1.0, &[0.0, 1.0], &[0.6]),
        ],
        &[0.75, 0.25],
    );
    close(m.valence, 0.2, "valence");
    close(m.arousal, 0.25, "arousal");
    close(m.expression[0], 0.75, "Neutral");
    close(m.expression[1], 0.25, "Anger");
    close(m.aus[0], 0.3, "AU1");
}

#[test]
fn vote_follows_the_majority_and_breaks_ties_by_mean_probability() {
    let third = [1.0 / 3.0; 3];
    // Expression: members vote Anger, Anger, Disgust; the mean favours Disgust
    // (Anger 0.8/3, Disgust 1.7/3, Fear 0.5/3). The vote wins: Anger is raised to
    // 1.7/3 + 1e-4 and the row renormalised by 1.7/3 + 1e-4 + 1.7/3 + 0.5/3.
    // AUs: AU1 votes on, on, off (mean 1.4/3 < 0.5) -> written 0.5;
    //      AU2 votes off, off, on (mean 1.84/3 >= 0.5) -> written 0.5 - 1e-4;
    //      AU4 on, on, on (mean 0.8) -> unchanged.
    let members = [
        pred(0.3, 0.0, &[0.0, 0.4, 0.35, 0.25], &[0.6, 0.4, 0.9]),
        pred(0.0, 0.3, &[0.0, 0.4, 0.35, 0.25], &[0.7, 0.45, 0.8]),
        pred(0.6, 0.0, &[0.0, 0.0, 1.0, 0.0], &[0.1, 0.99, 0.7]),
    ];
    let v = vote_prediction(&members, &third);
    close(v.valence, 0.3, "valence is the mean");
    close(v.arousal, 0.1, "arousal is the mean");
    let margin = f64::from(VOTE_MARGIN);
    let sum = 1.7 / 3.0 + margin + 1.7 / 3.0 + 0.5 / 3.0;
    close(v.expression[1], (1.7 / 3.0 + margin) / sum, "Anger");
    close(v.expression[2], (1.7 / 3.0) / sum, "Disgust");
    close(v.expression[3], (0.5 / 3.0) / sum, "Fear");
    close(v.aus[0], 0.5, "AU1");
    close(v.aus[1], 0.5 - margin, "AU2");
    close(v.aus[2], 0.8, "AU4");
    let d = v.decide(&DEFAULT_AU_THRESHOLDS);
    assert_eq!(d.expression, 1);
    assert_eq!(&d.aus[..3], &[true, false, true]);

    // Two members, one vote each: ties go to the higher mean probability, and the mean
    // probabilities are written as they are. Neutral 0.35 vs Fear 0.65 -> Fear.
    // AU1 votes on/off, mean 0.4 -> off; AU2 on/off, mean 0.675 -> on.
    let pair = [
        pred(0.0, 0.0, &[0.6, 0.0, 0.0, 0.4], &[0.6, 0.45]),
        pred(0.0, 0.0, &[0.1, 0.0, 0.0, 0.9], &[0.2, 0.9]),
    ];
    let v = vote_prediction(&pair, &[0.5, 0.5]);
    assert_eq!(v, mean_prediction(&pair, &[0.5, 0.5]));
    let d = v.decide(&DEFAULT_AU_THRESHOLDS);
    assert_eq!((d.expression, d.aus[0], d.aus[1]), (3, false, true));
    // Weighted 0.75 / 0.25, the first member outvotes the second: Neutral, although the mean
    // (Neutral 0.475, Fear 0.525) favours Fear; AU1 on (mean 0.5 stays), AU2 off (mean 0.5625
    // -> 0.4999).
    let v = vote_prediction(&pair, &[0.75, 0.25]);
    let sum = 0.525 + margin + 0.525;
    close(v.expression[0], (0.525 + margin) / sum, "Neutral");
    close(v.expression[3], 0.525 / sum, "Fear");
    close(v.aus[0], 0.5, "AU1");
    close(v.aus[1], 0.5 - margin, "AU2");
    let d = v.decide(&DEFAULT_AU_THRESHOLDS);
    assert_eq!((d.expression, d.aus[0], d.aus[1]), (0, true, false));
}

#[test]
fn members_must_cover_the_same_frames() {
    let p = pred(0.0, 0.0, &[1.0], &[]);
    let mut a = PredictionSet::new();
    a.insert(vid("v1"), vec![(1, p), (2, p), (3, p)]);
    let mut b = PredictionSet::new();
    b.insert(vid("v1"), vec![(1, p), (3, p), (4, p)]);
    let names = [PathBuf::from("run_a"), PathBuf::from("run_b")];
    let err = check_coverage(&names, &[a.clone(), b])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("video v1")
            && err.contains("frames [2] only in run_a")
            && err.contains("frames [4] only in run_b"),
        "{err}"
    );
    let mut c = a.clone();
    c.insert(vid("v2"), vec![(1, p)]);
    let err = check_coverage(&names, &[a.clone(), c])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("video v2 is in run_b but not in run_a"),
        "{err}"
    );
    assert!(check_coverage(&names, &[a.clone(), a.clone()]).is_ok());
    // A vote of identical members is each member.
    let one = vote_ensemble(&[a.clone(), a.clone()], &[0.5, 0.5]);
    assert_eq!(one, a);
}

#[test]
fn ensemble_command_mean_vote_and_best_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(3, 2, 60, 0.3);
    let labels = dir.path().join("val.txt");
    write_mtl_annotations(&labels, &g.labels).unwrap();
    // Member k is perfect on one task group and poor (constant) on the others: member 0 on VA,
    // member 1 on expression, member 2 on AUs.
    let truth: BTreeMap<&FrameRef, &FrameLabels> = g.labels.iter().map(|(f, l)| (f, l)).collect();
    let poor = pred(0.0, 0.0, &[1.0], &[0.0; N_AU]);
    let member = |k: usize| -> PredictionSet {
        g.preds
            .iter()
            .map(|(video, rows)| {
                let rows = rows
                    .iter()
                    .map(|(f, _)| {
                        let key = FrameRef {
                            video: video.clone(),
                            frame: *f,
                        };
                        let mut p = poor;
                        if let Some(l) = truth.get(&key) {
                            match k {
                                0 => {
                                    p.valence = l.valence.unwrap_or(0.0);
                                    p.arousal = l.arousal.unwrap_or(0.0);
                                }
                                1 => {
                                    p.expression = [0.0; N_EXPR];
                                    p.expression[l.expression.unwrap_or(0) as usize] = 1.0;
                                }
                                _ => {
                                    for (a, on) in l.aus.unwrap_or([false; N_AU]).iter().enumerate()
                                    {
                                        p.aus[a] = if *on { 1.0 } else { 0.0 };
                                    }
                                }
                            }
                        }
                        (*f, p)
                    })
                    .collect();
                (video.clone(), rows)
            })
            .collect()
    };
    let dirs: Vec<PathBuf> = (0..3).map(|k| dir.path().join(format!("m{k}"))).collect();
    let sets: Vec<PredictionSet> = (0..3).map(member).collect();
    for (d, set) in dirs.iter().zip(&sets) {
        write_set(d, set);
    }
    let out = dir.path().join("best");
    let stdout = temporal_ok(&[
        "ensemble",
        s(&dirs[0]),
        s(&dirs[1]),
        s(&dirs[2]),
        "--out",
        s(&out),
        "--method",
        "best-per-task",
        "--labels",
        s(&labels),
    ]);
    assert!(stdout.contains(s(&out)), "{stdout}");
    let file: EnsembleFile =
        serde_json::from_str(&std::fs::read_to_string(out.join("ensemble.json")).unwrap()).unwrap();
    let c = file.choice.unwrap();
    assert_eq!((c.va, c.expr, c.au), (0, 1, 2));
    let combined = read_prediction_dir(&out).unwrap();
    for (video, rows) in &combined {
        for (i, (f, p)) in rows.iter().enumerate() {
            assert_eq!(*f, sets[0][video][i].0);
            assert_eq!(p.valence, sets[0][video][i].1.valence);
            assert_eq!(p.expression, sets[1][video][i].1.expression);
            assert_eq!(p.aus, sets[2][video][i].1.aus);
        }
    }
    // The combination is perfect wherever labels are valid.
    let score = evaluate_prediction_dir(&out, &labels, &DEFAULT_AU_THRESHOLDS).unwrap();
    assert!((score.ccc_valence - 1.0).abs() < 1e-9, "{score:?}");

    // Mean with weights 0.5,0.25,0.25 equals the hand formula on every frame.
    let mean = dir.path().join("mean");
    temporal_ok(&[
        "ensemble",
        s(&dirs[0]),
        s(&dirs[1]),
        s(&dirs[2]),
        "--out",
        s(&mean),
        "--weights",
        "2,1,1",
    ]);
    let combined = read_prediction_dir(&mean).unwrap();
    for (video, rows) in &combined {
        for (i, (_, p)) in rows.iter().enumerate() {
            let m: Vec<Prediction> = sets.iter().map(|s| s[video][i].1).collect();
            close(p.valence, 0.5 * f64::from(m[0].valence), "valence");
            for k in 0..N_EXPR {
                let want = 0.5 * f64::from(m[0].expression[k])
                    + 0.25 * f64::from(m[1].expression[k])
                    + 0.25 * f64::from(m[2].expression[k]);
                close(p.expression[k], want, "expression");
            }
        }
    }
    // A member missing a frame is refused with the video and frame named.
    let mut short = sets[2].clone();
    let (video, rows) = short.iter_mut().next().unwrap();
    let video = video.clone();
    let dropped = rows.remove(4).0;
    let shortdir = dir.path().join("short");
    write_set(&shortdir, &short);
    let err = temporal_err(&[
        "ensemble",
        s(&dirs[0]),
        s(&shortdir),
        "--out",
        s(&dir.path().join("x")),
        "--method",
        "vote",
    ]);
    assert!(
        err.contains(&format!("video {video}")) && err.contains(&format!("frames [{dropped}]")),
        "{err}"
    );
    let err = temporal_err(&[
        "ensemble",
        s(&dirs[0]),
        s(&dirs[1]),
        "--out",
        s(&dir.path().join("y")),
        "--method",
        "best-per-task",
    ]);
    assert!(err.contains("needs --labels"), "{err}");
}

// ---------- submission ----------

/// Two videos; the test list interleaves them and lists b first.
fn submission_case() -> (PredictionSet, Vec<FrameRef>) {
    let mut set = PredictionSet::new();
    set.insert(
        vid("a"),
        vec![
            (1, pred(1.5, 0.1, &[0.1, 0.9], &[0.5, 0.49])),
            (2, pred(-0.2, -1.2, &[0.6, 0.4], &[0.3, 0.7])),
            (3, pred(0.0, 0.0, &[0.0, 0.0, 1.0], &[0.0, 1.0])),
        ],
    );
    set.insert(
        vid("b"),
        vec![
            (1, pred(0.25, 0.5, &[0.3, 0.3, 0.4], &[0.35, 0.0])),
            (2, pred(0.5, 0.25, &[0.5, 0.5], &[0.45, 0.55])),
        ],
    );
    let list = ["b/00002.jpg", "a/00001.jpg", "b/00001.jpg", "a/00003.jpg"]
        .iter()
        .map(|x| FrameRef::parse(x).unwrap())
        .collect();
    (set, list)
}

fn decision(v: f32, a: f32, e: u8, aus: [bool; 2]) -> Decision {
    let mut d = Decision {
        valence: v,
        arousal: a,
        expression: e,
        aus: [false; N_AU],
    };
    d.aus[..2].copy_from_slice(&aus);
    d
}

#[test]
fn mtl_submission_follows_the_test_list_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (set, list) = submission_case();
    let preds = dir.path().join("preds");
    write_set(&preds, &set);
    let test_list = dir.path().join("test.txt");
    write_test_list(&test_list, &list).unwrap();
    // Thresholds AU1 0.4, AU2 0.6, others 0.5.
    let mut t = [0.5f32; N_AU];
    t[0] = 0.4;
    t[1] = 0.6;
    let tuned = dir.path().join("thresholds.json");
    write_au_thresholds(&tuned, &t).unwrap();
    let out = dir.path().join("sub/mtl.txt");
    let stdout = temporal_ok(&[
        "submit",
        s(&preds),
        "--format",
        "mtl",
        "--test-list",
        s(&test_list),
        "--out",
        s(&out),
        "--au-thresholds",
        s(&tuned),
    ]);
    assert!(stdout.contains(s(&out)), "{stdout}");
    let rows = read_mtl_submission(&out).unwrap();
    let frames: Vec<FrameRef> = rows.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(frames, list);
    // b/2: Neutral and Anger tie at 0.5 -> first (Neutral); AU1 0.45 >= 0.4, AU2 0.55 < 0.6.
    // a/1: valence 1.5 clipped to 1; Anger; AU1 0.5 >= 0.4, AU2 0.49 < 0.6.
    // b/1: Disgust; AU1 0.35 < 0.4. a/3: Disgust; AU2 1.0 >= 0.6.
    let want = [
        decision(0.5, 0.25, 0, [true, false]),
        decision(1.0, 0.1, 1, [true, false]),
        decision(0.25, 0.5, 2, [false, false]),
        decision(0.0, 0.0, 2, [false, true]),
    ];
    for ((_, got), want) in rows.iter().zip(&want) {
        assert_eq!(got, want);
    }
    // The library gives the same rows.
    assert_eq!(mtl_rows(&set, &list, &t, &test_list).unwrap(), rows);

    // A listed frame without a prediction is named.
    let mut missing = list.clone();
    missing.push(FrameRef::parse("a/00007.jpg").unwrap());
    write_test_list(&test_list, &missing).unwrap();
    let err = temporal_err(&[
        "submit",
        s(&preds),
        "--test-list",
        s(&test_list),
        "--out",
        s(&dir.path().join("never.txt")),
    ]);
    assert!(
        err.contains("video a frame 7") && err.contains("1 of the 5"),
        "{err}"
    );
    assert!(!dir.path().join("never.txt").exists());
}

#[test]
fn per_task_submission_has_one_line_per_frame_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let (set, list) = submission_case();
    let preds = dir.path().join("preds");
    write_set(&preds, &set);
    let test_list = dir.path().join("test.txt");
    write_test_list(&test_list, &list).unwrap();
    for (format, task) in [
        ("va", PerTask::Va),
        ("expr", PerTask::Expr),
        ("au", PerTask::Au),
    ] {
        let out = dir.path().join(format);
        temporal_ok(&[
            "submit",
            s(&preds),
            "--format",
            format,
            "--test-list",
            s(&test_list),
            "--out",
            s(&out),
        ]);
        // a: frames 1..3 (largest listed 3); b: frames 1..2.
        let a = read_per_task_file(&out.join("a.txt"), task).unwrap();
        let b = read_per_task_file(&out.join("b.txt"), task).unwrap();
        assert_eq!((a.len(), b.len()), (3, 2));
        match task {
            PerTask::Va => {
                let va: Vec<(Option<f32>, Option<f32>)> =
                    a.iter().map(|l| (l.valence, l.arousal)).collect();
                assert_eq!(
                    va,
                    [
                        (Some(1.0), Some(0.1)),
                        (Some(-0.2), Some(-1.0)),
                        (Some(0.0), Some(0.0))
                    ]
                );
            }
            PerTask::Expr => {
                let e: Vec<Option<u8>> = a.iter().chain(&b).map(|l| l.expression).collect();
                assert_eq!(e, [Some(1), Some(0), Some(2), Some(2), Some(0)]);
            }
            PerTask::Au => {
                let au: Vec<[bool; 2]> = a
                    .iter()
                    .map(|l| {
                        let x = l.aus.unwrap();
                        [x[0], x[1]]
                    })
                    .collect();
                assert_eq!(au, [[true, false], [false, true], [false, true]]);
            }
        }
    }
    // Frame 2 of video a is not listed but lies inside 1..3: the per-task file needs it.
    let mut gap = set.clone();
    gap.get_mut(&vid("a")).unwrap().remove(1);
    let err = per_task_rows(&gap, &list, &DEFAULT_AU_THRESHOLDS, &test_list)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("video a frame 2") && err.contains("1 of the 5"),
        "{err}"
    );
}

// ---------- evaluate on folders ----------

#[test]
fn evaluate_on_a_folder_equals_evaluate_on_its_submission() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(5, 3, 100, 0.4);
    let labels = dir.path().join("val.txt");
    write_mtl_annotations(&labels, &g.labels).unwrap();
    let preds = dir.path().join("preds");
    write_set(&preds, &g.preds);
    let test_list = dir.path().join("list.txt");
    let frames: Vec<FrameRef> = g.labels.iter().map(|(f, _)| f.clone()).collect();
    write_test_list(&test_list, &frames).unwrap();

    // Tune thresholds on the folder, then score folder and submission with them.
    let json_dir = dir.path().join("dir-scores.json");
    let thresholds = dir.path().join("au.json");
    let stdout = temporal_ok(&[
        "evaluate",
        "--pred",
        s(&preds),
        "--labels",
        s(&labels),
        "--tune-thresholds",
        s(&thresholds),
    ]);
    assert!(stdout.contains(s(&thresholds)), "{stdout}");
    let sub = dir.path().join("sub.txt");
    temporal_ok(&[
        "submit",
        s(&preds),
        "--test-list",
        s(&test_list),
        "--out",
        s(&sub),
        "--au-thresholds",
        s(&thresholds),
    ]);
    let stdout = temporal_ok(&[
        "evaluate",
        "--pred",
        s(&preds),
        "--labels",
        s(&labels),
        "--au-thresholds",
        s(&thresholds),
        "--json",
        s(&json_dir),
    ]);
    let confusion = dir.path().join("dir-scores-confusion.png");
    let au_png = dir.path().join("dir-scores-au-f1.png");
    assert!(
        stdout.contains(s(&confusion)) && stdout.contains(s(&au_png)),
        "{stdout}"
    );
    for png in [&confusion, &au_png] {
        let bytes = std::fs::read(png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{}", png.display());
    }
    let json_sub = dir.path().join("sub-scores.json");
    temporal_ok(&[
        "evaluate",
        "--pred",
        s(&sub),
        "--labels",
        s(&labels),
        "--json",
        s(&json_sub),
    ]);
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (a, b) = (read(&json_dir), read(&json_sub));
    let score_a: MtlScore = serde_json::from_value(a.clone()).unwrap();
    let score_b: MtlScore = serde_json::from_value(b.clone()).unwrap();
    assert_eq!(score_a, score_b);
    assert_eq!(a["confusion_expr"], b["confusion_expr"]);
    // The confusion matrix counts every frame with a valid expression once.
    let counted: u64 = a["confusion_expr"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()))
        .sum();
    assert_eq!(counted as usize, score_a.n_expr);
    // Library: same with the default thresholds.
    let sub05 = dir.path().join("sub05.txt");
    temporal_ok(&[
        "submit",
        s(&preds),
        "--test-list",
        s(&test_list),
        "--out",
        s(&sub05),
    ]);
    assert_eq!(
        evaluate_prediction_dir(&preds, &labels, &DEFAULT_AU_THRESHOLDS).unwrap(),
        evaluate_submission(&sub05, &labels).unwrap()
    );

    // A folder lacking an annotated frame is refused with the frame named.
    let (video, rows) = g.preds.iter().next().unwrap();
    let mut rows = rows.clone();
    rows.remove(0);
    write_predictions(&prediction_path(&preds, video), &rows).unwrap();
    assert_eq!(
        read_predictions(&prediction_path(&preds, video)).unwrap(),
        rows
    );
    let err = temporal_err(&["evaluate", "--pred", s(&preds), "--labels", s(&labels)]);
    assert!(
        err.contains(&format!("{video}/00001.jpg")) && err.contains("1 of the"),
        "{err}"
    );
    let err = temporal_err(&[
        "evaluate",
        "--pred",
        s(&sub),
        "--labels",
        s(&labels),
        "--au-thresholds",
        "0.4",
    ]);
    assert!(err.contains("pass the prediction folder"), "{err}");
}
