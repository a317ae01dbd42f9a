//! End-to-end test harness: helpers to locate and run the workspace binaries on data the
//! project generates. The tests themselves live in `tests/tests/`. No product code here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (the folder holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives in the workspace")
        .to_path_buf()
}

/// Path of a workspace binary built by cargo for this test profile (`extractor`, `temporal`).
/// `cargo test --workspace` builds every binary of the workspace before running tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-bin> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "binary {} not found: run `cargo build --workspace` (make test does) first",
        path.display()
    );
    path
}

/// Run a workspace binary with arguments; returns the output whatever the exit status.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
}

/// Run a workspace binary and panic with its stderr when it fails.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let out = run(name, args);
    assert!(
        out.status.success(),
        "{name} {} failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `extractor sample-data` into `dir` without frames: `videos` videos of about `frames` frames
/// and, with `features = Some(dim)`, a synthetic `dim`-wide feature cache that carries the labels.
pub fn synthetic_sample(
    dir: &Path,
    videos: usize,
    frames: usize,
    features: Option<usize>,
    seed: u64,
) {
    let dim = features.map(|d| d.to_string());
    let extra: Vec<&str> = match &dim {
        Some(dim) => vec!["--synthetic-features", dim.as_str()],
        None => Vec::new(),
    };
    sample_data(dir, videos, frames, seed, &extra);
}

/// As [`synthetic_sample`], with a token cache instead (`--synthetic-tokens tokens --token-dim
/// width`, `features/synthetic-tokens/`): a spatial map whose AUs live in face regions.
pub fn synthetic_token_sample(
    dir: &Path,
    videos: usize,
    frames: usize,
    tokens: usize,
    width: usize,
    seed: u64,
) {
    let (tokens, width) = (tokens.to_string(), width.to_string());
    let extra = ["--synthetic-tokens", &tokens, "--token-dim", &width];
    sample_data(dir, videos, frames, seed, &extra);
}

/// `extractor sample-data --no-frames` with the given size, seed and extra flags.
fn sample_data(dir: &Path, videos: usize, frames: usize, seed: u64, extra: &[&str]) {
    let (videos, frames, seed) = (videos.to_string(), frames.to_string(), seed.to_string());
    let mut args = vec![
        "sample-data",
        "--out",
        dir.to_str().expect("UTF-8 path"),
        "--videos",
        &videos,
        "--frames",
        &frames,
        "--no-frames",
        "--seed",
        &seed,
    ];
    args.extend_from_slice(extra);
    run_ok("extractor", &args);
}

/// A run folder's `metrics.jsonl`, one object per epoch, without the timings (`seconds`,
/// `train_fps`, `val_fps`): the part two runs of the same configuration must share.
pub fn deterministic_metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("metrics.jsonl line");
            for k in ["seconds", "train_fps", "val_fps"] {
                v.as_object_mut().expect("an object per epoch").remove(k);
            }
            v
        })
        .collect()
}

/// `temporal predict` of `run` on the validation and the test split, into `<out>/<split>`.
pub fn predict_both_splits(run: &Path, out: &Path) {
    for split in ["validation", "test"] {
        let dest = out.join(split);
        run_ok(
            "temporal",
            &[
                "predict",
                "--run",
                path_str(run),
                "--split",
                split,
                "--out",
                path_str(&dest),
            ],
        );
    }
}

/// Scores of the validation predictions `preds` and of the chance baseline (`temporal baseline`)
/// on the sample in `data`, as `temporal evaluate --json` writes them (files in `dir`).
pub fn validation_scores_and_chance(
    dir: &Path,
    data: &Path,
    preds: &Path,
) -> (serde_json::Value, serde_json::Value) {
    let chance = dir.join("chance");
    run_ok(
        "temporal",
        &[
            "baseline",
            "--data",
            path_str(data),
            "--split",
            "validation",
            "--out",
            path_str(&chance),
        ],
    );
    let labels = data.join("validation_set_annotations.txt");
    let evaluate = |name: &str, preds: &Path| {
        let json = dir.join(format!("{name}.json"));
        run_ok(
            "temporal",
            &[
                "evaluate",
                "--pred",
                path_str(preds),
                "--labels",
                path_str(&labels),
                "--json",
                path_str(&json),
            ],
        );
        serde_json::from_str(&std::fs::read_to_string(&json).expect("evaluate --json"))
            .expect("evaluate writes JSON")
    };
    (evaluate("model", preds), evaluate("chance", &chance))
}

/// `temporal submit --format mtl` of the test predictions `preds` for the sample in `data`;
/// asserts one row per test-list frame, in its order, and returns the submission's path.
pub fn submit_in_test_list_order(preds: &Path, data: &Path, out: &Path) -> PathBuf {
    let test_list = data.join("test_set_list.txt");
    run_ok(
        "temporal",
        &[
            "submit",
            path_str(preds),
            "--format",
            "mtl",
            "--test-list",
            path_str(&test_list),
            "--out",
            path_str(out),
        ],
    );
    let rows = shared::abaw::read_mtl_submission(out).expect("a valid MTL submission");
    let listed = shared::abaw::read_test_list(&test_list).expect("the sample's test list");
    assert_eq!(
        rows.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        listed,
        "one submission row per test-list frame, in its order"
    );
    out.to_path_buf()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
