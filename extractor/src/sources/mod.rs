//! Where the frames come from: the videos under `--data`, each a folder of frames or a video file.
//!
//! What it does: [`discover`] turns `--data DIR` into a sorted list of [`VideoSource`]s. `DIR` may
//! be (a) a data root holding `cropped_aligned/` (that folder is used), (b) a folder of frame
//! folders and/or video files, or (c) one video file. The layers below, one way:
//! - [`frame_folder`]: the numbered image files of a folder, and decoding one of them;
//! - [`video_file`]: the frames of a video file, decoded by ffmpeg;
//! - [`pixels`]: the conversion both share, RGB bytes to channels-first floats.
//!
//! What it does not: normalise pixels for a particular backbone (mean/std are the backbone's
//! business), detect or align faces, or decide what to do with an unreadable frame (the caller
//! records it as missing).

pub mod frame_folder;
pub mod pixels;
pub mod video_file;

pub use frame_folder::{list_frames, load_frame};

use anyhow::{bail, Context};
use frame_folder::sorted_entries;
use shared::VideoId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use video_file::{is_video_file, VIDEO_EXTENSIONS};

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
    /// A video file `<root>/<video>.<ext>`, decoded by ffmpeg (see [`video_file`]).
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
            VideoSource::File { path, .. } => video_file::declared_frame_count(path),
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
                VIDEO_EXTENSIONS.join(", ")
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
            VIDEO_EXTENSIONS.join(", ")
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
