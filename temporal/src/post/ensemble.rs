//! `temporal ensemble`: combine several folders of prediction CSVs frame by frame.
//!
//! What it does:
//! - Checks that every member covers the same videos and, per video, the same frames; a
//!   mismatch is an error naming the member folders, the video and the frames.
//! - `mean`: weighted mean of valence, arousal, the expression probabilities and the AU
//!   probabilities (`--weights 0.6,0.4`, normalised to sum 1; equal weights by default).
//! - `vote`: valence and arousal are the weighted mean. Expression: each member votes for its
//!   argmax class (first on ties, as [`shared::Prediction::decide`]) with its weight; the class
//!   with the most votes wins, ties go to the class with the higher weighted-mean probability,
//!   then to the lower class id. AU: each member votes active where its probability is at least
//!   0.5; the side with more (weighted) votes wins, and an exact tie is decided by the weighted
//!   mean probability `>= 0.5`. Vote sums that differ by less than 1e-9 count as tied.
//!   The output CSV still holds probabilities: the weighted-mean probabilities, **adjusted only
//!   where their own decision would differ from the vote**, so that `decide` at 0.5 on the
//!   output reproduces the vote exactly: the voted expression class is raised to the largest
//!   mean probability plus [`VOTE_MARGIN`] and the row renormalised to sum 1; an AU voted active
//!   whose mean is below 0.5 is written 0.5, one voted inactive whose mean is at least 0.5 is
//!   written `0.5 - VOTE_MARGIN`. Submit voted ensembles with AU thresholds 0.5 to keep the vote.
//! - `best-per-task` (needs `--labels`): scores each member on the annotated frames (AU
//!   threshold 0.5) and takes, per task group, the best member's outputs: valence and arousal
//!   from the member with the best mean CCC, expression from the best macro F1, AUs from the
//!   best AU F1 (the first member listed wins ties).
//! - Writes one `<video>.csv` per video and `<out>/ensemble.json` ([`EnsembleFile`]: method,
//!   members, weights, per-task choice); `--config` applies a saved file to other members
//!   (e.g. the test predictions of the same models, listed in the same order).
//!
//! What it does not: smooth (run `temporal smooth` before or after), tune weights, or decide
//! submission rows (that is `temporal submit`).

use super::align::annotated_rows;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use shared::abaw::{
    read_mtl_annotations, read_prediction_dir, write_prediction_dir, PredictionSet,
};
use shared::metrics::{score_predictions, MtlScore};
use shared::tasks::DEFAULT_AU_THRESHOLDS;
use shared::{Prediction, VideoId, N_AU, N_EXPR};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// How far a vote adjustment moves a probability past the value that would decide otherwise.
pub const VOTE_MARGIN: f32 = 1e-4;

/// Vote sums closer than this are a tie.
const VOTE_TIE: f64 = 1e-9;

/// Name of the file written into the output folder.
pub const ENSEMBLE_FILE: &str = "ensemble.json";

/// Combine prediction folders of several models frame by frame.
#[derive(Debug, Clone, Args)]
pub struct EnsembleArgs {
    /// Folders of prediction CSVs (`<video>.csv`) covering the same frames, two or more in all; a
    /// run folder stands for its `predictions/<split>`, and a sweep folder for every finished
    /// member run in it (unfinished members are skipped with a warning).
    #[arg(value_name = "PREDS", required = true, num_args = 1..)]
    pub preds: Vec<PathBuf>,
    /// With run or sweep folders: which split's predictions to combine.
    #[arg(long, value_enum, default_value = "validation")]
    pub split: crate::data::Split,
    /// Output folder: one combined `<video>.csv` per video and `ensemble.json`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How to combine: weighted mean, majority vote (VA still averaged), or the best member per
    /// task group on `--labels`.
    #[arg(long, value_enum, default_value_t = EnsembleMethod::Mean, conflicts_with = "config")]
    pub method: EnsembleMethod,
    /// Member weights in the order of PREDS, e.g. `0.6,0.4` (normalised to sum 1; equal by
    /// default). Used by mean and vote.
    #[arg(long, value_name = "W,W,...", conflicts_with = "config")]
    pub weights: Option<String>,
    /// MTL annotation file: required by best-per-task (to choose members); with mean and vote,
    /// the members and the ensemble are scored on it and the scores printed.
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<PathBuf>,
    /// Apply the method, weights and per-task choice saved in this `ensemble.json` (written by
    /// an earlier run on, e.g., validation predictions) to PREDS, listed in the same order.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
}

/// How members are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EnsembleMethod {
    /// Weighted mean of every output.
    Mean,
    /// Weighted mean of VA, majority vote for expression and AUs.
    Vote,
    /// Per task group, the member that scores best on the labels.
    BestPerTask,
}

/// Which member (0-based, in the order of PREDS) provides each task group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskChoice {
    /// Member for valence and arousal.
    pub va: usize,
    /// Member for the expression probabilities.
    pub expr: usize,
    /// Member for the AU probabilities.
    pub au: usize,
}

/// The content of `ensemble.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleFile {
    /// The method.
    pub method: EnsembleMethod,
    /// The member folders, in order.
    pub members: Vec<PathBuf>,
    /// Normalised weights, one per member.
    pub weights: Vec<f64>,
    /// The per-task choice (best-per-task only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<TaskChoice>,
    /// Each member's scores on the labels, when labels were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_scores: Option<Vec<MtlScore>>,
}

/// Parse `--weights`: `n` comma-separated non-negative numbers with a positive sum, normalised.
pub fn parse_weights(spec: &str, n: usize) -> Result<Vec<f64>> {
    let weights: Vec<f64> = spec
        .split(',')
        .map(|w| {
            w.trim()
                .parse::<f64>()
                .ok()
                .filter(|w| w.is_finite() && *w >= 0.0)
                .with_context(|| format!("--weights {spec:?}: {w:?} is not a non-negative number"))
        })
        .collect::<Result<_>>()?;
    if weights.len() != n {
        bail!(
            "--weights {spec:?} gives {} weights for {n} prediction folders; give one per folder, in order",
            weights.len()
        );
    }
    normalise(weights).with_context(|| format!("--weights {spec:?}"))
}

/// Scale weights to sum 1; error if they sum to 0.
fn normalise(weights: Vec<f64>) -> Result<Vec<f64>> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        bail!("the weights sum to {total}; at least one must be positive");
    }
    Ok(weights.into_iter().map(|w| w / total).collect())
}

/// Check that every member has the same videos and, per video, the same frames as the first.
/// `names` labels the members in errors (their folders).
pub fn check_coverage(names: &[PathBuf], members: &[PredictionSet]) -> Result<()> {
    let (first_name, first) = (&names[0], &members[0]);
    for (name, member) in names.iter().zip(members).skip(1) {
        let only = |a: &PredictionSet, b: &PredictionSet| -> Vec<VideoId> {
            a.keys().filter(|v| !b.contains_key(*v)).cloned().collect()
        };
        for (missing, has, lacks) in [
            (only(first, member), first_name, name),
            (only(member, first), name, first_name),
        ] {
            if let Some(video) = missing.first() {
                bail!(
                    "video {video} is in {} but not in {} ({} such videos); ensemble members must \
                     cover the same videos",
                    has.display(),
                    lacks.display(),
                    missing.len()
                );
            }
        }
        for (video, rows) in first {
            let other = &member[video];
            let a: BTreeSet<u32> = rows.iter().map(|(f, _)| *f).collect();
            let b: BTreeSet<u32> = other.iter().map(|(f, _)| *f).collect();
            if a != b {
                let list = |s: Vec<&u32>| {
                    let shown: Vec<String> = s.iter().take(5).map(|f| f.to_string()).collect();
                    let more = s.len().saturating_sub(shown.len());
                    let tail = if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    };
                    format!("[{}{tail}]", shown.join(", "))
                };
                bail!(
                    "video {video}: the members cover different frames: frames {} only in {}, \
                     frames {} only in {}; ensemble members must predict the same frames \
                     (run `temporal predict` with the same split and frames for every model)",
                    list(a.difference(&b).collect()),
                    first_name.display(),
                    list(b.difference(&a).collect()),
                    name.display()
                );
            }
        }
    }
    Ok(())
}

/// Weighted mean of the members' predictions of one frame (`weights` sum to 1).
pub fn mean_prediction(members: &[Prediction], weights: &[f64]) -> Prediction {
    let mut v = 0.0f64;
    let mut a = 0.0f64;
    let mut e = [0.0f64; N_EXPR];
    let mut u = [0.0f64; N_AU];
    for (p, &w) in members.iter().zip(weights) {
        v += w * f64::from(p.valence);
        a += w * f64::from(p.arousal);
        for (acc, &q) in e.iter_mut().zip(&p.expression) {
            *acc += w * f64::from(q);
        }
        for (acc, &q) in u.iter_mut().zip(&p.aus) {
            *acc += w * f64::from(q);
        }
    }
    Prediction {
        valence: v as f32,
        arousal: a as f32,
        expression: e.map(|x| x.clamp(0.0, 1.0) as f32),
        aus: u.map(|x| x.clamp(0.0, 1.0) as f32),
    }
}

/// First index of the largest value.
fn first_argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Majority vote of the members for one frame (see the module documentation): VA and
/// probabilities are the weighted mean, adjusted so that `decide` at 0.5 gives the vote.
pub fn vote_prediction(members: &[Prediction], weights: &[f64]) -> Prediction {
    let mut out = mean_prediction(members, weights);
    // Expression: weighted votes for each member's argmax.
    let mut votes = [0.0f64; N_EXPR];
    for (p, &w) in members.iter().zip(weights) {
        votes[first_argmax(&p.expression)] += w;
    }
    let most = votes.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut class = None::<usize>;
    for (k, &v) in votes.iter().enumerate() {
        if v < most - VOTE_TIE {
            continue;
        }
        class = match class {
            Some(c) if out.expression[k] <= out.expression[c] => Some(c),
            _ => Some(k),
        };
    }
    let class = class.unwrap_or(0);
    if first_argmax(&out.expression) != class {
        let top = out.expression.iter().cloned().fold(0.0f32, f32::max);
        let mut e = out.expression.map(f64::from);
        e[class] = f64::from(top) + f64::from(VOTE_MARGIN);
        let sum: f64 = e.iter().sum();
        out.expression = e.map(|x| (x / sum) as f32);
    }
    // AUs: weighted votes at 0.5, ties by the mean probability.
    for j in 0..N_AU {
        let on: f64 = members
            .iter()
            .zip(weights)
            .filter(|(p, _)| p.aus[j] >= 0.5)
            .map(|(_, w)| w)
            .sum();
        let off: f64 = weights.iter().sum::<f64>() - on;
        let active = if (on - off).abs() < VOTE_TIE {
            out.aus[j] >= 0.5
        } else {
            on > off
        };
        if active && out.aus[j] < 0.5 {
            out.aus[j] = 0.5;
        } else if !active && out.aus[j] >= 0.5 {
            out.aus[j] = 0.5 - VOTE_MARGIN;
        }
    }
    out
}

/// Combine every frame of every video with `f` (members already checked to cover the same
/// frames, see [`check_coverage`]).
fn combine(
    members: &[PredictionSet],
    f: impl Fn(&[Prediction]) -> Prediction + Sync,
) -> PredictionSet {
    use rayon::prelude::*;
    members[0]
        .par_iter()
        .map(|(video, rows)| {
            let combined = (0..rows.len())
                .map(|i| {
                    let frame: Vec<Prediction> = members.iter().map(|m| m[video][i].1).collect();
                    (rows[i].0, f(&frame))
                })
                .collect();
            (video.clone(), combined)
        })
        .collect()
}

/// Weighted mean ensemble of members covering the same frames.
pub fn mean_ensemble(members: &[PredictionSet], weights: &[f64]) -> PredictionSet {
    combine(members, |ps| mean_prediction(ps, weights))
}

/// Vote ensemble of members covering the same frames.
pub fn vote_ensemble(members: &[PredictionSet], weights: &[f64]) -> PredictionSet {
    combine(members, |ps| vote_prediction(ps, weights))
}

/// Take VA, expression and AUs from the members `choice` names.
pub fn pick_per_task(members: &[PredictionSet], choice: TaskChoice) -> PredictionSet {
    combine(members, |ps| Prediction {
        valence: ps[choice.va].valence,
        arousal: ps[choice.va].arousal,
        expression: ps[choice.expr].expression,
        aus: ps[choice.au].aus,
    })
}

/// Score a prediction set on annotations (AU threshold 0.5); `name` is named in errors.
fn score_set(preds: &PredictionSet, labels: &Path, name: &Path) -> Result<MtlScore> {
    let truth = read_mtl_annotations(labels)?;
    let located = annotated_rows(preds, &truth, name)?;
    let gold: Vec<_> = located.iter().map(|(_, _, l)| *l).collect();
    let p: Vec<Prediction> = located.iter().map(|(v, i, _)| preds[*v][*i].1).collect();
    Ok(score_predictions(&gold, &p, &DEFAULT_AU_THRESHOLDS))
}

/// Per task group, the first member with the best score: VA by mean CCC, expression by macro
/// F1, AUs by AU F1.
pub fn choose_best(scores: &[MtlScore]) -> TaskChoice {
    let best = |f: &dyn Fn(&MtlScore) -> f64| {
        let mut best = 0;
        for (m, s) in scores.iter().enumerate() {
            if f(s) > f(&scores[best]) {
                best = m;
            }
        }
        best
    };
    TaskChoice {
        va: best(&|s| (s.ccc_valence + s.ccc_arousal) / 2.0),
        expr: best(&|s| s.f1_expr),
        au: best(&|s| s.f1_au),
    }
}

/// Read a saved `ensemble.json`.
pub fn read_ensemble_file(path: &Path) -> Result<EnsembleFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the ensemble file", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not an ensemble file; use the ensemble.json an earlier `temporal ensemble` wrote",
            path.display()
        )
    })
}

/// The prediction folders PREDS stand for: a run folder gives `<run>/predictions/<split>`, a
/// sweep folder (holding run folders) each finished member's; other folders are taken as they are.
pub fn expand_members(preds: &[PathBuf], split: crate::data::Split) -> Result<Vec<PathBuf>> {
    let of_run = |run: &Path| run.join("predictions").join(split.name());
    let mut out = Vec::new();
    for p in preds {
        if p.join("config.toml").exists() {
            out.push(of_run(p));
            continue;
        }
        let runs: Vec<PathBuf> = match std::fs::read_dir(p) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| d.join("config.toml").exists())
                .collect(),
            Err(_) => Vec::new(),
        };
        if runs.is_empty() {
            out.push(p.clone());
            continue;
        }
        let finished = crate::sweep::finished_runs(p)?;
        for r in &runs {
            if !finished.contains(r) {
                tracing::warn!("{}: not finished, left out of the ensemble", r.display());
            }
        }
        for r in finished {
            let dir = of_run(&r);
            if dir.is_dir() {
                out.push(dir);
            } else {
                tracing::warn!(
                    "{}: finished but has no {} predictions (run `temporal predict --run {} --split {}`); left out",
                    r.display(),
                    split.name(),
                    r.display(),
                    split.name()
                );
            }
        }
    }
    if out.len() < 2 {
        bail!(
            "an ensemble needs two or more members; PREDS gave {}: {:?}",
            out.len(),
            out
        );
    }
    Ok(out)
}

/// Run the command: read and check the members, combine, write the CSVs and `ensemble.json`.
pub fn run(args: &EnsembleArgs) -> Result<()> {
    let preds = expand_members(&args.preds, args.split)?;
    let args = &EnsembleArgs {
        preds,
        ..args.clone()
    };
    let n = args.preds.len();
    let members: Vec<PredictionSet> = args
        .preds
        .iter()
        .map(|dir| read_prediction_dir(dir).map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    check_coverage(&args.preds, &members)?;
    let (method, weights, saved_choice) = match &args.config {
        Some(path) => {
            let saved = read_ensemble_file(path)?;
            if saved.weights.len() != n {
                bail!(
                    "{}: saved for {} members but {n} prediction folders were given; list the \
                     folders of the same models in the same order",
                    path.display(),
                    saved.weights.len()
                );
            }
            let weights =
                normalise(saved.weights).with_context(|| format!("{}", path.display()))?;
            (saved.method, weights, saved.choice)
        }
        None => {
            let weights = match &args.weights {
                Some(spec) => parse_weights(spec, n)?,
                None => vec![1.0 / n as f64; n],
            };
            (args.method, weights, None)
        }
    };
    let member_scores = match &args.labels {
        Some(labels) => Some(
            members
                .iter()
                .zip(&args.preds)
                .map(|(m, name)| score_set(m, labels, name))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let mut choice = None;
    let combined = match method {
        EnsembleMethod::Mean => mean_ensemble(&members, &weights),
        EnsembleMethod::Vote => vote_ensemble(&members, &weights),
        EnsembleMethod::BestPerTask => {
            let c = match (saved_choice, &member_scores) {
                (Some(c), _) => c,
                (None, Some(scores)) => choose_best(scores),
                (None, None) => bail!(
                    "--method best-per-task needs --labels (an MTL annotation file) to choose the \
                     best member of each task, or --config with a saved choice"
                ),
            };
            for (task, m) in [("va", c.va), ("expr", c.expr), ("au", c.au)] {
                if m >= n {
                    bail!("the saved choice takes {task} from member {m}, but only {n} folders were given");
                }
            }
            choice = Some(c);
            pick_per_task(&members, c)
        }
    };
    if let (Some(labels), Some(scores)) = (&args.labels, &member_scores) {
        for (dir, s) in args.preds.iter().zip(scores) {
            println!("member {}: P_MTL {:.4}", dir.display(), s.p_mtl);
        }
        let s = score_set(&combined, labels, &args.out)?;
        println!("ensemble: P_MTL {:.4} (AU threshold 0.5)", s.p_mtl);
    }
    if let Some(c) = choice {
        println!(
            "per task: va from {}, expr from {}, au from {}",
            args.preds[c.va].display(),
            args.preds[c.expr].display(),
            args.preds[c.au].display()
        );
    }
    write_prediction_dir(&args.out, &combined)?;
    let file = EnsembleFile {
        method,
        members: args.preds.clone(),
        weights,
        choice,
        member_scores,
    };
    let path = args.out.join(ENSEMBLE_FILE);
    let json = serde_json::to_string_pretty(&file)?;
    shared::atomic::write_atomically(&path, |w| w.write_all(json.as_bytes()))?;
    println!(
        "{} ensemble of {n} members: {} videos written to {} (settings in {})",
        match method {
            EnsembleMethod::Mean => "mean",
            EnsembleMethod::Vote => "vote",
            EnsembleMethod::BestPerTask => "best-per-task",
        },
        combined.len(),
        args.out.display(),
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_normalised_and_checked() {
        assert_eq!(parse_weights("3,1", 2).unwrap(), [0.75, 0.25]);
        let err = format!("{:#}", parse_weights("1,2,3", 2).unwrap_err());
        assert!(err.contains("3 weights for 2 prediction folders"), "{err}");
        let err = format!("{:#}", parse_weights("1,-2", 2).unwrap_err());
        assert!(err.contains("not a non-negative number"), "{err}");
        let err = format!("{:#}", parse_weights("0,0", 2).unwrap_err());
        assert!(err.contains("at least one must be positive"), "{err}");
    }
}
