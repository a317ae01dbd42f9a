//! Frames of a video file, decoded by ffmpeg running as a subprocess.
//!
//! What it does: [`VideoFrames::open`] starts
//! `ffmpeg -i file:<path> -map 0:v:0 -fps_mode passthrough -vf scale=S:S:flags=bilinear
//! -f rawvideo -pix_fmt rgb24 -` and reads its standard output, `3*S*S` bytes per frame, so
//! nothing is written to disk. The iterator yields `(frame number from 1, 3*S*S floats)` in decode
//! order, channels first (RGB) in `[0, 1]`, the same layout as [`super::frame_folder::load_frame`].
//! Every decoded frame is yielded once (no frame-rate conversion). ffmpeg's scaler (bilinear) is
//! not bit-identical to `image`'s triangle filter used for frame folders.
//!
//! [`declared_frame_count`] asks `ffprobe` for the count a file's header declares (a progress hint).
//!
//! What it does not: seek, read audio, detect faces, or link libav (Debian's `/usr/bin/ffmpeg`
//! is run from `PATH`; a missing one is an error saying to install it).

use anyhow::{bail, Context};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use super::pixels::rgb8_to_chw;

/// Extensions (lower case) recognised as video files.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "avi", "mov", "mkv", "webm"];

/// The program run to decode videos (looked up on `PATH`).
pub const FFMPEG: &str = "ffmpeg";

/// The program run to read a video's declared frame count (looked up on `PATH`).
pub const FFPROBE: &str = "ffprobe";

/// Whether `path` has a video extension (any case). Does not look at the file.
pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads into `buf` until it is full or `reader` ends, retrying interrupted reads; returns the
/// bytes read (fewer than `buf.len()` only at the end of the stream). How both ffmpeg readers
/// (this module's and `crate::faces::frames`') take one raw frame from ffmpeg's pipe.
pub(crate) fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decode `path` at `size x size`: the same as [`VideoFrames::open`].
pub fn decode(path: &Path, size: u32) -> anyhow::Result<VideoFrames> {
    VideoFrames::open(path, size)
}

/// The number of frames the first video stream of `path` declares in its header, read with
/// `ffprobe` without decoding; `None` if ffprobe is missing, fails, or the container does not
/// say (e.g. some mkv/webm). A hint for progress bars only: decoding may give a different count.
pub fn declared_frame_count(path: &Path) -> Option<usize> {
    let mut input = std::ffi::OsString::from("file:");
    input.push(path.as_os_str());
    let output = Command::new(FFPROBE)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args([
            "stream=nb_frames",
            "-of",
            "default=noprint_wrappers=1:nokey=1",
        ])
        .arg(&input)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A running ffmpeg decoding one video; iterate it for the frames.
///
/// Dropping it early kills ffmpeg. After the last frame the iterator checks ffmpeg's exit
/// status, so a decoding error shows up as a final `Err` item (then the iterator ends).
pub struct VideoFrames {
    path: PathBuf,
    size: u32,
    child: Option<Child>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    next_frame: u32,
}

impl VideoFrames {
    /// Start ffmpeg on `path`, scaling every frame to `size x size` (bilinear).
    ///
    /// Errors: `size` is 0, the file does not exist, or ffmpeg cannot be started (not
    /// installed: "install ffmpeg (make setup does)").
    pub fn open(path: &Path, size: u32) -> anyhow::Result<Self> {
        Self::open_with(Path::new(FFMPEG), path, size)
    }

    /// [`VideoFrames::open`] with another ffmpeg executable (a path, or a name looked up on
    /// `PATH`).
    pub fn open_with(ffmpeg: &Path, path: &Path, size: u32) -> anyhow::Result<Self> {
        if size == 0 {
            bail!("{}: the requested input size is 0", path.display());
        }
        if !path.is_file() {
            bail!("{}: video file not found", path.display());
        }
        // `file:` keeps a name such as `pipe:x.mp4` or `-x.mp4` from being read as anything else.
        let mut input = std::ffi::OsString::from("file:");
        input.push(path.as_os_str());
        let mut child = Command::new(ffmpeg)
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
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
            .arg("-vf")
            .arg(format!("scale={size}:{size}:flags=bilinear"))
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    anyhow::anyhow!(
                        "{}: cannot decode this video: `{}` not found; install ffmpeg \
                         (make setup does)",
                        path.display(),
                        ffmpeg.display()
                    )
                } else {
                    anyhow::anyhow!(
                        "{}: cannot start `{}`: {e}",
                        path.display(),
                        ffmpeg.display()
                    )
                }
            })?;
        let stdout = child.stdout.take();
        // Drain stderr in a thread so a chatty ffmpeg never blocks on a full pipe.
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });
        Ok(Self {
            path: path.to_path_buf(),
            size,
            child: Some(child),
            stdout,
            stderr,
            next_frame: 1,
        })
    }

    /// The video file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Wait for ffmpeg to exit; `Err` if it failed or the video had no frame.
    fn finish(&mut self, partial_bytes: usize) -> anyhow::Result<()> {
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut child) => Some(
                child
                    .wait()
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
        if let Some(status) = status {
            if !status.success() {
                bail!(
                    "{}: ffmpeg failed ({status}) after {} frame(s): {}",
                    self.path.display(),
                    self.next_frame - 1,
                    if stderr.is_empty() {
                        "no message"
                    } else {
                        stderr
                    }
                );
            }
        }
        if partial_bytes > 0 {
            bail!(
                "{}: ffmpeg's output ended inside frame {} ({partial_bytes} of {} bytes)",
                self.path.display(),
                self.next_frame,
                self.frame_bytes()
            );
        }
        if self.next_frame == 1 {
            bail!(
                "{}: ffmpeg decoded no video frame{}{}",
                self.path.display(),
                if stderr.is_empty() { "" } else { ": " },
                stderr
            );
        }
        Ok(())
    }

    fn frame_bytes(&self) -> usize {
        3 * (self.size as usize) * (self.size as usize)
    }
}

impl Iterator for VideoFrames {
    /// `(frame number from 1, 3*S*S floats CHW in [0, 1])`, or the error that ended decoding.
    type Item = anyhow::Result<(u32, Vec<f32>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let frame_bytes = self.frame_bytes();
        let stdout = self.stdout.as_mut()?;
        let mut buf = vec![0u8; frame_bytes];
        let filled = match read_up_to(stdout, &mut buf) {
            Ok(filled) => filled,
            Err(e) => {
                self.stdout = None;
                return Some(Err(anyhow::anyhow!(
                    "{}: reading frame {} from ffmpeg: {e}",
                    self.path.display(),
                    self.next_frame
                )));
            }
        };
        if filled < buf.len() {
            return match self.finish(filled) {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            };
        }
        let number = self.next_frame;
        self.next_frame += 1;
        Some(Ok((number, rgb8_to_chw(&buf, self.size))))
    }
}

impl Drop for VideoFrames {
    fn drop(&mut self) {
        self.stdout = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(handle) = self.stderr.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_extensions() {
        assert!(is_video_file(Path::new("a/1-30-1280x720.mp4")));
        assert!(is_video_file(Path::new("x.AVI")));
        assert!(is_video_file(Path::new("x.mkv")));
        assert!(is_video_file(Path::new("x.webm")));
        assert!(is_video_file(Path::new("x.MoV")));
        assert!(!is_video_file(Path::new("x.jpg")));
        assert!(!is_video_file(Path::new("mp4")));
        assert!(!is_video_file(Path::new("x.mp4.txt")));
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = VideoFrames::open(Path::new("/nonexistent/v.mp4"), 8)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/v.mp4"), "{err}");
    }
}
