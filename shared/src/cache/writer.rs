//! One video's cache file written batch by batch, so a writer never holds a whole video.
//!
//! What it does: [`VideoWriter::create`] starts the file under a temporary name next to its
//! final path (attributes first, `/features` empty and growable along its first axis, chunked by
//! whole rows); [`VideoWriter::append`] checks a batch of rows (frames strictly increasing after
//! the previous batch's, values finite and, for `f16`, within its range, naming the frame) and
//! writes it at the end of `/features`, float16 narrowed with `half`'s vectorised conversion;
//! [`VideoWriter::finish`] writes `/frames`, `/missing` and `/missing_reason`, closes and syncs
//! the file and renames it to its final name. Dropped before `finish` (an error, a panic, a
//! video that failed half way), it deletes the temporary file: readers never see a partial file.
//! A token cache of DINOv2 ViT-g (0.9 MB per frame in `f16`) thus costs the extractor one batch
//! of memory, not a video's 2 to 20 GB.
//!
//! The same bytes for the same input and the same batches: time stamps are off, and chunks
//! hold `CHUNK_BYTES / row bytes` rows (at most the expected frame count, when known, so that a
//! short video's file is not padded to a whole chunk).
//!
//! What it does not: decide paths, sort frames, or read files back (see [`super::RowFile`]).

use super::{check_text, Dtype, MissingFrame, RemoveOnDrop, CHUNK_BYTES};
use super::{first_common, sync_folder, CacheAttrs};
use crate::error::{FormatError, Result};
use half::slice::HalfFloatSliceExt;
use hdf5::types::VarLenUnicode;
use hdf5::{Extent, Hyperslab, Selection, SimpleExtents, SliceOrIndex};
use ndarray::{Array1, ArrayViewD, IxDyn};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A cache file being written (see the module docs).
pub struct VideoWriter {
    path: PathBuf,
    temp: RemoveOnDrop,
    file: hdf5::File,
    features: hdf5::Dataset,
    dtype: Dtype,
    /// Shape of one row: `[dim]` or `[tokens, dim]`.
    row_shape: Vec<usize>,
    frames: Vec<i32>,
    /// Reused buffer of float16 values.
    narrow: Vec<half::f16>,
}

impl VideoWriter {
    /// Start `path`'s file (created under a temporary name in the same folder, which is created
    /// if needed) with `attrs` and rows of shape `row_shape` (`[dim]` or `[tokens, dim]`, the
    /// last equal to `attrs.dim`). `expected_rows`, when known, caps the rows per chunk.
    pub fn create(
        path: &Path,
        attrs: &CacheAttrs,
        row_shape: &[usize],
        expected_rows: Option<usize>,
    ) -> Result<VideoWriter> {
        let bad = |msg: String| FormatError::file(path, format!("refusing to write: {msg}"));
        if attrs.dim == 0 {
            return Err(bad(
                "attribute dim is 0; a backbone has at least one output".into(),
            ));
        }
        if !(1..=2).contains(&row_shape.len()) || row_shape.last() != Some(&attrs.dim) {
            return Err(bad(format!(
                "rows of shape {row_shape:?}; expected [dim] or [tokens, dim] with dim {}",
                attrs.dim
            )));
        }
        check_text(attrs).map_err(bad)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| FormatError::io(parent, e))?;
        let temp = RemoveOnDrop(crate::atomic::temp_path_for(path));
        let row_bytes = row_shape.iter().product::<usize>() * attrs.dtype.size();
        let chunk_rows = (CHUNK_BYTES / row_bytes.max(1))
            .min(expected_rows.unwrap_or(usize::MAX))
            .max(1);
        let (file, features) = start_file(&temp.0, attrs, row_shape, chunk_rows)
            .map_err(|e| FormatError::hdf5(path, e))?;
        Ok(VideoWriter {
            path: path.to_path_buf(),
            temp,
            file,
            features,
            dtype: attrs.dtype,
            row_shape: row_shape.to_vec(),
            frames: Vec::new(),
            narrow: Vec::new(),
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.frames.len()
    }

    /// Append the rows of `frames` (`values`: one row after the other, `f32`). Frames must be
    /// strictly increasing and after every frame appended before; values finite (and within
    /// float16's range for an `f16` file). An error names the file and the frame; nothing of
    /// the batch is written then.
    pub fn append(&mut self, frames: &[i32], values: &[f32]) -> Result<()> {
        let bad = |msg: String| FormatError::file(&self.path, format!("refusing to write: {msg}"));
        let row_len: usize = self.row_shape.iter().product();
        if values.len() != frames.len() * row_len {
            return Err(bad(format!(
                "{} values for {} frames of {row_len}",
                values.len(),
                frames.len()
            )));
        }
        let previous = self.frames.last().copied();
        let order: Vec<i32> = previous.into_iter().chain(frames.iter().copied()).collect();
        super::check_increasing(&order).map_err(|m| bad(format!("frames: {m}")))?;
        super::check_values(self.dtype, frames, values).map_err(bad)?;
        if frames.is_empty() {
            return Ok(());
        }
        let (start, n) = (self.frames.len(), frames.len());
        // the batch's shape, and where it goes: rows start..start + n of the first axis
        let mut shape = vec![n];
        shape.extend_from_slice(&self.row_shape);
        let mut axes = vec![SliceOrIndex::from(..); shape.len()];
        axes[0] = SliceOrIndex::from(start..start + n);
        let rows = Selection::from(Hyperslab::from(axes));
        let written = (|| -> hdf5::Result<()> {
            let mut all = shape.clone();
            all[0] = start + n;
            self.features.resize(all)?;
            match self.dtype {
                Dtype::F32 => {
                    let view = ArrayViewD::from_shape(IxDyn(&shape), values)
                        .map_err(|e| hdf5::Error::from(e.to_string()))?;
                    self.features.write_slice(view, rows)
                }
                Dtype::F16 => {
                    self.narrow.resize(values.len(), half::f16::ZERO);
                    self.narrow.convert_from_f32_slice(values);
                    let view = ArrayViewD::from_shape(IxDyn(&shape), &self.narrow[..])
                        .map_err(|e| hdf5::Error::from(e.to_string()))?;
                    self.features.write_slice(view, rows)
                }
            }
        })();
        written.map_err(|e| FormatError::hdf5(&self.path, e))?;
        self.frames.extend_from_slice(frames);
        Ok(())
    }

    /// Write the frame numbers and `missing` (strictly increasing, none of them a written frame,
    /// reasons without NUL), close and sync the file and rename it to its final path, replacing
    /// any file there in one rename.
    pub fn finish(self, missing: &[MissingFrame]) -> Result<()> {
        let bad = |msg: String| FormatError::file(&self.path, format!("refusing to write: {msg}"));
        let numbers: Vec<i32> = missing.iter().map(|m| m.frame).collect();
        super::check_increasing(&numbers).map_err(|m| bad(format!("missing frames: {m}")))?;
        if let Some(f) = first_common(&self.frames, &numbers) {
            return Err(bad(format!(
                "frame {f} is both embedded and listed as missing"
            )));
        }
        if let Some(m) = missing.iter().find(|m| m.reason.contains('\0')) {
            return Err(bad(format!(
                "the reason for missing frame {} contains a NUL character",
                m.frame
            )));
        }
        let VideoWriter {
            path,
            temp,
            file,
            features,
            frames,
            ..
        } = self;
        drop(features);
        end_file(file, &frames, missing).map_err(|e| FormatError::hdf5(&path, e))?;
        let synced = std::fs::File::open(&temp.0).and_then(|f| f.sync_all());
        synced.map_err(|e| FormatError::io(&temp.0, e))?;
        std::fs::rename(&temp.0, &path).map_err(|e| FormatError::io(&path, e))?;
        temp.disarm();
        if let Some(parent) = path.parent() {
            sync_folder(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            });
        }
        Ok(())
    }
}

/// The attributes and an empty, growable `/features` of a new file at `temp`.
fn start_file(
    temp: &Path,
    attrs: &CacheAttrs,
    row_shape: &[usize],
    chunk_rows: usize,
) -> hdf5::Result<(hdf5::File, hdf5::Dataset)> {
    let file = hdf5::File::with_options()
        .with_fcpl(|p| p.obj_track_times(false))
        .create_excl(temp)?;
    for (name, value) in [
        ("backbone", attrs.backbone.as_str()),
        ("dtype", attrs.dtype.as_str()),
        ("preprocessing", &attrs.preprocessing),
        ("weights", &attrs.weights),
        ("source", &attrs.source),
        ("tool_version", &attrs.tool_version),
    ] {
        file.new_attr::<VarLenUnicode>()
            .create(name)?
            .write_scalar(&text(value)?)?;
    }
    for (name, value) in [
        ("dim", attrs.dim as i64),
        ("input_size", i64::from(attrs.input_size)),
    ] {
        file.new_attr::<i64>().create(name)?.write_scalar(&value)?;
    }
    let mut extents = vec![Extent::resizable(0)];
    extents.extend(row_shape.iter().map(|&d| Extent::fixed(d)));
    let mut chunk = vec![chunk_rows];
    chunk.extend_from_slice(row_shape);
    // Time stamps would make identical content differ byte-wise.
    let builder = file.new_dataset_builder().obj_track_times(false);
    let features = match attrs.dtype {
        Dtype::F32 => builder.empty::<f32>(),
        Dtype::F16 => builder.empty::<half::f16>(),
    }
    .shape(SimpleExtents::from_vec(extents))
    .chunk(chunk)
    .create("features")?;
    Ok((file, features))
}

/// `/frames`, `/missing` and `/missing_reason`, then close.
fn end_file(file: hdf5::File, frames: &[i32], missing: &[MissingFrame]) -> hdf5::Result<()> {
    let builder = || file.new_dataset_builder().obj_track_times(false);
    builder()
        .with_data(&Array1::from(frames.to_vec()))
        .create("frames")?;
    let numbers: Array1<i32> = missing.iter().map(|m| m.frame).collect();
    builder().with_data(&numbers).create("missing")?;
    let reasons: Array1<VarLenUnicode> = missing
        .iter()
        .map(|m| text(&m.reason))
        .collect::<hdf5::Result<_>>()?;
    builder().with_data(&reasons).create("missing_reason")?;
    file.close()
}

fn text(s: &str) -> hdf5::Result<VarLenUnicode> {
    VarLenUnicode::from_str(s).map_err(|e| hdf5::Error::from(e.to_string()))
}
