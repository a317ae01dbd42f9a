//! Frame sources on real files: `discover` on each `--data` layout, frame-folder listing,
//! `load_frame` on good, corrupt, truncated and empty files, and video files decoded by ffmpeg.

mod face_videos;

use extractor::sources::video_file::{decode, VideoFrames};
use extractor::sources::{discover, list_frames, load_frame, VideoSource};
use image::{Rgb, RgbImage};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A `w x h` image filled with one colour.
fn flat(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(rgb))
}

/// Write a flat image at `path` (format from the extension), creating the parent folder.
fn write_image(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    flat(16, 16, rgb).save(path).unwrap();
}

/// Encode `colours.len()` flat 32 x 32 frames into a video at 25 frames/s (`codec` args after
/// -i).
fn write_video(path: &Path, colours: &[[u8; 3]], codec: &[&str]) {
    face_videos::encode(path, colours.iter().map(|c| flat(32, 32, *c)), 25, codec);
}

const COLOURS: [[u8; 3]; 5] = [
    [200, 30, 30],
    [30, 200, 30],
    [30, 30, 200],
    [128, 128, 128],
    [240, 220, 40],
];

fn frame_numbers(src: &VideoSource) -> Vec<u32> {
    match src {
        VideoSource::Frames { frames, .. } => frames.iter().map(|(n, _)| *n).collect(),
        VideoSource::File { .. } => panic!("{src:?} is a video file"),
    }
}

/// Collect what `tracing` writes at warn level while `f` runs.
fn warnings_during<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .without_time()
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text.lines().map(str::to_string).collect())
}

#[test]
fn data_root_with_cropped_aligned() {
    let root = tempfile::tempdir().unwrap();
    let ca = root.path().join("cropped_aligned");
    write_image(&ca.join("vid_b/00002.jpg"), [10, 20, 30]);
    write_image(&ca.join("vid_b/00001.jpg"), [10, 20, 30]);
    write_image(&ca.join("vid_a/00001.png"), [10, 20, 30]);
    // Annotation files and folders next to cropped_aligned/ are not videos.
    std::fs::write(root.path().join("training_set_annotations.txt"), "header\n").unwrap();
    std::fs::create_dir_all(root.path().join("AU_Detection_Challenge/Train_Set")).unwrap();

    let sources = discover(root.path()).unwrap();
    let ids: Vec<&str> = sources.iter().map(|s| s.video().as_str()).collect();
    assert_eq!(ids, ["vid_a", "vid_b"]);
    assert_eq!(frame_numbers(&sources[1]), [1, 2]);
    match &sources[1] {
        VideoSource::Frames { dir, frames, .. } => {
            assert_eq!(dir, &ca.join("vid_b"));
            assert_eq!(frames[0].1, ca.join("vid_b/00001.jpg"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sources[0].frame_count_hint(), Some(1));
    assert!(sources[0].describe().contains("vid_a"));
}

#[test]
fn folder_of_frame_folders_and_video_files() {
    let root = tempfile::tempdir().unwrap();
    write_image(&root.path().join("clip2/00001.jpg"), [1, 2, 3]);
    write_video(
        &root.path().join("clip1.mp4"),
        &COLOURS[..3],
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    std::fs::write(root.path().join("README.txt"), "not a video").unwrap();
    std::fs::create_dir_all(root.path().join("empty_folder")).unwrap();
    std::fs::create_dir_all(root.path().join(".hidden/00001.jpg")).unwrap();

    let (sources, warnings) = warnings_during(|| discover(root.path()).unwrap());
    let ids: Vec<&str> = sources.iter().map(|s| s.video().as_str()).collect();
    assert_eq!(ids, ["clip1", "clip2"]);
    assert_eq!(
        sources[0],
        VideoSource::File {
            video: "clip1".parse().unwrap(),
            path: root.path().join("clip1.mp4"),
        }
    );
    assert_eq!(sources[0].frame_count_hint(), Some(3));
    assert_eq!(frame_numbers(&sources[1]), [1]);
    // One warning for the skipped empty folder, one counting the ignored README.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("empty_folder")));
    assert!(warnings.iter().any(|w| w.contains("ignored 1 file")));
}

#[test]
fn one_video_file() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("118-30-640x480.avi");
    write_video(&video, &COLOURS[..2], &["-c:v", "mjpeg", "-q:v", "2"]);
    let sources = discover(&video).unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].video().as_str(), "118-30-640x480");
    assert_eq!(sources[0].path(), video);

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "x").unwrap();
    let err = discover(&text).unwrap_err().to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a video file"),
        "{err}"
    );
}

#[test]
fn discover_errors_name_what_is_wrong() {
    let missing = Path::new("/nonexistent/affect-data");
    let err = format!("{:#}", discover(missing).unwrap_err());
    assert!(err.contains("/nonexistent/affect-data"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = discover(empty.path()).unwrap_err().to_string();
    assert!(err.contains("no frame folders or video files"), "{err}");

    // The same id from a folder and a file.
    let both = tempfile::tempdir().unwrap();
    write_image(&both.path().join("v1/00001.jpg"), [0, 0, 0]);
    std::fs::write(both.path().join("v1.mp4"), b"whatever").unwrap();
    let err = discover(both.path()).unwrap_err().to_string();
    assert!(
        err.contains("v1 appears twice") && err.contains("v1.mp4"),
        "{err}"
    );

    // A name that cannot be a video id.
    let bad = tempfile::tempdir().unwrap();
    write_image(&bad.path().join("-rf/00001.jpg"), [0, 0, 0]);
    let err = format!("{:#}", discover(bad.path()).unwrap_err());
    assert!(err.contains("-rf") && err.contains("video id"), "{err}");
}

#[test]
fn frame_folder_listing_sorts_numbers_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["10.jpg", "9.JPEG", "00002.png", "00001.Jpg"] {
        write_image(&d.join(name), [5, 5, 5]);
    }
    for name in ["notes.txt", "frame3.jpg", "00004.txt", "Thumbs.db"] {
        std::fs::write(d.join(name), "x").unwrap();
    }
    std::fs::create_dir(d.join("00005.jpg")).unwrap(); // a folder, not a file

    let (frames, warnings) = warnings_during(|| list_frames(d).unwrap());
    let numbers: Vec<u32> = frames.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 9, 10]);
    assert_eq!(frames[2].1, d.join("9.JPEG"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("ignored 5 file(s)"), "{warnings:?}");
}

#[test]
fn duplicate_frame_numbers_are_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    write_image(&dir.path().join("00001.jpg"), [0, 0, 0]);
    write_image(&dir.path().join("00001.png"), [0, 0, 0]);
    let err = list_frames(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("00001.jpg") && err.contains("00001.png") && err.contains("frame 1"),
        "{err}"
    );
    // Also through discover, and for different spellings of one number.
    let root = tempfile::tempdir().unwrap();
    write_image(&root.path().join("v/7.jpg"), [0, 0, 0]);
    write_image(&root.path().join("v/007.jpg"), [0, 0, 0]);
    let err = discover(root.path()).unwrap_err().to_string();
    assert!(err.contains("007.jpg") && err.contains("/7.jpg"), "{err}");
}

#[test]
fn load_frame_layout_without_resize() {
    // 2 x 2 PNG (lossless): pixel values must come back exactly, channels first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00001.png");
    let mut img = RgbImage::new(2, 2);
    img.put_pixel(0, 0, Rgb([255, 0, 51]));
    img.put_pixel(1, 0, Rgb([0, 102, 0]));
    img.put_pixel(0, 1, Rgb([0, 0, 255]));
    img.put_pixel(1, 1, Rgb([153, 204, 255]));
    img.save(&path).unwrap();
    let px = load_frame(&path, 2).unwrap();
    let want = [
        1.0, 0.0, 0.0, 0.6, // R: (0,0) (1,0) (0,1) (1,1)
        0.0, 0.4, 0.0, 0.8, // G
        0.2, 0.0, 1.0, 1.0, // B
    ];
    assert_eq!(px.len(), 12);
    for (i, (a, b)) in px.iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-6, "{i}: {a} vs {b}");
    }
}

#[test]
fn load_frame_resizes_with_a_bilinear_filter() {
    // 16 x 16: left half red, right half blue, downscaled to 8 x 8. Output column 0 averages
    // source columns 0..=2 (all red) and column 7 source columns 13..=15 (all blue); the middle
    // columns mix, red decreasing from left to right. Grey 128 everywhere in G.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00001.png");
    let img = RgbImage::from_fn(16, 16, |x, _| {
        if x < 8 {
            Rgb([255, 128, 0])
        } else {
            Rgb([0, 128, 255])
        }
    });
    img.save(&path).unwrap();
    let px = load_frame(&path, 8).unwrap();
    assert_eq!(px.len(), 3 * 64);
    let at = |c: usize, y: usize, x: usize| px[c * 64 + y * 8 + x];
    for y in 0..8 {
        assert_eq!((at(0, y, 0), at(2, y, 0)), (1.0, 0.0));
        assert_eq!((at(0, y, 7), at(2, y, 7)), (0.0, 1.0));
        for x in 0..8 {
            assert!((at(1, y, x) - 128.0 / 255.0).abs() < 1e-6);
            assert!((at(0, y, x) + at(2, y, x) - 1.0).abs() < 2.0 / 255.0);
        }
        for x in 1..8 {
            assert!(at(0, y, x) <= at(0, y, x - 1));
        }
        // The two columns at the boundary are mixed.
        assert!(at(0, y, 3) > 0.5 && at(0, y, 3) < 1.0 && at(0, y, 4) < 0.5 && at(0, y, 4) > 0.0);
    }
}

#[test]
fn load_frame_decodes_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("00001.jpg");
    write_image(&path, [90, 160, 220]);
    let px = load_frame(&path, 4).unwrap();
    for (c, v) in [90.0, 160.0, 220.0].iter().enumerate() {
        for &got in &px[c * 16..(c + 1) * 16] {
            assert!((got - v / 255.0).abs() < 4.0 / 255.0, "channel {c}: {got}");
        }
    }
}

#[test]
fn bad_files_give_reasons_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A real JPEG of a noisy image (so the entropy-coded data is long), then damaged copies.
    let mut state = 12345u32;
    let noisy = RgbImage::from_fn(64, 64, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        Rgb([(state >> 24) as u8, (state >> 16) as u8, (state >> 8) as u8])
    });
    let good = d.join("good.jpg");
    noisy.save(&good).unwrap();
    assert!(load_frame(&good, 32).is_ok());
    let bytes = std::fs::read(&good).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero.jpg", Vec::new(), "zero-byte"),
        ("half.jpg", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        (
            "text.jpg",
            b"this is not an image".to_vec(),
            "unknown format",
        ),
        (
            // JPEG magic, then garbage instead of the headers, then an end marker.
            "garbage.jpg",
            [&[0xFF, 0xD8, 0xFF, 0xDA][..], &[0x42; 300], &[0xFF, 0xD9]].concat(),
            "cannot decode",
        ),
        (
            "half.png",
            {
                let png = d.join("good.png");
                noisy.save(&png).unwrap();
                let b = std::fs::read(&png).unwrap();
                b[..b.len() / 2].to_vec()
            },
            "cannot decode",
        ),
    ];
    for (name, data, reason) in cases {
        let path = d.join(name);
        std::fs::write(&path, &data).unwrap();
        let err = load_frame(&path, 32).unwrap_err();
        assert!(err.contains(reason), "{name}: {err}");
    }
    let err = load_frame(&d.join("absent.jpg"), 32).unwrap_err();
    assert!(err.contains("cannot read"), "{err}");
}

/// Check decoded video frames against the flat colours they were made from.
fn assert_frames_match(path: &Path, colours: &[[u8; 3]], size: u32, tolerance: f32) {
    let frames: Vec<(u32, Vec<f32>)> = decode(path, size)
        .unwrap()
        .collect::<anyhow::Result<_>>()
        .unwrap();
    let numbers: Vec<u32> = frames.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=colours.len() as u32).collect::<Vec<_>>());
    let plane = (size * size) as usize;
    for ((n, px), colour) in frames.iter().zip(colours) {
        assert_eq!(px.len(), 3 * plane);
        for c in 0..3 {
            let want = f32::from(colour[c]) / 255.0;
            let mean = px[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
            let worst = px[c * plane..(c + 1) * plane]
                .iter()
                .map(|v| (v - want).abs())
                .fold(0.0, f32::max);
            assert!(
                (mean - want).abs() < tolerance && worst < 2.0 * tolerance,
                "{}: frame {n} channel {c}: mean {mean}, worst error {worst}, want {want}",
                path.display()
            );
        }
    }
}

#[test]
fn mp4_and_mjpeg_videos_yield_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = dir.path().join("clip.mp4");
    write_video(
        &mp4,
        &COLOURS,
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10"],
    );
    // yuv420p rounds colours through a limited-range YCbCr; flat colours survive within ~3/255.
    assert_frames_match(&mp4, &COLOURS, 16, 0.03);
    let avi = dir.path().join("clip.avi");
    write_video(&avi, &COLOURS, &["-c:v", "mjpeg", "-q:v", "2"]);
    assert_frames_match(&avi, &COLOURS, 24, 0.03);
}

#[test]
fn stopping_early_and_bad_videos() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = dir.path().join("clip.mp4");
    write_video(&mp4, &COLOURS, &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    // Dropping the iterator after one frame stops ffmpeg (the test would hang otherwise).
    let first = VideoFrames::open(&mp4, 8).unwrap().next().unwrap().unwrap();
    assert_eq!(first.0, 1);

    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let items: Vec<_> = decode(&garbage, 8).unwrap().collect();
    assert_eq!(items.len(), 1, "one error item, then the end");
    let err = items.into_iter().next().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("garbage.mp4") && err.contains("ffmpeg"),
        "{err}"
    );

    let err = VideoFrames::open_with(Path::new("/nonexistent/ffmpeg"), &mp4, 8)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("install ffmpeg (make setup does)") && err.contains("clip.mp4"),
        "{err}"
    );

    let err = decode(&dir.path().join("absent.mp4"), 8)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("absent.mp4"), "{err}");
}
