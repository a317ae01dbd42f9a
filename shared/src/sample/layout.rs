//! The data-set plan: which videos exist, how long they are, which split they belong to, and the
//! faults of a real data set (unannotated stretches, frames without image, invalid labels).
//!
//! What it does: from a [`SampleConfig`] decide, deterministically, per video:
//! - its id (`synth-001`, ...), its split (about 2/3 train, 1/6 validation, 1/6 test, at least one
//!   each; videos are assigned in order: train first, then validation, then test) and its length
//!   (0.6x to 1.4x `--frames`, or exactly `--frames` with `--equal-lengths`);
//! - which frames are annotated (about 80%, in contiguous blocks; every frame of a test video);
//! - which frames have no image (about 2%, in short bursts: "no face found"; still annotated);
//! - per task, which annotated frames carry an invalid label (-5 / -1) in blocks (about 8%), and
//!   one train video (when there are at least two) whose labels of one task are all invalid.
//!
//! Test videos have neither invalid blocks nor unannotated frames: their truth is complete.
//!
//! What it does not: simulate the faces ([`super::latent`]) or write anything.

use super::latent::{video_rng, FrameState, Stream};
use super::SampleConfig;
use crate::tasks::{FrameLabels, Task};
use crate::video_id::VideoId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Which part of the data set a video belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SampleSplit {
    /// Training videos: `training_set_annotations.txt` and the per-task `Train_Set` folders.
    Train,
    /// Validation videos: `validation_set_annotations.txt` and the `Validation_Set` folders.
    Validation,
    /// Held-out videos: `test_set_list.txt` (and their truth in `test_set_annotations.txt`).
    Test,
}

impl SampleSplit {
    /// The name used in README.txt and summaries.
    pub fn name(self) -> &'static str {
        match self {
            SampleSplit::Train => "train",
            SampleSplit::Validation => "validation",
            SampleSplit::Test => "test",
        }
    }
}

/// Everything decided about one video before anything is simulated or drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPlan {
    /// 0-based index: the seed of the video's random streams.
    pub index: usize,
    /// The video id, `synth-001` for index 0.
    pub id: VideoId,
    /// The split.
    pub split: SampleSplit,
    /// Number of frames (frame numbers 1..=n_frames).
    pub n_frames: usize,
    /// Per frame (index t = frame t+1): annotated (appears in the MTL annotation file).
    pub annotated: Vec<bool>,
    /// Per frame: an image is written (false: "no face found", no file).
    pub has_image: Vec<bool>,
    /// Per task in [`Task::ALL`] order, per frame: the label is written as invalid.
    pub invalid: [Vec<bool>; 3],
    /// The task whose labels are invalid in the whole video, if any.
    pub task_all_invalid: Option<Task>,
}

impl VideoPlan {
    /// The labels of frame `state` as the annotation files give them: the true labels with the
    /// tasks invalid at this frame set to `None`, and nothing at all if it is not annotated.
    pub fn labels(&self, state: &FrameState) -> FrameLabels {
        let t = state.frame as usize - 1;
        if !self.annotated[t] {
            return FrameLabels::default();
        }
        let mut labels = state.labels();
        if self.invalid[0][t] {
            labels.valence = None;
            labels.arousal = None;
        }
        if self.invalid[1][t] {
            labels.expression = None;
        }
        if self.invalid[2][t] {
            labels.aus = None;
        }
        labels
    }

    /// Number of frames with an image.
    pub fn images(&self) -> usize {
        self.has_image.iter().filter(|&&b| b).count()
    }

    /// Number of annotated frames.
    pub fn annotated_frames(&self) -> usize {
        self.annotated.iter().filter(|&&b| b).count()
    }

    /// Number of annotated frames whose label of `task` is invalid.
    pub fn invalid_frames(&self, task: Task) -> usize {
        let k = task_index(task);
        self.invalid[k]
            .iter()
            .zip(&self.annotated)
            .filter(|(&i, &a)| i && a)
            .count()
    }
}

fn task_index(task: Task) -> usize {
    match task {
        Task::Va => 0,
        Task::Expr => 1,
        Task::Au => 2,
    }
}

/// The id of video `index` (0-based): `synth-001`, `synth-002`, ...
pub fn video_id(index: usize) -> VideoId {
    VideoId::new(format!("synth-{:03}", index + 1)).expect("synth-NNN is a valid video id")
}

/// Numbers of (train, validation, test) videos among `videos` (at least 3): validation and test
/// each get a sixth (rounded, at least one), train the rest.
pub fn split_counts(videos: usize) -> (usize, usize, usize) {
    let sixth = ((videos as f64 / 6.0).round() as usize).max(1);
    (videos - 2 * sixth, sixth, sixth)
}

/// The plan of every video of the data set `cfg` describes (`cfg.videos` must be at least 3
/// and `cfg.frames` at least 1; [`super::generate`] checks this first).
pub fn plan_videos(cfg: &SampleConfig) -> Vec<VideoPlan> {
    let (n_train, n_val, _) = split_counts(cfg.videos);
    let mut plans: Vec<VideoPlan> = (0..cfg.videos)
        .map(|index| {
            let split = if index < n_train {
                SampleSplit::Train
            } else if index < n_train + n_val {
                SampleSplit::Validation
            } else {
                SampleSplit::Test
            };
            plan_video(cfg, index, split)
        })
        .collect();
    // One train video loses one task entirely (as some Aff-Wild2 videos have no AU labels).
    if n_train >= 2 {
        let mut rng = video_rng(cfg.seed, u64::MAX, Stream::Layout);
        let video = rng.gen_range(0..n_train);
        let task = Task::ALL[rng.gen_range(0..Task::ALL.len())];
        let plan = &mut plans[video];
        plan.invalid[task_index(task)].fill(true);
        plan.task_all_invalid = Some(task);
    }
    plans
}

fn plan_video(cfg: &SampleConfig, index: usize, split: SampleSplit) -> VideoPlan {
    let mut rng = video_rng(cfg.seed, index as u64, Stream::Layout);
    let factor = rng.gen_range(0.6f64..1.4);
    let n = if cfg.equal_lengths {
        cfg.frames
    } else {
        ((cfg.frames as f64 * factor).round() as usize).max(1)
    };
    let has_image = missing_image_mask(&mut rng, n);
    let (annotated, invalid) = if split == SampleSplit::Test {
        (
            vec![true; n],
            [vec![false; n], vec![false; n], vec![false; n]],
        )
    } else {
        let annotated = annotated_blocks(&mut rng, n);
        let invalid = [
            invalid_blocks(&mut rng, n),
            invalid_blocks(&mut rng, n),
            invalid_blocks(&mut rng, n),
        ];
        (annotated, invalid)
    };
    VideoPlan {
        index,
        id: video_id(index),
        split,
        n_frames: n,
        annotated,
        has_image,
        invalid,
        task_all_invalid: None,
    }
}

/// About 80% of the frames annotated, alternating annotated blocks and shorter gaps whose
/// lengths scale with the video; at least one frame is annotated.
fn annotated_blocks(rng: &mut ChaCha8Rng, n: usize) -> Vec<bool> {
    let block_max = (n / 4).max(8);
    let block_min = block_max / 3 + 1;
    let gap_max = (block_max / 4).max(2);
    let gap_min = (gap_max / 3).max(1);
    let mut mask = vec![false; n];
    let mut t = 0;
    let mut annotated = rng.gen_bool(0.7);
    while t < n {
        let len = if annotated {
            rng.gen_range(block_min..=block_max)
        } else {
            rng.gen_range(gap_min..=gap_max)
        };
        let end = (t + len).min(n);
        mask[t..end].fill(annotated);
        t = end;
        annotated = !annotated;
    }
    if !mask.contains(&true) {
        mask.fill(true);
    }
    mask
}

/// About 2% of the frames without image, in bursts of 1 to 5 frames; at least one frame keeps
/// its image.
fn missing_image_mask(rng: &mut ChaCha8Rng, n: usize) -> Vec<bool> {
    let mut has = vec![true; n];
    let mut t = 0;
    while t < n {
        if rng.gen_bool(0.02 / 3.0) {
            let len = rng.gen_range(1..=5);
            let end = (t + len).min(n);
            has[t..end].fill(false);
            t = end;
        } else {
            t += 1;
        }
    }
    if !has.contains(&true) {
        has[0] = true;
    }
    has
}

/// About 8% of the frames with an invalid label of one task, in blocks of 1/30 to 1/8 of the
/// video.
fn invalid_blocks(rng: &mut ChaCha8Rng, n: usize) -> Vec<bool> {
    let len_min = (n / 30).max(3);
    let len_max = (n / 8).max(len_min);
    let mean = (len_min + len_max) as f64 / 2.0;
    let rate = (0.08 / mean).min(1.0);
    let mut mask = vec![false; n];
    let mut t = 0;
    while t < n {
        if rng.gen_bool(rate) {
            let end = (t + rng.gen_range(len_min..=len_max)).min(n);
            mask[t..end].fill(true);
            t = end;
        } else {
            t += 1;
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(videos: usize, frames: usize) -> SampleConfig {
        SampleConfig {
            videos,
            frames,
            ..SampleConfig::default()
        }
    }

    #[test]
    fn splits_are_two_thirds_a_sixth_and_a_sixth_with_at_least_one_each() {
        assert_eq!(split_counts(12), (8, 2, 2));
        assert_eq!(split_counts(3), (1, 1, 1));
        assert_eq!(split_counts(64), (42, 11, 11));
        let plans = plan_videos(&config(12, 100));
        let ids: Vec<&str> = plans.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids[0], "synth-001");
        assert_eq!(ids[11], "synth-012");
        assert_eq!(plans[8].split, SampleSplit::Validation);
        assert_eq!(plans[11].split, SampleSplit::Test);
    }

    #[test]
    fn lengths_vary_unless_equal_lengths() {
        let plans = plan_videos(&config(12, 600));
        let lengths: Vec<usize> = plans.iter().map(|p| p.n_frames).collect();
        assert!(
            lengths.iter().all(|&n| (360..=840).contains(&n)),
            "{lengths:?}"
        );
        assert!(lengths.iter().any(|&n| n != lengths[0]), "{lengths:?}");
        let equal = plan_videos(&SampleConfig {
            equal_lengths: true,
            ..config(5, 321)
        });
        assert!(equal.iter().all(|p| p.n_frames == 321));
    }

    #[test]
    fn faults_have_the_documented_rates() {
        let plans = plan_videos(&config(24, 1000));
        let frames: usize = plans.iter().map(|p| p.n_frames).sum();
        let missing: usize = plans.iter().map(|p| p.n_frames - p.images()).sum();
        let missing_rate = missing as f64 / frames as f64;
        assert!((0.01..0.035).contains(&missing_rate), "{missing_rate}");
        let labelled: Vec<&VideoPlan> = plans
            .iter()
            .filter(|p| p.split != SampleSplit::Test && p.task_all_invalid.is_none())
            .collect();
        let n: usize = labelled.iter().map(|p| p.n_frames).sum();
        let annotated: usize = labelled.iter().map(|p| p.annotated_frames()).sum();
        let rate = annotated as f64 / n as f64;
        assert!((0.7..0.9).contains(&rate), "annotated {rate}");
        for task in Task::ALL {
            let invalid: usize = labelled.iter().map(|p| p.invalid_frames(task)).sum();
            let rate = invalid as f64 / annotated as f64;
            assert!((0.02..0.2).contains(&rate), "{task} invalid {rate}");
        }
        let whole: Vec<&VideoPlan> = plans
            .iter()
            .filter(|p| p.task_all_invalid.is_some())
            .collect();
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].split, SampleSplit::Train);
        let task = whole[0].task_all_invalid.unwrap();
        assert_eq!(whole[0].invalid_frames(task), whole[0].annotated_frames());
        for p in plans.iter().filter(|p| p.split == SampleSplit::Test) {
            assert_eq!(p.annotated_frames(), p.n_frames);
            assert!(Task::ALL.iter().all(|&t| p.invalid_frames(t) == 0));
        }
    }
}
