//! Writing the sample data set: frames, annotation files, the synthetic feature and token
//! caches, README.
//!
//! What it does: encode frames as JPEG (fixed quality, so output is deterministic) into
//! `cropped_aligned/<video>/`, write the MTL and per-task annotation files and the test list
//! with the [`crate::abaw`] writers, the features and tokens with
//! [`crate::cache::write_video`], and a README.txt that explains the data set; clear an earlier
//! sample data set first.
//!
//! What it does not: decide any content (that is [`super::latent`], [`super::face`],
//! [`super::layout`], [`super::features`] and [`super::tokens`]).

use super::face::{identity, render_face};
use super::features;
use super::latent::{simulate_video, FrameState};
use super::layout::{split_counts, SampleSplit, VideoPlan};
use super::tokens::{self, TokenModel};
use super::{SampleConfig, SamplePaths};
use crate::abaw::{
    per_task_path, write_mtl_annotations, write_per_task_file, write_test_list, FrameRef, PerTask,
    Split,
};
use crate::atomic::write_atomically;
use crate::error::{FormatError, Result};
use crate::tasks::{FrameLabels, Task};
use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;
use ndarray::Array2;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::PathBuf;

/// JPEG quality of the frames (fixed: the same state always gives the same bytes).
pub const JPEG_QUALITY: u8 = 90;

/// First line of README.txt; marks a folder as a sample data set that may be replaced.
const README_MARKER: &str = "Synthetic Aff-Wild2 sample data (written by `extractor sample-data`)";

/// README.txt line holding the arguments.
const ARGS_PREFIX: &str = "Arguments: ";

/// What writing one video produced.
#[derive(Debug, Clone)]
pub struct VideoOutput {
    /// The simulated state of every frame.
    pub states: Vec<FrameState>,
    /// JPEG files written.
    pub images: usize,
    /// Whether a synthetic feature file was written.
    pub features: bool,
    /// Whether a synthetic token file was written.
    pub tokens: bool,
}

/// Encode a frame as a JPEG of quality [`JPEG_QUALITY`].
pub fn encode_jpeg(image: &RgbImage) -> std::result::Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::with_capacity(8 * 1024);
    JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY).encode_image(image)?;
    Ok(bytes)
}

/// Make `paths.root` ready: create it, or clear an earlier sample data set in it. Returns the
/// stale feature caches removed (the whole `features/` folder when the earlier data set was made
/// with other arguments). A non-empty folder that is not a sample data set is an error.
pub fn prepare_output(paths: &SamplePaths, cfg: &SampleConfig) -> Result<Vec<PathBuf>> {
    let root = &paths.root;
    if !root.exists() {
        std::fs::create_dir_all(root).map_err(|e| FormatError::io(root, e))?;
        return Ok(Vec::new());
    }
    if !root.is_dir() {
        return Err(FormatError::file(
            root,
            "--out exists and is not a folder; choose a folder",
        ));
    }
    let mut entries = std::fs::read_dir(root).map_err(|e| FormatError::io(root, e))?;
    if entries.next().is_none() {
        return Ok(Vec::new());
    }
    let readme = std::fs::read_to_string(&paths.readme).unwrap_or_default();
    if readme.lines().next() != Some(README_MARKER) {
        return Err(FormatError::file(
            root,
            "this folder is not empty and holds no sample data set (no README.txt written by \
             `extractor sample-data`); choose a new or empty --out folder",
        ));
    }
    let mut owned: Vec<PathBuf> = vec![
        paths.frames.clone(),
        paths.training_annotations.clone(),
        paths.validation_annotations.clone(),
        paths.test_list.clone(),
        paths.test_annotations.clone(),
        paths.features.join(features::BACKBONE),
        paths.features.join(tokens::BACKBONE),
    ];
    owned.extend(PerTask::ALL.iter().map(|t| root.join(t.folder())));
    let previous_args = readme.lines().find_map(|l| l.strip_prefix(ARGS_PREFIX));
    let mut stale = Vec::new();
    if previous_args != Some(cfg.to_args().as_str()) && paths.features.exists() {
        owned.push(paths.features.clone());
        stale.push(paths.features.clone());
    }
    owned.push(paths.readme.clone());
    for path in owned {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        removed.map_err(|e| FormatError::io(&path, e))?;
    }
    Ok(stale)
}

/// Simulate one video, write its frames (if `cfg.write_frames`), its synthetic features (if
/// `projection` is given) and its synthetic tokens (if `token_model` is given).
pub fn write_video(
    paths: &SamplePaths,
    cfg: &SampleConfig,
    plan: &VideoPlan,
    projection: Option<&Array2<f32>>,
    token_model: Option<&TokenModel>,
) -> Result<VideoOutput> {
    let states = simulate_video(cfg.seed, plan.index, plan.n_frames);
    let mut images = 0;
    if cfg.write_frames {
        let dir = paths.frames.join(plan.id.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| FormatError::io(&dir, e))?;
        let id = identity(cfg.seed, plan.index);
        images = states
            .par_iter()
            .filter(|s| plan.has_image[s.frame as usize - 1])
            .map(|s| {
                let path = dir.join(crate::abaw::frame_file_name(s.frame));
                let bytes = encode_jpeg(&render_face(&id, s, cfg.size)).map_err(|e| {
                    FormatError::file(&path, format!("cannot encode the frame as JPEG: {e}"))
                })?;
                std::fs::write(&path, bytes).map_err(|e| FormatError::io(&path, e))
            })
            .collect::<Result<Vec<()>>>()?
            .len();
    }
    let features = match projection {
        Some(w) => {
            let path = crate::cache::video_path(&paths.features, features::BACKBONE, &plan.id);
            let attrs = features::cache_attrs(cfg.seed, w.ncols());
            let data = features::video_features(cfg.seed, plan, &states, w);
            crate::cache::write_video(&path, &attrs, &data)?;
            true
        }
        None => false,
    };
    let tokens = match token_model {
        Some(model) => {
            let path = crate::cache::video_path(&paths.features, tokens::BACKBONE, &plan.id);
            let attrs =
                tokens::cache_attrs(cfg.seed, model.layout.len(), model.dim(), cfg.token_dtype);
            let data = tokens::video_tokens(cfg.seed, plan, &states, model);
            crate::cache::write_video(&path, &attrs, &data)?;
            true
        }
        None => false,
    };
    Ok(VideoOutput {
        states,
        images,
        features,
        tokens,
    })
}

/// The MTL files (train, validation, test truth), the test list and the per-task files.
pub fn write_annotations(
    paths: &SamplePaths,
    plans: &[VideoPlan],
    videos: &[VideoOutput],
) -> Result<()> {
    let frame_ref = |plan: &VideoPlan, s: &FrameState| FrameRef {
        video: plan.id.clone(),
        frame: s.frame,
    };
    let mtl_rows = |split: SampleSplit| -> Vec<(FrameRef, FrameLabels)> {
        plans
            .iter()
            .zip(videos)
            .filter(|(p, _)| p.split == split)
            .flat_map(|(p, v)| {
                v.states
                    .iter()
                    .filter(|s| p.annotated[s.frame as usize - 1])
                    .map(move |s| (frame_ref(p, s), p.labels(s)))
            })
            .collect()
    };
    write_mtl_annotations(&paths.training_annotations, &mtl_rows(SampleSplit::Train))?;
    write_mtl_annotations(
        &paths.validation_annotations,
        &mtl_rows(SampleSplit::Validation),
    )?;
    let test_rows = mtl_rows(SampleSplit::Test);
    write_mtl_annotations(&paths.test_annotations, &test_rows)?;
    let test_list: Vec<FrameRef> = test_rows.into_iter().map(|(f, _)| f).collect();
    write_test_list(&paths.test_list, &test_list)?;
    for (plan, video) in plans.iter().zip(videos) {
        let split = match plan.split {
            SampleSplit::Train => Split::Train,
            SampleSplit::Validation => Split::Validation,
            SampleSplit::Test => continue,
        };
        let labels: Vec<FrameLabels> = video.states.iter().map(|s| plan.labels(s)).collect();
        for task in PerTask::ALL {
            write_per_task_file(
                &per_task_path(&paths.root, task, split, &plan.id),
                task,
                &labels,
            )?;
        }
    }
    Ok(())
}

/// README.txt: what the folder is, the arguments, the split and the faults of each video.
pub fn write_readme(paths: &SamplePaths, cfg: &SampleConfig, plans: &[VideoPlan]) -> Result<()> {
    let text = readme_text(cfg, plans);
    write_atomically(&paths.readme, |w| w.write_all(text.as_bytes()))
}

fn readme_text(cfg: &SampleConfig, plans: &[VideoPlan]) -> String {
    let (n_train, n_val, n_test) = split_counts(cfg.videos);
    let mut t = String::new();
    let _ = writeln!(t, "{README_MARKER}");
    let _ = writeln!(t, "{ARGS_PREFIX}{}", cfg.to_args());
    let _ = writeln!(t, "Tool: {}", crate::TOOL_VERSION);
    t.push_str(
        "
What this is
  A made-up stand-in for Aff-Wild2 (which is licensed and cannot be shipped), in its exact
  layout. Faces are drawn procedurally and carry their labels: mouth curvature follows valence,
  eye opening and brow height follow arousal, and each of the 12 AUs is a visible geometric
  change. Valence and arousal are smooth random processes; expressions follow them with
  hysteresis; AUs follow the expression with onsets and offsets. Single frames are made
  ambiguous by head pose, lighting, blur, sensor noise and occlusions, so a temporal model has
  something to gain over a frame-level one. The same arguments give byte-identical files.

Files
  cropped_aligned/<video>/00001.jpg ...   RGB JPEG frames (frames with no face have no file)
  training_set_annotations.txt           MTL format, train videos, annotated frames only
  validation_set_annotations.txt         MTL format, validation videos, annotated frames only
  test_set_list.txt                      every frame of the held-out test videos (no labels)
  test_set_annotations.txt               the held-out truth of the test videos, every frame, in
                                         MTL format. The real challenge withholds this file;
                                         the demo uses it to report test scores.
  VA_Estimation_Challenge/, EXPR_Classification_Challenge/, AU_Detection_Challenge/
      {Train_Set,Validation_Set}/<video>.txt: every frame, -5 / -1 where not annotated
      or where the label is invalid
",
    );
    if let Some(dim) = cfg.synthetic_features {
        let _ = writeln!(
            t,
            "  features/synthetic/<video>.h5          synthetic feature cache, {dim} dims: a fixed random\n\
             \x20                                        projection of the latent state plus noise and a\n\
             \x20                                        per-video offset (all videos, frames with images)"
        );
    }
    if let Some(n) = cfg.synthetic_tokens {
        let layout = tokens::TokenLayout::new(n);
        let _ = writeln!(
            t,
            "  features/synthetic-tokens/<video>.h5   synthetic token cache, shape (frames, {n}, {dim}),\n\
             \x20                                        all videos, frames with images: a made-up\n\
             \x20                                        spatial map. Tokens tile the aligned face in\n\
             \x20                                        {rows} x {cols} regions (row-major, token 0 top left).\n\
             \x20                                        An AU shows with gain 1 in the tokens of its\n\
             \x20                                        region and {outside} elsewhere; valence, arousal,\n\
             \x20                                        expression, pose, lighting and occlusion show\n\
             \x20                                        in every token with gain {global}. One projection\n\
             \x20                                        for all tokens, plus noise and a per-video,\n\
             \x20                                        per-token offset.\n\
             \x20                                        Regions:",
            dim = cfg.token_dim,
            rows = layout.rows,
            cols = layout.cols,
            outside = tokens::OUTSIDE_GAIN,
            global = tokens::GLOBAL_GAIN,
        );
        for line in layout.describe().lines() {
            let _ = writeln!(t, "{:43}{line}", "");
        }
    }
    let _ = writeln!(
        t,
        "\nSplit (by video): {n_train} train, {n_val} validation, {n_test} test"
    );
    for (split, name) in [
        (SampleSplit::Train, "train"),
        (SampleSplit::Validation, "validation"),
        (SampleSplit::Test, "test"),
    ] {
        let ids: Vec<&str> = plans
            .iter()
            .filter(|p| p.split == split)
            .map(|p| p.id.as_str())
            .collect();
        let _ = writeln!(t, "  {name}: {}", ids.join(" "));
    }
    t.push_str(
        "
Faults injected (as in the real data)
  - videos of different lengths (0.6x to 1.4x --frames unless --equal-lengths);
  - train/validation: about 80% of frames annotated, in contiguous blocks;
  - about 2% of frames have no image (no face found); they are still annotated, and their
    predictions come from the nearest frame with an image;
  - per task, blocks of annotated frames with invalid labels (valence/arousal -5, expression
    -1, AUs -1); one train video has one task invalid throughout.

Per video (invalid: annotated frames whose label of that task is -5 / -1)
",
    );
    let _ = writeln!(
        t,
        "  {:<12} {:<10} {:>6} {:>9} {:>8} {:>6} {:>8} {:>6}",
        "video", "split", "frames", "annotated", "no image", "inv VA", "inv EXPR", "inv AU"
    );
    for p in plans {
        let _ = writeln!(
            t,
            "  {:<12} {:<10} {:>6} {:>9} {:>8} {:>6} {:>8} {:>6}{}",
            p.id.as_str(),
            p.split.name(),
            p.n_frames,
            p.annotated_frames(),
            p.n_frames - p.images(),
            p.invalid_frames(Task::Va),
            p.invalid_frames(Task::Expr),
            p.invalid_frames(Task::Au),
            p.task_all_invalid
                .map(|task| format!("  ({task} invalid in the whole video)"))
                .unwrap_or_default(),
        );
    }
    t
}
