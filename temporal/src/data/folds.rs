//! The deterministic k-fold split by video (`--fold K/N`, `--fold-scheme`): [`Fold`],
//! [`FoldRule`], [`fold_split`] and [`apply_fold`], which re-splits loaded labels without reading
//! anything again.
//!
//! What it does not: choose which folds a sweep runs (that is the sweep definition's `[folds]`),
//! or train.
//!
//! With N folds, fold 0 is the official validation set (the ABAW7 task-queries paper's "6th
//! fold" of its 6-fold scheme); the training videos go to folds 1..N-1 by one of two rules:
//! - `round-robin` (default): sorted by id, dealt round-robin (the i-th video, counting from 0,
//!   goes to fold `1 + i mod (N-1)`). Round-robin over sorted ids puts videos with neighbouring
//!   names (e.g. the `_left` and `_right` persons of one clip) in different folds.
//! - `frames`: folds of similar frame counts (labelled frames of each video). The videos, longest
//!   first (ties by id), each go to the fold with the fewest frames so far (ties: the lowest
//!   fold number) — the greedy rule for balanced partitions, whose largest fold exceeds the mean
//!   by at most the longest video. Aff-Wild2's videos range from a few hundred to tens of
//!   thousands of frames, so round-robin folds can differ several-fold in size; the paper splits
//!   by frame counts.
//!
//! Fold K validates on the videos of fold K and trains on every other video of both official
//! splits; fold 0 is the official split itself. The split depends only on the set of video ids
//! (and, for `frames`, their frame counts), not on their order in the annotation files. A video
//! in both official splits is an error, and so is a fold without videos (named, with the rule).

use super::labels::SplitLabels;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use shared::VideoId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// How the training videos are dealt into folds 1..N-1 (see the module documentation).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FoldRule {
    /// Sorted by id, dealt round-robin.
    #[default]
    RoundRobin,
    /// Folds of similar frame counts (longest video first, into the smallest fold).
    Frames,
}

impl fmt::Display for FoldRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FoldRule::RoundRobin => "round-robin",
            FoldRule::Frames => "frames",
        })
    }
}

/// Fold K of an N-fold split by video (`--fold K/N`; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fold {
    /// The validation fold, in 0..n (0 is the official validation set).
    pub k: usize,
    /// Number of folds, at least 2.
    pub n: usize,
}

impl Fold {
    /// Validated constructor.
    pub fn new(k: usize, n: usize) -> std::result::Result<Fold, String> {
        if n < 2 {
            return Err(format!(
                "fold {k}/{n}: a k-fold split needs at least 2 folds (fold 0 is the official validation set)"
            ));
        }
        if k >= n {
            return Err(format!(
                "fold {k}/{n}: K counts from 0 and must be below N (0/{n} .. {}/{n}; 0 is the official validation set)",
                n - 1
            ));
        }
        Ok(Fold { k, n })
    }

    /// The suffix of member names: `f<K>of<N>`.
    pub fn tag(&self) -> String {
        format!("f{}of{}", self.k, self.n)
    }

    /// The fold (in 0..n) of every video, keyed by id: the official validation videos are fold 0,
    /// the training videos (with their frame counts) go to folds 1..n-1 by `rule`.
    pub fn assign(
        train: &[(VideoId, usize)],
        validation: &[VideoId],
        n: usize,
        rule: FoldRule,
    ) -> Result<BTreeMap<VideoId, usize>> {
        if n < 2 {
            bail!("a k-fold split needs at least 2 folds, got {n}");
        }
        let frames: BTreeMap<&VideoId, usize> = train.iter().map(|(v, f)| (v, *f)).collect();
        let validation: BTreeSet<&VideoId> = validation.iter().collect();
        let both: Vec<String> = frames
            .keys()
            .filter(|v| validation.contains(*v))
            .take(5)
            .map(|v| v.to_string())
            .collect();
        if !both.is_empty() {
            bail!(
                "video(s) {} are in both the training and the validation annotations; a video \
                 belongs to one split: fix the annotation files before a k-fold split",
                both.join(", ")
            );
        }
        let mut folds: BTreeMap<VideoId, usize> =
            validation.into_iter().map(|v| (v.clone(), 0)).collect();
        match rule {
            FoldRule::RoundRobin => {
                for (i, v) in frames.keys().enumerate() {
                    folds.insert((*v).clone(), 1 + i % (n - 1));
                }
            }
            FoldRule::Frames => {
                let mut longest_first: Vec<(&VideoId, usize)> = frames.into_iter().collect();
                longest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                let mut sizes = vec![0usize; n - 1];
                for (v, f) in longest_first {
                    let smallest = (0..n - 1)
                        .min_by_key(|&i| (sizes[i], i))
                        .expect("n >= 2 gives at least one training fold");
                    sizes[smallest] += f;
                    folds.insert(v.clone(), 1 + smallest);
                }
            }
        }
        Ok(folds)
    }
}

impl FromStr for Fold {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = shared::k_of_n::parse_k_of_n("--fold", "2/5", s)?;
        Fold::new(k, n)
    }
}

impl TryFrom<String> for Fold {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Fold> for String {
    fn from(f: Fold) -> String {
        f.to_string()
    }
}

impl fmt::Display for Fold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The k-fold split of the official training videos (with their frame counts) and validation
/// videos: `(train, validation)` of fold `fold` under `rule`, each sorted by id (see the module
/// documentation for the rules).
///
/// Errors when a video is in both lists, or when either side of the split has no video.
pub fn fold_split(
    train: &[(VideoId, usize)],
    validation: &[VideoId],
    fold: Fold,
    rule: FoldRule,
) -> Result<(Vec<VideoId>, Vec<VideoId>)> {
    let folds = Fold::assign(train, validation, fold.n, rule)?;
    let (val, rest): (Vec<_>, Vec<_>) = folds.into_iter().partition(|(_, f)| *f == fold.k);
    let val: Vec<VideoId> = val.into_iter().map(|(v, _)| v).collect();
    let rest: Vec<VideoId> = rest.into_iter().map(|(v, _)| v).collect();
    if val.is_empty() {
        bail!(
            "fold {fold} (--fold-scheme {rule}) has no videos: {} training videos fill only {} of \
             the folds 1..{}; choose fewer folds",
            train.len(),
            train.len().min(fold.n - 1),
            fold.n - 1
        );
    }
    if rest.is_empty() {
        bail!("fold {fold} leaves no training videos; add training videos or choose another fold");
    }
    Ok((rest, val))
}

/// Re-split loaded labels for fold `fold` under `rule` (frame counts = labelled frames per
/// video): afterwards `train` holds every video outside the fold and `validation` the fold's
/// videos, each with its labels (nothing is read again).
pub fn apply_fold(
    train: &mut SplitLabels,
    validation: &mut SplitLabels,
    fold: Fold,
    rule: FoldRule,
) -> Result<()> {
    let train_ids: Vec<(VideoId, usize)> = train
        .videos
        .iter()
        .map(|(v, frames)| (v.clone(), frames.len()))
        .collect();
    let val_ids: Vec<VideoId> = validation.videos.keys().cloned().collect();
    let (_, fold_val) = fold_split(&train_ids, &val_ids, fold, rule).with_context(|| {
        format!(
            "k-fold split of {} and {}",
            train.source.display(),
            validation.source.display()
        )
    })?;
    let mut all = std::mem::take(&mut train.videos);
    all.append(&mut validation.videos);
    let fold_val: BTreeSet<VideoId> = fold_val.into_iter().collect();
    for (video, frames) in all {
        if fold_val.contains(&video) {
            validation.videos.insert(video, frames);
        } else {
            train.videos.insert(video, frames);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::FrameLabels;
    use std::path::PathBuf;

    fn ids(names: &[&str]) -> Vec<VideoId> {
        names.iter().map(|n| VideoId::new(*n).unwrap()).collect()
    }

    /// Training videos with a frame count each (the round-robin rule ignores them).
    fn with_frames(names: &[&str], frames: &[usize]) -> Vec<(VideoId, usize)> {
        ids(names).into_iter().zip(frames.iter().copied()).collect()
    }

    const ANY_FRAMES: [usize; 7] = [100; 7];

    #[test]
    fn fold_parsing() {
        assert_eq!("2/5".parse::<Fold>().unwrap(), Fold { k: 2, n: 5 });
        assert_eq!(Fold { k: 2, n: 5 }.to_string(), "2/5");
        assert_eq!(Fold { k: 2, n: 5 }.tag(), "f2of5");
        for bad in ["5/5", "0/1", "a/5", "2", "-1/5"] {
            assert!(bad.parse::<Fold>().is_err(), "{bad} accepted");
        }
    }

    // 7 training videos, 2 validation videos, 4 folds: sorted training ids are dealt into folds
    // 1, 2, 3, 1, 2, 3, 1; the validation videos are fold 0.

    const TRAIN: [&str; 7] = ["t07", "t03", "t01", "t05", "t02", "t06", "t04"];

    const VAL: [&str; 2] = ["v2", "v1"];

    #[test]
    fn fold_split_by_hand() {
        let (train, val) = (with_frames(&TRAIN, &ANY_FRAMES), ids(&VAL));
        let split = |k| fold_split(&train, &val, Fold { k, n: 4 }, FoldRule::RoundRobin).unwrap();
        assert_eq!(
            split(0),
            (
                ids(&["t01", "t02", "t03", "t04", "t05", "t06", "t07"]),
                ids(&["v1", "v2"])
            )
        );
        assert_eq!(
            split(1),
            (
                ids(&["t02", "t03", "t05", "t06", "v1", "v2"]),
                ids(&["t01", "t04", "t07"])
            )
        );
        assert_eq!(
            split(2),
            (
                ids(&["t01", "t03", "t04", "t06", "t07", "v1", "v2"]),
                ids(&["t02", "t05"])
            )
        );
        assert_eq!(
            split(3),
            (
                ids(&["t01", "t02", "t04", "t05", "t07", "v1", "v2"]),
                ids(&["t03", "t06"])
            )
        );
        // Every video validates in exactly one fold, whatever the input order.
        let mut reversed = train.clone();
        reversed.reverse();
        let mut seen = BTreeMap::new();
        for k in 0..4 {
            let (t, v) =
                fold_split(&reversed, &val, Fold { k, n: 4 }, FoldRule::RoundRobin).unwrap();
            assert_eq!((t.clone(), v.clone()), split(k));
            assert_eq!(t.len() + v.len(), 9);
            for x in v {
                *seen.entry(x).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.len(), 9);
        assert!(seen.values().all(|&c| c == 1));
    }

    #[test]
    fn fold_split_errors() {
        let (train, val) = (with_frames(&TRAIN, &ANY_FRAMES), ids(&VAL));
        for rule in [FoldRule::RoundRobin, FoldRule::Frames] {
            // 7 training videos fill folds 1..7 of 9 training folds: fold 8 is empty.
            let err = fold_split(&train, &val, Fold { k: 8, n: 10 }, rule)
                .unwrap_err()
                .to_string();
            assert!(err.contains("fold 8/10"), "{err}");
            assert!(
                err.contains(&format!("--fold-scheme {rule}) has no videos")),
                "{err}"
            );
            assert!(fold_split(&train, &val, Fold { k: 7, n: 10 }, rule).is_ok());
            let err = fold_split(&train, &ids(&["v1", "t03"]), Fold { k: 0, n: 4 }, rule)
                .unwrap_err()
                .to_string();
            assert!(err.contains("t03") && err.contains("both"), "{err}");
        }
    }

    /// Frame counts 900, 500, 400, 300, 300, 200, 100 (t01..t07) into 3 training folds, by
    /// hand: 900 -> fold 1, 500 -> 2, 400 -> 3, 300 (t04) -> 3, 300 (t05) -> 2, 200 -> 3,
    /// 100 -> 2; fold sizes after each: [900,0,0] [900,500,0] [900,500,400] [900,500,700]
    /// [900,800,700] [900,800,900] [900,900,900].
    #[test]
    fn the_frames_rule_makes_folds_of_similar_frame_counts() {
        let names = ["t01", "t02", "t03", "t04", "t05", "t06", "t07"];
        let frames = [900, 500, 400, 300, 300, 200, 100];
        // Given in another order: the rule sorts by frames, then id.
        let mut train = with_frames(&names, &frames);
        train.reverse();
        let folds = Fold::assign(&train, &ids(&VAL), 4, FoldRule::Frames).unwrap();
        let of = |v: &str| folds[&VideoId::new(v).unwrap()];
        assert_eq!(
            names.map(of),
            [1, 2, 3, 3, 2, 3, 2],
            "t01 alone; t02 + t05 + t07; t03 + t04 + t06"
        );
        assert_eq!((of("v1"), of("v2")), (0, 0));
        let mut sizes = [0; 4];
        for (name, f) in names.iter().zip(frames) {
            sizes[of(name)] += f;
        }
        assert_eq!(sizes[1..], [900, 900, 900]);
        // Round robin on the same videos: folds of 1300, 800 and 600 frames.
        let rr = Fold::assign(&train, &ids(&VAL), 4, FoldRule::RoundRobin).unwrap();
        let mut rr_sizes = [0; 4];
        for (name, f) in names.iter().zip(frames) {
            rr_sizes[rr[&VideoId::new(*name).unwrap()]] += f;
        }
        assert_eq!(rr_sizes[1..], [1300, 800, 600]);
    }

    fn labels(split: crate::data::Split, names: &[&str]) -> SplitLabels {
        SplitLabels {
            split,
            source: PathBuf::from(format!("{}.txt", split.name())),
            videos: ids(names)
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let l = FrameLabels {
                        valence: Some(i as f32 / 10.0),
                        ..Default::default()
                    };
                    (v, vec![(i as u32 + 1, l)])
                })
                .collect(),
        }
    }

    #[test]
    fn apply_fold_moves_videos_with_their_labels() {
        use crate::data::Split;
        let mut train = labels(Split::Train, &TRAIN);
        let mut val = labels(Split::Validation, &VAL);
        let before: BTreeMap<_, _> = train
            .videos
            .iter()
            .chain(&val.videos)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        apply_fold(
            &mut train,
            &mut val,
            Fold { k: 2, n: 4 },
            FoldRule::RoundRobin,
        )
        .unwrap();
        assert_eq!(
            val.videos.keys().cloned().collect::<Vec<_>>(),
            ids(&["t02", "t05"])
        );
        assert_eq!(
            train.videos.keys().cloned().collect::<Vec<_>>(),
            ids(&["t01", "t03", "t04", "t06", "t07", "v1", "v2"])
        );
        for (k, v) in train.videos.iter().chain(&val.videos) {
            assert_eq!(&before[k], v, "labels of {k} changed");
        }
        assert_eq!((train.split, val.split), (Split::Train, Split::Validation));
    }
}
