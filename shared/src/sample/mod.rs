//! A synthetic Aff-Wild2: procedurally drawn faces that carry their labels, in the ABAW layout.
//!
//! Aff-Wild2 is licensed and cannot ship, so every stage is exercised on data made here, in the
//! exact layout of DESIGN.md ([`generate`] writes it; `extractor sample-data` is the command):
//! ```text
//! <out>/cropped_aligned/<video>/00001.jpg ...   frames ("no face" frames have no file)
//! <out>/training_set_annotations.txt            MTL format, train videos, annotated frames
//! <out>/validation_set_annotations.txt          MTL format, validation videos
//! <out>/test_set_list.txt                       every frame of the held-out videos
//! <out>/test_set_annotations.txt                their truth (the real challenge withholds it)
//! <out>/{VA_Estimation,EXPR_Classification,AU_Detection}_Challenge/{Train,Validation}_Set/<video>.txt
//! <out>/features/synthetic/<video>.h5           with `synthetic_features` (all videos)
//! <out>/features/synthetic-tokens/<video>.h5    with `synthetic_tokens`: (frames, tokens, dim)
//! <out>/README.txt                              arguments, split and injected faults
//! ```
//!
//! The pieces, one job each:
//! - [`latent`]: per video, the hidden state over time (valence/arousal as Ornstein-Uhlenbeck
//!   processes, expressions with hysteresis, AUs with onsets and offsets, pose, lighting,
//!   blur, occlusion) as a pure function [`simulate_video`];
//! - [`face`]: drawing one frame from that state ([`render_face`]) with a per-video [`Identity`];
//! - [`layout`]: ids, split, lengths and the faults of real data (unannotated blocks, frames
//!   without image, invalid labels);
//! - [`features`]: the synthetic feature cache (a random projection of the latent state);
//! - [`tokens`]: the synthetic token cache (the same projection per face region, as a
//!   backbone's spatial map: each AU lives mostly in a few tokens);
//! - [`write`](mod@write): the files.
//!
//! Everything is deterministic: each video draws from its own ChaCha streams keyed by
//! `(seed, video index, purpose)`, so videos and frames are made in parallel (rayon) and the
//! same configuration gives byte-identical files.
//!
//! What it does not: print, show progress, or read anything back (the readers are in
//! [`crate::abaw`] and [`crate::cache`]).

pub mod face;
pub mod features;
pub mod latent;
pub mod layout;
pub mod tokens;
pub mod write;

#[cfg(test)]
mod tests;

pub use face::{identity, render_face, Identity};
pub use latent::{simulate_video, FrameState};
pub use layout::{plan_videos, SampleSplit, VideoPlan};

use crate::abaw::FrameRef;
use crate::error::{FormatError, Result};
use crate::tasks::Task;
use crate::video_id::VideoId;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What to generate. `Default` is the demo set: 96 videos of about 100 frames (64 train,
/// 16 validation, 16 test; about 9,400 frames), seed 7, 112 px JPEGs, no synthetic features or
/// tokens.
///
/// Why many short videos: each video is one identity, and identity is most of what a face
/// descriptor sees (in the HOG features of the demo, 67-76% of the variance lies between videos,
/// and one frame tells its video apart 92-96% of the time). With the former 12 videos of 600
/// frames, the models learnt the 8 training faces (training P_MTL 2.4-2.9, held-out about 1) and
/// 2 held-out videos per split made test / validation P_MTL 0.42-0.65 over four seeds. With 64
/// training identities it is 0.95-1.42 over three seeds; it still varies, as 16 videos of about
/// 3 s cover the 8 expressions unevenly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleConfig {
    /// Number of videos (at least 3: train, validation and test each get one or more).
    pub videos: usize,
    /// Frames per video: the mean length (lengths vary 0.6x..1.4x) or, with `equal_lengths`,
    /// the exact length.
    pub frames: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Side of the square frames in pixels (at least 16).
    pub size: u32,
    /// Also write the synthetic feature cache with this many dimensions.
    pub synthetic_features: Option<usize>,
    /// Also write the synthetic token cache with this many tokens per frame (see [`tokens`]).
    pub synthetic_tokens: Option<usize>,
    /// Width of each synthetic token (used with `synthetic_tokens`; at least 1).
    pub token_dim: usize,
    /// Element type of the synthetic token cache on disk (`f16` by default, as `extractor extract
    /// --output tokens` writes).
    pub token_dtype: crate::cache::Dtype,
    /// Write the JPEG frames (false: annotations and features only).
    pub write_frames: bool,
    /// Every video has exactly `frames` frames.
    pub equal_lengths: bool,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            videos: 96,
            frames: 100,
            seed: 7,
            size: 112,
            synthetic_features: None,
            synthetic_tokens: None,
            token_dim: tokens::DEFAULT_TOKEN_DIM,
            token_dtype: crate::cache::Dtype::F16,
            write_frames: true,
            equal_lengths: false,
        }
    }
}

impl SampleConfig {
    /// The command-line arguments that make this configuration (written to README.txt).
    pub fn to_args(&self) -> String {
        let mut args = format!(
            "--videos {} --frames {} --seed {} --size {}",
            self.videos, self.frames, self.seed, self.size
        );
        if let Some(dim) = self.synthetic_features {
            args.push_str(&format!(" --synthetic-features {dim}"));
        }
        if let Some(n) = self.synthetic_tokens {
            args.push_str(&format!(
                " --synthetic-tokens {n} --token-dim {} --token-dtype {}",
                self.token_dim, self.token_dtype
            ));
        }
        if !self.write_frames {
            args.push_str(" --no-frames");
        }
        if self.equal_lengths {
            args.push_str(" --equal-lengths");
        }
        args
    }

    /// Check the configuration; the error names `out` and the offending setting.
    pub fn check(&self, out: &Path) -> Result<()> {
        let bad = |m: String| Err(FormatError::file(out, m));
        if self.videos < 3 {
            return bad(format!(
                "--videos {} is too few: train, validation and test need at least one video each (use 3 or more)",
                self.videos
            ));
        }
        if self.frames == 0 {
            return bad("--frames 0: every video needs at least one frame".to_owned());
        }
        if !(16..=4096).contains(&self.size) {
            return bad(format!(
                "--size {} is outside 16..=4096: give the side of the frames in pixels in that range",
                self.size
            ));
        }
        if self.synthetic_features == Some(0) {
            return bad(
                "--synthetic-features 0: the feature dimension must be at least 1".to_owned(),
            );
        }
        if self.synthetic_tokens == Some(0) {
            return bad(
                "--synthetic-tokens 0: the number of tokens per frame must be at least 1"
                    .to_owned(),
            );
        }
        if self.token_dim == 0 {
            return bad("--token-dim 0: the width of each token must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Where [`generate`] puts each file under its output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePaths {
    /// The output folder (also the root of the per-task folders).
    pub root: PathBuf,
    /// `cropped_aligned/`: one folder of JPEGs per video.
    pub frames: PathBuf,
    /// `training_set_annotations.txt`.
    pub training_annotations: PathBuf,
    /// `validation_set_annotations.txt`.
    pub validation_annotations: PathBuf,
    /// `test_set_list.txt`.
    pub test_list: PathBuf,
    /// `test_set_annotations.txt`.
    pub test_annotations: PathBuf,
    /// `features/`: the feature cache root (the synthetic features go to `features/synthetic/`,
    /// the synthetic tokens to `features/synthetic-tokens/`).
    pub features: PathBuf,
    /// `README.txt`.
    pub readme: PathBuf,
}

impl SamplePaths {
    /// The paths under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            frames: root.join("cropped_aligned"),
            training_annotations: root.join("training_set_annotations.txt"),
            validation_annotations: root.join("validation_set_annotations.txt"),
            test_list: root.join("test_set_list.txt"),
            test_annotations: root.join("test_set_annotations.txt"),
            features: root.join("features"),
            readme: root.join("README.txt"),
        }
    }

    /// The image of one frame: `cropped_aligned/<video>/00001.jpg`.
    pub fn frame(&self, frame: &FrameRef) -> PathBuf {
        self.frames
            .join(frame.video.as_str())
            .join(crate::abaw::frame_file_name(frame.frame))
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSummary {
    /// Where everything went.
    pub paths: SamplePaths,
    /// Training videos.
    pub train: Vec<VideoId>,
    /// Validation videos.
    pub validation: Vec<VideoId>,
    /// Held-out test videos.
    pub test: Vec<VideoId>,
    /// Frames of all videos.
    pub frames: usize,
    /// JPEG files written (0 without frames).
    pub images_written: usize,
    /// Rows of the train and validation MTL annotation files.
    pub annotated_frames: usize,
    /// Frames without an image ("no face found") in all videos.
    pub missing_images: usize,
    /// The train video and task whose labels are all invalid, if any.
    pub task_all_invalid: Option<(VideoId, Task)>,
    /// Synthetic feature files written (one per video, or none).
    pub feature_files: usize,
    /// Synthetic token files written (one per video, or none).
    pub token_files: usize,
    /// Feature caches of an earlier data set made with other arguments, removed as stale.
    pub removed_stale: Vec<PathBuf>,
}

/// Generate the data set `cfg` describes under `out` (see the module docs for the layout).
///
/// `out` must be absent, empty, or hold an earlier sample data set (recognised by its
/// README.txt): the earlier data set's files are replaced, and if it was made with other
/// arguments its whole `features/` folder (feature caches of its frames) is removed as stale.
/// Any other non-empty folder is an error, so nothing of the user's is ever deleted.
pub fn generate(out: &Path, cfg: &SampleConfig) -> Result<SampleSummary> {
    generate_with_progress(out, cfg, &|_| {})
}

/// [`generate`], calling `on_video` with each video's plan when its frames and features are
/// written (from worker threads, in no fixed order), e.g. to advance a progress bar by
/// `plan.n_frames`.
pub fn generate_with_progress(
    out: &Path,
    cfg: &SampleConfig,
    on_video: &(dyn Fn(&VideoPlan) + Sync),
) -> Result<SampleSummary> {
    cfg.check(out)?;
    let paths = SamplePaths::new(out);
    let removed_stale = write::prepare_output(&paths, cfg)?;
    let plans = plan_videos(cfg);
    let projection = cfg
        .synthetic_features
        .map(|dim| features::projection(cfg.seed, dim));
    let token_model = cfg
        .synthetic_tokens
        .map(|n| tokens::TokenModel::new(cfg.seed, n, cfg.token_dim));
    let videos: Vec<write::VideoOutput> = plans
        .par_iter()
        .map(|plan| {
            let written =
                write::write_video(&paths, cfg, plan, projection.as_ref(), token_model.as_ref());
            on_video(plan);
            written
        })
        .collect::<Result<_>>()?;
    write::write_annotations(&paths, &plans, &videos)?;
    write::write_readme(&paths, cfg, &plans)?;
    let ids = |split: SampleSplit| -> Vec<VideoId> {
        plans
            .iter()
            .filter(|p| p.split == split)
            .map(|p| p.id.clone())
            .collect()
    };
    Ok(SampleSummary {
        train: ids(SampleSplit::Train),
        validation: ids(SampleSplit::Validation),
        test: ids(SampleSplit::Test),
        frames: plans.iter().map(|p| p.n_frames).sum(),
        images_written: videos.iter().map(|v| v.images).sum(),
        annotated_frames: plans
            .iter()
            .filter(|p| p.split != SampleSplit::Test)
            .map(VideoPlan::annotated_frames)
            .sum(),
        missing_images: plans.iter().map(|p| p.n_frames - p.images()).sum(),
        task_all_invalid: plans
            .iter()
            .find_map(|p| p.task_all_invalid.map(|t| (p.id.clone(), t))),
        feature_files: videos.iter().filter(|v| v.features).count(),
        token_files: videos.iter().filter(|v| v.tokens).count(),
        removed_stale,
        paths,
    })
}
