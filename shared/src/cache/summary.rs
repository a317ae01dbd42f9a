//! A whole-cache report for `extractor inspect`: per backbone, how many videos and frames, how
//! they were made, which frames are missing and why, and which files are incomplete, unreadable
//! or made differently from the rest.
//!
//! What it does not: print (the binary formats the report), repair or delete anything, or read
//! the features themselves (only shapes, attributes and the missing-frame lists).

use super::{attrs_of, dataset, open, read_missing, scan, CacheAttrs, Dtype, Entry};
use crate::error::{FormatError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// What one backbone folder of a cache holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackboneSummary {
    /// Folder name (the feature-set name).
    pub backbone: String,
    /// Complete, readable video files.
    pub videos: usize,
    /// Embedded frames over those videos.
    pub frames: usize,
    /// Feature dimension of the first readable video (0 if there is none).
    pub dim: usize,
    /// On-disk element type of the first readable video (`F32` if there is none).
    pub dtype: Dtype,
    /// Weights id of the first readable video (empty if there is none).
    pub weights: String,
    /// Preprocessing of the first readable video (empty if there is none).
    pub preprocessing: String,
    /// Frames that could not be read, over all readable videos.
    pub missing_frames: usize,
    /// How many missing frames have each reason.
    pub missing_reasons: BTreeMap<String, usize>,
    /// Temporary files (being written now, or left by a killed writer: incomplete videos).
    pub incomplete_files: Vec<String>,
    /// `*.h5` files that cannot be read, each as `name: why`.
    pub unreadable: Vec<String>,
    /// Videos whose attributes differ from the first readable video, each as `video: differences`.
    pub mixed_attrs: Vec<String>,
}

/// Summarise every backbone folder of the cache at `cache`, sorted by backbone.
///
/// Problems with single files (unreadable, badly named, made with other settings) are reported
/// in the summary, not returned as errors; only a cache folder that cannot be listed is an error.
pub fn summarize(cache: &Path) -> Result<Vec<BackboneSummary>> {
    if !cache.is_dir() {
        return Err(FormatError::file(
            cache,
            "not a folder; give the feature cache folder (the --out of `extractor extract`)",
        ));
    }
    super::list_backbones(cache)?
        .into_iter()
        .map(|b| summarize_backbone(cache, b))
        .collect()
}

fn summarize_backbone(cache: &Path, backbone: String) -> Result<BackboneSummary> {
    let mut entries = scan(cache, &backbone)?;
    entries.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    let mut s = BackboneSummary {
        backbone,
        videos: 0,
        frames: 0,
        dim: 0,
        dtype: Dtype::F32,
        weights: String::new(),
        preprocessing: String::new(),
        missing_frames: 0,
        missing_reasons: BTreeMap::new(),
        incomplete_files: Vec::new(),
        unreadable: Vec::new(),
        mixed_attrs: Vec::new(),
    };
    let mut reference: Option<CacheAttrs> = None;
    for entry in &entries {
        let name = file_name(entry_path(entry));
        match entry {
            Entry::Temp(_) => s.incomplete_files.push(name),
            Entry::BadName(_, reason) => s.unreadable.push(format!("{name}: {reason}")),
            Entry::Video(video, path) => match video_stats(path) {
                Err(e) => s
                    .unreadable
                    .push(format!("{name}: {}", without_path(&e, path))),
                Ok((attrs, frames, missing)) => {
                    s.videos += 1;
                    s.frames += frames;
                    s.missing_frames += missing.len();
                    for m in missing {
                        *s.missing_reasons.entry(m.reason).or_default() += 1;
                    }
                    match &reference {
                        None => reference = Some(attrs),
                        Some(first) => {
                            if let Err(diff) = first.compatible_with(&attrs) {
                                s.mixed_attrs.push(format!("{video}: {diff}"));
                            }
                        }
                    }
                }
            },
        }
    }
    if let Some(first) = reference {
        s.dim = first.dim;
        s.dtype = first.dtype;
        s.weights = first.weights;
        s.preprocessing = first.preprocessing;
    }
    Ok(s)
}

/// Attributes, number of embedded frames and missing frames of one file, checking that the
/// datasets agree with each other without reading the features.
fn video_stats(path: &Path) -> Result<(CacheAttrs, usize, Vec<super::MissingFrame>)> {
    let file = open(path)?;
    let attrs = attrs_of(path, &file)?;
    let frames = dataset(path, &file, "frames")?.shape();
    let features = dataset(path, &file, "features")?.shape();
    if frames.len() != 1 || features.first() != frames.first() {
        return Err(super::damaged(
            path,
            format!("/frames has shape {frames:?} but /features {features:?}"),
        ));
    }
    let missing = read_missing(path, &file)?;
    Ok((attrs, frames[0], missing))
}

fn entry_path(e: &Entry) -> &Path {
    match e {
        Entry::Video(_, p) | Entry::Temp(p) | Entry::BadName(p, _) => p,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The message of an error without its leading `path: ` (the summary names the file itself).
fn without_path(e: &FormatError, path: &Path) -> String {
    let msg = e.to_string();
    let prefix = format!("{}: ", path.display());
    msg.strip_prefix(&prefix)
        .map_or_else(|| msg.clone(), str::to_owned)
}
