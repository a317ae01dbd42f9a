//! The ABAW7 six-fold recipe end to end on generated data: a sweep with `[folds] n = 6, scheme =
//! "frames"` trains its six members (fold 0 = the official validation set), `temporal
//! submit-strategies` scores the test videos with each member's best checkpoints and writes the
//! paper's five MTL submissions in test-list order (strategy 1 is the official-split member's
//! best epoch, strategy 5 the mean of the other four), reusing its predictions when run again;
//! a sweep without folds is refused by name. `train --pseudo-labels` fills the training labels
//! from another run's `predict --split train`.

use shared::abaw::{read_mtl_submission, read_prediction_dir, read_test_list};
use std::path::Path;
use tests::{run, run_ok, synthetic_sample};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

const BASE: &str = "features = [\"synthetic\"]\ntasks = [\"va\", \"expr\", \"au\"]\nepochs = 2\n\
seg_len = 40\nstreams = 2\nlr = 1e-3\n[model]\nhidden = 16\ndropout = 0.1\n";

#[test]
fn a_six_fold_sweep_gives_the_five_submissions_in_test_list_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    synthetic_sample(&data, 16, 120, Some(12), 9);
    let base = dir.path().join("base.toml");
    std::fs::write(&base, BASE).unwrap();
    let sweep_out = dir.path().join("sweep");
    let sweep = dir.path().join("six.toml");
    let head = format!(
        "name = \"six\"\nbase = {:?}\nout = {:?}\nseeds = [0]\narchs = [\"gru\"]\n\
         topologies = [\"basic\"]\n",
        s(&base),
        s(&sweep_out)
    );
    std::fs::write(
        &sweep,
        format!("{head}[folds]\nn = 6\nscheme = \"frames\"\n"),
    )
    .unwrap();
    let listed = run_ok("temporal", &["sweep", &s(&sweep)]);
    assert!(listed.contains("gru-basic-s0-f5of6"), "{listed}");
    for i in 0..6 {
        run_ok(
            "temporal",
            &[
                "train",
                "--sweep",
                &s(&sweep),
                "--sweep-index",
                &i.to_string(),
                "--data",
                &s(&data),
                "--threads",
                "1",
            ],
        );
    }
    let cfg = std::fs::read_to_string(sweep_out.join("gru-basic-s0-f3of6/config.toml")).unwrap();
    assert!(cfg.contains("fold_scheme = \"frames\""), "{cfg}");

    let out = dir.path().join("strategies");
    let test_list = data.join("test_set_list.txt");
    let strategies = |extra: &[&str]| {
        let mut args = vec![
            "submit-strategies".to_string(),
            s(&sweep),
            "--test-list".into(),
            s(&test_list),
            "--out".into(),
            s(&out),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok("temporal", &args)
    };
    // The sweep's runs hold relative data paths only if given so; here --data was absolute.
    let printed = strategies(&[]);
    let listed = read_test_list(&test_list).unwrap();
    let stems = [
        "1-best-overall",
        "2-best-per-task",
        "3-folds-mean",
        "4-folds-per-task",
        "5-all-four",
    ];
    let mut submissions = Vec::new();
    for stem in stems {
        assert!(printed.contains(stem), "{printed}");
        let rows = read_mtl_submission(&out.join(format!("{stem}.txt"))).unwrap();
        assert_eq!(
            rows.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
            listed,
            "{stem}: one row per test-list frame, in its order"
        );
        submissions.push(rows);
    }
    let preds: Vec<_> = stems
        .iter()
        .map(|stem| read_prediction_dir(&out.join(stem)).unwrap())
        .collect();
    // Strategy 1 is fold 0's best checkpoint as it predicts the test videos.
    let own = read_prediction_dir(&out.join("predictions/gru-basic-s0-f0of6/best")).unwrap();
    assert_eq!(preds[0], own);
    // Strategy 5 is the mean of strategies 1-4, frame by frame.
    for (video, rows) in &preds[4] {
        for (i, (_, p)) in rows.iter().enumerate() {
            let mean = |f: &dyn Fn(&shared::Prediction) -> f32| {
                (0..4).map(|k| f(&preds[k][video][i].1)).sum::<f32>() / 4.0
            };
            assert!((p.valence - mean(&|q| q.valence)).abs() < 1e-4);
            assert!((p.aus[3] - mean(&|q| q.aus[3])).abs() < 1e-4);
        }
    }
    // The fold mean differs from any one member.
    assert_ne!(preds[2], preds[0]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("strategies.json")).unwrap())
            .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 5);
    assert_eq!(json[2]["from"].as_array().unwrap().len(), 6);

    // Run again: the member predictions are reused and the submissions come out the same.
    let marker = out.join("predictions/gru-basic-s0-f2of6/best-va/.complete");
    let before = std::fs::metadata(&marker).unwrap().modified().unwrap();
    strategies(&[]);
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        before
    );
    for (stem, rows) in stems.iter().zip(&submissions) {
        assert_eq!(
            &read_mtl_submission(&out.join(format!("{stem}.txt"))).unwrap(),
            rows
        );
    }

    // A sweep without folds is refused, naming the file and what to add.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, &head).unwrap();
    let bad = run(
        "temporal",
        &[
            "submit-strategies",
            &s(&plain),
            "--test-list",
            &s(&test_list),
            "--out",
            &s(&dir.path().join("x")),
        ],
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("plain.toml") && err.contains("[folds]"),
        "{err}"
    );

    // Pseudo-labels: member 1's predictions on the training videos fill another run's labels.
    let member = sweep_out.join("gru-basic-s0-f1of6");
    let train_preds = dir.path().join("train-preds");
    run_ok(
        "temporal",
        &[
            "predict",
            "--run",
            &s(&member),
            "--split",
            "train",
            "--out",
            &s(&train_preds),
        ],
    );
    let pseudo = dir.path().join("pseudo");
    let out = run(
        "temporal",
        &[
            "train",
            "--config",
            &s(&base),
            "--arch",
            "gru",
            "--data",
            &s(&data),
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
            &s(&pseudo),
            "--pseudo-labels",
            &s(&train_preds),
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("pseudo-labels from") && log.contains("filled VA on"),
        "{log}"
    );
    let cfg = std::fs::read_to_string(pseudo.join("config.toml")).unwrap();
    assert!(cfg.contains("pseudo_labels"), "{cfg}");
}
