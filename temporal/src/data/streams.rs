//! Segments of l frames dealt over B parallel streams, as the reference `StreamBatcher`.
//!
//! Videos (optionally shuffled by a seed) go one by one to the stream with the fewest frames so
//! far (the lowest index on a tie); each stream is the concatenation of its videos' segments
//! (no overlap; the last segment of a video may be shorter). Step t takes the t-th segment of
//! every stream; a stream that has run out contributes an all-padding segment. `reset[b]` is
//! true where stream b starts a new video (or has run out): its carried state must be zeroed.
//!
//! Frame-level models (no encoder) train on shuffled frames instead: [`StreamPlan::shuffled_frames`]
//! is the same plan with segments of one frame, every frame of the split dealt in a seeded
//! random order over `batch` streams, so step t is a batch of `batch` random frames;
//! [`StreamPlan::frame_batches`] does the same for a chosen list of rows (a resampled epoch,
//! [`super::resample`]).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Tensor};

/// One segment: `len` rows of the split tensors from row `row`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the video in the split.
    pub video: usize,
    /// First row in the split tensors.
    pub row: usize,
    /// Offset of the segment inside its video.
    pub offset: usize,
    /// Number of rows.
    pub len: usize,
}

/// The plan of one pass over a split.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// The segments of each stream, in order.
    pub streams: Vec<Vec<Segment>>,
    /// Segment length l.
    pub seg_len: usize,
}

/// Index tensors of one step.
#[derive(Debug)]
pub struct Step {
    /// Row of the split for each position [B, L] (0 at padding).
    pub index: Tensor,
    /// True at real frames [B, L].
    pub valid: Tensor,
    /// True where the stream starts a new video or has run out [B].
    pub reset: Tensor,
    /// The segment of each stream, `None` where it has run out.
    pub segments: Vec<Option<Segment>>,
}

impl StreamPlan {
    /// Deal the videos (`(first row, rows)` each) over `n_streams` streams.
    pub fn new(
        videos: &[(usize, usize)],
        n_streams: usize,
        seg_len: usize,
        shuffle_seed: Option<u64>,
    ) -> StreamPlan {
        assert!(
            n_streams > 0 && seg_len > 0,
            "streams and segment length must be positive"
        );
        let mut order: Vec<usize> = (0..videos.len()).collect();
        if let Some(seed) = shuffle_seed {
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        }
        let mut load = vec![0usize; n_streams];
        let mut streams = vec![Vec::new(); n_streams];
        for v in order {
            let (row, len) = videos[v];
            if len == 0 {
                continue;
            }
            let s = (0..n_streams)
                .min_by_key(|&i| (load[i], i))
                .expect("n_streams > 0");
            for offset in (0..len).step_by(seg_len) {
                streams[s].push(Segment {
                    video: v,
                    row: row + offset,
                    offset,
                    len: seg_len.min(len - offset),
                });
            }
            load[s] += len;
        }
        StreamPlan { streams, seg_len }
    }

    /// Every row of the videos (`(first row, rows)` each) once, in an order shuffled by `seed`,
    /// as one-frame segments over `batch` streams: each step is a batch of up to `batch` random
    /// frames (the last one smaller, padded).
    pub fn shuffled_frames(videos: &[(usize, usize)], batch: usize, seed: u64) -> StreamPlan {
        let n: usize = videos.iter().map(|&(_, len)| len).sum();
        StreamPlan::frame_batches(videos, &(0..n).collect::<Vec<_>>(), batch, Some(seed))
    }

    /// The given rows of the videos (`(first row, rows)` each; rows are numbered over all the
    /// videos' rows in order, and may repeat), shuffled by `seed` (`None`: in the given order)
    /// and dealt as one-frame segments over `batch` streams, as [`StreamPlan::shuffled_frames`]:
    /// step t holds the rows `t * batch ..` of that order.
    pub fn frame_batches(
        videos: &[(usize, usize)],
        rows: &[usize],
        batch: usize,
        seed: Option<u64>,
    ) -> StreamPlan {
        assert!(batch > 0, "the batch size must be positive");
        let all: Vec<Segment> = videos
            .iter()
            .enumerate()
            .flat_map(|(v, &(row, len))| {
                (0..len).map(move |offset| Segment {
                    video: v,
                    row: row + offset,
                    offset,
                    len: 1,
                })
            })
            .collect();
        let mut frames: Vec<Segment> = rows.iter().map(|&r| all[r]).collect();
        if let Some(seed) = seed {
            frames.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        }
        let n_steps = frames.len().div_ceil(batch);
        let mut streams = vec![Vec::with_capacity(n_steps); batch];
        for (i, f) in frames.into_iter().enumerate() {
            streams[i % batch].push(f);
        }
        StreamPlan {
            streams,
            seg_len: 1,
        }
    }

    /// Every row of the videos (`(first row, rows)` each) in row order, `batch` per step: stream
    /// `s` holds rows `s, s + batch, ...` as one-frame segments, so step `t` is rows
    /// `t * batch ..` (the last step padded). How a frame-level model is scored.
    pub fn in_order_frames(videos: &[(usize, usize)], batch: usize) -> StreamPlan {
        let n: usize = videos.iter().map(|&(_, len)| len).sum();
        StreamPlan::frame_batches(videos, &(0..n).collect::<Vec<_>>(), batch, None)
    }

    /// Number of steps (the longest stream's segment count).
    pub fn n_steps(&self) -> usize {
        self.streams.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Number of real frames over all steps.
    pub fn n_frames(&self) -> usize {
        self.streams.iter().flatten().map(|s| s.len).sum()
    }

    /// Number of streams B.
    pub fn n_streams(&self) -> usize {
        self.streams.len()
    }

    /// The split row of each position of step `t`, `B x L` in order (0 at padding): the
    /// rows [`StreamPlan::step`]'s index holds, on the host.
    pub fn step_rows(&self, t: usize) -> Vec<usize> {
        let l = self.seg_len;
        let mut rows = vec![0; self.n_streams() * l];
        for (s, stream) in self.streams.iter().enumerate() {
            if let Some(seg) = stream.get(t) {
                for i in 0..seg.len {
                    rows[s * l + i] = seg.row + i;
                }
            }
        }
        rows
    }

    /// The rows of every step, in order (see [`StreamPlan::step_rows`]).
    pub fn all_step_rows(&self) -> Vec<Vec<usize>> {
        (0..self.n_steps()).map(|t| self.step_rows(t)).collect()
    }

    /// The index tensors of step `t`, on `device`.
    pub fn step(&self, t: usize, device: Device) -> Step {
        let (b, l) = (self.n_streams(), self.seg_len);
        let mut index = vec![0i64; b * l];
        let mut valid = vec![false; b * l];
        let mut reset = vec![true; b];
        let mut segments = Vec::with_capacity(b);
        for (s, stream) in self.streams.iter().enumerate() {
            let seg = stream.get(t).copied();
            if let Some(seg) = seg {
                for i in 0..seg.len {
                    index[s * l + i] = (seg.row + i) as i64;
                    valid[s * l + i] = true;
                }
                reset[s] = seg.offset == 0;
            }
            segments.push(seg);
        }
        Step {
            index: Tensor::from_slice(&index)
                .view([b as i64, l as i64])
                .to(device),
            valid: Tensor::from_slice(&valid)
                .view([b as i64, l as i64])
                .to(device),
            reset: Tensor::from_slice(&reset).to(device),
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deals_videos_greedily_and_cuts_segments() {
        // videos of 5, 3 and 4 rows; two streams of l=2
        let plan = StreamPlan::new(&[(0, 5), (5, 3), (8, 4)], 2, 2, None);
        // video 0 -> stream 0 (load 5), video 1 -> stream 1 (3), video 2 -> stream 1 (3 < 5)
        let lens: Vec<Vec<(usize, usize, usize)>> = plan
            .streams
            .iter()
            .map(|s| s.iter().map(|g| (g.video, g.offset, g.len)).collect())
            .collect();
        assert_eq!(lens[0], vec![(0, 0, 2), (0, 2, 2), (0, 4, 1)]);
        assert_eq!(lens[1], vec![(1, 0, 2), (1, 2, 1), (2, 0, 2), (2, 2, 2)]);
        assert_eq!(plan.n_steps(), 4);
        let s = plan.step(2, Device::Cpu);
        // stream 0: last segment of video 0, 1 row (row 4) + padding; stream 1: video 2 starts
        assert_eq!(
            Vec::<i64>::try_from(s.index.flatten(0, -1)).unwrap(),
            vec![4, 0, 8, 9]
        );
        assert_eq!(plan.step_rows(2), vec![4, 0, 8, 9]);
        assert_eq!(
            Vec::<bool>::try_from(s.valid.flatten(0, -1)).unwrap(),
            vec![true, false, true, true]
        );
        assert_eq!(Vec::<bool>::try_from(&s.reset).unwrap(), vec![false, true]);
        // step 3: stream 0 has run out -> all padding, reset
        let s = plan.step(3, Device::Cpu);
        assert_eq!(Vec::<bool>::try_from(&s.reset).unwrap(), vec![true, false]);
        assert!(s.segments[0].is_none());
    }

    #[test]
    fn shuffled_frames_visit_every_row_once_in_batches() {
        let plan = StreamPlan::shuffled_frames(&[(0, 5), (5, 3), (8, 4)], 5, 3);
        assert_eq!(plan.n_steps(), 3);
        let mut seen = Vec::new();
        for t in 0..plan.n_steps() {
            let s = plan.step(t, Device::Cpu);
            assert_eq!(s.index.size(), [5, 1]);
            let idx = Vec::<i64>::try_from(s.index.flatten(0, -1)).unwrap();
            let host: Vec<i64> = plan.step_rows(t).into_iter().map(|r| r as i64).collect();
            assert_eq!(
                host, idx,
                "the host rows a reader prefetches are the step's index"
            );
            let valid = Vec::<bool>::try_from(s.valid.flatten(0, -1)).unwrap();
            seen.extend(idx.iter().zip(&valid).filter(|(_, v)| **v).map(|(i, _)| *i));
        }
        let in_order: Vec<i64> = (0..12).collect();
        assert_ne!(seen, in_order, "the frames are shuffled");
        seen.sort();
        assert_eq!(seen, in_order);
        let again = StreamPlan::shuffled_frames(&[(0, 5), (5, 3), (8, 4)], 5, 3);
        assert_eq!(again.streams, plan.streams);
    }

    #[test]
    fn shuffle_is_seeded() {
        let videos: Vec<(usize, usize)> = (0..10).map(|i| (i * 7, 7)).collect();
        let a = StreamPlan::new(&videos, 3, 4, Some(1));
        let b = StreamPlan::new(&videos, 3, 4, Some(1));
        let c = StreamPlan::new(&videos, 3, 4, Some(2));
        assert_eq!(a.streams, b.streams);
        assert_ne!(a.streams, c.streams);
    }
}
