//! Test videos: any frames encoded with ffmpeg ([`encode`], also used by the frame-source
//! tests), and videos made from the astronaut photograph of the scikit-image wheel
//! (`tests/fixtures/mtcnn/astronaut.png`), shared by the face tests.
#![allow(dead_code)]

use image::{imageops, Rgb, RgbImage};
use std::path::Path;
use std::process::Command;

/// The astronaut's head and shoulders (140 x 140 of the 320 x 320 photo).
pub fn astronaut_face() -> RgbImage {
    let img = image::open(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mtcnn/astronaut.png"),
    )
    .unwrap()
    .to_rgb8();
    // The face is at about (112, 42)-(167, 110) of the 320 x 320 photo.
    imageops::crop_imm(&img, 70, 10, 140, 140).to_image()
}

/// What a frame shows: the face at `(x, y)` with side `side`, or nothing.
#[derive(Clone, Copy, Debug)]
pub enum Shot {
    Face { x: i64, y: i64, side: u32 },
    Empty,
}

pub fn frame(w: u32, h: u32, shot: Shot, face: &RgbImage) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([96, 112, 128]));
    if let Shot::Face { x, y, side } = shot {
        let f = imageops::resize(face, side, side, imageops::FilterType::Triangle);
        imageops::overlay(&mut canvas, &f, x, y);
    }
    canvas
}

/// Encodes the shots at `w x h` into `path` at 5 frames/s (MJPEG, or the codec args given).
pub fn write_video(path: &Path, w: u32, h: u32, shots: &[Shot], codec: &[&str]) {
    let face = astronaut_face();
    encode(path, shots.iter().map(|s| frame(w, h, *s, &face)), 5, codec);
}

/// Encodes `frames` into `path` with ffmpeg at `fps` (`codec`: the args after the input),
/// creating the parent folder.
pub fn encode(path: &Path, frames: impl IntoIterator<Item = RgbImage>, fps: u32, codec: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, f) in frames.into_iter().enumerate() {
        f.save(dir.path().join(format!("{:05}.png", i + 1)))
            .unwrap();
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-framerate",
            &fps.to_string(),
            "-i",
        ])
        .arg(dir.path().join("%05d.png"))
        .args(codec)
        .arg(path)
        .status()
        .expect("ffmpeg runs (install ffmpeg; make setup does)");
    assert!(
        status.success(),
        "ffmpeg could not write {}",
        path.display()
    );
}

pub const MJPEG: &[&str] = &["-c:v", "mjpeg", "-q:v", "2"];

/// Ten frames: the face moving right (1-4), nothing (5-6), the face larger (7-10).
pub fn shots() -> Vec<Shot> {
    let mut s = Vec::new();
    for k in 0..4 {
        s.push(Shot::Face {
            x: 10 + 8 * k,
            y: 10 + 2 * k,
            side: 90,
        });
    }
    s.push(Shot::Empty);
    s.push(Shot::Empty);
    for k in 0..4 {
        s.push(Shot::Face {
            x: 40 - 4 * k,
            y: 5,
            side: 120,
        });
    }
    s
}

/// `src` repeated for `seconds` seconds into `dst` (stream copy: no re-encoding).
pub fn loop_video(src: &Path, dst: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i"])
        .arg(src)
        .args(["-t", &seconds.to_string(), "-c", "copy"])
        .arg(dst)
        .status()
        .expect("ffmpeg runs (install ffmpeg; make setup does)");
    assert!(status.success(), "ffmpeg could not write {}", dst.display());
}
