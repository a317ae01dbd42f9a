//! Which frames a split scores, and their labels.
//!
//! Training and validation labels come from the MTL annotation files of the data root
//! (`training_set_annotations.txt`, `validation_set_annotations.txt`), or, when a root has none,
//! from the per-task folders (`VA_Estimation_Challenge/...`), merged by frame. The test split is
//! the test list (`test_set_list.txt`): frames to score, no labels.

use anyhow::{bail, Context, Result};
use shared::abaw::{self, PerTask};
use shared::{FrameLabels, VideoId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A split of the data set.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training videos.
    Train,
    /// The validation videos (labels known).
    Validation,
    /// The held-out test list (no labels).
    Test,
}

impl Split {
    /// The MTL annotation file name of the split in a data root.
    pub fn mtl_file(self) -> &'static str {
        match self {
            Split::Train => "training_set_annotations.txt",
            Split::Validation => "validation_set_annotations.txt",
            Split::Test => "test_set_list.txt",
        }
    }

    /// The split's name as in run folders and messages.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// The frames to score of every video of a split, with their labels (all `None` for the test list).
#[derive(Debug, Clone)]
pub struct SplitLabels {
    /// The split.
    pub split: Split,
    /// The file(s) the labels came from, for messages.
    pub source: PathBuf,
    /// Per video, sorted frame numbers with labels.
    pub videos: BTreeMap<VideoId, Vec<(u32, FrameLabels)>>,
}

impl SplitLabels {
    /// Number of frames to score.
    pub fn n_frames(&self) -> usize {
        self.videos.values().map(Vec::len).sum()
    }

    /// Read the split from a data root.
    pub fn load(root: &Path, split: Split) -> Result<SplitLabels> {
        let mtl = root.join(split.mtl_file());
        if split == Split::Test {
            let list = abaw::read_test_list(&mtl)?;
            let mut videos: BTreeMap<VideoId, Vec<(u32, FrameLabels)>> = BTreeMap::new();
            for f in list {
                videos
                    .entry(f.video)
                    .or_default()
                    .push((f.frame, FrameLabels::default()));
            }
            for v in videos.values_mut() {
                v.sort_by_key(|(f, _)| *f);
            }
            return Ok(SplitLabels {
                split,
                source: mtl,
                videos,
            });
        }
        if mtl.exists() {
            let ann = abaw::read_mtl_annotations(&mtl)?;
            let mut videos = ann.by_video();
            for v in videos.values_mut() {
                v.sort_by_key(|(f, _)| *f);
            }
            return Ok(SplitLabels {
                split,
                source: mtl,
                videos,
            });
        }
        Self::load_per_task(root, split).with_context(|| {
            format!(
                "{} has neither {} nor per-task annotation folders for the {} split",
                root.display(),
                split.mtl_file(),
                split.name()
            )
        })
    }

    /// Merge the three per-task folders of a split: a frame is scored when any task labels it.
    fn load_per_task(root: &Path, split: Split) -> Result<SplitLabels> {
        let per_task_split = match split {
            Split::Train => abaw::Split::Train,
            Split::Validation => abaw::Split::Validation,
            Split::Test => unreachable!("the test split is a list"),
        };
        let mut videos: BTreeMap<VideoId, BTreeMap<u32, FrameLabels>> = BTreeMap::new();
        let mut found = false;
        for task in PerTask::ALL {
            let folder = root.join(task.folder()).join(per_task_split.folder());
            if !folder.is_dir() {
                continue;
            }
            found = true;
            for (video, frames) in abaw::read_per_task_split(root, task, per_task_split)? {
                let merged = videos.entry(video).or_default();
                for (i, l) in frames.iter().enumerate() {
                    if l.is_empty() {
                        continue;
                    }
                    let e = merged.entry(i as u32 + 1).or_default();
                    e.valence = e.valence.or(l.valence);
                    e.arousal = e.arousal.or(l.arousal);
                    e.expression = e.expression.or(l.expression);
                    e.aus = e.aus.or(l.aus);
                }
            }
        }
        if !found {
            bail!("no per-task folders");
        }
        let videos = videos
            .into_iter()
            .map(|(v, m)| (v, m.into_iter().collect()))
            .collect();
        Ok(SplitLabels {
            split,
            source: root.to_path_buf(),
            videos,
        })
    }
}
