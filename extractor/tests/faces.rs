//! `extractor faces` on videos made here from a real face photograph.
//!
//! The astronaut of the scikit-image wheel (`tests/fixtures/mtcnn/astronaut.png`) is pasted,
//! moving and at two scales, onto grey frames, with frames without a face between, and encoded
//! with ffmpeg. The command must write an aligned crop for exactly the frames with a face (ABAW
//! layout, 1-based numbers), a CSV whose boxes follow the pasted face, resume without redoing a
//! complete video, redo an incomplete one, process only its shard, keep every face as its own
//! track with `--all-faces`, and report each bad input (no face, truncated, empty, unreadable,
//! grayscale, 4K) by its file while the others finish.

mod face_videos;

use clap::Parser;
use extractor::faces::command::{faces, FacesArgs, FacesReport, CSV_HEADER};
use face_videos::{astronaut_face, frame, shots, write_video, Shot, MJPEG};
use image::imageops;
use std::path::Path;
use std::process::Command;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: FacesArgs,
}

fn args(data: &Path, out: &Path, extra: &[&str]) -> FacesArgs {
    let mut argv = vec![
        "faces".to_string(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--device".into(),
        "cpu".into(),
        "--threads".into(),
        "1".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::parse_from(argv).args
}

fn csv_rows(path: &Path) -> (String, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

fn jpegs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn run(a: &FacesArgs) -> FacesReport {
    tch::set_num_threads(1);
    faces(a).unwrap()
}

#[test]
fn faces_writes_an_aligned_crop_and_a_csv_row_for_exactly_the_frames_with_a_face() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("videos");
    write_video(&data.join("clip.avi"), 240, 160, &shots(), MJPEG);
    let out = tmp.path().join("out");
    let report = run(&args(&data, &out, &[]));
    assert_eq!((report.written, report.crops, report.no_face), (1, 8, 2));
    assert!(report.failed.is_empty());

    let crops = out.join("cropped_aligned/clip");
    let want: Vec<String> = [1, 2, 3, 4, 7, 8, 9, 10]
        .iter()
        .map(|n| format!("{n:05}.jpg"))
        .collect();
    assert_eq!(jpegs(&crops), want);
    let crop = image::open(crops.join("00001.jpg")).unwrap();
    assert_eq!((crop.width(), crop.height()), (112, 112));

    let (header, rows) = csv_rows(&out.join("faces/clip.csv"));
    assert_eq!(header, CSV_HEADER);
    let frames: Vec<i64> = rows.iter().map(|r| r[0] as i64).collect();
    assert_eq!(frames, [1, 2, 3, 4, 7, 8, 9, 10]);
    // The face was pasted 8 px further right per frame, then (larger) 4 px further left.
    let x1: Vec<f64> = rows.iter().map(|r| r[1]).collect();
    for k in 0..3 {
        let dx = x1[k + 1] - x1[k];
        assert!(
            (dx - 8.0).abs() < 3.0,
            "frames {k}->{}: box moved {dx} px: {x1:?}",
            k + 1
        );
        let dx = x1[k + 5] - x1[k + 4];
        assert!((dx + 4.0).abs() < 3.0, "larger face moved {dx} px: {x1:?}");
    }
    let width = |r: &Vec<f64>| r[3] - r[1];
    let ratio = width(&rows[4]) / width(&rows[0]);
    assert!(
        (ratio - 120.0 / 90.0).abs() < 0.15,
        "box size ratio {ratio}"
    );
    for r in &rows {
        assert!(r[5] > 0.9, "probability {}", r[5]);
        // eyes above the nose above the mouth, all inside the box, left eye left of the right
        let (ley, rey, ny, mly) = (r[7], r[9], r[11], r[13]);
        assert!(r[6] < r[8] && ley.max(rey) < ny && ny < mly, "{r:?}");
        for k in 0..5 {
            let (x, y) = (r[6 + 2 * k], r[7 + 2 * k]);
            assert!(
                x > r[1] && x < r[3] && y > r[2] && y < r[4],
                "landmark {k} outside: {r:?}"
            );
        }
    }
    assert!(!out.join(".partial/clip").exists());

    // --size 224: the template scaled, crops of 224.
    let out224 = tmp.path().join("out224");
    run(&args(&data, &out224, &["--size", "224"]));
    let crop = image::open(out224.join("cropped_aligned/clip/00007.jpg")).unwrap();
    assert_eq!((crop.width(), crop.height()), (224, 224));
}

#[test]
fn a_rerun_skips_complete_videos_and_redoes_one_left_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("videos");
    let short: Vec<Shot> = shots().into_iter().take(3).collect();
    write_video(&data.join("a.avi"), 160, 120, &short, MJPEG);
    write_video(&data.join("b.avi"), 160, 120, &short, MJPEG);
    let out = tmp.path().join("out");
    let first = run(&args(&data, &out, &[]));
    assert_eq!((first.written, first.skipped), (2, 0));
    let again = run(&args(&data, &out, &[]));
    assert_eq!((again.written, again.skipped), (0, 2));

    // A crash after b's crops moved but before its CSV: crops without their CSV, stale partial
    // work. The rerun redoes b only and cleans up.
    std::fs::remove_file(out.join("faces/b.csv")).unwrap();
    std::fs::remove_file(out.join("cropped_aligned/b/00002.jpg")).unwrap();
    std::fs::create_dir_all(out.join(".partial/b/b")).unwrap();
    std::fs::write(out.join(".partial/b/b/00099.jpg"), b"half").unwrap();
    let redo = run(&args(&data, &out, &[]));
    assert_eq!((redo.written, redo.skipped), (1, 1));
    assert_eq!(
        jpegs(&out.join("cropped_aligned/b")),
        ["00001.jpg", "00002.jpg", "00003.jpg"]
    );
    assert!(!out.join(".partial/b").exists());
}

#[test]
fn a_shard_processes_only_its_videos() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("videos");
    let short: Vec<Shot> = shots().into_iter().take(2).collect();
    for v in ["v1", "v2", "v3"] {
        write_video(&data.join(format!("{v}.avi")), 160, 120, &short, MJPEG);
    }
    let out = tmp.path().join("out");
    let report = run(&args(&data, &out, &["--shard", "1/2"]));
    assert_eq!(report.written, 1);
    assert!(out.join("faces/v2.csv").is_file());
    assert!(!out.join("faces/v1.csv").exists() && !out.join("faces/v3.csv").exists());
}

#[test]
fn all_faces_writes_each_face_as_its_own_track() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("videos");
    let face = astronaut_face();
    let dir = tempfile::tempdir().unwrap();
    // Two faces side by side for three frames, the right one larger.
    for i in 0..3u32 {
        let mut canvas = frame(320, 160, Shot::Empty, &face);
        let left = imageops::resize(&face, 80, 80, imageops::FilterType::Triangle);
        let right = imageops::resize(&face, 120, 120, imageops::FilterType::Triangle);
        imageops::overlay(&mut canvas, &left, 10 + 2 * i64::from(i), 40);
        imageops::overlay(&mut canvas, &right, 170, 20);
        canvas
            .save(dir.path().join(format!("{:05}.png", i + 1)))
            .unwrap();
    }
    std::fs::create_dir_all(&data).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-framerate", "5", "-i"])
        .arg(dir.path().join("%05d.png"))
        .args(MJPEG)
        .arg(data.join("pair.avi"))
        .status()
        .unwrap();
    assert!(status.success());
    let out = tmp.path().join("out");
    let report = run(&args(&data, &out, &["--all-faces"]));
    assert_eq!(report.crops, 6);
    let (header, rows) = csv_rows(&out.join("faces/pair.csv"));
    assert_eq!(header, format!("track,{CSV_HEADER}"));
    for (track, dir, x_range) in [
        (1.0, "pair_face1", 160.0..320.0),
        (2.0, "pair_face2", 0.0..120.0),
    ] {
        let mine: Vec<&Vec<f64>> = rows.iter().filter(|r| r[0] == track).collect();
        assert_eq!(mine.len(), 3, "track {track}: {rows:?}");
        assert!(
            mine.iter().all(|r| x_range.contains(&r[2])),
            "track {track}: {mine:?}"
        );
        assert_eq!(
            jpegs(&out.join("cropped_aligned").join(dir)),
            ["00001.jpg", "00002.jpg", "00003.jpg"]
        );
    }

    // Without the flag: one face per frame, the larger one.
    let single = tmp.path().join("single");
    run(&args(&data, &single, &[]));
    let (_, rows) = csv_rows(&single.join("faces/pair.csv"));
    assert!(rows.iter().all(|r| r[1] > 160.0), "{rows:?}");
}

#[test]
fn bad_inputs_are_each_reported_by_file_and_the_good_videos_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("videos");
    let short: Vec<Shot> = shots().into_iter().take(3).collect();
    write_video(&data.join("good.avi"), 160, 120, &short, MJPEG);
    write_video(&data.join("noface.avi"), 160, 120, &[Shot::Empty; 3], MJPEG);
    write_video(
        &data.join("gray.mp4"),
        160,
        120,
        &short,
        &["-c:v", "libx264", "-pix_fmt", "gray", "-crf", "12"],
    );
    write_video(
        &data.join("big.avi"),
        3840,
        2160,
        &[Shot::Face {
            x: 1500,
            y: 800,
            side: 600,
        }],
        MJPEG,
    );
    // Truncated: the first third of a good mp4 (its index is at the end).
    write_video(
        &tmp.path().join("whole.mp4"),
        160,
        120,
        &short,
        &["-c:v", "libx264", "-crf", "18"],
    );
    let whole = std::fs::read(tmp.path().join("whole.mp4")).unwrap();
    std::fs::write(data.join("truncated.mp4"), &whole[..whole.len() / 3]).unwrap();
    std::fs::write(data.join("empty.mp4"), b"").unwrap();
    std::fs::write(data.join("garbage.mkv"), vec![0x5au8; 4096]).unwrap();

    let out = tmp.path().join("out");
    let report = run(&args(&data, &out, &[]));
    let failed: Vec<(String, String)> = report
        .failed
        .iter()
        .map(|(v, e)| (v.to_string(), e.clone()))
        .collect();
    let names: Vec<&str> = failed.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(names, ["empty", "garbage", "truncated"], "{failed:#?}");
    for (video, reason) in &failed {
        assert!(
            reason.contains(&format!("{video}.")),
            "the message names the file: {reason}"
        );
    }
    assert!(failed[0].1.contains("empty"), "{}", failed[0].1);
    assert_eq!(report.written, 4);
    // Good, grayscale and 4K videos give their crops; the video without a face a header-only
    // CSV and no crop folder.
    assert_eq!(jpegs(&out.join("cropped_aligned/good")).len(), 3);
    assert_eq!(jpegs(&out.join("cropped_aligned/gray")).len(), 3);
    assert_eq!(jpegs(&out.join("cropped_aligned/big")), ["00001.jpg"]);
    let (_, rows) = csv_rows(&out.join("faces/big.csv"));
    assert!(rows[0][1] > 1400.0 && rows[0][3] < 2200.0, "{rows:?}");
    let (_, rows) = csv_rows(&out.join("faces/noface.csv"));
    assert!(rows.is_empty());
    assert!(!out.join("cropped_aligned/noface").exists());
    // The failed videos left nothing behind, so a rerun retries exactly them.
    for v in ["empty", "garbage", "truncated"] {
        assert!(!out.join(format!("faces/{v}.csv")).exists());
        assert!(!out.join(format!(".partial/{v}")).exists());
    }
}
