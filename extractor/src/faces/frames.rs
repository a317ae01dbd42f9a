//! Raw frames at their own resolution, for face detection: video files through ffmpeg, frame
//! folders through `image`.
//!
//! What it does: [`RawFrames::open`] yields `(frame number from 1, frame)` for a
//! [`VideoSource`]: a video file is decoded by `ffmpeg ... -f rawvideo -pix_fmt rgb24 -` at the
//! width and height `ffprobe` reports for its first video stream (grayscale and other pixel
//! formats are converted to RGB by ffmpeg; `-noautorotate`, so a phone video's rotation flag is
//! not applied: a choice of ours, it keeps the frame size equal to the reported one); a frame
//! folder's images are decoded one by one at their own size. A frame that cannot be decoded
//! (corrupt image in a folder) is an `Ok((n, Err(reason)))` item; a video that cannot be read
//! (ffmpeg failed, truncated stream, no frame) ends with an `Err` item naming the file.
//!
//! What it does not: resize, batch, or detect anything (the caller batches frames of equal size).

use crate::sources::video_file::read_up_to;
use crate::sources::VideoSource;
use anyhow::{bail, Context};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

/// One RGB frame, interleaved bytes (`HWC`).
#[derive(Debug, Clone)]
pub struct RgbFrame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 * width * height` bytes.
    pub data: Vec<u8>,
}

/// The frames of one source; iterate it.
pub enum RawFrames {
    /// A folder of image files.
    Folder(std::vec::IntoIter<(u32, PathBuf)>),
    /// A running ffmpeg.
    Video(Box<FfmpegFrames>),
}

/// Frames of a video file from ffmpeg's standard output.
pub struct FfmpegFrames {
    path: PathBuf,
    width: usize,
    height: usize,
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    next_frame: u32,
}

/// `(width, height)` of the first video stream of `path` (ffprobe), with an error naming the file.
pub fn probe_size(path: &Path) -> anyhow::Result<(usize, usize)> {
    let mut input = std::ffi::OsString::from("file:");
    input.push(path.as_os_str());
    let output = Command::new(crate::sources::video_file::FFPROBE)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["stream=width,height", "-of", "csv=p=0:s=x"])
        .arg(&input)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot run ffprobe ({e}); install ffmpeg (make setup does)",
                path.display()
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    let parsed = first.split_once('x').and_then(|(w, h)| {
        Some((
            w.trim().parse::<usize>().ok()?,
            h.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((w, h)) if output.status.success() && w > 0 && h > 0 => Ok((w, h)),
        _ => bail!(
            "{}: not a readable video (ffprobe finds no video stream with a size{}{}); check \
             or remove the file",
            path.display(),
            if output.stderr.is_empty() { "" } else { ": " },
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

impl RawFrames {
    /// Start reading `src` (see the module doc).
    pub fn open(src: &VideoSource) -> anyhow::Result<RawFrames> {
        match src {
            VideoSource::Frames { frames, .. } => Ok(RawFrames::Folder(frames.clone().into_iter())),
            VideoSource::File { path, .. } => {
                Ok(RawFrames::Video(Box::new(FfmpegFrames::open(path)?)))
            }
        }
    }
}

impl FfmpegFrames {
    fn open(path: &Path) -> anyhow::Result<Self> {
        if !path.is_file() {
            bail!("{}: video file not found", path.display());
        }
        let meta = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot read the file", path.display()))?;
        if meta.len() == 0 {
            bail!(
                "{}: the file is empty (0 bytes); remove or replace it",
                path.display()
            );
        }
        let (width, height) = probe_size(path)?;
        let mut input = std::ffi::OsString::from("file:");
        input.push(path.as_os_str());
        let mut child = Command::new(crate::sources::video_file::FFMPEG)
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-noautorotate",
                "-i",
            ])
            .arg(&input)
            .args([
                "-map",
                "0:v:0",
                "-an",
                "-sn",
                "-dn",
                "-fps_mode",
                "passthrough",
            ])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot start ffmpeg ({e}); install ffmpeg (make setup does)",
                    path.display()
                )
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });
        Ok(Self {
            path: path.to_path_buf(),
            width,
            height,
            child: Some(child),
            stdout,
            stderr,
            next_frame: 1,
        })
    }

    fn finish(&mut self, partial: usize) -> anyhow::Result<()> {
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut c) => Some(
                c.wait()
                    .with_context(|| format!("{}: waiting for ffmpeg", self.path.display()))?,
            ),
            None => None,
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = stderr.trim();
        let decoded = self.next_frame - 1;
        if status.is_some_and(|s| !s.success()) {
            bail!(
                "{}: ffmpeg failed after {decoded} frame(s): {}",
                self.path.display(),
                if stderr.is_empty() {
                    "no message"
                } else {
                    stderr
                }
            );
        }
        if partial > 0 {
            bail!(
                "{}: the video ends inside frame {} (truncated file?)",
                self.path.display(),
                self.next_frame
            );
        }
        if decoded == 0 {
            bail!(
                "{}: ffmpeg decoded no video frame{}{}",
                self.path.display(),
                if stderr.is_empty() { "" } else { ": " },
                stderr
            );
        }
        if !stderr.is_empty() {
            // ffmpeg exits 0 on some damaged streams but says so: a truncated file.
            bail!(
                "{}: ffmpeg reported errors after {decoded} frame(s) (damaged or truncated \
                 video): {stderr}",
                self.path.display()
            );
        }
        Ok(())
    }
}

impl Iterator for RawFrames {
    /// `(frame number, frame or why it could not be decoded)`, or the error ending the video.
    type Item = anyhow::Result<(u32, Result<RgbFrame, String>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RawFrames::Folder(files) => {
                let (n, path) = files.next()?;
                let frame = std::fs::read(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|bytes| {
                        image::load_from_memory(&bytes)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .map(|img| {
                        let rgb = img.to_rgb8();
                        RgbFrame {
                            width: rgb.width() as usize,
                            height: rgb.height() as usize,
                            data: rgb.into_raw(),
                        }
                    });
                Some(Ok((n, frame)))
            }
            RawFrames::Video(v) => {
                let stdout = v.stdout.as_mut()?;
                let mut buf = vec![0u8; 3 * v.width * v.height];
                let filled = match read_up_to(stdout, &mut buf) {
                    Ok(filled) => filled,
                    Err(e) => {
                        v.stdout = None;
                        return Some(Err(anyhow::anyhow!(
                            "{}: reading frame {} from ffmpeg: {e}",
                            v.path.display(),
                            v.next_frame
                        )));
                    }
                };
                if filled < buf.len() {
                    return v.finish(filled).err().map(Err);
                }
                let n = v.next_frame;
                v.next_frame += 1;
                Some(Ok((
                    n,
                    Ok(RgbFrame {
                        width: v.width,
                        height: v.height,
                        data: buf,
                    }),
                )))
            }
        }
    }
}

impl Drop for FfmpegFrames {
    fn drop(&mut self) {
        self.stdout = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}
