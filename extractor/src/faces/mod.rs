//! From raw video frames to aligned face crops: detection, five-point alignment, tracking.
//!
//! What it does: [`mtcnn`] detects faces and five landmarks (MTCNN, facenet-pytorch's weights,
//! read from `third_party/mtcnn/` that `make setup` fills); [`align`] warps each face onto the
//! ArcFace template at any output size; [`track`] chooses the face of each frame (or keeps them
//! all); [`frames`] decodes raw frames at their own resolution; [`stream_video`] ties them into
//! one streaming pass over a video: frames are read in batches of equal size (at most
//! [`FaceOptions::batch_frames`] frames and [`MAX_BATCH_PIXELS`] pixels, so a 4K video does not
//! hold more memory than a few frames), detected together, tracked and aligned, and each result
//! is handed to the caller before the next batch is read: memory does not grow with video
//! length. [`command`] is `extractor faces`; `extractor extract --detect-faces` uses
//! [`stream_video`] too.
//!
//! What it does not: embed faces (that is [`crate::backbones`] via [`crate::extract`]), smooth
//! landmarks over time, or fetch weights at run time.

pub mod align;
pub mod command;
pub mod frames;
pub mod mtcnn;
pub mod track;

pub use mtcnn::{Face, Mtcnn, MtcnnOptions};

use crate::sources::VideoSource;
use frames::{RawFrames, RgbFrame};
use tch::Tensor;
use track::FaceTracker;

/// The most pixels (frames x width x height) detected in one batch: 8.3 M, two 4K frames.
pub const MAX_BATCH_PIXELS: usize = 3840 * 2160 * 2;

/// Frames detected per batch by `extract --detect-faces`.
pub const DETECT_BATCH: usize = 8;

/// The `missing` reason of a frame without a face (`extract --detect-faces`).
pub const NO_FACE: &str = "no face";

/// What `extract --detect-faces` adds to the cache's preprocessing text.
pub fn detect_align_description(size: u32) -> String {
    format!(
        "faces: MTCNN (facenet-pytorch 2.6.0 weights, min face 20, thresholds 0.6/0.7/0.7, \
         factor 0.709), largest/IoU-tracked face, 5-point similarity to the ArcFace template at \
         {size}x{size}, bilinear"
    )
}

/// How a video is turned into aligned faces.
#[derive(Debug, Clone, Copy)]
pub struct FaceOptions {
    /// Side of the aligned crops in pixels (112, 224, ...).
    pub size: u32,
    /// Every face as its own track (else one face per frame).
    pub all_faces: bool,
    /// Frames detected per batch (fewer for large frames, see [`MAX_BATCH_PIXELS`]).
    pub batch_frames: usize,
}

/// What [`stream_video`] reports, in frame order.
#[derive(Debug)]
pub enum FrameEvent {
    /// A face of frame `frame`, aligned (`size x size` RGB bytes) in track `track`.
    Face {
        /// Frame number from 1.
        frame: u32,
        /// Track id (0 for the single track).
        track: usize,
        /// The detection, in pixel coordinates of the frame.
        face: Face,
        /// The aligned crop, interleaved RGB bytes.
        pixels: Vec<u8>,
    },
    /// Frame `frame` has no face (or only faces whose landmarks cannot be aligned).
    NoFace(u32),
    /// Frame `frame` could not be decoded, with the reason.
    Unreadable(u32, String),
}

/// Time spent in detection, tracking and alignment (not decoding, not the caller's writing).
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamStats {
    /// Frames detected.
    pub frames: usize,
    /// Seconds in detection + tracking + alignment.
    pub seconds: f64,
    /// Frames of the first batch (its time carries one-off set-up, e.g. oneDNN primitives).
    pub first_frames: usize,
    /// Seconds of the first batch.
    pub first_seconds: f64,
}

impl StreamStats {
    /// Adds another video's counts (its first batch counts as a later one).
    pub fn add(&mut self, other: &StreamStats) {
        if self.frames == 0 {
            *self = *other;
        } else {
            self.frames += other.frames;
            self.seconds += other.seconds;
        }
    }

    /// Frames per second after the first batch (`None` with a single batch).
    pub fn warm_rate(&self) -> Option<f64> {
        let (n, s) = (
            self.frames - self.first_frames,
            self.seconds - self.first_seconds,
        );
        (n > 0 && s > 0.0).then(|| n as f64 / s)
    }
}

/// Streams `src` through detection, tracking and alignment; `sink` gets every event in frame
/// order and returns `Ok(false)` to stop early. Errors: the video cannot be read (naming it), or
/// what `sink` returns.
pub fn stream_video(
    detector: &Mtcnn,
    src: &VideoSource,
    opts: &FaceOptions,
    sink: &mut dyn FnMut(FrameEvent) -> anyhow::Result<bool>,
) -> anyhow::Result<StreamStats> {
    let mut stats = StreamStats::default();
    let mut tracker = if opts.all_faces {
        FaceTracker::all()
    } else {
        FaceTracker::single()
    };
    let mut pending: Vec<(u32, RgbFrame)> = Vec::new();
    let batch = opts.batch_frames.max(1);
    for item in RawFrames::open(src)? {
        let (n, frame) = item?;
        let frame = match frame {
            Ok(f) => f,
            Err(reason) => {
                if !flush(detector, &mut pending, &mut tracker, opts, sink, &mut stats)? {
                    return Ok(stats);
                }
                if !sink(FrameEvent::Unreadable(n, reason))? {
                    return Ok(stats);
                }
                continue;
            }
        };
        let same_size = pending
            .first()
            .is_none_or(|(_, f)| f.width == frame.width && f.height == frame.height);
        let pixels = (pending.len() + 1) * frame.width * frame.height;
        let full = !same_size
            || pending.len() >= batch
            || (pixels > MAX_BATCH_PIXELS && !pending.is_empty());
        if full && !flush(detector, &mut pending, &mut tracker, opts, sink, &mut stats)? {
            return Ok(stats);
        }
        pending.push((n, frame));
    }
    flush(detector, &mut pending, &mut tracker, opts, sink, &mut stats)?;
    Ok(stats)
}

/// Detects, tracks and aligns the pending frames (all of one size) and empties them.
fn flush(
    detector: &Mtcnn,
    pending: &mut Vec<(u32, RgbFrame)>,
    tracker: &mut FaceTracker,
    opts: &FaceOptions,
    sink: &mut dyn FnMut(FrameEvent) -> anyhow::Result<bool>,
    stats: &mut StreamStats,
) -> anyhow::Result<bool> {
    if pending.is_empty() {
        return Ok(true);
    }
    let started = std::time::Instant::now();
    let (w, h) = (pending[0].1.width, pending[0].1.height);
    let mut bytes = Vec::with_capacity(pending.len() * 3 * w * h);
    for (_, f) in pending.iter() {
        bytes.extend_from_slice(&f.data);
    }
    let images = Tensor::from_slice(&bytes)
        .view([pending.len() as i64, h as i64, w as i64, 3])
        .permute([0, 3, 1, 2]);
    drop(bytes);
    let detections = detector.detect(&images);
    drop(images);
    // Track and align the whole batch first (timed), then hand the results over.
    let mut events = Vec::with_capacity(pending.len());
    for ((n, frame), faces) in pending.drain(..).zip(detections) {
        let mut any = false;
        for (track, i) in tracker.assign(&faces) {
            let face = faces[i];
            let Some(m) = align::to_template(&face.landmarks, opts.size) else {
                continue;
            };
            let Some(pixels) = align::warp(&frame.data, w, h, &m, opts.size) else {
                continue;
            };
            any = true;
            events.push(FrameEvent::Face {
                frame: n,
                track,
                face,
                pixels,
            });
        }
        if !any {
            events.push(FrameEvent::NoFace(n));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let frames = events
        .iter()
        .map(|e| match e {
            FrameEvent::Face { frame, .. } | FrameEvent::NoFace(frame) => *frame,
            FrameEvent::Unreadable(frame, _) => *frame,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if stats.frames == 0 {
        stats.first_frames = frames;
        stats.first_seconds = seconds;
    }
    stats.frames += frames;
    stats.seconds += seconds;
    for event in events {
        if !sink(event)? {
            return Ok(false);
        }
    }
    Ok(true)
}
