//! Frame folders: the numbered image files of one video (`<video>/00001.jpg`), and decoding one
//! frame into the network's input layout.
//!
//! What it does:
//! - [`list_frames`] lists the frames of one frame folder: files `*.jpg|*.jpeg|*.png`
//!   (case-insensitive) whose stem is a frame number (`00001.jpg` is frame 1), sorted by number.
//!   Other files are ignored with one warning per folder that counts them; two files with the
//!   same number (`00001.jpg` and `00001.png`) are an error naming both.
//! - [`load_frame`] decodes one image file and resizes it to `S x S` with a fixed filter
//!   ([`RESIZE_FILTER`], bilinear/triangle), returning `3*S*S` floats, channels first (RGB),
//!   in `[0, 1]` ([`super::pixels`]). A zero-byte, corrupt or truncated file is an
//!   `Err(reason)`, never a panic.
//!
//! What it does not: find the videos under `--data` (that is [`super`]), decode video files
//! (that is [`super::video_file`]), or decide what to do with an unreadable frame (the caller
//! records it as missing).

use super::pixels::rgb8_to_chw;
use anyhow::{bail, Context};
use image::imageops::FilterType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Extensions (lower case) of the image files a frame folder may hold.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// The resampling filter of [`load_frame`]: `image`'s triangle filter, i.e. bilinear
/// interpolation whose support widens when downscaling (area-weighted, like PIL's
/// `Image.resize(..., BILINEAR)`). Parity tests must resize with the same filter.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

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
pub(crate) fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
