//! Training sweeps: many `temporal train` runs from one TOML definition, one per Slurm array task.
//!
//! What it does:
//! - [`SweepFile`]: a sweep definition (lists of seeds, archs, topologies, an optional k-fold
//!   scheme, an optional base training config and the sweep folder), read by [`load`], which
//!   checks it and names the file (and line) of any mistake.
//! - [`members`]: every combination as a [`Member`] with a fixed index, name and run folder
//!   `<out>/<name>`, in a documented order, so array task N always runs the same member.
//! - [`Fold`] and [`fold_split`]: the deterministic k-fold split by video (`--fold K/N`).
//! - [`member_status`] and [`finished_runs`]: which members have finished, so a user knows what
//!   to resubmit and `temporal ensemble` can pick up the finished ones.
//! - `temporal sweep FILE [--list]` ([`run`]): prints the members and the array size to submit,
//!   or each member's status and the `--array` of the unfinished ones.
//!
//! What it does not: train (`temporal train --sweep FILE --sweep-index N` runs one member,
//! see [`select`] and [`apply`]), submit jobs (see `configs/slurm/train-sweep.sbatch`), or
//! ensemble.
//!
//! # Sweep file
//! ```toml
//! name = "lstm-seeds"                  # a name, no path separators
//! base = "configs/demo.toml"           # optional training config every member starts from
//! out = "runs/sweeps/lstm-seeds"       # sweep folder; member runs go to <out>/<member-name>
//! seeds = [0, 1, 2]
//! archs = ["lstm", "gru"]              # gru | lstm | transformer
//! topologies = ["basic"]               # basic | share-bottom | feedback
//! [folds]                              # optional k-fold by video
//! n = 5                                # number of folds (the ABAW seeds use 5 and 6)
//! which = "all"                        # "all" (default) or a list of folds, e.g. [0, 3]
//! ```
//! Relative paths (`base`, `out`) are relative to the working directory, as every path in the
//! training configs (run sweeps from the repository root; Slurm starts jobs in the folder they were
//! submitted from).
//!
//! # Member order and names
//! Members are the cartesian product archs x topologies x folds x seeds, with the arch varying
//! slowest and the seed fastest, each list in the order written:
//! `index = ((a * n_topologies + t) * n_folds + f) * n_seeds + s` (`n_folds` is 1 without
//! `[folds]`). A member's name is `<arch>-<topology>-s<seed>`, plus `-f<K>of<N>` with folds
//! (e.g. `lstm-basic-s0-f2of5`); lists may not repeat a value, so names are unique.
//!
//! # k-fold by video
//! With N folds, fold 0 is the official validation set; the training videos, sorted by id, are
//! dealt round-robin into folds 1..N-1 (the i-th video, counting from 0, goes to fold
//! `1 + i mod (N-1)`). Fold K validates on the videos of fold K and trains on every other video
//! of both official splits; fold 0 is the official split itself. The split depends only on the
//! set of video ids, not on their order in the annotation files. A video in both official splits
//! is an error, and so is a fold without videos. Round-robin over sorted ids puts videos with
//! neighbouring names (e.g. the `_left` and `_right` persons of one clip) in different folds.

use crate::config::TrainConfig;
use crate::data::SplitLabels;
use crate::model::{Arch, Topology};
use crate::run::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use shared::VideoId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The batch script that runs a sweep as a Slurm array, as printed in submit hints.
pub const SBATCH_SCRIPT: &str = "configs/slurm/train-sweep.sbatch";

/// A sweep definition (see the module documentation for the file format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Name of the sweep (a name, not a path).
    pub name: String,
    /// Training config (TOML) every member starts from [default: the built-in defaults].
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// Sweep folder; member `m` trains into `<out>/<m.name>`.
    pub out: PathBuf,
    /// Seeds, in member order.
    pub seeds: Vec<u64>,
    /// Optional k-fold scheme by video.
    #[serde(default)]
    pub folds: Option<FoldScheme>,
    /// Temporal encoders, in member order.
    pub archs: Vec<Arch>,
    /// Multi-task topologies, in member order.
    pub topologies: Vec<Topology>,
}

/// The `[folds]` table of a sweep file: N folds, and which of them to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldScheme {
    /// Number of folds N (at least 2; fold 0 is the official validation set).
    pub n: usize,
    /// The folds to run [default: all].
    #[serde(default)]
    pub which: FoldSelection,
}

/// Which folds of a scheme a sweep runs: `"all"` or a list such as `[0, 3]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FoldSelection {
    /// Every fold 0..N-1.
    #[default]
    All,
    /// These folds, in this order.
    Only(Vec<usize>),
}

impl Serialize for FoldSelection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            FoldSelection::All => s.serialize_str("all"),
            FoldSelection::Only(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FoldSelection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FoldSelection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""all" or a list of fold numbers such as [0, 3]"#)
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                if v == "all" {
                    Ok(FoldSelection::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut folds = Vec::new();
                while let Some(k) = seq.next_element::<usize>()? {
                    folds.push(k);
                }
                Ok(FoldSelection::Only(folds))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl FoldScheme {
    /// The folds to run, in order.
    pub fn folds(&self) -> Vec<Fold> {
        let ks: Vec<usize> = match &self.which {
            FoldSelection::All => (0..self.n).collect(),
            FoldSelection::Only(v) => v.clone(),
        };
        ks.into_iter().map(|k| Fold { k, n: self.n }).collect()
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
    /// the training videos sorted by id are dealt round-robin into folds 1..n-1.
    pub fn assign(
        train: &[VideoId],
        validation: &[VideoId],
        n: usize,
    ) -> Result<BTreeMap<VideoId, usize>> {
        if n < 2 {
            bail!("a k-fold split needs at least 2 folds, got {n}");
        }
        let train: BTreeSet<&VideoId> = train.iter().collect();
        let validation: BTreeSet<&VideoId> = validation.iter().collect();
        let both: Vec<String> = train
            .intersection(&validation)
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
        for (i, v) in train.into_iter().enumerate() {
            folds.insert(v.clone(), 1 + i % (n - 1));
        }
        Ok(folds)
    }
}

impl FromStr for Fold {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--fold {s:?}: expected K/N, e.g. 2/5"))?;
        let k = k
            .trim()
            .parse()
            .map_err(|_| format!("--fold {s:?}: K is not a whole number"))?;
        let n = n
            .trim()
            .parse()
            .map_err(|_| format!("--fold {s:?}: N is not a whole number"))?;
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

/// The k-fold split of the official training and validation videos: `(train, validation)` of
/// fold `fold`, each sorted by id (see the module documentation for the rule).
///
/// Errors when a video is in both lists, or when either side of the split has no video.
pub fn fold_split(
    train: &[VideoId],
    validation: &[VideoId],
    fold: Fold,
) -> Result<(Vec<VideoId>, Vec<VideoId>)> {
    let folds = Fold::assign(train, validation, fold.n)?;
    let (val, rest): (Vec<_>, Vec<_>) = folds.into_iter().partition(|(_, f)| *f == fold.k);
    let val: Vec<VideoId> = val.into_iter().map(|(v, _)| v).collect();
    let rest: Vec<VideoId> = rest.into_iter().map(|(v, _)| v).collect();
    if val.is_empty() {
        bail!(
            "fold {fold} has no videos: {} training videos fill only {} of the folds 1..{}; \
             choose fewer folds",
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

/// Re-split loaded labels for fold `fold`: afterwards `train` holds every video outside the fold
/// and `validation` the fold's videos, each with its labels (nothing is read again).
pub fn apply_fold(train: &mut SplitLabels, validation: &mut SplitLabels, fold: Fold) -> Result<()> {
    let train_ids: Vec<VideoId> = train.videos.keys().cloned().collect();
    let val_ids: Vec<VideoId> = validation.videos.keys().cloned().collect();
    let (_, fold_val) = fold_split(&train_ids, &val_ids, fold).with_context(|| {
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

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Position in [`members`] (the Slurm array task id that runs it).
    pub index: usize,
    /// `<arch>-<topology>-s<seed>[-f<K>of<N>]`, also the name of its run folder.
    pub name: String,
    /// Temporal encoder.
    pub arch: Arch,
    /// Multi-task topology.
    pub topology: Topology,
    /// Seed of the run.
    pub seed: u64,
    /// k-fold split, if the sweep has `[folds]`.
    pub fold: Option<Fold>,
}

impl Member {
    /// The member's run folder, `<out>/<name>`.
    pub fn run_dir(&self, sweep: &SweepFile) -> PathBuf {
        sweep.out.join(&self.name)
    }
}

/// Every member of a sweep, in the documented order (index = position).
pub fn members(s: &SweepFile) -> Vec<Member> {
    let folds: Vec<Option<Fold>> = match &s.folds {
        Some(scheme) => scheme.folds().into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for &arch in &s.archs {
        for &topology in &s.topologies {
            for &fold in &folds {
                for &seed in &s.seeds {
                    let mut name = format!("{arch}-{topology}-s{seed}");
                    if let Some(f) = fold {
                        name = format!("{name}-{}", f.tag());
                    }
                    out.push(Member {
                        index: out.len(),
                        name,
                        arch,
                        topology,
                        seed,
                        fold,
                    });
                }
            }
        }
    }
    out
}

/// Read and check a sweep file; errors name the file (and the line for syntax and unknown values).
pub fn load(path: &Path) -> Result<SweepFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sweep file {}", path.display()))?;
    let s: SweepFile =
        toml::from_str(&text).with_context(|| format!("{}: invalid sweep file", path.display()))?;
    s.check().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(s)
}

impl SweepFile {
    /// The checks [`load`] makes: a usable name, non-empty lists without repeats, valid folds.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty: give the sweep a name".into());
        }
        if self.name.contains(['/', '\\']) || self.name.chars().any(char::is_control) {
            return Err(format!(
                "`name = {:?}`: a name, not a path (no separators or control characters); \
                 the folder is `out`",
                self.name
            ));
        }
        fn distinct<T: Ord + fmt::Display>(
            key: &str,
            v: &[T],
            example: &str,
        ) -> std::result::Result<(), String> {
            if v.is_empty() {
                return Err(format!(
                    "`{key}` is empty: list at least one, e.g. {key} = {example}"
                ));
            }
            let mut seen = BTreeSet::new();
            for x in v {
                if !seen.insert(x) {
                    return Err(format!(
                        "`{key}` lists {x} twice: members would share a run folder; remove the repeat"
                    ));
                }
            }
            Ok(())
        }
        distinct("seeds", &self.seeds, "[0, 1, 2]")?;
        distinct("archs", &self.archs, r#"["lstm"]"#)?;
        distinct("topologies", &self.topologies, r#"["basic"]"#)?;
        if let Some(f) = &self.folds {
            if f.n < 2 {
                return Err(format!(
                    "[folds] n = {}: a k-fold split needs at least 2 folds (e.g. 5 or 6)",
                    f.n
                ));
            }
            if let FoldSelection::Only(ks) = &f.which {
                distinct("[folds] which", ks, "[0, 1]")?;
                if let Some(k) = ks.iter().find(|&&k| k >= f.n) {
                    return Err(format!(
                        "[folds] which lists fold {k}, but folds count from 0 to n-1 = {}",
                        f.n - 1
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The member index of a Slurm array task: `SLURM_ARRAY_TASK_ID` read through `env`, used as is
/// (not minus `SLURM_ARRAY_TASK_MIN`), so resubmitting a subset (`--array=1,4`) reruns exactly
/// those members. `Ok(None)` outside an array task.
pub fn index_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    match env("SLURM_ARRAY_TASK_ID") {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            anyhow!("SLURM_ARRAY_TASK_ID={v:?} is not a whole number; give --sweep-index N")
        }),
    }
}

/// The member to run: `index` (from `--sweep-index`, else [`index_from_env`]); errors say the
/// valid range when it is out of range or missing.
pub fn select(s: &SweepFile, index: Option<usize>) -> Result<Member> {
    let all = members(s);
    let Some(i) = index else {
        bail!(
            "sweep {}: which member? give --sweep-index N (0..{}) or run it as a Slurm array task \
             (sbatch --array=0-{} {SBATCH_SCRIPT} FILE)",
            s.name,
            all.len() - 1,
            all.len() - 1
        );
    };
    all.get(i).cloned().ok_or_else(|| {
        anyhow!(
            "sweep {}: member {i} does not exist; it has {} members (indices 0..{}); \
             see `temporal sweep FILE --list`",
            s.name,
            all.len(),
            all.len() - 1
        )
    })
}

/// The training config a member starts from: the sweep's `base` file, else the defaults.
pub fn base_config(s: &SweepFile) -> Result<TrainConfig> {
    match &s.base {
        Some(p) => {
            TrainConfig::load(p).with_context(|| format!("the base config of sweep {}", s.name))
        }
        None => Ok(TrainConfig::default()),
    }
}

/// Set what the member decides in `cfg`: arch, topology, seed and run folder. (The fold is
/// `member.fold`; the trainer applies it with [`apply_fold`].)
pub fn apply(s: &SweepFile, member: &Member, cfg: &mut TrainConfig) {
    cfg.model.arch = member.arch;
    cfg.model.topology = member.topology;
    cfg.seed = member.seed;
    cfg.out = Some(member.run_dir(s));
}

/// How far a member's run has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// No `config.toml` in its run folder.
    NotStarted,
    /// Some epochs done (possibly 0, or still running).
    Partial {
        /// Epochs completed.
        done: usize,
        /// Epochs configured.
        epochs: usize,
    },
    /// Every configured epoch done.
    Finished {
        /// Epochs configured (and done).
        epochs: usize,
    },
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberStatus::NotStarted => f.write_str("not started"),
            MemberStatus::Partial { done, epochs } => write!(f, "partial ({done}/{epochs} epochs)"),
            MemberStatus::Finished { epochs } => write!(f, "finished ({epochs}/{epochs} epochs)"),
        }
    }
}

/// The status of the run folder `dir`, from its `config.toml` (epochs) and `state/progress.json`.
pub fn member_status(dir: &Path) -> Result<MemberStatus> {
    if !dir.join("config.toml").exists() {
        return Ok(MemberStatus::NotStarted);
    }
    let run = RunDir::open(dir)?;
    let epochs = TrainConfig::load(&run.config())?.epochs;
    let done = run.read_progress()?.epochs_done;
    Ok(if done >= epochs {
        MemberStatus::Finished { epochs }
    } else {
        MemberStatus::Partial { done, epochs }
    })
}

/// The finished run folders directly under a sweep folder, sorted by name (sub-folders that are
/// not run folders, or have not finished, are left out).
pub fn finished_runs(sweep_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(sweep_dir)
        .with_context(|| format!("cannot list the sweep folder {}", sweep_dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("cannot list the sweep folder {}", sweep_dir.display()))?
            .path();
        if path.is_dir() && matches!(member_status(&path)?, MemberStatus::Finished { .. }) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Slurm's `--array` syntax for a sorted list of indices, ranges merged: `[0,1,2,5]` -> `0-2,5`.
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j == i {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(x, w)| format!("{x:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// What `temporal sweep FILE --list` prints: one line per member, then `array size: N` and the
/// submit command.
pub fn list_text(s: &SweepFile, file: &Path) -> String {
    let all = members(s);
    let mut rows = vec![["index", "member", "arch", "topology", "seed", "fold"]
        .map(String::from)
        .to_vec()];
    for m in &all {
        rows.push(vec![
            m.index.to_string(),
            m.name.clone(),
            m.arch.to_string(),
            m.topology.to_string(),
            m.seed.to_string(),
            m.fold.map_or("-".to_string(), |f| f.to_string()),
        ]);
    }
    format!(
        "sweep {}: {} members -> {}\n{}array size: {}\nsubmit: sbatch --array=0-{} {SBATCH_SCRIPT} {}\n",
        s.name,
        all.len(),
        s.out.display(),
        table(&rows),
        all.len(),
        all.len() - 1,
        file.display()
    )
}

/// What `temporal sweep FILE` prints: each member's status, the count of finished members, and
/// the `--array` that reruns the unfinished ones (partial runs resume).
pub fn status_text(s: &SweepFile, file: &Path) -> Result<String> {
    let all = members(s);
    let mut rows = vec![["index", "member", "status", "run folder"]
        .map(String::from)
        .to_vec()];
    let mut todo = Vec::new();
    for m in &all {
        let dir = m.run_dir(s);
        let st = member_status(&dir)?;
        if !matches!(st, MemberStatus::Finished { .. }) {
            todo.push(m.index);
        }
        rows.push(vec![
            m.index.to_string(),
            m.name.clone(),
            st.to_string(),
            dir.display().to_string(),
        ]);
    }
    let mut text = format!(
        "sweep {}: {} members -> {}\n{}finished: {} of {}\n",
        s.name,
        all.len(),
        s.out.display(),
        table(&rows),
        all.len() - todo.len(),
        all.len()
    );
    if !todo.is_empty() {
        text.push_str(&format!(
            "resubmit the rest: sbatch --array={} {SBATCH_SCRIPT} {}\n",
            array_spec(&todo),
            file.display()
        ));
    }
    Ok(text)
}

/// List a sweep's members (`--list`), or show how far each has come.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep definition (TOML: name, base, out, seeds, archs, topologies, optional [folds]).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the members and the array size to submit, without looking at their run folders.
    #[arg(long)]
    pub list: bool,
}

/// Run `temporal sweep`.
pub fn run(args: &SweepArgs) -> Result<()> {
    let s = load(&args.file)?;
    let text = if args.list {
        list_text(&s, &args.file)
    } else {
        status_text(&s, &args.file)?
    };
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Progress;
    use shared::FrameLabels;

    fn ids(names: &[&str]) -> Vec<VideoId> {
        names.iter().map(|n| VideoId::new(*n).unwrap()).collect()
    }

    fn parse(text: &str) -> std::result::Result<SweepFile, String> {
        let s: SweepFile = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    const EXAMPLE: &str = r#"
name = "demo"
base = "configs/demo.toml"
out = "runs/sweeps/demo"
seeds = [0, 1]
archs = ["lstm", "gru"]
topologies = ["basic"]
[folds]
n = 5
which = [0, 2]
"#;

    #[test]
    fn members_follow_the_documented_order() {
        let s = parse(EXAMPLE).unwrap();
        let m = members(&s);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        // arch slowest, then topology, then fold, seed fastest.
        assert_eq!(
            names,
            [
                "lstm-basic-s0-f0of5",
                "lstm-basic-s1-f0of5",
                "lstm-basic-s0-f2of5",
                "lstm-basic-s1-f2of5",
                "gru-basic-s0-f0of5",
                "gru-basic-s1-f0of5",
                "gru-basic-s0-f2of5",
                "gru-basic-s1-f2of5",
            ]
        );
        // index = ((a*T + t)*F + f)*S + s with a=1, t=0, f=1, s=1, T=1, F=2, S=2 -> 7.
        let last = &m[7];
        assert_eq!(last.index, 7);
        assert_eq!(
            (last.arch, last.topology, last.seed),
            (Arch::Gru, Topology::Basic, 1)
        );
        assert_eq!(last.fold, Some(Fold { k: 2, n: 5 }));
        assert_eq!(
            last.run_dir(&s),
            PathBuf::from("runs/sweeps/demo/gru-basic-s1-f2of5")
        );
        assert!(m.iter().enumerate().all(|(i, m)| m.index == i));
    }

    #[test]
    fn no_folds_and_all_folds() {
        let s = parse(
            r#"name = "x"
out = "o"
seeds = [3]
archs = ["transformer"]
topologies = ["share-bottom", "feedback"]"#,
        )
        .unwrap();
        let names: Vec<String> = members(&s).into_iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            ["transformer-share-bottom-s3", "transformer-feedback-s3"]
        );
        assert_eq!(s.base, None);

        let s = parse("name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n[folds]\nn = 6\n").unwrap();
        let folds: Vec<Option<Fold>> = members(&s).into_iter().map(|m| m.fold).collect();
        assert_eq!(
            folds,
            (0..6).map(|k| Some(Fold { k, n: 6 })).collect::<Vec<_>>()
        );
        let s = parse("name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n[folds]\nn = 5\nwhich = \"all\"\n").unwrap();
        assert_eq!(members(&s).len(), 5);
    }

    #[test]
    fn mistakes_are_named() {
        let base = "name = \"x\"\nout = \"o\"\nseeds = [0]\narchs = [\"lstm\"]\ntopologies = [\"basic\"]\n";
        let cases: [(String, &str); 9] = [
            (base.replace("\"lstm\"", "\"lstn\""), "lstn"),
            (
                base.replace("seeds = [0]", "seeds = []"),
                "`seeds` is empty",
            ),
            (
                base.replace("seeds = [0]", "seeds = [1, 1]"),
                "lists 1 twice",
            ),
            (base.replace("\"basic\"]", "\"basic\", \"basic\"]"), "twice"),
            (base.replace("name = \"x\"", "name = \"a/b\""), "not a path"),
            (format!("{base}[folds]\nn = 1\n"), "at least 2 folds"),
            (format!("{base}[folds]\nn = 5\nwhich = [0, 5]\n"), "fold 5"),
            (
                format!("{base}[folds]\nn = 5\nwhich = \"some\"\n"),
                "\"all\" or a list",
            ),
            (format!("{base}epochs = 3\n"), "unknown field `epochs`"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        // The TOML error names the line of the unknown arch.
        let err = parse(&base.replace("\"lstm\"", "\"lstn\"")).unwrap_err();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, EXAMPLE.replace("seeds = [0, 1]", "seeds = []")).unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(
            err.contains("sweep.toml") && err.contains("`seeds` is empty"),
            "{err}"
        );
        std::fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(load(&path).unwrap(), parse(EXAMPLE).unwrap());
        let err = format!("{:#}", load(&dir.path().join("none.toml")).unwrap_err());
        assert!(err.contains("none.toml"), "{err}");
    }

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
        let (train, val) = (ids(&TRAIN), ids(&VAL));
        let split = |k| fold_split(&train, &val, Fold { k, n: 4 }).unwrap();
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
            let (t, v) = fold_split(&reversed, &val, Fold { k, n: 4 }).unwrap();
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
        let (train, val) = (ids(&TRAIN), ids(&VAL));
        // 7 training videos fill folds 1..7 of 9 training folds: fold 8 is empty.
        let err = fold_split(&train, &val, Fold { k: 8, n: 10 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("fold 8/10 has no videos"), "{err}");
        assert!(fold_split(&train, &val, Fold { k: 7, n: 10 }).is_ok());
        let err = fold_split(&train, &ids(&["v1", "t03"]), Fold { k: 0, n: 4 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("t03") && err.contains("both"), "{err}");
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
        apply_fold(&mut train, &mut val, Fold { k: 2, n: 4 }).unwrap();
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

    #[test]
    fn slurm_index_and_selection() {
        let s = parse(EXAMPLE).unwrap();
        let env =
            |id: &'static str| move |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| id.to_string());
        assert_eq!(index_from_env(env("5")).unwrap(), Some(5));
        assert_eq!(index_from_env(|_| None).unwrap(), None);
        assert!(index_from_env(env("x")).is_err());
        assert_eq!(select(&s, Some(5)).unwrap().name, "gru-basic-s1-f0of5");
        let err = select(&s, Some(8)).unwrap_err().to_string();
        assert!(err.contains("8 members") && err.contains("0..7"), "{err}");
        let err = select(&s, None).unwrap_err().to_string();
        assert!(err.contains("--sweep-index"), "{err}");
    }

    #[test]
    fn apply_sets_what_the_member_decides() {
        let mut s = parse(EXAMPLE).unwrap();
        s.base = None;
        let m = select(&s, Some(6)).unwrap();
        let mut cfg = base_config(&s).unwrap();
        cfg.epochs = 7;
        apply(&s, &m, &mut cfg);
        assert_eq!(
            (cfg.model.arch, cfg.model.topology, cfg.seed),
            (Arch::Gru, Topology::Basic, 0)
        );
        assert_eq!(
            cfg.run_dir(),
            PathBuf::from("runs/sweeps/demo/gru-basic-s0-f2of5")
        );
        assert_eq!(cfg.epochs, 7, "other settings are kept");

        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        std::fs::write(&base, "epochs = 4\nlr = 0.01\n").unwrap();
        s.base = Some(base);
        let cfg = base_config(&s).unwrap();
        assert_eq!((cfg.epochs, cfg.lr), (4, 0.01));
    }

    fn fake_run(dir: &Path, epochs: usize, done: Option<usize>) {
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let cfg = TrainConfig {
            epochs,
            ..Default::default()
        };
        std::fs::write(dir.join("config.toml"), cfg.to_toml().unwrap()).unwrap();
        if let Some(done) = done {
            let p = Progress {
                epochs_done: done,
                ..Default::default()
            };
            std::fs::write(
                dir.join("state/progress.json"),
                serde_json::to_string(&p).unwrap(),
            )
            .unwrap();
        }
    }

    #[test]
    fn status_of_members_and_finished_runs() {
        let dir = tempfile::tempdir().unwrap();
        let s = SweepFile {
            name: "t".into(),
            base: None,
            out: dir.path().join("sweep"),
            seeds: vec![0, 1, 2, 3],
            folds: None,
            archs: vec![Arch::Lstm],
            topologies: vec![Topology::Basic],
        };
        let m = members(&s);
        fake_run(&m[0].run_dir(&s), 3, Some(3));
        fake_run(&m[1].run_dir(&s), 3, Some(1));
        fake_run(&m[2].run_dir(&s), 3, None);
        std::fs::create_dir_all(s.out.join("not-a-run")).unwrap();
        let st: Vec<MemberStatus> = m
            .iter()
            .map(|m| member_status(&m.run_dir(&s)).unwrap())
            .collect();
        assert_eq!(
            st,
            [
                MemberStatus::Finished { epochs: 3 },
                MemberStatus::Partial { done: 1, epochs: 3 },
                MemberStatus::Partial { done: 0, epochs: 3 },
                MemberStatus::NotStarted,
            ]
        );
        assert_eq!(
            finished_runs(&s.out).unwrap(),
            vec![s.out.join("lstm-basic-s0")]
        );
        let text = status_text(&s, Path::new("sw.toml")).unwrap();
        assert!(text.contains("finished: 1 of 4\n"), "{text}");
        assert!(
            text.contains(
                "resubmit the rest: sbatch --array=1-3 configs/slurm/train-sweep.sbatch sw.toml\n"
            ),
            "{text}"
        );
        assert!(text.contains("partial (1/3 epochs)"), "{text}");
    }

    #[test]
    fn list_and_array_spec() {
        let s = parse(EXAMPLE).unwrap();
        let text = list_text(&s, Path::new("configs/sweeps/demo.toml"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 1 + 8 + 2, "{text}");
        assert_eq!(lines[0], "sweep demo: 8 members -> runs/sweeps/demo");
        assert!(lines[1].starts_with("index  member  "), "{text}");
        assert_eq!(
            lines[9].split_whitespace().collect::<Vec<_>>(),
            ["7", "gru-basic-s1-f2of5", "gru", "basic", "1", "2/5"]
        );
        assert_eq!(lines[10], "array size: 8");
        assert_eq!(
            lines[11],
            "submit: sbatch --array=0-7 configs/slurm/train-sweep.sbatch configs/sweeps/demo.toml"
        );
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_spec(&[4]), "4");
        assert_eq!(array_spec(&[]), "");
    }
}
