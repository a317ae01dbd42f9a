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
//! - `rule-vote` (expression only; ABAW5, Wang et al., the bagged committee's meta-classifier):
//!   each member's class is its argmax (first on ties). If any member predicts a class of
//!   `--priority` (default `2,3,5,1`, the paper's Disgust > Fear > Sadness > Anger), the answer
//!   is the first class of that list that some member predicts; otherwise the (weighted)
//!   majority vote, ties broken by the higher weighted-mean probability, then the lower class
//!   id. The written expression probabilities are the weighted mean adjusted as `vote` adjusts
//!   them (only where the mean's argmax differs from the answer), so `decide` reproduces the
//!   rule. Valence, arousal and the AU probabilities are the weighted mean (the rule says
//!   nothing about them). Every member must predict expressions: a member whose every row has
//!   the uniform 1/8 a model without an expression head writes is an error naming its folder.
//!   A priority class outside 0..7 or listed twice is an error.
//! - Writes one `<video>.csv` per video and `<out>/ensemble.json` ([`EnsembleFile`]: method,
//!   members, weights, per-task choice); `--config` applies a saved file to other members
//!   (e.g. the test predictions of the same models, listed in the same order). The
//!   `drop-other.json` marker of any member travels to the output ([`super::other`]).
//!
//! What it does not: smooth (run `temporal smooth` before or after), tune weights, or decide
//! submission rows (that is `temporal submit`).

use super::align::annotated_rows;
use super::forced::{first_argmax, force_class};
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

pub use super::forced::VOTE_MARGIN;

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
    /// rule-vote: expression classes (0..7) that win whenever a member predicts one, first in
    /// the list first [default: 2,3,5,1, the paper's order].
    #[arg(long, value_name = "K,K,...", conflicts_with = "config")]
    pub priority: Option<String>,
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
    /// Expression by the priority rule, then majority vote (`--priority`); VA and AUs averaged.
    RuleVote,
}

impl EnsembleMethod {
    /// The method's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EnsembleMethod::Mean => "mean",
            EnsembleMethod::Vote => "vote",
            EnsembleMethod::BestPerTask => "best-per-task",
            EnsembleMethod::RuleVote => "rule-vote",
        }
    }
}

/// The paper's priority list of the rule vote: Disgust (2) > Fear (3) > Sadness (5) > Anger (1).
pub const PAPER_PRIORITY: [u8; 4] = [2, 3, 5, 1];

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
    /// The priority list (rule-vote only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Vec<u8>>,
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

/// The weighted majority class of `members` (each votes for its argmax, first on ties); ties
/// go to the higher `mean` probability, then to the lower class id.
fn majority_class(members: &[Prediction], weights: &[f64], mean: &[f32; N_EXPR]) -> usize {
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
            Some(c) if mean[k] <= mean[c] => Some(c),
            _ => Some(k),
        };
    }
    class.unwrap_or(0)
}

/// The rule vote's expression class for one frame (see the module documentation): the first
/// class of `priority` some member predicts, else the weighted majority with ties to the higher
/// weighted-mean probability (then the lower class id).
pub fn rule_vote_class(members: &[Prediction], weights: &[f64], priority: &[u8]) -> usize {
    let predicted: Vec<usize> = members
        .iter()
        .map(|p| first_argmax(&p.expression))
        .collect();
    if let Some(&k) = priority
        .iter()
        .find(|&&k| predicted.contains(&usize::from(k)))
    {
        return usize::from(k);
    }
    let mean = mean_prediction(members, weights).expression;
    majority_class(members, weights, &mean)
}

/// The rule vote of the members for one frame: the weighted mean, with the expression
/// probabilities adjusted so that their argmax is [`rule_vote_class`].
pub fn rule_vote_prediction(
    members: &[Prediction],
    weights: &[f64],
    priority: &[u8],
) -> Prediction {
    let mut out = mean_prediction(members, weights);
    let class = rule_vote_class(members, weights, priority);
    force_class(&mut out.expression, class);
    out
}

/// Parse `--priority`: comma-separated expression classes in 0..7, none twice.
pub fn parse_priority(spec: &str) -> Result<Vec<u8>> {
    let classes = || {
        shared::tasks::EXPRESSIONS
            .iter()
            .enumerate()
            .map(|(k, name)| format!("{k} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out: Vec<u8> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let k = item
            .parse::<u8>()
            .ok()
            .filter(|&k| usize::from(k) < N_EXPR)
            .with_context(|| {
                format!(
                    "--priority {spec:?}: {item:?} is not an expression class; the classes are \
                     0..7 ({})",
                    classes()
                )
            })?;
        if out.contains(&k) {
            bail!("--priority {spec:?}: class {k} is listed twice; list each class once");
        }
        out.push(k);
    }
    if out.is_empty() {
        bail!("--priority {spec:?}: no class given; e.g. --priority 2,3,5,1 (the paper's order)");
    }
    Ok(out)
}

/// True when every row of `set` holds the uniform expression probabilities 1/8 that
/// `temporal predict` writes for a model without an expression head.
pub fn lacks_expression(set: &PredictionSet) -> bool {
    let uniform = 1.0 / N_EXPR as f32;
    set.values()
        .flatten()
        .all(|(_, p)| p.expression.iter().all(|&q| (q - uniform).abs() < 1e-6))
}

/// Error naming the first member (folder) that predicts no expressions.
pub fn check_expression_members(names: &[PathBuf], members: &[PredictionSet]) -> Result<()> {
    for (name, m) in names.iter().zip(members) {
        if lacks_expression(m) {
            bail!(
                "{}: this member predicts no expressions (every row has the uniform 1/8 of a \
                 model trained without the expression task); the rule vote is over expression \
                 members: leave it out, or use --method mean/vote/best-per-task",
                name.display()
            );
        }
    }
    Ok(())
}

/// Rule-vote ensemble of members covering the same frames.
pub fn rule_vote_ensemble(
    members: &[PredictionSet],
    weights: &[f64],
    priority: &[u8],
) -> PredictionSet {
    combine(members, |ps| rule_vote_prediction(ps, weights, priority))
}

/// Majority vote of the members for one frame (see the module documentation): VA and
/// probabilities are the weighted mean, adjusted so that `decide` at 0.5 gives the vote.
pub fn vote_prediction(members: &[Prediction], weights: &[f64]) -> Prediction {
    let mut out = mean_prediction(members, weights);
    // Expression: weighted votes for each member's argmax.
    let class = majority_class(members, weights, &out.expression);
    force_class(&mut out.expression, class);
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
    let (method, weights, saved_choice, saved_priority) = match &args.config {
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
            (saved.method, weights, saved.choice, saved.priority)
        }
        None => {
            let weights = match &args.weights {
                Some(spec) => parse_weights(spec, n)?,
                None => vec![1.0 / n as f64; n],
            };
            (args.method, weights, None, None)
        }
    };
    let priority = match (method, saved_priority, &args.priority) {
        (EnsembleMethod::RuleVote, Some(p), _) => {
            if let Some(&k) = p.iter().find(|&&k| usize::from(k) >= N_EXPR) {
                bail!(
                    "{}: the saved priority lists class {k}, outside 0..7",
                    args.config.as_deref().unwrap_or(Path::new("")).display()
                );
            }
            Some(p)
        }
        (EnsembleMethod::RuleVote, None, Some(spec)) => Some(parse_priority(spec)?),
        (EnsembleMethod::RuleVote, None, None) => Some(PAPER_PRIORITY.to_vec()),
        (_, _, Some(_)) => bail!(
            "--priority is the rule vote's: use it with --method rule-vote (not {})",
            method.name()
        ),
        _ => None,
    };
    if method == EnsembleMethod::RuleVote {
        check_expression_members(&args.preds, &members)?;
    }
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
        EnsembleMethod::RuleVote => rule_vote_ensemble(
            &members,
            &weights,
            priority.as_deref().unwrap_or(&PAPER_PRIORITY),
        ),
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
    let inputs: Vec<&Path> = args.preds.iter().map(PathBuf::as_path).collect();
    super::other::carry_marker(&inputs, &args.out)?;
    let file = EnsembleFile {
        method,
        members: args.preds.clone(),
        weights,
        choice,
        priority,
        member_scores,
    };
    let path = args.out.join(ENSEMBLE_FILE);
    let json = serde_json::to_string_pretty(&file)?;
    shared::atomic::write_atomically(&path, |w| w.write_all(json.as_bytes()))?;
    println!(
        "{} ensemble of {n} members: {} videos written to {} (settings in {})",
        method.name(),
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

    /// A member's prediction: expression probabilities `expr` (the rest 0), VA `v`, AU1 `au`.
    fn member(expr: &[(usize, f32)], v: f32, au: f32) -> Prediction {
        let mut expression = [0.0f32; N_EXPR];
        for &(k, q) in expr {
            expression[k] = q;
        }
        let mut aus = [0.0f32; N_AU];
        aus[0] = au;
        Prediction {
            valence: v,
            arousal: -v,
            expression,
            aus,
        }
    }

    fn equal(n: usize) -> Vec<f64> {
        vec![1.0 / n as f64; n]
    }

    #[test]
    fn rule_vote_prefers_the_first_priority_class_any_member_predicts() {
        // Members predict Anger (1), Sadness (5), Fear (3): in the list 2 > 3 > 5 > 1, Disgust is
        // absent, so Fear wins although it is neither the majority nor the most probable.
        let ms = [
            member(&[(1, 0.9), (0, 0.1)], 0.0, 0.0),
            member(&[(5, 0.8), (0, 0.2)], 0.0, 0.0),
            member(&[(3, 0.4), (0, 0.3), (4, 0.3)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(3), &PAPER_PRIORITY), 3);
        // Another order, another answer: 1 before 5 before 3.
        assert_eq!(rule_vote_class(&ms, &equal(3), &[1, 5, 3]), 1);
        assert_eq!(rule_vote_class(&ms, &equal(3), &[5, 2]), 5);
    }

    #[test]
    fn rule_vote_lets_one_priority_member_outvote_the_majority() {
        // Four members say Neutral (0) with confidence, one says Disgust (2): Disgust.
        let mut ms = vec![member(&[(0, 0.95), (2, 0.05)], 0.2, 0.9); 4];
        ms.push(member(&[(2, 0.5), (0, 0.5 - 1e-3)], 0.7, 0.1));
        let w = equal(5);
        assert_eq!(rule_vote_class(&ms, &w, &PAPER_PRIORITY), 2);
        let out = rule_vote_prediction(&ms, &w, &PAPER_PRIORITY);
        assert_eq!(out.decide(&DEFAULT_AU_THRESHOLDS).expression, 2);
        // The written probabilities are the mean with Disgust raised past the top: mean Neutral
        // (4 x 0.95 + 0.499) / 5 = 0.8598, Disgust (4 x 0.05 + 0.5) / 5 = 0.14.
        let (neutral, disgust) = (0.8598f64, 0.8598 + f64::from(VOTE_MARGIN));
        let sum = neutral + disgust;
        assert!((f64::from(out.expression[0]) - neutral / sum).abs() < 1e-6);
        assert!((f64::from(out.expression[2]) - disgust / sum).abs() < 1e-6);
        // VA and AUs are the plain mean: valence (4 x 0.2 + 0.7) / 5, AU1 (4 x 0.9 + 0.1) / 5.
        assert!((out.valence - 0.3).abs() < 1e-6 && (out.arousal + 0.3).abs() < 1e-6);
        assert!((out.aus[0] - 0.74).abs() < 1e-6);
    }

    #[test]
    fn rule_vote_without_a_priority_class_is_the_majority_vote() {
        // Neutral, Neutral, Happiness (4): no priority class, Neutral by 2 votes to 1 although
        // Happiness has the higher mean probability ((0.4 + 0.4 + 0.99) / 3 vs 0.4).
        let ms = [
            member(&[(0, 0.6), (4, 0.4)], 0.0, 0.0),
            member(&[(0, 0.6), (4, 0.4)], 0.0, 0.0),
            member(&[(4, 0.99), (0, 0.01)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(3), &PAPER_PRIORITY), 0);
        let out = rule_vote_prediction(&ms, &equal(3), &PAPER_PRIORITY);
        assert_eq!(out.decide(&DEFAULT_AU_THRESHOLDS).expression, 0);
        // Weights count: a member of weight 0.7 for Happiness outvotes two of 0.15 each.
        assert_eq!(rule_vote_class(&ms, &[0.15, 0.15, 0.7], &PAPER_PRIORITY), 4);
    }

    #[test]
    fn rule_vote_ties_go_to_the_higher_mean_probability_then_the_lower_class() {
        // One vote each for Neutral (0) and Happiness (4); mean Neutral (0.6 + 0.1) / 2 = 0.35,
        // Happiness (0.4 + 0.9) / 2 = 0.65: Happiness.
        let ms = [
            member(&[(0, 0.6), (4, 0.4)], 0.0, 0.0),
            member(&[(4, 0.9), (0, 0.1)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(2), &PAPER_PRIORITY), 4);
        // Mirror: Neutral 0.65, Happiness 0.35: Neutral.
        let ms = [
            member(&[(0, 0.9), (4, 0.1)], 0.0, 0.0),
            member(&[(4, 0.6), (0, 0.4)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(2), &PAPER_PRIORITY), 0);
        // Equal votes and equal means (0.5 each): the lower class id, Neutral.
        let ms = [
            member(&[(0, 0.6), (4, 0.4)], 0.0, 0.0),
            member(&[(4, 0.6), (0, 0.4)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(2), &PAPER_PRIORITY), 0);
        // Other (7) and Surprise (6) tied with Other more probable: Other.
        let ms = [
            member(&[(6, 0.5), (7, 0.45)], 0.0, 0.0),
            member(&[(7, 0.7), (6, 0.3)], 0.0, 0.0),
        ];
        assert_eq!(rule_vote_class(&ms, &equal(2), &PAPER_PRIORITY), 7);
    }

    #[test]
    fn priority_lists_outside_the_classes_or_with_repeats_are_refused() {
        assert_eq!(parse_priority("2,3,5,1").unwrap(), PAPER_PRIORITY);
        assert_eq!(parse_priority(" 7 , 0 ").unwrap(), [7, 0]);
        let err = format!("{:#}", parse_priority("2,8").unwrap_err());
        assert!(
            err.contains("\"8\" is not an expression class") && err.contains("7 Other"),
            "{err}"
        );
        let err = format!("{:#}", parse_priority("2,-1").unwrap_err());
        assert!(err.contains("\"-1\" is not an expression class"), "{err}");
        let err = format!("{:#}", parse_priority("3,3").unwrap_err());
        assert!(err.contains("class 3 is listed twice"), "{err}");
        let err = format!("{:#}", parse_priority("").unwrap_err());
        assert!(err.contains("no class given"), "{err}");
    }

    #[test]
    fn a_rule_vote_member_without_expressions_is_named() {
        let video = VideoId::new("v1").unwrap();
        let uniform = Prediction {
            valence: 0.1,
            arousal: 0.2,
            expression: [1.0 / N_EXPR as f32; N_EXPR],
            aus: [0.5; N_AU],
        };
        let no_expr: PredictionSet = [(video.clone(), vec![(1, uniform), (2, uniform)])].into();
        let with_expr: PredictionSet = [(
            video,
            vec![(1, member(&[(3, 1.0)], 0.0, 0.0)), (2, uniform)],
        )]
        .into();
        assert!(lacks_expression(&no_expr) && !lacks_expression(&with_expr));
        let names = [
            PathBuf::from("runs/expr/preds"),
            PathBuf::from("runs/va-only/preds"),
        ];
        check_expression_members(&names[..1], std::slice::from_ref(&with_expr)).unwrap();
        let err = check_expression_members(&names, &[with_expr, no_expr])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("runs/va-only/preds") && err.contains("predicts no expressions"),
            "{err}"
        );
    }
}
