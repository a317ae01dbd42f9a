//! `temporal train` and `temporal predict` end to end on generated synthetic features: a run
//! leaves its folder complete, `--resume` ends where an uninterrupted run ends, predictions
//! cover every frame to score, and bad input stops with a message naming the video or the dims.

use shared::abaw::{read_mtl_annotations, read_prediction_dir, read_test_list};
use std::path::Path;
use tests::{run, run_ok};

/// 9 videos (6 train, 2 validation... as the generator splits), synthetic 24-dim features.
fn sample(dir: &Path) {
    run_ok(
        "extractor",
        &[
            "sample-data",
            "--out",
            dir.to_str().unwrap(),
            "--videos",
            "9",
            "--frames",
            "160",
            "--no-frames",
            "--synthetic-features",
            "24",
            "--seed",
            "3",
        ],
    );
}

/// A small, fast training configuration.
fn config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let p = dir.join("small.toml");
    std::fs::write(
        &p,
        format!(
            "data = {:?}\nfeatures = [\"synthetic\"]\nseg_len = 32\nstreams = 3\nlr = 1e-3\nthreads = 1\n\
             [model]\nhidden = 16\nd_model = 16\nn_layers = 1\nn_heads = 2\nff = 32\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    p
}

/// The deterministic part of metrics.jsonl (no timings).
fn scores(run_dir: &Path) -> Vec<serde_json::Value> {
    tests::deterministic_metrics(run_dir)
}

#[test]
fn resume_ends_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data);
    let cfg = config(dir.path(), &data);
    let c = cfg.to_str().unwrap();
    for arch in ["lstm", "transformer"] {
        let full = dir.path().join(format!("full-{arch}"));
        let part = dir.path().join(format!("part-{arch}"));
        run_ok(
            "temporal",
            &[
                "train",
                "--config",
                c,
                "--arch",
                arch,
                "--epochs",
                "3",
                "--out",
                full.to_str().unwrap(),
            ],
        );
        run_ok(
            "temporal",
            &[
                "train",
                "--config",
                c,
                "--arch",
                arch,
                "--epochs",
                "1",
                "--out",
                part.to_str().unwrap(),
            ],
        );
        run_ok(
            "temporal",
            &[
                "train",
                "--resume",
                "--epochs",
                "3",
                "--out",
                part.to_str().unwrap(),
            ],
        );
        let (a, b) = (scores(&full), scores(&part));
        assert_eq!(a.len(), 3);
        assert_eq!(
            a, b,
            "{arch}: resumed run differs from the uninterrupted one"
        );
        let last_a = std::fs::read(full.join("checkpoints/last.safetensors")).unwrap();
        let last_b = std::fs::read(part.join("checkpoints/last.safetensors")).unwrap();
        assert!(last_a == last_b, "{arch}: final weights differ");
        for f in [
            "config.toml",
            "normalisation.safetensors",
            "checkpoints/best.safetensors",
            "plots/losses.png",
            "train.log",
        ] {
            assert!(full.join(f).exists(), "{arch}: no {f}");
        }
        // A second `train` into a finished run folder refuses instead of overwriting it.
        let out = run(
            "temporal",
            &[
                "train",
                "--config",
                c,
                "--arch",
                arch,
                "--out",
                full.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    }
}

#[test]
fn predictions_cover_every_frame_to_score() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data);
    let cfg = config(dir.path(), &data);
    let r = dir.path().join("run");
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--arch",
            "gru",
            "--epochs",
            "1",
            "--out",
            r.to_str().unwrap(),
        ],
    );
    for (split, truth) in [
        ("validation", {
            let a = read_mtl_annotations(&data.join("validation_set_annotations.txt")).unwrap();
            a.rows.into_iter().map(|(f, _)| f).collect::<Vec<_>>()
        }),
        (
            "test",
            read_test_list(&data.join("test_set_list.txt")).unwrap(),
        ),
    ] {
        let out = dir.path().join(format!("pred-{split}"));
        run_ok(
            "temporal",
            &[
                "predict",
                "--run",
                r.to_str().unwrap(),
                "--split",
                split,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let preds = read_prediction_dir(&out).unwrap();
        let mut got: Vec<(String, u32)> = preds
            .iter()
            .flat_map(|(v, rows)| rows.iter().map(move |(f, _)| (v.to_string(), *f)))
            .collect();
        let mut want: Vec<(String, u32)> = truth
            .iter()
            .map(|f| (f.video.to_string(), f.frame))
            .collect();
        got.sort();
        want.sort();
        want.dedup();
        assert_eq!(
            got, want,
            "{split}: predicted frames differ from the frames to score"
        );
    }
}

#[test]
fn missing_video_and_wrong_dims_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data);
    let cfg = config(dir.path(), &data);
    // Remove one validation video's features: training stops naming it.
    let ann = read_mtl_annotations(&data.join("validation_set_annotations.txt")).unwrap();
    let victim = ann.videos()[0].clone();
    let h5 = data.join("features/synthetic").join(format!("{victim}.h5"));
    let saved = std::fs::read(&h5).unwrap();
    std::fs::remove_file(&h5).unwrap();
    let r = dir.path().join("run");
    let out = run(
        "temporal",
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            r.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(victim.as_str()) && err.contains("extractor extract"),
        "{err}"
    );
    std::fs::write(&h5, saved).unwrap();

    // Train on 24 dims, predict from a cache of another width: the error names both dims.
    run_ok(
        "temporal",
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            r.to_str().unwrap(),
        ],
    );
    let other = dir.path().join("other");
    run_ok(
        "extractor",
        &[
            "sample-data",
            "--out",
            other.to_str().unwrap(),
            "--videos",
            "9",
            "--frames",
            "160",
            "--no-frames",
            "--synthetic-features",
            "20",
            "--seed",
            "3",
        ],
    );
    let out = run(
        "temporal",
        &[
            "predict",
            "--run",
            r.to_str().unwrap(),
            "--cache",
            other.join("features").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("20 dims") && err.contains("24 dims"), "{err}");
}

/// The synthetic features are the latent state plus heavy per-frame noise: a model that sees
/// the neighbouring frames can average the noise out, a frame-level model cannot.
#[test]
fn recurrent_models_beat_the_frame_level_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_ok(
        "extractor",
        &[
            "sample-data",
            "--out",
            data.to_str().unwrap(),
            "--videos",
            "16",
            "--frames",
            "300",
            "--no-frames",
            "--synthetic-features",
            "32",
            "--seed",
            "5",
        ],
    );
    let cfg = dir.path().join("cmp.toml");
    std::fs::write(
        &cfg,
        format!(
            "data = {:?}\nfeatures = [\"synthetic\"]\nseg_len = 64\nstreams = 4\nlr = 1e-3\nepochs = 15\n\
             threads = 1\nseed = 0\n[model]\nhidden = 32\nd_model = 32\nn_layers = 1\nn_heads = 2\nff = 64\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let best = |arch: &str| -> f64 {
        let out = dir.path().join(arch);
        run_ok(
            "temporal",
            &[
                "train",
                "--config",
                cfg.to_str().unwrap(),
                "--arch",
                arch,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        scores(&out)
            .iter()
            .map(|m| m["p_mtl"].as_f64().unwrap())
            .fold(f64::MIN, f64::max)
    };
    let mlp = best("mlp");
    for arch in ["lstm", "gru"] {
        let p = best(arch);
        assert!(
            p > mlp,
            "{arch} validation P_MTL {p:.4} does not beat mlp's {mlp:.4}"
        );
    }
}

/// Two real runs on generated data: tuned smoothing does not lower their validation P_MTL, and
/// the mean ensemble of the two is at least as good as the worse of them (fixed seeds).
#[test]
fn tuned_smoothing_and_ensembling_help_real_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data);
    let cfg = config(dir.path(), &data);
    let labels = data.join("validation_set_annotations.txt");
    let p_mtl = |name: &str, pred: &Path| -> f64 {
        let json = dir.path().join(format!("{name}.json"));
        run_ok(
            "temporal",
            &[
                "evaluate",
                "--pred",
                pred.to_str().unwrap(),
                "--labels",
                labels.to_str().unwrap(),
                "--json",
                json.to_str().unwrap(),
            ],
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        v["p_mtl"].as_f64().unwrap()
    };
    let mut members = Vec::new();
    for (arch, seed) in [("lstm", "1"), ("gru", "2")] {
        let r = dir.path().join(arch);
        run_ok(
            "temporal",
            &[
                "train",
                "--config",
                cfg.to_str().unwrap(),
                "--arch",
                arch,
                "--seed",
                seed,
                "--epochs",
                "4",
                "--out",
                r.to_str().unwrap(),
            ],
        );
        let raw = dir.path().join(format!("{arch}-raw"));
        run_ok(
            "temporal",
            &[
                "predict",
                "--run",
                r.to_str().unwrap(),
                "--out",
                raw.to_str().unwrap(),
            ],
        );
        let smoothed = dir.path().join(format!("{arch}-smoothed"));
        run_ok(
            "temporal",
            &[
                "smooth",
                raw.to_str().unwrap(),
                "--tune",
                labels.to_str().unwrap(),
                "--out",
                smoothed.to_str().unwrap(),
            ],
        );
        let (before, after) = (
            p_mtl(&format!("{arch}-raw"), &raw),
            p_mtl(&format!("{arch}-smoothed"), &smoothed),
        );
        assert!(
            after >= before - 1e-9,
            "{arch}: tuned smoothing lowered P_MTL {before:.4} -> {after:.4}"
        );
        members.push((raw, before));
    }
    let ens = dir.path().join("ensemble");
    run_ok(
        "temporal",
        &[
            "ensemble",
            members[0].0.to_str().unwrap(),
            members[1].0.to_str().unwrap(),
            "--method",
            "mean",
            "--out",
            ens.to_str().unwrap(),
        ],
    );
    let combined = p_mtl("ensemble", &ens);
    let worse = members[0].1.min(members[1].1);
    assert!(
        combined >= worse,
        "ensemble P_MTL {combined:.4} below its worse member {worse:.4}"
    );
}
