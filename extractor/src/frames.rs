//! Where the frames come from: discovering videos under `--data`, listing frame folders, and
//! decoding one frame into the network's input layout.
//!
//! What it does:
//! - [`discover`] turns `--data DIR` into a sorted list of [`VideoSource`]s. `DIR` may be (a) a data
//!   root holding `cropped_aligned/` (that folder is used), (b) a folder of frame folders and/or
//!   video files, or (c) one video file.
//! - [`list_frames`] lists the frames of one frame folder: files `*.jpg|*.jpeg|*.png`
//!   (case-insensitive) whose stem is a frame number (`00001.jpg` is frame 1), sorted by number.
//!   Other files are ignored with one warning per folder that counts them; two files with the
//!   same number (`00001.jpg` and `00001.png`) are an error naming both.
//! - [`load_frame`] decodes one image file and resizes it to `S x S` with a fixed filter
//!   ([`RESIZE_FILTER`], bilinear/triangle), returning `3*S*S` floats, channels first (RGB),
//!   in `[0, 1]`. A zero-byte, corrupt or truncated file is an `Err(reason)`, never a panic.
//!
//! What it does not: decode video files (that is [`crate::video`]), normalise pixels for a
//! particular backbone (mean/std are the backbone's business), detect or align faces, or
//! decide what to do with an unreadable frame (the caller records it as missing).

use anyhow::{bail, Context};
use image::imageops::FilterType;
use shared::VideoId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::video::is_video_file;

/// Extensions (lower case) of the image files a frame folder may hold.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// The resampling filter of [`load_frame`]: `image`'s triangle filter, i.e. bilinear
/// interpolation whose support widens when downscaling (area-weighted, like PIL's
/// `Image.resize(..., BILINEAR)`). Parity tests must resize with the same filter.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// The subfolder of an ABAW data root that holds the frame folders.
pub const CROPPED_ALIGNED: &str = "cropped_aligned";

/// One video to embed: a folder of frames or a video file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// A folder `<root>/<video>/` of numbered image files.
    Frames {
        /// The video id (the folder name).
        video: VideoId,
        /// The folder.
        dir: PathBuf,
        /// `(frame number, file)` sorted by frame number, numbers unique.
        frames: Vec<(u32, PathBuf)>,
    },
    /// A video file `<root>/<video>.<ext>`, decoded by ffmpeg (see [`crate::video`]).
    File {
        /// The video id (the file stem).
        video: VideoId,
        /// The file.
        path: PathBuf,
    },
}

impl VideoSource {
    /// The video id.
    pub fn video(&self) -> &VideoId {
        match self {
            VideoSource::Frames { video, .. } | VideoSource::File { video, .. } => video,
        }
    }

    /// The folder or file the frames come from (written to the cache's `source` attribute).
    pub fn path(&self) -> &Path {
        match self {
            VideoSource::Frames { dir, .. } => dir,
            VideoSource::File { path, .. } => path,
        }
    }

    /// The number of frames if known without decoding: the file count of a frame folder, or
    /// the frame count a video file's header declares (ffprobe; `None` if it declares none).
    pub fn frame_count_hint(&self) -> Option<usize> {
        match self {
            VideoSource::Frames { frames, .. } => Some(frames.len()),
            VideoSource::File { path, .. } => crate::video::declared_frame_count(path),
        }
    }

    /// What the cache's `source` attribute records: `frames:<folder>` or `video:<file>`.
    pub fn describe(&self) -> String {
        match self {
            VideoSource::Frames { dir, .. } => format!("frames:{}", dir.display()),
            VideoSource::File { path, .. } => format!("video:{}", path.display()),
        }
    }
}

/// Find the videos under `data` (see the module doc for the three accepted layouts), sorted by
/// video id.
///
/// Frame folders without any frame are skipped with a warning; files that are neither video
/// files nor folders are ignored with one warning that counts them; hidden entries (names
/// starting with `.`) are ignored. Errors: `data` missing or unreadable, a name that is not a
/// valid video id or not UTF-8, a frame folder with two files of the same frame number, two
/// sources with the same id (`a/` and `a.mp4`), or no video found at all.
pub fn discover(data: &Path) -> anyhow::Result<Vec<VideoSource>> {
    let meta = std::fs::metadata(data).with_context(|| {
        format!(
            "{}: cannot read --data (give a data root with cropped_aligned/, a folder of frame \
             folders or video files, or one video file)",
            data.display()
        )
    })?;
    if meta.is_file() {
        if !is_video_file(data) {
            bail!(
                "{}: --data is a file but not a video file (extensions: {}); give a folder or a \
                 video file",
                data.display(),
                crate::video::VIDEO_EXTENSIONS.join(", ")
            );
        }
        return Ok(vec![VideoSource::File {
            video: video_id_of(data, file_stem(data)?)?,
            path: data.to_path_buf(),
        }]);
    }
    let cropped = data.join(CROPPED_ALIGNED);
    let root = if cropped.is_dir() {
        cropped
    } else {
        data.to_path_buf()
    };

    let mut by_id: BTreeMap<VideoId, VideoSource> = BTreeMap::new();
    let mut ignored = 0usize;
    for entry in sorted_entries(&root)? {
        let name = file_name(&entry)?;
        if name.starts_with('.') {
            tracing::debug!("{}: hidden entry ignored", entry.display());
            continue;
        }
        let source = if entry.is_dir() {
            let video = video_id_of(&entry, name)?;
            let frames = list_frames(&entry)?;
            if frames.is_empty() {
                tracing::warn!(
                    "{}: no frame files (00001.jpg, ...) in this folder; video {video} skipped",
                    entry.display()
                );
                continue;
            }
            VideoSource::Frames {
                video,
                dir: entry,
                frames,
            }
        } else if is_video_file(&entry) {
            VideoSource::File {
                video: video_id_of(&entry, file_stem(&entry)?)?,
                path: entry,
            }
        } else {
            ignored += 1;
            continue;
        };
        if let Some(previous) = by_id.get(source.video()) {
            bail!(
                "video {} appears twice: {} and {}; remove or rename one",
                source.video(),
                previous.path().display(),
                source.path().display()
            );
        }
        by_id.insert(source.video().clone(), source);
    }
    if ignored > 0 {
        tracing::warn!(
            "{}: ignored {ignored} file(s) that are neither frame folders nor video files ({})",
            root.display(),
            crate::video::VIDEO_EXTENSIONS.join(", ")
        );
    }
    if by_id.is_empty() {
        bail!(
            "{}: no frame folders or video files found; expected <video>/00001.jpg folders, \
             video files, or a data root with {CROPPED_ALIGNED}/",
            root.display()
        );
    }
    Ok(by_id.into_values().collect())
}

/// The frames of one frame folder: `(frame number, file)` sorted by number.
///
/// Files whose extension is not jpg/jpeg/png (any case), whose stem is not all ASCII digits, or
/// that are not regular files are ignored, with one `tracing::warn!` for the folder giving their
/// count. Two files with the same frame number (`00001.jpg` and `00001.png`, or `1.jpg` and
/// `001.jpg`) are an error naming both.
pub fn list_frames(dir: &Path) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let mut frames: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut ignored = 0usize;
    for path in sorted_entries(dir)? {
        let Some(number) = frame_number(&path).filter(|_| path.is_file()) else {
            ignored += 1;
            continue;
        };
        if let Some(previous) = frames.get(&number) {
            bail!(
                "{}: frame {number} is given by two files, {} and {}; keep one",
                dir.display(),
                previous.display(),
                path.display()
            );
        }
        frames.insert(number, path);
    }
    if ignored > 0 {
        tracing::warn!(
            "{}: ignored {ignored} file(s) that are not numbered frames (00001.jpg, .jpeg, .png)",
            dir.display()
        );
    }
    Ok(frames.into_iter().collect())
}

/// The frame number of an image path (`.../00042.JPG` -> 42), or `None` if the extension is not
/// an image extension or the stem is not a decimal number that fits in `u32`.
pub fn frame_number(path: &Path) -> Option<u32> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Decode one image file and resize it to `size x size` with [`RESIZE_FILTER`].
///
/// Returns `3 * size * size` floats: channels first (R plane, G plane, B plane), rows top to
/// bottom, values `u8 / 255` in `[0, 1]`. Grey or RGBA images are converted to RGB (alpha
/// dropped). The format is guessed from the content, not the extension.
///
/// `Err(reason)` for an unreadable, zero-byte, corrupt or truncated file (a JPEG without its
/// end-of-image marker is truncated even when the decoder would fill in the missing part);
/// the reason does not repeat the path. Never panics.
pub fn load_frame(path: &Path, size: u32) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    decode_frame(&bytes, size)
}

/// [`load_frame`] on bytes already in memory.
pub fn decode_frame(bytes: &[u8], size: u32) -> Result<Vec<f32>, String> {
    if size == 0 {
        return Err("the requested input size is 0".into());
    }
    if bytes.is_empty() {
        return Err("zero-byte file".into());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "not a JPEG or PNG image (unknown format)".to_string())?;
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err("truncated JPEG: no end-of-image marker after the last scan".into());
    }
    // Decoders should not panic on bad input; if one does, report it as a bad frame.
    let decoded = std::panic::catch_unwind(|| image::load_from_memory_with_format(bytes, format))
        .map_err(|_| "the image decoder failed (corrupt file)".to_string())?
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err("empty image (0 pixels)".into());
    }
    let rgb = decoded.into_rgb8();
    let rgb = if rgb.width() == size && rgb.height() == size {
        rgb
    } else {
        image::imageops::resize(&rgb, size, size, RESIZE_FILTER)
    };
    Ok(rgb8_to_chw(rgb.as_raw(), size))
}

/// Interleaved RGB bytes of a `size x size` image (`HWC`, as ffmpeg's `rgb24` and `image`'s
/// `RgbImage`) to channels-first floats in `[0, 1]`.
///
/// # Panics
/// If `rgb.len() != 3 * size * size` (a caller bug).
pub fn rgb8_to_chw(rgb: &[u8], size: u32) -> Vec<f32> {
    let plane = (size as usize) * (size as usize);
    assert_eq!(
        rgb.len(),
        3 * plane,
        "rgb8_to_chw: buffer is not {size}x{size}x3"
    );
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) / 255.0;
        }
    }
    out
}

/// Whether a JPEG stream has an end-of-image marker (`FF D9`) after its last start-of-scan
/// (`FF DA`). Inside entropy-coded data `FF` is always followed by `00` or a restart marker,
/// so `FF D9` there is the real end; an EXIF thumbnail's own `FF D9` precedes the main scan.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(sos) => bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// The entries of a folder, sorted by path, with errors naming the folder.
fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list this folder", dir.display()))?
    {
        let entry = entry.with_context(|| format!("{}: cannot list this folder", dir.display()))?;
        entries.push(entry.path());
    }
    entries.sort();
    Ok(entries)
}

/// The UTF-8 file name of a path.
fn file_name(path: &Path) -> anyhow::Result<&str> {
    path.file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the name is not UTF-8; rename it", path.display()))
}

/// The UTF-8 stem of a file (its name without the last extension).
fn file_stem(path: &Path) -> anyhow::Result<&str> {
    path.file_stem()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: the name is not UTF-8; rename it", path.display()))
}

/// A video id from a folder name or file stem, with an error naming the path.
fn video_id_of(path: &Path, name: &str) -> anyhow::Result<VideoId> {
    VideoId::new(name).with_context(|| {
        format!(
            "{}: `{name}` cannot be a video id; rename the folder or file",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_numbers_from_names() {
        assert_eq!(frame_number(Path::new("a/00001.jpg")), Some(1));
        assert_eq!(frame_number(Path::new("00042.JPG")), Some(42));
        assert_eq!(frame_number(Path::new("7.jpeg")), Some(7));
        assert_eq!(frame_number(Path::new("000120.Png")), Some(120));
        assert_eq!(frame_number(Path::new("00001.txt")), None);
        assert_eq!(frame_number(Path::new("frame1.jpg")), None);
        assert_eq!(frame_number(Path::new("-1.jpg")), None);
        assert_eq!(frame_number(Path::new(".jpg")), None);
        assert_eq!(frame_number(Path::new("99999999999.jpg")), None);
        assert_eq!(frame_number(Path::new("00001")), None);
    }

    #[test]
    fn chw_layout_and_scale() {
        // 2x2 image, pixels (r,g,b): (0,51,255) (255,0,0) / (0,255,0) (102,102,102)
        let rgb = [0, 51, 255, 255, 0, 0, 0, 255, 0, 102, 102, 102];
        let chw = rgb8_to_chw(&rgb, 2);
        let expected = [
            0.0, 1.0, 0.0, 0.4, // R plane
            0.2, 0.0, 1.0, 0.4, // G plane
            1.0, 0.0, 0.0, 0.4, // B plane
        ];
        for (a, b) in chw.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{chw:?}");
        }
    }

    #[test]
    fn jpeg_end_marker_check() {
        // SOI, SOS, entropy data with a stuffed FF 00, EOI.
        let full = [0xFF, 0xD8, 0xFF, 0xDA, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9];
        assert!(jpeg_is_complete(&full));
        assert!(!jpeg_is_complete(&full[..8]));
        // A thumbnail's EOI before the main scan does not count.
        let thumb = [0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 0x12, 0x34];
        assert!(!jpeg_is_complete(&thumb));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]));
    }

    #[test]
    fn empty_and_garbage_bytes_are_reasons() {
        assert_eq!(decode_frame(&[], 8).unwrap_err(), "zero-byte file");
        assert!(decode_frame(b"hello world", 8)
            .unwrap_err()
            .contains("unknown format"));
        assert!(decode_frame(&[0xFF, 0xD8, 0xFF], 8)
            .unwrap_err()
            .contains("truncated"));
    }
}
