//! Tests of the whole generator: files parse with the shared readers, the cache reads back,
//! output is deterministic, frames carry their labels (measured on decoded JPEG pixels) and the
//! labels have the time structure a temporal model can use.

use super::face::MOUTH_Y;
use super::write::encode_jpeg;
use super::*;
use crate::abaw::{read_mtl_annotations, read_per_task_split, read_test_list, PerTask, Split};
use crate::tasks::{FrameLabels, N_AU};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Index of AU12 in [`crate::AUS`].
const AU12: usize = 6;

fn small(videos: usize, frames: usize, size: u32) -> SampleConfig {
    SampleConfig {
        videos,
        frames,
        size,
        ..SampleConfig::default()
    }
}

/// Every file under `root` (relative path) with the sha256 of its bytes.
fn hash_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

#[test]
fn annotations_parse_with_the_shared_readers_and_match_the_simulation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SampleConfig {
        synthetic_features: Some(6),
        ..small(6, 90, 32)
    };
    let summary = generate(dir.path(), &cfg).unwrap();
    let plans = plan_videos(&cfg);
    let paths = &summary.paths;
    assert_eq!(
        (
            summary.train.len(),
            summary.validation.len(),
            summary.test.len()
        ),
        (4, 1, 1)
    );
    let states: BTreeMap<VideoId, Vec<FrameState>> = plans
        .iter()
        .map(|p| (p.id.clone(), simulate_video(cfg.seed, p.index, p.n_frames)))
        .collect();

    // MTL files: exactly the annotated frames of each split, labels as planned.
    for (path, split) in [
        (&paths.training_annotations, SampleSplit::Train),
        (&paths.validation_annotations, SampleSplit::Validation),
        (&paths.test_annotations, SampleSplit::Test),
    ] {
        let mtl = read_mtl_annotations(path).unwrap();
        let expected: Vec<(FrameRef, FrameLabels)> = plans
            .iter()
            .filter(|p| p.split == split)
            .flat_map(|p| {
                states[&p.id]
                    .iter()
                    .filter(|s| p.annotated[s.frame as usize - 1])
                    .map(|s| {
                        let f = FrameRef {
                            video: p.id.clone(),
                            frame: s.frame,
                        };
                        (f, p.labels(s))
                    })
            })
            .collect();
        assert_eq!(mtl.rows, expected, "{}", path.display());
    }
    let train_rows = read_mtl_annotations(&paths.training_annotations)
        .unwrap()
        .rows;
    assert_eq!(
        summary.annotated_frames,
        train_rows.len()
            + read_mtl_annotations(&paths.validation_annotations)
                .unwrap()
                .rows
                .len()
    );
    // Some train labels are invalid, and one train video has a task invalid throughout.
    assert!(train_rows.iter().any(|(_, l)| l.valence.is_none()));
    assert!(train_rows.iter().any(|(_, l)| l.valence.is_some()));
    let (video, task) = summary.task_all_invalid.clone().unwrap();
    assert!(summary.train.contains(&video));
    let rows_of_video: Vec<&FrameLabels> = train_rows
        .iter()
        .filter(|(f, _)| f.video == video)
        .map(|(_, l)| l)
        .collect();
    assert!(!rows_of_video.is_empty());
    assert!(rows_of_video.iter().all(|l| match task {
        Task::Va => l.valence.is_none() && l.arousal.is_none(),
        Task::Expr => l.expression.is_none(),
        Task::Au => l.aus.is_none(),
    }));

    // Test list: every frame of the test videos, in order.
    let list = read_test_list(&paths.test_list).unwrap();
    let test_plan = plans.iter().find(|p| p.split == SampleSplit::Test).unwrap();
    assert_eq!(list.len(), test_plan.n_frames);
    assert!(list
        .iter()
        .enumerate()
        .all(|(t, f)| f.video == test_plan.id && f.frame == t as u32 + 1));

    // Per-task folders: every frame of every train/validation video, invalid where unannotated.
    for task in PerTask::ALL {
        for split in [Split::Train, Split::Validation] {
            let files = read_per_task_split(&paths.root, task, split).unwrap();
            let wanted = if split == Split::Train {
                SampleSplit::Train
            } else {
                SampleSplit::Validation
            };
            let ids: Vec<&VideoId> = plans
                .iter()
                .filter(|p| p.split == wanted)
                .map(|p| &p.id)
                .collect();
            assert_eq!(files.keys().collect::<Vec<_>>(), ids);
            for (id, labels) in &files {
                let plan = plans.iter().find(|p| &p.id == id).unwrap();
                assert_eq!(labels.len(), plan.n_frames);
                for (s, got) in states[id].iter().zip(labels) {
                    let full = plan.labels(s);
                    let want = match task {
                        PerTask::Va => (full.valence, full.arousal, None, None),
                        PerTask::Expr => (None, None, full.expression, None),
                        PerTask::Au => (None, None, None, full.aus),
                    };
                    assert_eq!((got.valence, got.arousal, got.expression, got.aus), want);
                    if !plan.annotated[s.frame as usize - 1] {
                        assert!(got.is_empty());
                    }
                }
            }
        }
    }

    // Frames: a file exactly where the plan has an image, bytes as render + encode give them.
    let mut files = 0;
    for plan in &plans {
        let id = identity(cfg.seed, plan.index);
        for s in &states[&plan.id] {
            let path = paths.frame(&FrameRef {
                video: plan.id.clone(),
                frame: s.frame,
            });
            assert_eq!(
                path.exists(),
                plan.has_image[s.frame as usize - 1],
                "{}",
                path.display()
            );
            if path.exists() {
                files += 1;
                if s.frame % 29 == 1 {
                    let bytes = encode_jpeg(&render_face(&id, s, cfg.size)).unwrap();
                    assert_eq!(std::fs::read(&path).unwrap(), bytes);
                    let decoded = image::open(&path).unwrap();
                    assert_eq!((decoded.width(), decoded.height()), (32, 32));
                }
            }
        }
    }
    assert_eq!(files, summary.images_written);
    assert_eq!(files + summary.missing_images, summary.frames);
    assert_eq!(summary.feature_files, 6);

    let readme = std::fs::read_to_string(&paths.readme).unwrap();
    assert!(readme
        .contains("Arguments: --videos 6 --frames 90 --seed 7 --size 32 --synthetic-features 6"));
    assert!(readme.contains("withholds"));
    assert!(readme.contains(&format!("{video}")));
}

#[test]
fn synthetic_feature_cache_reads_back_with_the_cache_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SampleConfig {
        synthetic_features: Some(5),
        write_frames: false,
        equal_lengths: true,
        ..small(3, 60, 112)
    };
    let summary = generate(dir.path(), &cfg).unwrap();
    assert_eq!(summary.images_written, 0);
    assert!(!summary.paths.frames.exists());
    let w = features::projection(cfg.seed, 5);
    for plan in plan_videos(&cfg) {
        let path = crate::cache::video_path(&summary.paths.features, "synthetic", &plan.id);
        let (attrs, got) = crate::cache::read_video(&path).unwrap();
        assert_eq!(attrs, features::cache_attrs(cfg.seed, 5));
        assert_eq!(attrs.weights, "seed:7");
        assert_eq!(attrs.preprocessing, "latent projection");
        assert_eq!(
            (attrs.backbone.as_str(), attrs.dim, attrs.input_size),
            ("synthetic", 5, 0)
        );
        let with_image: Vec<i32> = (1..=60)
            .filter(|&f| plan.has_image[f as usize - 1])
            .collect();
        assert_eq!(got.frames, with_image);
        assert_eq!(got.features.shape(), &[with_image.len(), 5]);
        assert!(got.missing.is_empty());
        let states = simulate_video(cfg.seed, plan.index, plan.n_frames);
        let want = features::video_features(cfg.seed, &plan, &states, &w);
        assert_eq!(got.features, want.features);
    }
    // h5py-compatible layout, as h5dump sees it (where the HDF5 tools are installed).
    let h5dump = Path::new("/usr/bin/h5dump");
    if h5dump.exists() {
        let path =
            crate::cache::video_path(&summary.paths.features, "synthetic", &summary.train[0]);
        let out = std::process::Command::new(h5dump)
            .arg("-H")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for name in [
            "DATASET \"features\"",
            "DATASET \"frames\"",
            "DATASET \"missing\"",
            "ATTRIBUTE \"backbone\"",
            "ATTRIBUTE \"dim\"",
            "ATTRIBUTE \"input_size\"",
            "ATTRIBUTE \"dtype\"",
            "ATTRIBUTE \"preprocessing\"",
            "ATTRIBUTE \"weights\"",
            "ATTRIBUTE \"source\"",
            "ATTRIBUTE \"tool_version\"",
            "H5T_IEEE_F32LE",
            "H5T_STD_I32LE",
        ] {
            assert!(text.contains(name), "h5dump -H lacks {name}:\n{text}");
        }
    }
}

#[test]
fn same_arguments_give_byte_identical_files_and_reruns_replace_them() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let cfg = SampleConfig {
        synthetic_features: Some(4),
        ..small(4, 40, 32)
    };
    generate(a.path(), &cfg).unwrap();
    generate(b.path(), &cfg).unwrap();
    let first = hash_tree(a.path());
    assert!(first
        .keys()
        .any(|p| p.extension().is_some_and(|e| e == "jpg")));
    assert!(first
        .keys()
        .any(|p| p.extension().is_some_and(|e| e == "h5")));
    assert_eq!(first, hash_tree(b.path()));

    // Another seed changes the files; a rerun with other arguments replaces the earlier set
    // (and drops its feature caches as stale), and the original arguments give it back.
    let other = SampleConfig {
        seed: 8,
        synthetic_features: None,
        ..cfg.clone()
    };
    std::fs::create_dir_all(a.path().join("features/hog")).unwrap();
    let replaced = generate(a.path(), &other).unwrap();
    assert_eq!(replaced.removed_stale, vec![a.path().join("features")]);
    let second = hash_tree(a.path());
    assert!(!second.keys().any(|p| p.starts_with("features")));
    assert_ne!(
        first.get(Path::new("training_set_annotations.txt")),
        second.get(Path::new("training_set_annotations.txt"))
    );
    generate(a.path(), &cfg).unwrap();
    assert_eq!(first, hash_tree(a.path()));
    // Same arguments again: other feature caches are kept.
    std::fs::create_dir_all(a.path().join("features/hog")).unwrap();
    let again = generate(a.path(), &cfg).unwrap();
    assert!(again.removed_stale.is_empty());
    assert!(a.path().join("features/hog").is_dir());
}

#[test]
fn refuses_foreign_folders_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = generate(dir.path(), &small(3, 10, 32))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty") && err.contains("--out"), "{err}");
    assert!(dir.path().join("notes.txt").exists());
    let empty = tempfile::tempdir().unwrap();
    for (cfg, expected) in [
        (small(2, 10, 32), "--videos 2"),
        (small(3, 0, 32), "--frames 0"),
        (small(3, 10, 8), "--size 8"),
        (
            SampleConfig {
                synthetic_features: Some(0),
                ..small(3, 10, 32)
            },
            "--synthetic-features 0",
        ),
    ] {
        let err = generate(empty.path(), &cfg).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

/// Luminance of a decoded pixel, 0..255.
fn luma(img: &image::RgbImage, x: u32, y: u32) -> f32 {
    let p = img.get_pixel(x, y).0;
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// Row (in pixels) of the darkest pixel of column `x` within the mouth window: the line where
/// the lips meet (or the open mouth).
fn lip_line_row(img: &image::RgbImage, x: u32) -> f32 {
    let size = img.width() as f32;
    let top = ((0.5 + MOUTH_Y - 0.075) * size) as u32;
    let bottom = ((0.5 + MOUTH_Y + 0.06) * size) as u32;
    (top..bottom)
        .min_by(|&a, &b| luma(img, x, a).total_cmp(&luma(img, x, b)))
        .unwrap() as f32
}

/// Mean lip-line row over the columns at horizontal offsets `from..to` (fractions of the
/// image width) on both sides of the centre.
fn lip_rows(img: &image::RgbImage, from: f32, to: f32) -> f32 {
    let size = img.width() as f32;
    let mut rows = Vec::new();
    for x in 0..img.width() {
        let offset = ((x as f32 + 0.5) / size - 0.5).abs();
        if (from..=to).contains(&offset) {
            rows.push(lip_line_row(img, x));
        }
    }
    rows.iter().sum::<f32>() / rows.len() as f32
}

/// Lip-corner height: how far above the lip line's centre its outer parts are, in pixels
/// (positive: corners up, a smile).
fn mouth_curvature(img: &image::RgbImage) -> f32 {
    lip_rows(img, 0.0, 0.015) - lip_rows(img, 0.05, 0.07)
}

fn mean(x: &[f32]) -> f32 {
    x.iter().sum::<f32>() / x.len() as f32
}

fn variance(x: &[f32]) -> f32 {
    let m = mean(x);
    x.iter().map(|v| (v - m).powi(2)).sum::<f32>() / (x.len() - 1) as f32
}

fn pearson(x: &[f32], y: &[f32]) -> f32 {
    let (mx, my) = (mean(x), mean(y));
    let cov: f32 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sx: f32 = x.iter().map(|a| (a - mx).powi(2)).sum::<f32>().sqrt();
    let sy: f32 = y.iter().map(|b| (b - my).powi(2)).sum::<f32>().sqrt();
    cov / (sx * sy)
}

/// Frames far apart in many videos (so they are practically independent samples), each
/// rendered, JPEG-encoded as the generator writes it and decoded: (state, decoded image).
fn independent_frames(seed: u64, videos: usize) -> Vec<(FrameState, image::RgbImage)> {
    (0..videos)
        .into_par_iter()
        .flat_map_iter(|v| {
            let states = simulate_video(seed, v, 360);
            let id = identity(seed, v);
            [119usize, 359].into_iter().map(move |t| {
                let s = states[t];
                let bytes = encode_jpeg(&render_face(&id, &s, 112)).unwrap();
                let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
                (s, img)
            })
        })
        .collect()
}

#[test]
fn decoded_frames_carry_the_labels() {
    let frames = independent_frames(11, 200);
    let n = frames.len() as f32;
    // Mouth curvature correlates with valence. Under no relation, r of n independent pairs has
    // standard deviation 1/sqrt(n); demand 5 of those.
    let curvature: Vec<f32> = frames.iter().map(|(_, img)| mouth_curvature(img)).collect();
    let valence: Vec<f32> = frames.iter().map(|(s, _)| s.valence).collect();
    let r = pearson(&curvature, &valence);
    eprintln!("curvature~valence r = {r:.3} (n = {n})");
    assert!(r > 5.0 / n.sqrt(), "r = {r}");
    // With AU12 on, the outer lip line sits higher (smaller row) than with AU12 off: Welch's t
    // of the difference must exceed 5 standard errors.
    let (on, off): (Vec<_>, Vec<_>) = frames.iter().partition(|(s, _)| s.aus[AU12]);
    let corner = |set: &[&(FrameState, image::RgbImage)]| -> Vec<f32> {
        set.iter()
            .map(|(_, img)| lip_rows(img, 0.05, 0.07))
            .collect()
    };
    let (c_on, c_off) = (corner(&on), corner(&off));
    assert!(
        c_on.len() >= 10 && c_off.len() >= 10,
        "{} on, {} off",
        c_on.len(),
        c_off.len()
    );
    let se = (variance(&c_on) / c_on.len() as f32 + variance(&c_off) / c_off.len() as f32).sqrt();
    let t = (mean(&c_off) - mean(&c_on)) / se;
    eprintln!(
        "AU12 lip corners: on {:.2} px, off {:.2} px, t = {t:.1} ({} on, {} off)",
        mean(&c_on),
        mean(&c_off),
        c_on.len(),
        c_off.len()
    );
    assert!(t > 5.0, "t = {t}");
}

#[test]
fn every_au_changes_the_pixels_of_its_region() {
    // For several identities, the same frame with one AU at full intensity and at zero, everything else equal (same
    // sensor-noise seed, so the noise cancels): the AU must move many pixels by more than three
    // times the sensor noise.
    for video in 0..4 {
        let id = identity(3, video);
        let mut neutral = simulate_video(3, video, 1)[0];
        neutral.valence = 0.0;
        neutral.arousal = 0.0;
        neutral.au_intensity = [0.0; N_AU];
        neutral.eye_closure = 0.0;
        neutral.occlusion = None;
        neutral.blur = 0.0;
        let base = render_face(&id, &neutral, 112);
        let threshold = 3.0 * face::sensor_noise(&id, &neutral);
        for j in 0..N_AU {
            let mut s = neutral;
            s.au_intensity[j] = 1.0;
            let img = render_face(&id, &s, 112);
            let changed = base
                .pixels()
                .zip(img.pixels())
                .filter(|(a, b)| (0..3).any(|c| (a.0[c] as f32 - b.0[c] as f32).abs() > threshold))
                .count();
            eprintln!("video {video} {}: {changed} pixels", crate::AUS[j]);
            assert!(
                changed >= 25,
                "video {video}: {} changes only {changed} pixels",
                crate::AUS[j]
            );
        }
    }
}

#[test]
fn labels_have_the_time_structure_of_real_videos() {
    let videos: Vec<Vec<FrameState>> = (0..12).map(|i| simulate_video(7, i, 600)).collect();
    // Valence is smooth: pooled lag-10 autocorrelation (each video about its own mean).
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for states in &videos {
        let v: Vec<f64> = states.iter().map(|s| s.valence as f64).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        for t in 0..v.len() {
            den += (v[t] - m).powi(2);
            if t + 10 < v.len() {
                num += (v[t] - m) * (v[t + 10] - m);
            }
        }
    }
    let rho = num / den;
    eprintln!("valence lag-10 autocorrelation {rho:.3}");
    assert!(rho > 0.8, "{rho}");
    // Expressions last many frames, and every class occurs.
    let mut runs = 0;
    let mut seen = [false; crate::N_EXPR];
    for states in &videos {
        runs += 1 + states
            .windows(2)
            .filter(|w| w[0].expression != w[1].expression)
            .count();
        states
            .iter()
            .for_each(|s| seen[s.expression as usize] = true);
    }
    let mean_run = (12 * 600) as f64 / runs as f64;
    eprintln!("mean expression run {mean_run:.1} frames");
    assert!(mean_run > 10.0, "{mean_run}");
    assert!(seen.iter().all(|&b| b), "{seen:?}");
    // AUs switch on and off in episodes, not frame by frame.
    let mut switches = 0;
    let mut on_frames = 0;
    for states in &videos {
        for w in states.windows(2) {
            switches += (0..N_AU).filter(|&j| w[0].aus[j] != w[1].aus[j]).count();
        }
        on_frames += states
            .iter()
            .map(|s| s.aus.iter().filter(|&&b| b).count())
            .sum::<usize>();
    }
    let mean_on_episode = 2.0 * on_frames as f64 / switches as f64;
    eprintln!("mean AU episode {mean_on_episode:.1} frames");
    assert!(mean_on_episode > 10.0, "{mean_on_episode}");
}

#[test]
fn smoothing_over_time_recovers_valence_better_than_single_frames() {
    // Consecutive frames written by the generator: the per-frame mouth curvature is noisy;
    // averaged over a window of frames it tracks valence better. That is what a temporal model
    // can gain over a frame-level one.
    let dir = tempfile::tempdir().unwrap();
    let cfg = SampleConfig {
        equal_lengths: true,
        ..small(4, 300, 112)
    };
    let summary = generate(dir.path(), &cfg).unwrap();
    let (mut raw, mut smooth, mut valence) = (Vec::new(), Vec::new(), Vec::new());
    for plan in plan_videos(&cfg) {
        let states = simulate_video(cfg.seed, plan.index, plan.n_frames);
        let curvature: Vec<Option<f32>> = states
            .iter()
            .map(|s| {
                let path = summary.paths.frame(&FrameRef {
                    video: plan.id.clone(),
                    frame: s.frame,
                });
                path.exists()
                    .then(|| mouth_curvature(&image::open(&path).unwrap().to_rgb8()))
            })
            .collect();
        for (t, s) in states.iter().enumerate() {
            let Some(c) = curvature[t] else { continue };
            let window: Vec<f32> = curvature[t.saturating_sub(7)..(t + 8).min(states.len())]
                .iter()
                .flatten()
                .copied()
                .collect();
            raw.push(c);
            smooth.push(mean(&window));
            valence.push(s.valence);
        }
    }
    let (r_raw, r_smooth) = (pearson(&raw, &valence), pearson(&smooth, &valence));
    eprintln!("curvature~valence: single frames r = {r_raw:.3}, 15-frame mean r = {r_smooth:.3}");
    assert!(r_smooth > r_raw, "{r_smooth} <= {r_raw}");
}
