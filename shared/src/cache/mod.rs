//! The HDF5 feature cache: one file per backbone and video, `<cache>/<backbone>/<video>.h5`.
//!
//! What it does:
//! - [`write_video`] validates one video's features and writes them crash-safely: the file is
//!   built under a temporary name from [`crate::atomic::temp_path_for`] in the same folder,
//!   closed, synced to disk and only then renamed to its final name. Identical input gives
//!   byte-identical files (HDF5 object time stamps are switched off). [`VideoWriter`] does the
//!   same batch by batch, for writers that should not hold a whole video (`write_video` is one
//!   batch of it).
//! - [`read_video`] / [`read_attrs`] read a file back (float16 on disk becomes `f32` in memory)
//!   and check it against the layout below, naming the file and what to do when it is damaged;
//!   [`RowFile`] reads any rows of a file on demand, with the same checks.
//! - [`list_backbones`], [`list_videos`], [`list_temp_files`] walk a cache folder;
//!   [`summarize`] reports on a whole cache (used by `extractor inspect`).
//!
//! Layout (h5py and `h5dump` read it):
//! ```text
//! /features        (n, d) or (n, tokens, d) float32 (float16 on request), chunked by rows,
//!                  growable along its first axis (written batch by batch)
//! /frames          (n,) int32 frame numbers, strictly increasing
//! /missing         (m,) int32 frames that could not be read, strictly increasing
//! /missing_reason  (m,) variable-length UTF-8: why each missing frame could not be read
//! root attributes  backbone, dtype ("f32"|"f16"), preprocessing, weights, source, tool_version
//!                  (variable-length UTF-8 strings); dim, input_size (int64)
//! ```
//!
//! What it does not: run backbones, decide which videos to extract, lock files or delete leftover
//! temporary files. Many processes may write one cache at once; each writes its own temporary
//! file, and readers never see a file that is not complete. A file is never changed after its
//! rename, so HDF5's own file locks are not needed: on file systems without `flock` (some NFS or
//! Lustre mounts) set `HDF5_USE_FILE_LOCKING=FALSE`.

mod rows;
mod summary;
mod writer;

pub use rows::RowFile;
pub use summary::{summarize, BackboneSummary};
pub use writer::VideoWriter;

use crate::error::{FormatError, Result};
use crate::video_id::VideoId;
use hdf5::types::VarLenUnicode;
use ndarray::ArrayD;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// File extension of complete cache files.
pub const EXTENSION: &str = "h5";

/// Marker in the names of files still being written (or left behind by a killed writer):
/// `<video>.h5.tmp-<pid>-<random>`, see [`crate::atomic::temp_path_for`].
const TEMP_MARKER: &str = ".h5.tmp-";

/// Target size of one chunk of `/features` in bytes; chunks always hold whole rows (frames).
const CHUNK_BYTES: usize = 1 << 20;

/// Largest finite float16 value; larger features cannot be stored as `f16`.
const F16_MAX: f32 = 65504.0;

/// Element type of `/features` on disk. In memory features are always `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    /// 32-bit IEEE float (`"f32"`), the default.
    #[serde(rename = "f32")]
    F32,
    /// 16-bit IEEE float (`"f16"`): half the disk space, about 3 significant digits.
    #[serde(rename = "f16")]
    F16,
}

impl Dtype {
    /// The name used in attributes, configs and on the command line: `"f32"` or `"f16"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }

    /// Bytes per element on disk.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            other => Err(format!(
                "unknown feature dtype {other:?}: use \"f32\" or \"f16\""
            )),
        }
    }
}

/// The root attributes of a cache file: how its features were made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheAttrs {
    /// Backbone name (e.g. `iresnet100`, `vit_b16`, `torchscript:model.pt`).
    pub backbone: String,
    /// Feature dimension: the last axis of `/features`.
    pub dim: usize,
    /// Side of the square input images in pixels.
    pub input_size: u32,
    /// Element type of `/features` on disk.
    pub dtype: Dtype,
    /// Description of the preprocessing (resize, normalisation, pooling).
    pub preprocessing: String,
    /// `sha256:<hex>` of the weights file, or `seed:N` for a fixed-seed initialisation.
    pub weights: String,
    /// Where the frames came from (folder or video file).
    pub source: String,
    /// Version of the tool that wrote the file ([`crate::TOOL_VERSION`]).
    pub tool_version: String,
}

impl CacheAttrs {
    /// Whether a file with attributes `self` can be reused for a run that would write `other`:
    /// backbone, dim, input_size, dtype, preprocessing and weights must agree (source and
    /// tool_version may differ).
    ///
    /// The error lists every differing field with both values, `self`'s first, e.g.
    /// `weights "seed:0" vs "seed:1"; dim 512 vs 768`.
    pub fn compatible_with(&self, other: &CacheAttrs) -> std::result::Result<(), String> {
        let mut diffs = Vec::new();
        if self.backbone != other.backbone {
            diffs.push(format!(
                "backbone {:?} vs {:?}",
                self.backbone, other.backbone
            ));
        }
        if self.dim != other.dim {
            diffs.push(format!("dim {} vs {}", self.dim, other.dim));
        }
        if self.input_size != other.input_size {
            diffs.push(format!(
                "input_size {} vs {}",
                self.input_size, other.input_size
            ));
        }
        if self.dtype != other.dtype {
            diffs.push(format!("dtype {} vs {}", self.dtype, other.dtype));
        }
        if self.preprocessing != other.preprocessing {
            diffs.push(format!(
                "preprocessing {:?} vs {:?}",
                self.preprocessing, other.preprocessing
            ));
        }
        if self.weights != other.weights {
            diffs.push(format!("weights {:?} vs {:?}", self.weights, other.weights));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("; "))
        }
    }
}

/// A frame that could not be embedded, and why (unreadable image, no face, decode error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFrame {
    /// Frame number, as in the file names.
    pub frame: i32,
    /// Why it could not be read.
    pub reason: String,
}

/// The features of one video.
#[derive(Debug, Clone)]
pub struct VideoFeatures {
    /// Frame numbers (as in the file names), strictly increasing; one per row of `features`.
    pub frames: Vec<i32>,
    /// Shape `(n, d)`, or `(n, tokens, d)` for token pooling; always `f32` in memory.
    pub features: ArrayD<f32>,
    /// Frames that could not be read, strictly increasing, none of them in `frames`.
    pub missing: Vec<MissingFrame>,
}

/// The path of one video's file: `<cache>/<backbone>/<video>.h5`. `backbone` is the folder
/// name (the feature-set name), not a path.
pub fn video_path(cache: &Path, backbone: &str, video: &VideoId) -> PathBuf {
    cache.join(backbone).join(format!("{video}.{EXTENSION}"))
}

/// Whether `path` names a cache file still being written or left behind by a killed writer
/// (`<video>.h5.tmp-<pid>-<random>`).
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(TEMP_MARKER))
}

/// Write one video's features crash-safely to `path` (see the module docs for the layout).
///
/// Checks first, naming `path` and the frame: `features` is 2-D or 3-D with one row per frame
/// and last axis `attrs.dim`; frames and missing frames are strictly increasing and disjoint;
/// all values are finite (and fit float16 when `attrs.dtype` is `F16`); no text contains NUL.
/// Creates the parent folder; replaces an existing file at `path` in one rename.
pub fn write_video(path: &Path, attrs: &CacheAttrs, v: &VideoFeatures) -> Result<()> {
    validate(path, attrs, v)?;
    let shape = v.features.shape();
    let mut writer = VideoWriter::create(path, attrs, &shape[1..], Some(shape[0]))?;
    let values = v.features.as_standard_layout();
    writer.append(&v.frames, values.as_slice().expect("standard layout"))?;
    writer.finish(&v.missing)
}

/// Read one video's attributes and features; float16 features become `f32`.
///
/// Errors name the file and say what is wrong (not HDF5, missing dataset or attribute, shapes
/// that disagree, frames out of order) and that the file should be deleted and re-extracted.
pub fn read_video(path: &Path) -> Result<(CacheAttrs, VideoFeatures)> {
    let rows = RowFile::open(path)?;
    let n = rows.frames().len();
    let mut values = vec![0f32; n * rows.row_len()];
    rows.read_rows(0, &mut values)?;
    let shape = if rows.tokens_axis() {
        vec![n, rows.tokens(), rows.dim()]
    } else {
        vec![n, rows.dim()]
    };
    let features = ArrayD::from_shape_vec(shape, values).expect("n rows of row_len values");
    let missing = rows.missing()?;
    Ok((
        rows.attrs().clone(),
        VideoFeatures {
            frames: rows.frames().to_vec(),
            features,
            missing,
        },
    ))
}

/// Read only the root attributes of one file (cheap: no features are read).
pub fn read_attrs(path: &Path) -> Result<CacheAttrs> {
    attrs_of(path, &open(path)?)
}

/// The backbone folders of a cache, sorted by name. Hidden folders (`.name`) are skipped.
pub fn list_backbones(cache: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in read_dir(cache)? {
        let entry = entry.map_err(|e| FormatError::io(cache, e))?;
        let is_dir = entry
            .file_type()
            .map_err(|e| FormatError::io(&entry.path(), e))?
            .is_dir();
        if !is_dir {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|raw| {
            FormatError::file(
                &cache.join(&raw),
                "folder name is not UTF-8; backbone folders must be named after their feature set",
            )
        })?;
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The videos of one backbone that have a complete file, sorted. Temporary files (still being
/// written, or left by a crashed writer) are not listed; see [`list_temp_files`].
///
/// A `*.h5` file whose name is not a valid video id is an error naming it (rename or remove it).
pub fn list_videos(cache: &Path, backbone: &str) -> Result<Vec<VideoId>> {
    let mut videos = Vec::new();
    for entry in scan(cache, backbone)? {
        match entry {
            Entry::Video(id, _) => videos.push(id),
            Entry::Temp(_) => {}
            Entry::BadName(path, reason) => return Err(FormatError::file(&path, reason)),
        }
    }
    videos.sort();
    Ok(videos)
}

/// Temporary files in one backbone folder: files being written right now, or leftovers of
/// writers that were killed (their videos are incomplete and will be extracted again), sorted.
pub fn list_temp_files(cache: &Path, backbone: &str) -> Result<Vec<PathBuf>> {
    let mut temps: Vec<PathBuf> = scan(cache, backbone)?
        .into_iter()
        .filter_map(|e| match e {
            Entry::Temp(p) => Some(p),
            _ => None,
        })
        .collect();
    temps.sort();
    Ok(temps)
}

/// One cache-related file in a backbone folder.
enum Entry {
    /// A complete file of a video.
    Video(VideoId, PathBuf),
    /// A temporary file of a writer.
    Temp(PathBuf),
    /// A `*.h5` file whose name is not a video id, and why.
    BadName(PathBuf, String),
}

/// The cache files of one backbone folder, unsorted; other files are ignored.
fn scan(cache: &Path, backbone: &str) -> Result<Vec<Entry>> {
    let folder = cache.join(backbone);
    let mut out = Vec::new();
    for entry in read_dir(&folder)? {
        let entry = entry.map_err(|e| FormatError::io(&folder, e))?;
        let path = entry.path();
        if is_temp_file(&path) {
            out.push(Entry::Temp(path));
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
        match stem.map(VideoId::new) {
            Some(Ok(id)) => out.push(Entry::Video(id, path)),
            Some(Err(e)) => {
                let msg = format!("file name is not a video id ({e}); rename or remove the file");
                out.push(Entry::BadName(path, msg));
            }
            None => {
                let msg = "file name is not UTF-8, so not a video id; rename or remove the file";
                out.push(Entry::BadName(path, msg.to_string()));
            }
        }
    }
    Ok(out)
}

fn read_dir(folder: &Path) -> Result<std::fs::ReadDir> {
    std::fs::read_dir(folder).map_err(|e| FormatError::io(folder, e))
}

/// Deletes the temporary file when dropped, unless disarmed after the rename (also on panic).
struct RemoveOnDrop(PathBuf);

impl RemoveOnDrop {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // The file may never have been created; nothing to do then.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Make the rename durable (Unix); best effort, as some file systems refuse to sync folders.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

/// Everything [`write_video`] promises to check before touching the disk.
fn validate(path: &Path, attrs: &CacheAttrs, v: &VideoFeatures) -> Result<()> {
    let bad = |msg: String| FormatError::file(path, format!("refusing to write: {msg}"));
    if attrs.dim == 0 {
        return Err(bad(
            "attribute dim is 0; a backbone has at least one output".into(),
        ));
    }
    check_features_shape(v.features.shape(), v.frames.len(), attrs.dim).map_err(bad)?;
    check_increasing(&v.frames).map_err(|m| bad(format!("frames: {m}")))?;
    let missing: Vec<i32> = v.missing.iter().map(|m| m.frame).collect();
    check_increasing(&missing).map_err(|m| bad(format!("missing frames: {m}")))?;
    if let Some(f) = first_common(&v.frames, &missing) {
        return Err(bad(format!(
            "frame {f} is both embedded and listed as missing"
        )));
    }
    let values = v.features.as_standard_layout();
    check_values(
        attrs.dtype,
        &v.frames,
        values.as_slice().expect("standard layout"),
    )
    .map_err(bad)?;
    check_text(attrs).map_err(bad)?;
    if let Some(m) = v.missing.iter().find(|m| m.reason.contains('\0')) {
        return Err(bad(format!(
            "the reason for missing frame {} contains a NUL character",
            m.frame
        )));
    }
    Ok(())
}

/// Every value of the rows of `frames` (`values`, one row after the other) is finite and, for
/// `f16`, within float16's range; the error names the frame.
fn check_values(dtype: Dtype, frames: &[i32], values: &[f32]) -> std::result::Result<(), String> {
    let limit = match dtype {
        Dtype::F32 => f32::MAX,
        Dtype::F16 => F16_MAX,
    };
    let row_len = (values.len() / frames.len().max(1)).max(1);
    for (row, frame) in values.chunks(row_len).zip(frames) {
        if let Some(x) = row.iter().find(|x| !x.is_finite()) {
            return Err(format!("frame {frame}: feature value {x} is not finite"));
        }
        if let Some(x) = row.iter().find(|x| x.abs() > limit) {
            return Err(format!(
                "frame {frame}: feature value {x} does not fit float16; use --dtype f32"
            ));
        }
    }
    Ok(())
}

/// No text attribute contains NUL (HDF5 strings cannot hold it).
fn check_text(attrs: &CacheAttrs) -> std::result::Result<(), String> {
    let texts = [
        ("backbone", &attrs.backbone),
        ("preprocessing", &attrs.preprocessing),
        ("weights", &attrs.weights),
        ("source", &attrs.source),
        ("tool_version", &attrs.tool_version),
    ];
    match texts.iter().find(|(_, t)| t.contains('\0')) {
        Some((name, _)) => Err(format!("attribute {name} contains a NUL character")),
        None => Ok(()),
    }
}

/// `(n, d)` or `(n, tokens, d)` with `n` rows and `d == dim`.
fn check_features_shape(shape: &[usize], n: usize, dim: usize) -> std::result::Result<(), String> {
    if !(2..=3).contains(&shape.len()) {
        return Err(format!(
            "features have shape {shape:?}; expected (frames, dim) or (frames, tokens, dim)"
        ));
    }
    if shape[0] != n {
        return Err(format!(
            "features have {} rows but there are {n} frame numbers",
            shape[0]
        ));
    }
    let last = shape[shape.len() - 1];
    if last != dim {
        return Err(format!(
            "features have last axis {last} but attribute dim is {dim}"
        ));
    }
    Ok(())
}

fn check_increasing(frames: &[i32]) -> std::result::Result<(), String> {
    match frames.windows(2).find(|w| w[0] >= w[1]) {
        Some(w) => Err(format!(
            "frame {} follows frame {}; frame numbers must be strictly increasing",
            w[1], w[0]
        )),
        None => Ok(()),
    }
}

/// The first value in both sorted slices.
fn first_common(a: &[i32], b: &[i32]) -> Option<i32> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return Some(a[i]),
        }
    }
    None
}

/// The hint every "damaged file" error ends with.
const REDO: &str = "delete the file and run `extractor extract` again for this video";

fn damaged(path: &Path, what: impl fmt::Display) -> FormatError {
    FormatError::file(path, format!("{what}; {REDO}"))
}

fn open(path: &Path) -> Result<hdf5::File> {
    if !path.is_file() {
        let what = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        return Err(FormatError::file(
            path,
            format!("feature cache file {what}; run `extractor extract`"),
        ));
    }
    hdf5::File::open(path).map_err(|e| {
        damaged(
            path,
            format!("not a readable HDF5 file (truncated or not a cache file?): {e}"),
        )
    })
}

fn dataset(path: &Path, file: &hdf5::File, name: &str) -> Result<hdf5::Dataset> {
    file.dataset(name)
        .map_err(|e| damaged(path, format!("no dataset /{name} ({e})")))
}

fn read_1d<T: hdf5::H5Type>(path: &Path, file: &hdf5::File, name: &str) -> Result<Vec<T>> {
    let ds = dataset(path, file, name)?;
    if ds.ndim() != 1 {
        return Err(damaged(
            path,
            format!("/{name} has shape {:?}; expected one axis", ds.shape()),
        ));
    }
    ds.read_raw::<T>()
        .map_err(|e| damaged(path, format!("cannot read /{name}: {e}")))
}

fn read_missing(path: &Path, file: &hdf5::File) -> Result<Vec<MissingFrame>> {
    let frames: Vec<i32> = read_1d(path, file, "missing")?;
    let reasons: Vec<VarLenUnicode> = read_1d(path, file, "missing_reason")?;
    if frames.len() != reasons.len() {
        return Err(damaged(
            path,
            format!(
                "/missing has {} frames but /missing_reason {} reasons",
                frames.len(),
                reasons.len()
            ),
        ));
    }
    Ok(frames
        .into_iter()
        .zip(reasons)
        .map(|(frame, reason)| MissingFrame {
            frame,
            reason: reason.as_str().to_owned(),
        })
        .collect())
}

fn attrs_of(path: &Path, file: &hdf5::File) -> Result<CacheAttrs> {
    let text = |name: &str| -> Result<String> {
        let attr = file
            .attr(name)
            .map_err(|_| damaged(path, format!("no attribute {name:?}")))?;
        let value: VarLenUnicode = attr.read_scalar().map_err(|e| {
            damaged(
                path,
                format!("attribute {name:?} is not a variable-length UTF-8 string ({e})"),
            )
        })?;
        Ok(value.as_str().to_owned())
    };
    let int = |name: &str| -> Result<i64> {
        let attr = file
            .attr(name)
            .map_err(|_| damaged(path, format!("no attribute {name:?}")))?;
        attr.read_scalar::<i64>()
            .map_err(|e| damaged(path, format!("attribute {name:?} is not an integer ({e})")))
    };
    let dim = int("dim")?;
    let dim = usize::try_from(dim)
        .ok()
        .filter(|&d| d > 0)
        .ok_or_else(|| {
            damaged(
                path,
                format!("attribute dim is {dim}; expected a positive number"),
            )
        })?;
    let input_size = int("input_size")?;
    let input_size = u32::try_from(input_size).map_err(|_| {
        damaged(
            path,
            format!("attribute input_size is {input_size}; expected 0..=4294967295"),
        )
    })?;
    let dtype = text("dtype")?
        .parse::<Dtype>()
        .map_err(|m| damaged(path, format!("attribute dtype: {m}")))?;
    Ok(CacheAttrs {
        backbone: text("backbone")?,
        dim,
        input_size,
        dtype,
        preprocessing: text("preprocessing")?,
        weights: text("weights")?,
        source: text("source")?,
        tool_version: text("tool_version")?,
    })
}

#[cfg(test)]
mod tests;
