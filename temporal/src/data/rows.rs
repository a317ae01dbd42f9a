//! Where a split's feature rows live: all in memory, or read from the cache when a step needs them.
//!
//! What it does: [`RowSource`] knows, for every row of a split, which cache file of each
//! feature set holds it and at which row ([`shared::cache::RowFile`]), and reads any list of
//! split rows into `f32` rows of `tokens x D` (the sets side by side within each token, as
//! [`super::join`] describes). [`FeatureRows::Memory`] reads them all once into one tensor;
//! [`FeatureRows::Stream`] reads each step's rows when the step asks for them, so a split of
//! DINOv2 ViT-g tokens (289 x 1536 per frame, 1.8 MB in `f32`) never has to fit in memory: a
//! step of 64 frames holds 113 MB. [`FeatureStore::Auto`] (the default) keeps a split in memory
//! when its `f32` rows take at most half of the memory available when it loads, else streams.
//!
//! Keeping training fed: [`FeatureRows::prefetch`] is given the rows of every coming step of a
//! pass (the trainer and the inference loop call it with their plan) and a reader thread reads
//! and normalises the next step while the model works on this one (and then waits: a pass
//! holds at most two steps of rows, [`PREFETCH_DEPTH`]), so reading overlaps the model's work; a
//! step that asks for other rows than the next prefetched ones is read on the spot. Rows are read
//! in runs of consecutive rows per file (up to [`RUN_BYTES`] a read), each distinct row once per
//! step, float16 widened on the fly. At most [`MAX_OPEN_FILES`] files are open at once
//! (each holds HDF5's 1 MB chunk cache); a file reopened after it was closed must still have the
//! frames it had when the split loaded.
//!
//! Normalisation: [`FeatureRows::fit_normalisation`] computes the per-dimension statistics in one
//! pass of chunks of up to [`STATS_CHUNK`] rows accumulated in `f64`, the same way for both stores, so a
//! streamed run and an in-memory run of the same data see the same numbers; a streamed split
//! normalises each step's rows as it reads them instead of in place.
//!
//! What it does not: choose the rows (that is [`super::streams`]), cache rows between steps, or
//! recover from a cache file that changes or breaks in the middle of a run: that stops the run
//! with a message naming the file (the last checkpoint is kept, and `--resume` continues).

use super::normalise::{Normalisation, MIN_STD};
use anyhow::{bail, Context, Result};
use shared::cache::RowFile;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// Steps a reader thread holds ready beyond the one it is reading: none, so a streamed pass
/// holds at most two steps of rows (the model's and the next one, being read).
pub const PREFETCH_DEPTH: usize = 0;

/// Cache files a [`RowSource`] keeps open at once.
pub const MAX_OPEN_FILES: usize = 64;

/// Largest run of consecutive rows read at once (as f32): a run's buffer is reused from step to
/// step instead of being a fresh 54 MB allocation that the kernel faults in page by page.
pub const RUN_BYTES: usize = 4 << 20;

/// Rows per chunk when loading a split into memory and when fitting the normalisation: at most
/// 256, and at most [`CHUNK_BYTES`] of `f32` (36 rows of 289 x 1536 tokens: a chunk and its
/// `f64` copy are then 200 MB, not 1.4 GB).
pub const STATS_CHUNK: usize = 256;

/// Largest chunk of `f32` rows loaded or summed at once.
pub const CHUNK_BYTES: usize = 64 << 20;

/// Rows per chunk of `width` values (see [`STATS_CHUNK`]).
fn chunk_rows(width: usize) -> usize {
    (CHUNK_BYTES / (width * 4).max(1)).clamp(1, STATS_CHUNK)
}

/// Where a split's features are kept.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FeatureStore {
    /// In memory when the split's features (as f32) take at most half the available memory,
    /// else streamed.
    #[default]
    Auto,
    /// Every row read once into memory (on the training device).
    Memory,
    /// Each step's rows read from the cache when needed, one step ahead.
    Stream,
}

impl std::fmt::Display for FeatureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FeatureStore::Auto => "auto",
            FeatureStore::Memory => "memory",
            FeatureStore::Stream => "stream",
        })
    }
}

impl FeatureStore {
    /// `Memory` or `Stream` for a split whose `f32` rows take `bytes`: `Auto` compares them
    /// with half the memory available now (in memory when that cannot be read).
    pub fn resolve(self, bytes: u64) -> FeatureStore {
        match self {
            FeatureStore::Auto => match available_memory() {
                Some(avail) if bytes > avail / 2 => FeatureStore::Stream,
                _ => FeatureStore::Memory,
            },
            chosen => chosen,
        }
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux), or `None`.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// An open file: (video, set) and its reader.
type OpenFile = ((usize, usize), Arc<RowFile>);

/// The rows of one step and what reading them gave.
type ReadStep = (Vec<usize>, Result<Tensor>);

/// One cache file of one feature set of one video, as checked when the split loaded (the file
/// itself is closed: a split may have more files than a process may keep open).
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    /// Its frame numbers when the split loaded (checked again when it is reopened).
    frames: Vec<i32>,
    /// Values per row (tokens x the set's dim).
    row_len: usize,
    /// Bytes per row on disk.
    row_bytes: usize,
}

impl SourceFile {
    /// What [`RowSource`] keeps of an opened file.
    pub fn of(file: &RowFile) -> SourceFile {
        SourceFile {
            path: file.path().to_path_buf(),
            frames: file.frames().to_vec(),
            row_len: file.row_len(),
            row_bytes: file.row_bytes(),
        }
    }

    /// Frame number of each row.
    pub fn frames(&self) -> &[i32] {
        &self.frames
    }
}

/// Every cache file of a split and where each split row lives in them.
#[derive(Debug)]
pub struct RowSource {
    /// Files by video, then set (column order).
    files: Vec<Vec<SourceFile>>,
    /// Each set's dim (values per token).
    set_dims: Vec<usize>,
    /// Tokens per row (the same in every set).
    tokens: usize,
    /// Video of each split row.
    video_of: Vec<u32>,
    /// For each set, the row of each split row in that set's file of its video.
    source_row: Vec<Vec<u32>>,
    /// Open files, most recently used last.
    open: Mutex<Vec<OpenFile>>,
    /// Largest read, [`RUN_BYTES`] (smaller in tests).
    run_bytes: usize,
}

impl RowSource {
    /// An empty source for `set_dims` sets of `tokens` tokens; add videos with
    /// [`RowSource::push_video`].
    pub fn new(set_dims: Vec<usize>, tokens: usize) -> RowSource {
        RowSource {
            files: Vec::new(),
            source_row: vec![Vec::new(); set_dims.len()],
            set_dims,
            tokens,
            video_of: Vec::new(),
            open: Mutex::new(Vec::new()),
            run_bytes: RUN_BYTES,
        }
    }

    /// Add a video: its checked file in each set (column order) and, for each of its rows, the
    /// row in each set's file (`rows[r][k]`).
    pub fn push_video(&mut self, files: Vec<SourceFile>, rows: &[Vec<usize>]) {
        let v = self.files.len() as u32;
        self.files.push(files);
        for r in rows {
            self.video_of.push(v);
            for (k, &src) in r.iter().enumerate() {
                self.source_row[k].push(src as u32);
            }
        }
    }

    /// Number of split rows.
    pub fn n_rows(&self) -> usize {
        self.video_of.len()
    }

    /// Values per split row: tokens x the sum of the sets' dims.
    pub fn width(&self) -> usize {
        self.tokens * self.set_dims.iter().sum::<usize>()
    }

    /// Bytes on disk behind one split row (every set's row).
    pub fn row_bytes(&self, row: usize) -> usize {
        let v = self.video_of[row] as usize;
        self.files[v].iter().map(|f| f.row_bytes).sum()
    }

    /// The cache file and its row behind split row `row`, per set.
    pub fn location(&self, row: usize) -> Vec<(PathBuf, usize)> {
        let v = self.video_of[row] as usize;
        self.files[v]
            .iter()
            .zip(&self.source_row)
            .map(|(f, rows)| (f.path.clone(), rows[row] as usize))
            .collect()
    }

    /// Read split rows `rows` (any order, repeats allowed) into `out`, `rows.len() x width`.
    pub fn read_into(&self, rows: &[usize], out: &mut [f32]) -> Result<()> {
        let width = self.width();
        assert_eq!(
            out.len(),
            rows.len() * width,
            "one output row per split row"
        );
        let dim: usize = self.set_dims.iter().sum();
        let mut col = 0;
        let mut buf = Vec::new();
        for (k, &d) in self.set_dims.iter().enumerate() {
            // (video, row in its file, output position), sorted: runs of one file's rows.
            let mut want: Vec<(u32, u32, usize)> = rows
                .iter()
                .enumerate()
                .map(|(pos, &r)| (self.video_of[r], self.source_row[k][r], pos))
                .collect();
            want.sort_unstable();
            let mut i = 0;
            while i < want.len() {
                let (video, first, _) = want[i];
                let row_len = self.files[video as usize][k].row_len;
                let max_rows = (self.run_bytes / (row_len * 4).max(1)).max(1) as u32;
                let mut j = i + 1;
                while j < want.len()
                    && want[j].0 == video
                    && want[j].1 <= want[j - 1].1 + 1
                    && want[j].1 - first < max_rows
                {
                    j += 1;
                }
                let last = want[j - 1].1;
                let file = self.file(video as usize, k)?;
                buf.resize((last - first + 1) as usize * row_len, 0.0);
                file.read_rows(first as usize, &mut buf)?;
                for &(_, src, pos) in &want[i..j] {
                    let from = &buf[(src - first) as usize * row_len..][..row_len];
                    let to = &mut out[pos * width..(pos + 1) * width];
                    if d == dim {
                        to.copy_from_slice(from);
                    } else {
                        for (t, chunk) in from.chunks_exact(d).enumerate() {
                            to[t * dim + col..t * dim + col + d].copy_from_slice(chunk);
                        }
                    }
                }
                i = j;
            }
            col += d;
        }
        Ok(())
    }

    /// The open file of set `set` of video `video`, opening (and checking) it if needed.
    fn file(&self, video: usize, set: usize) -> Result<Arc<RowFile>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = open.iter().position(|(key, _)| *key == (video, set)) {
            let entry = open.remove(at);
            let file = entry.1.clone();
            open.push(entry);
            return Ok(file);
        }
        let src = &self.files[video][set];
        let file = RowFile::open(&src.path)?;
        if file.frames() != src.frames || file.row_len() != src.row_len {
            bail!(
                "{}: the file changed while this run was reading it (other frames or shape than \
                 when the split loaded); let the extraction finish, then resume the run",
                src.path.display()
            );
        }
        let file = Arc::new(file);
        if open.len() == MAX_OPEN_FILES {
            open.remove(0);
        }
        open.push(((video, set), file.clone()));
        Ok(file)
    }
}

/// A split's feature rows, `[N, tokens x D]` `f32`.
#[derive(Debug)]
pub enum FeatureRows {
    /// Every row in one tensor on the training device.
    Memory(Tensor),
    /// Rows read from the cache by the step that needs them.
    Stream(StreamedRows),
}

/// Rows read on demand, normalised as they are read, optionally one step ahead.
#[derive(Debug)]
pub struct StreamedRows {
    source: Arc<RowSource>,
    device: Device,
    /// Mean and standard deviation per dim, once set.
    norm: Option<Arc<(Vec<f32>, Vec<f32>)>>,
    /// The rows and result of each coming step, from the reader thread.
    ahead: Mutex<Option<Receiver<ReadStep>>>,
}

impl FeatureRows {
    /// Read `source`'s rows into memory on `device` (`Memory`) or keep reading them from the
    /// cache (`Stream`); `store` must be resolved.
    pub fn new(source: RowSource, store: FeatureStore, device: Device) -> Result<FeatureRows> {
        match store {
            FeatureStore::Stream => Ok(FeatureRows::Stream(StreamedRows {
                source: Arc::new(source),
                device,
                norm: None,
                ahead: Mutex::new(None),
            })),
            _ => {
                let (n, width) = (source.n_rows(), source.width());
                let feats = Tensor::zeros([n as i64, width as i64], (Kind::Float, device));
                let mut buf = Vec::new();
                let all: Vec<usize> = (0..n).collect();
                for chunk in all.chunks(chunk_rows(width)) {
                    buf.resize(chunk.len() * width, 0.0);
                    source.read_into(chunk, &mut buf)?;
                    feats
                        .narrow(0, chunk[0] as i64, chunk.len() as i64)
                        .copy_(&Tensor::from_slice(&buf).view([chunk.len() as i64, -1]));
                }
                Ok(FeatureRows::Memory(feats))
            }
        }
    }

    /// The device the rows are gathered to.
    pub fn device(&self) -> Device {
        match self {
            FeatureRows::Memory(t) => t.device(),
            FeatureRows::Stream(s) => s.device,
        }
    }

    /// Whether the rows are read from the cache step by step.
    pub fn is_streamed(&self) -> bool {
        matches!(self, FeatureRows::Stream(_))
    }

    /// The in-memory tensor `[N, tokens x D]`, if the rows are in memory.
    pub fn resident(&self) -> Option<&Tensor> {
        match self {
            FeatureRows::Memory(t) => Some(t),
            FeatureRows::Stream(_) => None,
        }
    }

    /// The cache behind the rows, if streamed.
    pub fn source(&self) -> Option<&RowSource> {
        match self {
            FeatureRows::Memory(_) => None,
            FeatureRows::Stream(s) => Some(&s.source),
        }
    }

    /// Rows `index` (int64 `[n]`, any device) as a fresh `[n, tokens x D]` tensor on the
    /// rows' device. A streamed read that fails (a cache file removed or damaged during the run)
    /// panics with the file's name: the steps cannot go on without their features.
    pub fn gather(&self, index: &Tensor) -> Tensor {
        match self {
            FeatureRows::Memory(t) => t.index_select(0, index),
            FeatureRows::Stream(s) => {
                let rows: Vec<usize> = Vec::<i64>::try_from(index.to_device(Device::Cpu))
                    .expect("int64 row indices")
                    .into_iter()
                    .map(|r| r as usize)
                    .collect();
                let read = s
                    .take_prefetched(&rows)
                    .unwrap_or_else(|| read_rows(&s.source, s.norm.as_deref(), &rows));
                match read {
                    Ok(x) => x.to_device(s.device),
                    Err(e) => panic!("reading the features of a training step: {e:#}"),
                }
            }
        }
    }

    /// Start reading the rows of the coming steps (`steps`, in order) on a reader thread; a
    /// no-op in memory. Replaces any earlier prefetch.
    pub fn prefetch(&self, steps: Vec<Vec<usize>>) {
        let FeatureRows::Stream(s) = self else {
            return;
        };
        let (tx, rx) = sync_channel(PREFETCH_DEPTH);
        let (source, norm) = (s.source.clone(), s.norm.clone());
        std::thread::spawn(move || {
            for rows in steps {
                let read = read_rows(&source, norm.as_deref(), &rows);
                if tx.send((rows, read)).is_err() {
                    break; // the pass ended early or another prefetch replaced this one
                }
            }
        });
        *s.ahead.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
    }

    /// Per-dimension statistics over every token of every row, in chunks of [`chunk_rows`]
    /// summed in `f64` (the same numbers for both stores).
    pub fn fit_normalisation(&self, dim: usize) -> Result<Normalisation> {
        let n = match self {
            FeatureRows::Memory(t) => t.size()[0] as usize,
            FeatureRows::Stream(s) => s.source.n_rows(),
        };
        let opts = (Kind::Double, Device::Cpu);
        let (mut sum, mut sq) = (
            Tensor::zeros([dim as i64], opts),
            Tensor::zeros([dim as i64], opts),
        );
        let all: Vec<usize> = (0..n).collect();
        let width = self.width();
        for chunk in all.chunks(chunk_rows(width)) {
            let x = match self {
                FeatureRows::Memory(t) => t.narrow(0, chunk[0] as i64, chunk.len() as i64),
                FeatureRows::Stream(s) => read_rows(&s.source, None, chunk)?,
            }
            .to_device(Device::Cpu)
            .view([-1, dim as i64])
            .to_kind(Kind::Double);
            sum += x.sum_dim_intlist(0, false, Kind::Double);
            sq += x.square().sum_dim_intlist(0, false, Kind::Double);
        }
        let count = (n * width / dim.max(1)).max(1) as f64;
        let mean = &sum / count;
        let var = (&sq / count - mean.square()).clamp_min(0.0);
        Ok(Normalisation {
            mean: mean.to_kind(Kind::Float),
            std: var.sqrt().clamp_min(MIN_STD).to_kind(Kind::Float),
        })
    }

    /// Values per row (tokens x D).
    pub fn width(&self) -> usize {
        match self {
            FeatureRows::Memory(t) => t.size()[1] as usize,
            FeatureRows::Stream(s) => s.source.width(),
        }
    }

    /// Normalise with `norm`: in place in memory, as each step is read when streamed.
    pub fn normalise(&mut self, norm: &Normalisation, dim: usize) -> Result<()> {
        match self {
            FeatureRows::Memory(t) => norm.apply(&mut t.view([-1, dim as i64])),
            FeatureRows::Stream(s) => {
                let d = norm.mean.size()[0] as usize;
                if d != dim {
                    bail!(
                        "the features have {dim} dims but the run was trained on {d}; use the \
                         same --features"
                    );
                }
                let host = |t: &Tensor| {
                    Vec::<f32>::try_from(t.to_device(Device::Cpu)).context("statistics")
                };
                s.norm = Some(Arc::new((host(&norm.mean)?, host(&norm.std)?)));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
impl FeatureRows {
    /// The source of streamed rows (tests).
    fn into_source(self) -> RowSource {
        match self {
            FeatureRows::Stream(s) => Arc::try_unwrap(s.source).expect("no reader thread"),
            FeatureRows::Memory(_) => panic!("rows in memory have no source"),
        }
    }
}

impl StreamedRows {
    /// The next prefetched step if it holds exactly `rows`; otherwise the prefetch is dropped.
    fn take_prefetched(&self, rows: &[usize]) -> Option<Result<Tensor>> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let next = ahead.as_ref()?.recv().ok();
        match next {
            Some((planned, read)) if planned == rows => Some(read),
            _ => {
                *ahead = None;
                None
            }
        }
    }
}

/// Split rows `rows` of `source` as a `[n, width]` CPU tensor, normalised by `norm` (mean and
/// std per dim) when given.
fn read_rows(
    source: &RowSource,
    norm: Option<&(Vec<f32>, Vec<f32>)>,
    rows: &[usize],
) -> Result<Tensor> {
    let width = source.width();
    let x = Tensor::empty(
        [rows.len() as i64, width as i64],
        (Kind::Float, Device::Cpu),
    );
    // SAFETY: `x` is a fresh, contiguous f32 CPU tensor of exactly rows x width values that
    // nothing else references until this function returns it; the slice ends before it does.
    let out =
        unsafe { std::slice::from_raw_parts_mut(x.data_ptr() as *mut f32, rows.len() * width) };
    source.read_into(rows, out)?;
    if let Some((mean, std)) = norm {
        let d = mean.len() as i64;
        let _ = x
            .view([-1, d])
            .f_sub_(&Tensor::from_slice(mean))?
            .f_div_(&Tensor::from_slice(std))?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_cache::write_set;
    use crate::data::{FrameMode, Split, SplitData, SplitLabels};
    use shared::cache::Dtype;
    use shared::FrameLabels;
    use std::path::Path;

    /// Set `a`: 3 tokens x 2 in f16, every frame (1..=9 of v1, 1..=5 of v2); set `b`: 3 tokens
    /// x 1 in f32, without frames 4 and 5 of v1 (frames 3 and 6 stand in).
    fn cache(root: &Path) {
        let a = |f: usize, t: usize, c: usize| (8 * f + 2 * t + c) as f32;
        let b = |f: usize, t: usize, _: usize| -((8 * f + t) as f32);
        write_set(
            root,
            "a",
            "v1",
            &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            &[3, 2],
            Dtype::F16,
            a,
        );
        write_set(root, "a", "v2", &[1, 2, 3, 4, 5], &[3, 2], Dtype::F16, a);
        write_set(
            root,
            "b",
            "v1",
            &[1, 2, 3, 6, 7, 8, 9],
            &[3, 1],
            Dtype::F32,
            b,
        );
        write_set(root, "b", "v2", &[1, 2, 3, 4, 5], &[3, 1], Dtype::F32, b);
    }

    fn load(root: &Path, store: FeatureStore) -> SplitData {
        let frames = |n: u32| (1..=n).map(|f| (f, FrameLabels::default())).collect();
        let labels = SplitLabels {
            split: Split::Train,
            source: "test".into(),
            videos: [
                ("v1".parse().unwrap(), frames(9)),
                ("v2".parse().unwrap(), frames(5)),
            ]
            .into_iter()
            .collect(),
        };
        let sets = ["a".to_string(), "b".to_string()];
        SplitData::load(
            root,
            &sets,
            &labels,
            FrameMode::Annotated,
            store,
            Device::Cpu,
        )
        .unwrap()
    }

    fn rows(index: &[usize]) -> Tensor {
        Tensor::from_slice(&index.iter().map(|&r| r as i64).collect::<Vec<_>>())
    }

    #[test]
    fn streamed_rows_are_the_in_memory_rows_whatever_the_order_repeats_or_prefetch() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path());
        let memory = load(dir.path(), FeatureStore::Memory);
        let stream = load(dir.path(), FeatureStore::Stream);
        assert!(stream.features.is_streamed() && !memory.features.is_streamed());
        assert_eq!(stream.n_rows(), 14);
        // v1 frame 4 (row 3): a's frame 4, then b's nearest frame 3, token by token.
        let row3 = memory.features.gather(&rows(&[3])).view([3, 3]);
        assert_eq!(
            Vec::<f32>::try_from(row3.get(1)).unwrap(),
            vec![34.0, 35.0, -25.0]
        );
        let steps = [
            vec![13, 0, 4, 4, 9, 8, 1, 0],
            vec![2, 3, 4],
            vec![5, 6],
            vec![7],
        ];
        for step in &steps {
            assert!(stream
                .features
                .gather(&rows(step))
                .equal(&memory.features.gather(&rows(step))));
        }
        // Runs cut at one row a read give the same rows.
        let one_row = RowSource {
            run_bytes: 1,
            ..load(dir.path(), FeatureStore::Stream)
                .features
                .into_source()
        };
        let mut got = vec![0f32; steps[0].len() * one_row.width()];
        one_row.read_into(&steps[0], &mut got).unwrap();
        let want = memory.features.gather(&rows(&steps[0])).flatten(0, -1);
        assert_eq!(got, Vec::<f32>::try_from(want).unwrap());
        // Prefetched: the announced steps, then one the plan did not announce (read on the spot).
        stream.features.prefetch(steps[..3].to_vec());
        for step in [&steps[0], &steps[1], &steps[3], &steps[2]] {
            assert!(stream
                .features
                .gather(&rows(step))
                .equal(&memory.features.gather(&rows(step))));
        }
    }

    #[test]
    fn the_normalisation_is_the_same_fitted_in_memory_or_streamed_and_applies_alike() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path());
        let mut memory = load(dir.path(), FeatureStore::Memory);
        let mut stream = load(dir.path(), FeatureStore::Stream);
        let (a, b) = (
            memory.fit_normalisation().unwrap(),
            stream.fit_normalisation().unwrap(),
        );
        assert!(a.mean.equal(&b.mean) && a.std.equal(&b.std));
        memory.normalise(&a).unwrap();
        stream.normalise(&a).unwrap();
        let all = rows(&(0..14).collect::<Vec<_>>());
        let x = memory.features.gather(&all);
        stream.features.prefetch(vec![(0..14).collect()]);
        assert!(stream.features.gather(&all).equal(&x));
        // Every dim over every token of every row: mean 0, population std 1.
        let tokens = x.view([-1, 3]);
        let mean = tokens
            .mean_dim(0, false, Kind::Float)
            .abs()
            .max()
            .double_value(&[]);
        let std = tokens.std_dim(0, false, false);
        assert!(mean < 1e-5, "{mean}");
        assert!((std - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn a_cache_file_rewritten_during_a_run_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        cache(dir.path());
        let stream = load(dir.path(), FeatureStore::Stream);
        let b = |f: usize, t: usize, _: usize| (f + t) as f32;
        write_set(dir.path(), "b", "v2", &[1, 2, 3, 4], &[3, 1], Dtype::F32, b);
        let source = stream.features.source().unwrap();
        let mut out = vec![0f32; source.width()];
        let err = source.read_into(&[10], &mut out).unwrap_err().to_string();
        assert!(err.contains("b/v2.h5") && err.contains("changed"), "{err}");
        // The other video's files are untouched and still read.
        source.read_into(&[2], &mut out).unwrap();
    }

    #[test]
    fn auto_streams_only_a_split_larger_than_half_the_available_memory() {
        assert_eq!(FeatureStore::Auto.resolve(1), FeatureStore::Memory);
        if available_memory().is_some() {
            assert_eq!(FeatureStore::Auto.resolve(u64::MAX), FeatureStore::Stream);
        }
        assert_eq!(FeatureStore::Memory.resolve(u64::MAX), FeatureStore::Memory);
        assert_eq!(FeatureStore::Stream.resolve(1), FeatureStore::Stream);
    }
}
