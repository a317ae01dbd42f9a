//! Feature sets joined by frame number into the rows of one split.
//!
//! Per video, the sequence is the frames to score (`--frames annotated`, the reference system)
//! or every frame with features in any set (`--frames all`; frames without a label carry no
//! loss). A frame missing in one set takes that set's nearest frame (the earlier one on a tie);
//! a frame missing in every set is left out of the sequence (its prediction is later taken from
//! the nearest frame that has one). Columns are the sets in the order given.
//!
//! Token features (a backbone's spatial map, `/features` of shape (n, tokens, d)) join the same
//! way when every set has the same number of tokens: token t of a row is the sets' token t side
//! by side, and a row of the split tensor is its tokens one after the other (`[tokens * D]`).
//! Sets with and without tokens do not mix.

use super::labels::SplitLabels;
use super::normalise::Normalisation;
use super::rows::{FeatureRows, FeatureStore, RowSource, SourceFile};
use anyhow::{bail, Result};
use shared::cache;
use shared::tasks::{INVALID_AU, INVALID_EXPR, INVALID_VA};
use shared::{FrameLabels, VideoId, N_AU};
use std::collections::BTreeSet;
use std::path::Path;
use tch::{Device, Tensor};

/// Which frames make a video's sequence.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum FrameMode {
    /// The frames to score (annotated frames, or the test list's).
    Annotated,
    /// Every frame with features; frames without labels carry no loss.
    All,
}

/// One video's rows in the split tensors.
#[derive(Debug, Clone)]
pub struct VideoSpan {
    /// The video.
    pub video: VideoId,
    /// First row in the split tensors.
    pub start: usize,
    /// Frame number of each row, increasing.
    pub frames: Vec<u32>,
    /// The frames to score with their labels (may include frames not in `frames`).
    pub scored: Vec<(u32, FrameLabels)>,
}

impl VideoSpan {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the video has no row.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A whole split: features [N, tokens * D] (in memory or read from the cache step by step, see
/// [`super::rows`]) and labels with their invalid markers (VA -5, expression -1, AU -1), rows
/// grouped by video.
#[derive(Debug)]
pub struct SplitData {
    /// Features [N, tokens * D] float32, gathered to the training device.
    pub features: FeatureRows,
    /// Tokens per frame (1 for one vector per frame).
    pub tokens: usize,
    /// Valence and arousal [N, 2], -5 where invalid.
    pub va: Tensor,
    /// Expression class [N] int64, -1 where invalid.
    pub expr: Tensor,
    /// AUs [N, 12] float32, -1 where invalid.
    pub au: Tensor,
    /// Labels of each row, on the host (for metrics).
    pub labels: Vec<FrameLabels>,
    /// The videos, in id order.
    pub videos: Vec<VideoSpan>,
    /// Feature sets and their dims, in column order.
    pub set_dims: Vec<(String, usize)>,
}

impl SplitData {
    /// Number of rows (frames) in the split.
    pub fn n_rows(&self) -> usize {
        self.labels.len()
    }

    /// Feature dimension per token (sum of the sets' dims).
    pub fn dim(&self) -> usize {
        self.set_dims.iter().map(|(_, d)| d).sum()
    }

    /// The per-dimension statistics of this split's features (see
    /// [`FeatureRows::fit_normalisation`]).
    pub fn fit_normalisation(&self) -> Result<Normalisation> {
        self.features.fit_normalisation(self.dim())
    }

    /// Normalise the features with `norm` (in place in memory, as read when streamed).
    pub fn normalise(&mut self, norm: &Normalisation) -> Result<()> {
        let dim = self.dim();
        self.features.normalise(norm, dim)
    }

    /// Read and join the feature sets of every video of `labels`, keeping the rows as `store`
    /// says (resolved against the split's size; see [`FeatureStore`]). Only the frame numbers
    /// are read here when streaming.
    pub fn load(
        cache_root: &Path,
        sets: &[String],
        labels: &SplitLabels,
        mode: FrameMode,
        store: FeatureStore,
        device: Device,
    ) -> Result<SplitData> {
        if sets.is_empty() {
            bail!("no feature set chosen (--features NAME,...)");
        }
        // Pass 1: open every video's sets (frame numbers and shapes) and decide its rows.
        let mut per_video = Vec::with_capacity(labels.videos.len());
        let mut set_dims: Vec<(String, usize)> = sets.iter().map(|s| (s.clone(), 0)).collect();
        let mut tokens: Option<(usize, String)> = None;
        for (video, scored) in &labels.videos {
            let mut files = Vec::with_capacity(sets.len());
            for (k, set) in sets.iter().enumerate() {
                let path = cache::video_path(cache_root, set, video);
                if !path.exists() {
                    bail!(
                        "feature set {set:?} has no features for video {video} of {} (expected {}); \
                         run `extractor extract --backbone {set}` (or check --cache and --features)",
                        labels.source.display(),
                        path.display()
                    );
                }
                let file = cache::RowFile::open(&path)?;
                let (t, d) = (file.tokens(), file.dim());
                match &tokens {
                    None => tokens = Some((t, set.clone())),
                    Some((t0, first)) if *t0 != t => bail!(
                        "{}: {} per frame, but set {first:?} has {}; sets joined by frame \
                         need the same tokens (pooled sets and spatial maps do not mix: \
                         choose --features of one kind)",
                        path.display(),
                        token_words(t),
                        token_words(*t0)
                    ),
                    Some(_) => {}
                }
                if set_dims[k].1 == 0 {
                    set_dims[k].1 = d;
                } else if set_dims[k].1 != d {
                    bail!(
                        "{}: {d} dims but other videos of set {set:?} have {}; re-extract the set",
                        path.display(),
                        set_dims[k].1
                    );
                }
                files.push(SourceFile::of(&file)); // and the file closes
            }
            let rows = sequence(&files, scored, mode);
            if rows.is_empty() {
                bail!(
                    "video {video}: none of its frames to score has features in any of the sets {}; \
                     check that the cache holds this video's frames",
                    sets.join(", ")
                );
            }
            per_video.push((video.clone(), scored.clone(), files, rows));
        }
        let n_tokens = tokens.map_or(1, |(t, _)| t);

        // Pass 2: where each row lives in each set's file (the nearest frame), and its labels.
        let mut source = RowSource::new(set_dims.iter().map(|(_, d)| *d).collect(), n_tokens);
        let mut labels_out = Vec::new();
        let mut videos = Vec::with_capacity(per_video.len());
        let mut start = 0usize;
        for (video, scored, files, rows) in per_video {
            let located: Vec<Vec<usize>> = rows
                .iter()
                .map(|&frame| {
                    files
                        .iter()
                        .map(|f| nearest(f.frames(), frame as i32))
                        .collect()
                })
                .collect();
            source.push_video(files, &located);
            let lookup: std::collections::HashMap<u32, FrameLabels> =
                scored.iter().copied().collect();
            labels_out.extend(
                rows.iter()
                    .map(|f| lookup.get(f).copied().unwrap_or_default()),
            );
            let len = rows.len();
            videos.push(VideoSpan {
                video,
                start,
                frames: rows,
                scored,
            });
            start += len;
        }
        let bytes = (source.n_rows() * source.width() * 4) as u64;
        let store = store.resolve(bytes);
        tracing::info!(
            "{} split: {} frames x {} values ({} as f32) {}",
            labels.split.name(),
            source.n_rows(),
            source.width(),
            if bytes < 1_000_000_000 {
                format!("{:.1} MB", bytes as f64 / 1e6)
            } else {
                format!("{:.2} GB", bytes as f64 / 1e9)
            },
            match store {
                FeatureStore::Stream => "read from the cache step by step",
                _ => "loaded into memory",
            }
        );
        let features = FeatureRows::new(source, store, device)?;
        let (va, expr, au) = label_tensors(&labels_out, device);
        Ok(SplitData {
            features,
            tokens: n_tokens,
            va,
            expr,
            au,
            labels: labels_out,
            videos,
            set_dims,
        })
    }
}

/// "1 token" / "49 tokens".
fn token_words(t: usize) -> String {
    if t == 1 {
        "one vector (no tokens)".to_string()
    } else {
        format!("{t} tokens")
    }
}

/// The rows of a video: frames to score present in at least one set, or every frame with features.
fn sequence(loaded: &[SourceFile], scored: &[(u32, FrameLabels)], mode: FrameMode) -> Vec<u32> {
    let present: BTreeSet<u32> = loaded
        .iter()
        .flat_map(|v| v.frames().iter().map(|&f| f as u32))
        .collect();
    match mode {
        FrameMode::All => present.into_iter().collect(),
        FrameMode::Annotated => scored
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| present.contains(f))
            .collect(),
    }
}

/// Index of the entry of `sorted` nearest to `frame` (the earlier on a tie). `sorted` is not empty.
pub fn nearest(sorted: &[i32], frame: i32) -> usize {
    match sorted.binary_search(&frame) {
        Ok(i) => i,
        Err(0) => 0,
        Err(i) if i == sorted.len() => i - 1,
        Err(i) => {
            if frame - sorted[i - 1] <= sorted[i] - frame {
                i - 1
            } else {
                i
            }
        }
    }
}

/// Label tensors with the ABAW invalid markers where a label is `None`.
pub fn label_tensors(labels: &[FrameLabels], device: Device) -> (Tensor, Tensor, Tensor) {
    let n = labels.len() as i64;
    let mut va = Vec::with_capacity(labels.len() * 2);
    let mut expr = Vec::with_capacity(labels.len());
    let mut au = Vec::with_capacity(labels.len() * N_AU);
    for l in labels {
        va.push(l.valence.unwrap_or(INVALID_VA));
        va.push(l.arousal.unwrap_or(INVALID_VA));
        expr.push(l.expression.map_or(INVALID_EXPR as i64, i64::from));
        match l.aus {
            Some(a) => au.extend(a.iter().map(|&x| if x { 1f32 } else { 0f32 })),
            None => au.extend([INVALID_AU as f32; N_AU]),
        }
    }
    (
        Tensor::from_slice(&va).view([n, 2]).to(device),
        Tensor::from_slice(&expr).to(device),
        Tensor::from_slice(&au).view([n, N_AU as i64]).to(device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_cache::write_set;

    #[test]
    fn nearest_prefers_exact_then_earlier_on_tie() {
        let f = [2, 4, 10];
        assert_eq!(nearest(&f, 4), 1);
        assert_eq!(nearest(&f, 1), 0);
        assert_eq!(nearest(&f, 3), 0); // tie 2 vs 4 -> earlier
        assert_eq!(nearest(&f, 8), 2);
        assert_eq!(nearest(&f, 99), 2);
    }

    #[test]
    fn invalid_labels_become_markers() {
        let mut l = FrameLabels {
            valence: Some(0.5),
            ..Default::default()
        };
        l.aus = Some([true; N_AU]);
        let (va, expr, au) = label_tensors(&[l, FrameLabels::default()], Device::Cpu);
        assert_eq!(
            Vec::<f32>::try_from(va.flatten(0, -1)).unwrap(),
            vec![0.5, -5.0, -5.0, -5.0]
        );
        assert_eq!(Vec::<i64>::try_from(expr).unwrap(), vec![-1, -1]);
        assert_eq!(au.sum(tch::Kind::Float).double_value(&[]), 12.0 - 12.0);
    }

    fn labels(n: u32) -> SplitLabels {
        let frames = (1..=n).map(|f| (f, FrameLabels::default())).collect();
        SplitLabels {
            split: super::super::Split::Train,
            source: "test".into(),
            videos: [("v1".parse().unwrap(), frames)].into_iter().collect(),
        }
    }

    #[test]
    fn token_sets_join_token_by_token_and_do_not_mix_with_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write_set = |set: &str, n: i32, shape: &[usize], f: fn(usize, usize, usize) -> f32| {
            write_set(
                root,
                set,
                "v1",
                &(1..=n).collect::<Vec<_>>(),
                shape,
                cache::Dtype::F32,
                f,
            )
        };
        write_set("a", 3, &[4, 2], |f, t, c| (100 * f + 10 * t + c) as f32);
        write_set("b", 3, &[4, 1], |f, t, _| -((100 * f + 10 * t) as f32));
        write_set("pooled", 3, &[5], |f, _, c| (f + c) as f32);
        let sets = ["a".to_string(), "b".to_string()];
        for store in [FeatureStore::Memory, FeatureStore::Stream] {
            let d = SplitData::load(
                root,
                &sets,
                &labels(3),
                FrameMode::Annotated,
                store,
                Device::Cpu,
            )
            .unwrap();
            assert_eq!((d.tokens, d.dim()), (4, 3));
            assert_eq!(d.features.is_streamed(), store == FeatureStore::Stream);
            let rows = d.features.gather(&Tensor::from_slice(&[1i64, 1, 0]));
            assert_eq!(rows.size(), [3, 12]);
            // frame 2, token 3: a's two channels then b's one
            let tok = rows.get(0).view([4, 3]).get(3);
            assert_eq!(
                Vec::<f32>::try_from(tok).unwrap(),
                vec![230.0, 231.0, -230.0]
            );
            assert!(rows.get(0).equal(&rows.get(1)));
        }
        let mixed = ["a".to_string(), "pooled".to_string()];
        let err = SplitData::load(
            root,
            &mixed,
            &labels(3),
            FrameMode::Annotated,
            FeatureStore::Auto,
            Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("pooled/v1.h5"), "names the file: {err}");
        assert!(
            err.contains("4 tokens") && err.contains("do not mix"),
            "{err}"
        );
    }
}
