//! One cache file opened for reading its rows (frames) on demand.
//!
//! What it does: [`RowFile::open`] checks a file as [`super::read_video`] does (attributes,
//! `/frames` strictly increasing, `/features` of shape `(n, d)` or `(n, tokens, d)` with the
//! element size its `dtype` attribute says) but reads only the frame numbers; then
//! [`RowFile::read_rows`] reads any run of consecutive rows straight into a caller's `f32`
//! buffer, float16 widened with `half`'s vectorised conversion (not HDF5's scalar one). A token
//! file of 289 x 1536 values per frame is 0.9 MB per row in f16, so a trainer can read a batch of
//! 64 frames without holding a whole video (or split) in memory.
//!
//! What it does not: decide which rows to read, cache rows, join feature sets or normalise
//! (that is the trainer's data layer).

use super::{attrs_of, check_features_shape, check_increasing, damaged, dataset, open, read_1d};
use super::{read_missing, CacheAttrs, Dtype, MissingFrame};
use crate::error::{FormatError, Result};
use half::slice::HalfFloatSliceExt;
use hdf5::{Hyperslab, Selection, SliceOrIndex};
use std::path::{Path, PathBuf};

/// A checked cache file with its frame numbers; rows are read on request.
#[derive(Debug)]
pub struct RowFile {
    path: PathBuf,
    attrs: CacheAttrs,
    frames: Vec<i32>,
    tokens: usize,
    /// Whether `/features` is `(n, tokens, d)` (even with one token) rather than `(n, d)`.
    tokens_axis: bool,
    file: hdf5::File,
    features: hdf5::Dataset,
}

impl RowFile {
    /// Open and check `path`; reads the attributes and `/frames`, not the features. Errors name
    /// the file and say what to do, as [`super::read_video`]'s.
    pub fn open(path: &Path) -> Result<RowFile> {
        let file = open(path)?;
        let attrs = attrs_of(path, &file)?;
        let frames: Vec<i32> = read_1d(path, &file, "frames")?;
        check_increasing(&frames).map_err(|m| damaged(path, format!("/frames: {m}")))?;
        let features = dataset(path, &file, "features")?;
        let shape = features.shape();
        check_features_shape(&shape, frames.len(), attrs.dim)
            .map_err(|m| damaged(path, format!("/features: {m}")))?;
        let on_disk = features
            .dtype()
            .map_err(|e| FormatError::hdf5(path, e))?
            .size();
        if on_disk != attrs.dtype.size() {
            return Err(damaged(
                path,
                format!(
                    "/features has {on_disk}-byte elements but attribute dtype is {}",
                    attrs.dtype
                ),
            ));
        }
        let tokens_axis = shape.len() == 3;
        Ok(RowFile {
            path: path.to_path_buf(),
            attrs,
            frames,
            tokens: if tokens_axis { shape[1] } else { 1 },
            tokens_axis,
            file,
            features,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root attributes.
    pub fn attrs(&self) -> &CacheAttrs {
        &self.attrs
    }

    /// Frame number of each row, strictly increasing.
    pub fn frames(&self) -> &[i32] {
        &self.frames
    }

    /// Tokens per row (1 for a pooled `(n, d)` file).
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Whether `/features` has a token axis, `(n, tokens, d)`, rather than `(n, d)`.
    pub fn tokens_axis(&self) -> bool {
        self.tokens_axis
    }

    /// Values per token (the `dim` attribute).
    pub fn dim(&self) -> usize {
        self.attrs.dim
    }

    /// Values per row: tokens x dim.
    pub fn row_len(&self) -> usize {
        self.tokens * self.attrs.dim
    }

    /// Bytes one row takes on disk (before any compression).
    pub fn row_bytes(&self) -> usize {
        self.row_len() * self.attrs.dtype.size()
    }

    /// The frames that could not be read, with why (`/missing` and `/missing_reason`).
    pub fn missing(&self) -> Result<Vec<MissingFrame>> {
        read_missing(&self.path, &self.file)
    }

    /// Read rows `start..start + out.len() / row_len()` into `out` as `f32`, row after row
    /// (token after token within a row). `out.len()` must be a whole number of rows inside the
    /// file; anything else is a caller's bug and panics.
    pub fn read_rows(&self, start: usize, out: &mut [f32]) -> Result<()> {
        let row_len = self.row_len();
        assert!(
            out.len().is_multiple_of(row_len) && start + out.len() / row_len <= self.frames.len(),
            "{}: rows {start}.. of {} values do not fit the file's {} rows of {row_len}",
            self.path.display(),
            out.len(),
            self.frames.len()
        );
        let n = out.len() / row_len;
        if n == 0 {
            return Ok(());
        }
        let cannot = |e: hdf5::Error| {
            damaged(
                &self.path,
                format!("cannot read rows {start}..{} of /features: {e}", start + n),
            )
        };
        // rows start..start + n of the first axis, every token and value
        let mut axes = vec![SliceOrIndex::from(..); if self.tokens_axis { 3 } else { 2 }];
        axes[0] = SliceOrIndex::from(start..start + n);
        let rows = Selection::from(Hyperslab::from(axes));
        match self.attrs.dtype {
            Dtype::F32 => {
                let a = self
                    .features
                    .read_slice::<f32, _, ndarray::IxDyn>(rows)
                    .map_err(cannot)?;
                out.copy_from_slice(a.as_slice().expect("a fresh array is contiguous"));
            }
            Dtype::F16 => {
                let a = self
                    .features
                    .read_slice::<half::f16, _, ndarray::IxDyn>(rows)
                    .map_err(cannot)?;
                a.as_slice()
                    .expect("a fresh array is contiguous")
                    .convert_to_f32_slice(out);
            }
        }
        Ok(())
    }
}
