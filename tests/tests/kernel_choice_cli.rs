//! `--kernel` end to end: a GRU and an LSTM run predict the same numbers whichever recurrent
//! kernel is forced (packed MKL GEMM, ATen's operator, the `addmm` loop), and `--kernel auto`
//! picks one of them by measuring, records it in the run folder and in the machine's cache file
//! (under `XDG_CACHE_HOME`), and reads it back from that file in the next process.

use shared::abaw::read_prediction_dir;
use std::path::Path;
use std::process::Command;
use tests::binary;

const KERNELS: [&str; 3] = ["packed", "aten", "addmm"];

/// Runs `temporal` with `XDG_CACHE_HOME=cache` and panics with its stderr when it fails.
fn temporal(cache: &Path, args: &[&str]) {
    let out = Command::new(binary("temporal"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(tests::workspace_root())
        .output()
        .expect("start temporal");
    assert!(
        out.status.success(),
        "temporal {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every number of every frame of two prediction folders, the largest difference.
fn max_difference(a: &Path, b: &Path) -> f32 {
    let (a, b) = (
        read_prediction_dir(a).unwrap(),
        read_prediction_dir(b).unwrap(),
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same videos"
    );
    let mut worst = 0f32;
    for (video, rows) in &a {
        let other = &b[video];
        assert_eq!(rows.len(), other.len(), "{video}: same frames");
        for ((f, p), (g, q)) in rows.iter().zip(other) {
            assert_eq!(f, g);
            let xs = [p.valence, p.arousal]
                .into_iter()
                .chain(p.expression)
                .chain(p.aus);
            let ys = [q.valence, q.arousal]
                .into_iter()
                .chain(q.expression)
                .chain(q.aus);
            for (x, y) in xs.zip(ys) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

/// The decisions a run or the cache file recorded: `(key, kernel, source)`.
fn recorded(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, d)| {
            (
                k.clone(),
                d["kernel"].as_str().unwrap().to_string(),
                d["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_kernel_predicts_the_same_and_auto_records_its_measured_choice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tests::synthetic_sample(&data, 6, 120, Some(40), 11);
    let cache = dir.path().join("cache");
    for arch in ["gru", "lstm"] {
        let run = dir.path().join(format!("run-{arch}"));
        temporal(
            &cache,
            &[
                "train",
                "--data",
                data.to_str().unwrap(),
                "--features",
                "synthetic",
                "--arch",
                arch,
                "--epochs",
                "1",
                "--seg-len",
                "40",
                "--streams",
                "3",
                "--threads",
                "1",
                "--kernel",
                "auto",
                "--out",
                run.to_str().unwrap(),
            ],
        );
        // auto timed the candidates at the first validation segment and kept one
        let record = recorded(&run.join("kernels.json"));
        assert!(!record.is_empty(), "{arch}: no kernel recorded");
        for (key, kernel, source) in &record {
            assert!(key.contains(arch), "{key}");
            assert!(KERNELS.contains(&kernel.as_str()), "{kernel}");
            assert_eq!(source, "measured", "{key}");
        }
        let cached = recorded(&cache.join("affect-toolkit").join("kernels.json"));
        for (key, kernel, _) in &record {
            assert!(
                cached.iter().any(|(k, c, _)| k == key && c == kernel),
                "{key} is missing from the machine's cache file"
            );
        }

        // each forced kernel, and auto again (now from the cache), predict the same numbers
        let predict = |kernel: &str| {
            let out = dir.path().join(format!("pred-{arch}-{kernel}"));
            temporal(
                &cache,
                &[
                    "predict",
                    "--run",
                    run.to_str().unwrap(),
                    "--kernel",
                    kernel,
                    "--out",
                    out.to_str().unwrap(),
                ],
            );
            out
        };
        let reference = predict("aten");
        for kernel in ["packed", "addmm", "auto"] {
            let diff = max_difference(&reference, &predict(kernel));
            assert!(diff < 1e-4, "{arch}: {kernel} differs from aten by {diff}");
        }
    }
}
