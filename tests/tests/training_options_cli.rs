//! The general training options of `temporal train` end to end on generated data: the
//! optimizers (adam, adamw, sgd, SAM) train, `--resume` ends bit-identical with each optimizer's
//! state and with a cosine schedule after a killed run, the learning rate of each epoch is
//! recorded, and staged training (`--init-from`, `--freeze`) copies, keeps and refuses what it
//! says, on the MTCA system (`configs/systems/mtca.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::{binary, run, run_ok, synthetic_sample, workspace_root};

/// Generated sample: `videos` videos of `frames` frames, synthetic `dims`-dim features that
/// carry the labels.
fn sample(dir: &Path, videos: usize, frames: usize, dims: usize, seed: u64) {
    synthetic_sample(dir, videos, frames, Some(dims), seed);
}

/// A small, fast recurrent training configuration (as `temporal_cli.rs`), plus `extra` keys.
fn small_config(dir: &Path, data: &Path, name: &str, extra: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "data = {:?}\nfeatures = [\"synthetic\"]\nseg_len = 32\nstreams = 3\nlr = 1e-3\nthreads = 1\n\
             {extra}\n[model]\nhidden = 16\nd_model = 16\nn_layers = 1\nn_heads = 2\nff = 32\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    p
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `temporal train` with these arguments, panicking with its output on failure.
fn train(args: &[&str]) {
    let mut all = vec!["train"];
    all.extend_from_slice(args);
    run_ok("temporal", &all);
}

/// metrics.jsonl without the timings.
fn scores(run_dir: &Path) -> Vec<serde_json::Value> {
    tests::deterministic_metrics(run_dir)
}

fn column(run_dir: &Path, key: &str) -> Vec<f64> {
    scores(run_dir)
        .iter()
        .map(|v| v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}")))
        .collect()
}

/// A checkpoint's tensors by name: shape and raw bytes.
fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

/// The values of an f32 tensor.
fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn is_running_statistic(name: &str) -> bool {
    ["running_mean", "running_var", "num_batches_tracked"]
        .iter()
        .any(|b| name.ends_with(b))
}

/// An uninterrupted run of 3 epochs and one of 1 epoch resumed to 3 end with the same metrics and
/// the same bytes in `last.safetensors`.
fn assert_resume_is_exact(name: &str, base: &[&str], dir: &Path) {
    let full = dir.join(format!("full-{name}"));
    let part = dir.join(format!("part-{name}"));
    for (out, epochs) in [(&full, "3"), (&part, "1")] {
        let mut args = base.to_vec();
        let out = s(out);
        args.extend_from_slice(&["--epochs", epochs, "--out", &out]);
        train(&args);
    }
    train(&["--resume", "--epochs", "3", "--out", &s(&part)]);
    let (a, b) = (scores(&full), scores(&part));
    assert_eq!(a.len(), 3, "{name}");
    assert_eq!(
        a, b,
        "{name}: the resumed run differs from the uninterrupted one"
    );
    let last = |d: &Path| std::fs::read(d.join("checkpoints/last.safetensors")).unwrap();
    assert!(last(&full) == last(&part), "{name}: final weights differ");
    let opt = |d: &Path| std::fs::read(d.join("state/optimizer.safetensors")).unwrap();
    assert!(
        opt(&full) == opt(&part),
        "{name}: final optimizer states differ"
    );
}

#[test]
fn every_optimizer_lowers_the_training_loss_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 9, 160, 24, 3);
    let cfg = small_config(dir.path(), &data, "small", "");
    let c = s(&cfg);
    for (name, flags) in [
        ("adam", vec![]),
        (
            "adamw",
            vec!["--optimizer", "adamw", "--weight-decay", "0.01"],
        ),
        (
            "sgd",
            vec![
                "--optimizer",
                "sgd",
                "--lr",
                "0.02",
                "--weight-decay",
                "1e-4",
            ],
        ),
        (
            "sgd-nesterov-sam",
            vec![
                "--optimizer",
                "sgd",
                "--lr",
                "0.02",
                "--nesterov",
                "--sam-rho",
                "0.05",
            ],
        ),
    ] {
        let out = dir.path().join(name);
        let mut args = vec!["--config", &c, "--epochs", "5", "--out"];
        let o = s(&out);
        args.push(&o);
        args.extend_from_slice(&flags);
        train(&args);
        let loss = column(&out, "loss");
        assert!(
            loss[4] < 0.97 * loss[0],
            "{name}: training loss {loss:?} did not fall"
        );
        let stored = std::fs::read_to_string(out.join("config.toml")).unwrap();
        let kind = name.split('-').next().unwrap();
        assert!(
            stored.contains(&format!("optimizer = \"{kind}\"")),
            "{name}: {stored}"
        );
        assert_eq!(
            column(&out, "lr")[0],
            if kind == "sgd" { 0.02 } else { 1e-3 }
        );
    }
}

#[test]
fn resume_is_bit_identical_for_sgd_and_adamw() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 9, 160, 24, 3);
    // sgd from the configuration file (with SAM, Nesterov and weight decay: all its state and
    // both passes), adamw from flags over a file that says otherwise (the command line wins).
    let sgd = small_config(
        dir.path(),
        &data,
        "sgd",
        "optimizer = \"sgd\"\nweight_decay = 1e-4\nnesterov = true\nsam_rho = 0.05\nmomentum = 0.8",
    );
    let adamw = small_config(
        dir.path(),
        &data,
        "adamw",
        "optimizer = \"sgd\"\nmomentum = 0.5",
    );
    let sgd = s(&sgd);
    let adamw = s(&adamw);
    assert_resume_is_exact("sgd", &["--config", &sgd, "--arch", "lstm"], dir.path());
    assert_resume_is_exact(
        "adamw",
        &[
            "--config",
            &adamw,
            "--arch",
            "gru",
            "--optimizer",
            "adamw",
            "--weight-decay",
            "0.05",
        ],
        dir.path(),
    );
    let stored = std::fs::read_to_string(dir.path().join("full-sgd/config.toml")).unwrap();
    for key in [
        "optimizer = \"sgd\"",
        "nesterov = true",
        "sam_rho = 0.05",
        "momentum = 0.8",
    ] {
        assert!(stored.contains(key), "{key} not in {stored}");
    }
    let stored = std::fs::read_to_string(dir.path().join("full-adamw/config.toml")).unwrap();
    assert!(stored.contains("optimizer = \"adamw\"") && stored.contains("weight_decay = 0.05"));
    // adamw keeps Adam's moments, sgd its momentum buffers
    let names = |run: &str| tensors(&dir.path().join(run).join("state/optimizer.safetensors"));
    assert!(names("full-adamw").keys().any(|n| n.starts_with("v.")));
    assert!(names("full-sgd")
        .keys()
        .any(|n| n.starts_with("momentum_buffer.")));
}

/// A run with a cosine schedule after a warm-up epoch, killed after its first epoch and resumed,
/// ends where the uninterrupted run ends (the schedule is a function of the epoch and step, and
/// the run's total epochs are stored); the recorded rates follow the schedule.
#[test]
fn a_killed_run_with_a_cosine_schedule_resumes_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 9, 160, 24, 3);
    let cfg = small_config(
        dir.path(),
        &data,
        "cosine",
        "schedule = \"cosine\"\nwarmup_epochs = 1",
    );
    let args = |out: &Path| {
        vec![
            "train".to_string(),
            "--config".to_string(),
            s(&cfg),
            "--epochs".to_string(),
            "5".to_string(),
            "--out".to_string(),
            s(out),
        ]
    };
    let full = dir.path().join("full");
    let a: Vec<String> = args(&full);
    run_ok(
        "temporal",
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let part = dir.path().join("part");
    let mut child = Command::new(binary("temporal"))
        .args(args(&part))
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let progress = part.join("state/progress.json");
    let epochs_done = || -> usize {
        std::fs::read_to_string(&progress)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["epochs_done"].as_u64())
            .unwrap_or(0) as usize
    };
    let started = Instant::now();
    while epochs_done() < 1 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first epoch was recorded"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no epoch in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = epochs_done();
    assert!(
        (1..5).contains(&done),
        "killed after {done} epochs: nothing left to resume"
    );
    run_ok("temporal", &["train", "--resume", "--out", &s(&part)]);

    assert_eq!(scores(&full), scores(&part), "the resumed run differs");
    let last = |d: &Path| std::fs::read(d.join("checkpoints/last.safetensors")).unwrap();
    assert!(last(&full) == last(&part), "final weights differ");
    // warm-up epoch: from a small rate; then the cosine from the full rate downwards
    let lr = column(&full, "lr");
    assert_eq!(lr.len(), 5);
    assert!(lr[0] > 0.0 && lr[0] < 1e-3 / 2.0, "{lr:?}");
    assert_eq!(lr[1], 1e-3, "{lr:?}");
    assert!(
        lr[1] > lr[2] && lr[2] > lr[3] && lr[3] > lr[4] && lr[4] > 0.0,
        "{lr:?}"
    );
}

/// Trains the MTCA system for `epochs` on `data` into `out` with `extra` flags; returns the
/// command's output.
fn mtca(data: &Path, out: &Path, epochs: &str, extra: &[&str]) -> std::process::Output {
    let cfg = workspace_root().join("configs/systems/mtca.toml");
    let (cfg, data, out) = (s(&cfg), s(data), s(out));
    let mut args = vec![
        "train",
        "--config",
        &cfg,
        "--data",
        &data,
        "--features",
        "synthetic",
        "--epochs",
        epochs,
        "--threads",
        "1",
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    run("temporal", &args)
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--init-from` copies every tensor of the source's best checkpoint: with a learning rate of 0
/// the new run's parameters after its first epoch are the source's; its normalisation is the
/// source's. A source built on features of another width is refused, naming both runs and each
/// mismatched tensor with both shapes.
#[test]
fn init_from_copies_matching_weights_and_refuses_other_shapes_naming_both_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 10, 240, 32, 5);
    let source = dir.path().join("source");
    ok(mtca(&data, &source, "2", &[]));

    let copy = dir.path().join("copy");
    ok(mtca(
        &data,
        &copy,
        "1",
        &["--init-from", &s(&source), "--lr", "0"],
    ));
    let (want, got) = (
        tensors(&source.join("checkpoints/best.safetensors")),
        tensors(&copy.join("checkpoints/last.safetensors")),
    );
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    let mut compared = 0;
    for (name, (shape, bytes)) in &want {
        if is_running_statistic(name) {
            continue;
        }
        assert_eq!(&got[name].0, shape, "{name}");
        assert_eq!(floats(&got[name].1), floats(bytes), "{name} was not copied");
        compared += 1;
    }
    assert!(compared > 50, "{compared} parameters compared");
    assert!(
        std::fs::read(source.join("normalisation.safetensors")).unwrap()
            == std::fs::read(copy.join("normalisation.safetensors")).unwrap()
    );
    let log = std::fs::read_to_string(copy.join("train.log")).unwrap();
    assert!(
        log.contains("init-from") && log.contains("tensors copied"),
        "{log}"
    );

    let narrow = dir.path().join("narrow");
    sample(&narrow, 10, 240, 24, 5);
    let other = dir.path().join("other");
    let out = mtca(&narrow, &other, "1", &["--init-from", &s(&source)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        s(&source),
        s(&other),
        "au.sc: this model's shape [12, 24] vs the run's shape [12, 32]".to_string(),
        "va.fc.weight: this model's shape [2, 24] vs the run's shape [2, 32]".to_string(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in: {err}");
    }
    assert!(!other.join("checkpoints/last.safetensors").exists());
}

/// The paper's second stage: `--init-from` the AU run with `--freeze au` (and `--freeze
/// attention`, repeated): after two epochs every frozen tensor, BatchNorm running statistics
/// included, is bit-identical to the source's, while the other heads have trained.
#[test]
fn freeze_keeps_frozen_parameters_and_their_batchnorm_statistics_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 10, 240, 32, 5);
    let source = dir.path().join("source");
    ok(mtca(&data, &source, "2", &[]));
    let staged = dir.path().join("staged");
    ok(mtca(
        &data,
        &staged,
        "2",
        &[
            "--init-from",
            &s(&source),
            "--freeze",
            "au",
            "--freeze",
            "attention",
        ],
    ));
    let (before, after) = (
        tensors(&source.join("checkpoints/best.safetensors")),
        tensors(&staged.join("checkpoints/last.safetensors")),
    );
    let mut frozen = 0;
    for (name, value) in &before {
        let kept = &after[name] == value;
        if name.starts_with("au.") || name.starts_with("attention.") {
            assert!(kept, "frozen {name} changed");
            frozen += 1;
        } else if !name.ends_with("num_batches_tracked") {
            assert!(!kept, "{name} did not train");
        }
    }
    assert!(before.contains_key("au.class_linears.0.bn.running_mean"));
    assert!(frozen > 90, "{frozen} frozen tensors");
    let log = std::fs::read_to_string(staged.join("train.log")).unwrap();
    assert!(log.contains("frozen: au, attention"), "{log}");
}

#[test]
fn freezing_a_part_the_model_lacks_is_an_error_listing_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sample(&data, 9, 120, 16, 2);
    let out = mtca(
        &data,
        &dir.path().join("run"),
        "1",
        &["--freeze", "au,expr"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--freeze expr") && err.contains("its parts are: attention, au, ex, va"),
        "{err}"
    );
}

#[test]
fn train_help_documents_every_training_option() {
    let help = run_ok("temporal", &["train", "--help"]);
    for flag in [
        "--optimizer",
        "--weight-decay",
        "--momentum",
        "--nesterov",
        "--sam-rho",
        "--schedule",
        "--warmup-epochs",
        "--lr-steps",
        "--lr-gamma",
        "--init-from",
        "--init-checkpoint",
        "--freeze",
        "adamw",
        "cosine",
    ] {
        assert!(help.contains(flag), "{flag} not in `temporal train --help`");
    }
}
