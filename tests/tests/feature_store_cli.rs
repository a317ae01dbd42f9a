//! `--feature-store stream` reads each step's rows from the cache instead of holding the split in
//! memory: a streamed run (the task-queries system on patch tokens, a GRU on pooled features) is
//! the in-memory run bit for bit, metrics, checkpoint and predictions, and a streamed run on a
//! token cache of a few hundred megabytes peaks far below the in-memory run (peak RSS by GNU
//! time). `temporal bench-read` reads every frame once and lists the rows it read.

use std::path::Path;
use std::process::Command;
use tests::{
    binary, deterministic_metrics, run_ok, synthetic_sample, synthetic_token_sample, workspace_root,
};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `temporal train` with `args`, the given store, 1 thread, into `out`.
fn train(args: &[&str], store: &str, out: &Path) {
    let mut all = vec!["train", "--threads", "1", "--feature-store", store, "--out"];
    let out = s(out);
    all.push(&out);
    all.extend_from_slice(args);
    run_ok("temporal", &all);
}

/// The validation predictions of `run` with the given store, as one string per file.
fn predictions(run: &Path, store: &str, out: &Path) -> Vec<(String, String)> {
    run_ok(
        "temporal",
        &[
            "predict",
            "--run",
            &s(run),
            "--feature-store",
            store,
            "--out",
            &s(out),
        ],
    );
    let mut files: Vec<(String, String)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                text,
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no predictions in {}", out.display());
    files
}

#[test]
fn a_streamed_run_is_the_in_memory_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tokens = dir.join("tokens");
    synthetic_token_sample(&tokens, 8, 160, 16, 32, 3);
    let pooled = dir.join("pooled");
    synthetic_sample(&pooled, 8, 160, Some(24), 4);
    let config = s(&workspace_root().join("configs/systems/task-queries.toml"));
    let cases: [(&str, Vec<String>); 2] = [
        (
            "task-queries",
            vec![
                "--config".into(),
                config,
                "--data".into(),
                s(&tokens),
                "--features".into(),
                "synthetic-tokens".into(),
                "--epochs".into(),
                "2".into(),
                "--warmup-epochs".into(),
                "1".into(),
            ],
        ),
        (
            "gru",
            vec![
                "--arch".into(),
                "gru".into(),
                "--data".into(),
                s(&pooled),
                "--features".into(),
                "synthetic".into(),
                "--epochs".into(),
                "2".into(),
                "--seg-len".into(),
                "32".into(),
                "--streams".into(),
                "4".into(),
            ],
        ),
    ];
    for (name, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let memory = dir.join(format!("{name}-memory"));
        let stream = dir.join(format!("{name}-stream"));
        train(&args, "memory", &memory);
        train(&args, "stream", &stream);
        assert_eq!(
            deterministic_metrics(&stream),
            deterministic_metrics(&memory),
            "{name}: the epochs' metrics"
        );
        for ckpt in ["best", "last"] {
            let file = format!("checkpoints/{ckpt}.safetensors");
            assert!(
                std::fs::read(stream.join(&file)).unwrap()
                    == std::fs::read(memory.join(&file)).unwrap(),
                "{name}: {file} differs"
            );
        }
        let from_memory = predictions(&memory, "memory", &dir.join(format!("{name}-pm")));
        let from_stream = predictions(&memory, "stream", &dir.join(format!("{name}-ps")));
        assert_eq!(from_stream, from_memory, "{name}: predictions");
    }
}

/// Peak RSS in kB of `temporal train` with `args` (GNU time), and its stderr.
fn peak_rss_kb(args: &[&str], report: &Path) -> (u64, String) {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report)
        .arg(binary("temporal"))
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("GNU time runs (/usr/bin/time, Debian package `time`)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "temporal {}:\n{stderr}",
        args.join(" ")
    );
    let text = std::fs::read_to_string(report).unwrap();
    (
        text.trim().lines().last().unwrap().trim().parse().unwrap(),
        stderr,
    )
}

/// The gigabytes of f32 features the loader reports for each split ("... (290.5 MB as f32) ...").
fn split_gb(stderr: &str) -> f64 {
    stderr
        .lines()
        .filter_map(|l| {
            l.split(" as f32)")
                .next()
                .filter(|_| l.contains(" as f32)"))
        })
        .map(|head| {
            let (value, unit) = head.rsplit('(').next().unwrap().split_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            match unit {
                "MB" => value / 1e3,
                "GB" => value,
                other => panic!("unit {other:?} in {head:?}"),
            }
        })
        .sum()
}

#[test]
fn a_streamed_run_holds_a_small_part_of_the_split_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let data = dir.join("data");
    // 64 tokens of 1024 per frame: 256 kB a frame in f32, 128 kB in the f16 cache.
    synthetic_token_sample(&data, 6, 300, 64, 1024, 5);
    let config = s(&workspace_root().join("configs/systems/task-queries.toml"));
    let mut peaks = Vec::new();
    for store in ["memory", "stream"] {
        let out = s(&dir.join(store));
        let args = [
            "train",
            "--config",
            &config,
            "--data",
            &s(&data),
            "--features",
            "synthetic-tokens",
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
            "--threads",
            "1",
            "--feature-store",
            store,
            "--out",
            &out,
        ];
        peaks.push(peak_rss_kb(&args, &dir.join(format!("{store}.time"))));
    }
    let ((memory_kb, memory_log), (stream_kb, stream_log)) = (&peaks[0], &peaks[1]);
    let gb = split_gb(memory_log);
    assert!(gb > 0.2, "the splits hold {gb} GB:\n{memory_log}");
    assert!(
        stream_log.contains("read from the cache step by step"),
        "{stream_log}"
    );
    let split_kb = gb * 1e9 / 1024.0;
    eprintln!(
        "peak RSS: in memory {memory_kb} kB, streamed {stream_kb} kB; splits {split_kb:.0} kB"
    );
    // Measured here: 775 MB in memory, 500 MB streamed, for 332 MB of splits; the streamed run
    // holds two steps of 16 MB and each open file's 1 MB chunk cache.
    assert!(
        (*stream_kb as f64) < *memory_kb as f64 - 0.5 * split_kb,
        "streamed {stream_kb} kB, in memory {memory_kb} kB, splits {split_kb:.0} kB"
    );
}

#[test]
fn bench_read_reads_every_frame_once_and_lists_the_rows_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_token_sample(&data, 4, 60, 4, 8, 2);
    let cache = data.join("features");
    for order in ["shuffled", "video"] {
        let plan = dir.path().join(format!("{order}.json"));
        let out = run_ok(
            "temporal",
            &[
                "bench-read",
                "--cache",
                &s(&cache),
                "--features",
                "synthetic-tokens",
                "--batch",
                "16",
                "--order",
                order,
                "--plan-out",
                &s(&plan),
            ],
        );
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
        let mut read: Vec<(String, u64)> = plan["batches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b.as_array().unwrap().clone())
            .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_u64().unwrap()))
            .collect();
        let frames = report["frames"].as_u64().unwrap();
        assert_eq!(read.len() as u64, frames, "{order}");
        assert_eq!(
            report["bytes"].as_u64().unwrap(),
            frames * 4 * 8 * 2,
            "{order}: f16"
        );
        if order == "video" {
            let mut sorted = read.clone();
            sorted.sort();
            assert_eq!(read, sorted, "video order reads each file's rows in turn");
        }
        read.sort();
        read.dedup();
        assert_eq!(read.len() as u64, frames, "{order}: each frame once");
        let mut expected = 0;
        for file in std::fs::read_dir(cache.join("synthetic-tokens")).unwrap() {
            expected += shared::cache::RowFile::open(&file.unwrap().path())
                .unwrap()
                .frames()
                .len() as u64;
        }
        assert_eq!(frames, expected, "{order}: every frame of the cache");
    }
}
