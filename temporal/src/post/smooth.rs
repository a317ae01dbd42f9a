//! `temporal smooth`: temporal smoothing of prediction CSVs, per video and per column, and the
//! grid search that picks each task's smoothing on validation labels.
//!
//! What it does:
//! - Smooths each column of each video's predictions over the rows **as listed in the CSV**
//!   (consecutive rows, whatever their frame numbers): a centred window of odd size `W` (half
//!   width `h = (W - 1) / 2`) that shrinks at the video's first and last rows to the rows that
//!   exist, and never reaches into another video. Window 1 is the identity (values pass through
//!   untouched, not even renormalised).
//! - Methods ([`Method`]), each over the rows `j` with `|j - i| <= h` that exist:
//!   - `mean`: their plain mean;
//!   - `binomial`: weights `C(W - 1, j - i + h)` (the binomial kernel), renormalised over the rows
//!     that exist;
//!   - `exponential`: a centred, two-sided exponentially weighted mean with weights `r^|j - i|`,
//!     `r = 1 - 2 / (h + 2)` (pandas' `span = h + 1` convention, truncated to the window and
//!     renormalised): `W = 3` weighs `1/3, 1, 1/3`, `W = 5` weighs `1/4, 1/2, 1, 1/2, 1/4`.
//!     Two-sided rather than a causal EMA, which would lag the signal by several frames;
//!   - `median`: their median (the mean of the two middle values when an edge leaves an even
//!     count, as numpy does).
//! - Valence and arousal are clipped to [-1, 1] before smoothing (the values a submission would
//!   hold are the ones smoothed) and clamped again after. Expression and AU probabilities are
//!   smoothed before any decision; a smoothed expression row (W > 1) is renormalised to sum 1
//!   (the median does not keep the sum; the means keep it up to rounding).
//! - [`tune`]: for each task group (valence, arousal, expression, AUs: P_MTL is a sum of their
//!   scores, so each is tuned on its own) a grid search over every method and the windows
//!   1, 3, 5, ..., [`MAX_TUNED_WINDOW`], scored with the challenge metrics (those of
//!   `shared::metrics::score_predictions`) on the annotated frames. Window 1 (no smoothing) is on
//!   the grid and wins ties with larger windows, so tuning never lowers the validation score.
//!   The choice is written to `<out>/smoothing.json` ([`SmoothingFile`]) and `--config` applies
//!   it to other predictions (e.g. the test set).
//!
//! What it does not: fill frames that have no prediction, look at frame-number gaps, or decide
//! classes (that is `temporal submit`).

use super::align::annotated_rows;
use super::thresholds::parse_au_thresholds;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shared::abaw::{
    read_mtl_annotations, read_prediction_dir, write_prediction_dir, PredictionSet,
};
use shared::metrics::score_predictions;
use shared::{FrameLabels, Prediction, VideoId, N_AU, N_EXPR};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest window [`tune`] tries (about two seconds of video at 30 frames per second).
pub const MAX_TUNED_WINDOW: usize = 61;

/// The window used for every task group when `--window` is not given.
pub const DEFAULT_WINDOW: usize = 9;

/// Name of the file `--tune` writes into the output folder.
pub const SMOOTHING_FILE: &str = "smoothing.json";

/// Smooth prediction CSVs per video and column, or tune the smoothing on validation labels.
#[derive(Debug, Args)]
pub struct SmoothArgs {
    /// Folder of prediction CSVs (`<video>.csv`, as `temporal predict` writes them).
    #[arg(value_name = "PREDS")]
    pub preds: PathBuf,
    /// Output folder: one smoothed `<video>.csv` per input video (and `smoothing.json` with
    /// `--tune`).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Smoothing method for every task group: centred mean, binomial kernel, centred
    /// two-sided exponential weights, or median.
    #[arg(long, value_enum, default_value_t = Method::Mean, conflicts_with_all = ["tune", "config"])]
    pub method: Method,
    /// Window sizes (odd, in rows; 1 = no smoothing): one number for every group, or a list
    /// such as `valence=15,arousal=21,expr=9,au=5` (`va=W` sets both valence and arousal);
    /// unlisted groups get 9.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["tune", "config"])]
    pub window: Option<String>,
    /// MTL annotation file (e.g. validation_set_annotations.txt): pick each group's method and
    /// window by grid search on these labels, write the choice to `<out>/smoothing.json`, and
    /// apply it.
    #[arg(long, value_name = "LABELS", conflicts_with = "config")]
    pub tune: Option<PathBuf>,
    /// Apply the smoothing saved in this JSON file (the `smoothing.json` a `--tune` run wrote),
    /// e.g. to test predictions.
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,
    /// AU thresholds used to score AU smoothing while tuning: one number for all 12 AUs or a
    /// JSON file written by `temporal evaluate --tune-thresholds`.
    #[arg(
        long,
        value_name = "0.5|FILE.json",
        default_value = "0.5",
        requires = "tune"
    )]
    pub au_thresholds: String,
}

/// A smoothing method (see the module documentation for the exact weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Plain mean over the window.
    Mean,
    /// Binomial-kernel weighted mean.
    Binomial,
    /// Centred two-sided exponentially weighted mean.
    Exponential,
    /// Median over the window.
    Median,
}

impl Method {
    /// Every method, in the order the tuner tries them (earlier wins ties).
    pub const ALL: [Method; 4] = [
        Method::Mean,
        Method::Binomial,
        Method::Exponential,
        Method::Median,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Mean => "mean",
            Method::Binomial => "binomial",
            Method::Exponential => "exponential",
            Method::Median => "median",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One group's smoothing: a method and an odd window size (1 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Smoothing {
    /// The method.
    pub method: Method,
    /// Window size in rows, odd, at least 1.
    pub window: usize,
}

impl Smoothing {
    /// No smoothing (window 1).
    pub const NONE: Smoothing = Smoothing {
        method: Method::Mean,
        window: 1,
    };

    /// Error unless the window is odd and at least 1.
    pub fn check(&self) -> Result<()> {
        if self.window == 0 || self.window.is_multiple_of(2) {
            bail!(
                "window {} is not an odd number of rows (1, 3, 5, ...); a centred window needs an odd size",
                self.window
            );
        }
        Ok(())
    }
}

impl fmt::Display for Smoothing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.window == 1 {
            f.write_str("none (window 1)")
        } else {
            write!(f, "{} window {}", self.method, self.window)
        }
    }
}

/// The smoothing of every task group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmoothingConfig {
    /// Valence column.
    pub valence: Smoothing,
    /// Arousal column.
    pub arousal: Smoothing,
    /// The 8 expression probabilities (smoothed alike, then renormalised).
    pub expr: Smoothing,
    /// The 12 AU probabilities (smoothed alike).
    pub au: Smoothing,
}

impl SmoothingConfig {
    /// The same method for every group, with per-group windows.
    pub fn uniform(method: Method, windows: Windows) -> Self {
        let s = |window| Smoothing { method, window };
        Self {
            valence: s(windows.valence),
            arousal: s(windows.arousal),
            expr: s(windows.expr),
            au: s(windows.au),
        }
    }

    /// The four groups with their names, in file order.
    pub fn groups(&self) -> [(&'static str, Smoothing); 4] {
        [
            ("valence", self.valence),
            ("arousal", self.arousal),
            ("expr", self.expr),
            ("au", self.au),
        ]
    }

    /// Error naming the group whose window is not odd.
    pub fn check(&self) -> Result<()> {
        for (name, s) in self.groups() {
            s.check().with_context(|| format!("smoothing of {name}"))?;
        }
        Ok(())
    }
}

/// Window sizes per task group, as `--window` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Valence window.
    pub valence: usize,
    /// Arousal window.
    pub arousal: usize,
    /// Expression window.
    pub expr: usize,
    /// AU window.
    pub au: usize,
}

impl Windows {
    /// The same window for every group.
    pub fn all(w: usize) -> Self {
        Self {
            valence: w,
            arousal: w,
            expr: w,
            au: w,
        }
    }

    /// Parse `--window`: `W` for every group, or `valence=W,arousal=W,expr=W,au=W` (any subset,
    /// `va=W` for both valence and arousal; unlisted groups get [`DEFAULT_WINDOW`]). Every
    /// window must be odd.
    pub fn parse(spec: &str) -> Result<Self> {
        let number = |text: &str, what: &str| -> Result<usize> {
            let w: usize = text.trim().parse().with_context(|| {
                format!("--window {spec:?}: {what} {text:?} is not a whole number of rows")
            })?;
            Smoothing {
                method: Method::Mean,
                window: w,
            }
            .check()
            .with_context(|| format!("--window {spec:?}: {what}"))?;
            Ok(w)
        };
        if !spec.contains('=') {
            return Ok(Self::all(number(spec, "window")?));
        }
        let mut out = Self::all(DEFAULT_WINDOW);
        for part in spec.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                bail!("--window {spec:?}: {part:?} is not of the form group=W (groups: valence, arousal, va, expr, au)");
            };
            let key = key.trim();
            let w = number(value, key)?;
            match key {
                "valence" => out.valence = w,
                "arousal" => out.arousal = w,
                "va" => {
                    out.valence = w;
                    out.arousal = w;
                }
                "expr" => out.expr = w,
                "au" => out.au = w,
                _ => bail!(
                    "--window {spec:?}: unknown group {key:?}; use valence, arousal, va, expr or au"
                ),
            }
        }
        Ok(out)
    }
}

/// The content of `smoothing.json`: the chosen smoothing and, when tuned, how it was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothingFile {
    /// The smoothing of each group.
    #[serde(flatten)]
    pub smoothing: SmoothingConfig,
    /// How `--tune` chose it (absent when written by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningReport>,
}

/// What [`tune`] found: per group the score without smoothing and with the chosen smoothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningReport {
    /// The annotation file the scores come from.
    pub labels: PathBuf,
    /// The largest window tried: windows 1, 3, ..., `max_window`, each with every method.
    pub max_window: usize,
    /// Per group (`valence`, `arousal`, `expr`, `au`): the scores.
    pub groups: BTreeMap<String, GroupTuning>,
}

/// One group's tuning result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupTuning {
    /// The group's metric without smoothing (CCC, macro F1 or mean AU F1).
    pub unsmoothed: f64,
    /// The group's metric with the chosen smoothing (never below `unsmoothed`).
    pub smoothed: f64,
}

/// Centred-window weights of a method: `weights[k]` is the weight of offset `k - half`.
struct Kernel {
    method: Method,
    half: usize,
    weights: Vec<f64>,
}

impl Kernel {
    fn new(s: Smoothing) -> Self {
        let half = (s.window.max(1) - 1) / 2;
        let window = 2 * half + 1;
        let weights = match s.method {
            Method::Mean | Method::Median => vec![1.0; window],
            Method::Binomial => {
                // Row `window - 1` of Pascal's triangle, built by recurrence (exact in f64 for
                // the windows used here: C(60, 30) < 2^57, and ratios are what matter).
                let mut row = vec![1.0f64];
                for _ in 1..window {
                    let mut next = vec![1.0f64; row.len() + 1];
                    for k in 1..row.len() {
                        next[k] = row[k - 1] + row[k];
                    }
                    row = next;
                }
                row
            }
            Method::Exponential => {
                let r = 1.0 - 2.0 / (half as f64 + 2.0);
                (0..window)
                    .map(|k| r.powi(k.abs_diff(half) as i32))
                    .collect()
            }
        };
        Self {
            method: s.method,
            half,
            weights,
        }
    }

    /// The smoothed value of row `i` of `x`, over the rows of the window that exist.
    fn at(&self, x: &[f32], i: usize, scratch: &mut Vec<f32>) -> f32 {
        let lo = i.saturating_sub(self.half);
        let hi = (i + self.half).min(x.len() - 1);
        if self.method == Method::Median {
            scratch.clear();
            scratch.extend_from_slice(&x[lo..=hi]);
            scratch.sort_by(f32::total_cmp);
            let n = scratch.len();
            return if n % 2 == 1 {
                scratch[n / 2]
            } else {
                ((f64::from(scratch[n / 2 - 1]) + f64::from(scratch[n / 2])) / 2.0) as f32
            };
        }
        let (mut sum, mut total) = (0.0f64, 0.0f64);
        for (j, &v) in x.iter().enumerate().take(hi + 1).skip(lo) {
            let w = self.weights[j + self.half - i];
            sum += w * f64::from(v);
            total += w;
        }
        (sum / total) as f32
    }
}

/// Smooth one series (one column of one video) with `s`; window 1 returns it unchanged.
/// Windows shrink at both ends to the rows that exist (see the module documentation).
pub fn smooth_series(x: &[f32], s: Smoothing) -> Vec<f32> {
    if s.window <= 1 || x.is_empty() {
        return x.to_vec();
    }
    let kernel = Kernel::new(s);
    let mut scratch = Vec::with_capacity(s.window);
    (0..x.len())
        .map(|i| kernel.at(x, i, &mut scratch))
        .collect()
}

/// The columns of one video's predictions: valence, arousal, 8 expressions, 12 AUs.
struct Columns {
    valence: Vec<f32>,
    arousal: Vec<f32>,
    expr: Vec<Vec<f32>>,
    au: Vec<Vec<f32>>,
}

impl Columns {
    /// Split rows into columns; VA clipped to [-1, 1].
    fn of(rows: &[(u32, Prediction)]) -> Self {
        Self {
            valence: rows
                .iter()
                .map(|(_, p)| p.valence.clamp(-1.0, 1.0))
                .collect(),
            arousal: rows
                .iter()
                .map(|(_, p)| p.arousal.clamp(-1.0, 1.0))
                .collect(),
            expr: (0..N_EXPR)
                .map(|k| rows.iter().map(|(_, p)| p.expression[k]).collect())
                .collect(),
            au: (0..N_AU)
                .map(|a| rows.iter().map(|(_, p)| p.aus[a]).collect())
                .collect(),
        }
    }
}

/// Renormalise smoothed expression probabilities to sum 1 (uniform if they sum to 0) and keep
/// them in [0, 1] against rounding.
fn renormalise(e: &mut [f32; N_EXPR]) {
    let sum: f64 = e.iter().map(|&p| f64::from(p)).sum();
    for p in e.iter_mut() {
        *p = if sum > 0.0 {
            (f64::from(*p) / sum).clamp(0.0, 1.0) as f32
        } else {
            1.0 / N_EXPR as f32
        };
    }
}

/// Smooth one video's predictions (rows in CSV order) with `cfg`. Frames are kept; VA is clipped
/// to [-1, 1]; expression rows are renormalised when their window is above 1.
pub fn smooth_video(rows: &[(u32, Prediction)], cfg: &SmoothingConfig) -> Vec<(u32, Prediction)> {
    let c = Columns::of(rows);
    let valence = smooth_series(&c.valence, cfg.valence);
    let arousal = smooth_series(&c.arousal, cfg.arousal);
    let expr: Vec<Vec<f32>> = c.expr.iter().map(|x| smooth_series(x, cfg.expr)).collect();
    let au: Vec<Vec<f32>> = c.au.iter().map(|x| smooth_series(x, cfg.au)).collect();
    rows.iter()
        .enumerate()
        .map(|(i, (frame, p))| {
            let mut out = Prediction {
                valence: valence[i].clamp(-1.0, 1.0),
                arousal: arousal[i].clamp(-1.0, 1.0),
                expression: p.expression,
                aus: p.aus,
            };
            if cfg.expr.window > 1 {
                for (k, e) in out.expression.iter_mut().enumerate() {
                    *e = expr[k][i];
                }
                renormalise(&mut out.expression);
            }
            for (a, q) in out.aus.iter_mut().enumerate() {
                *q = au[a][i].clamp(0.0, 1.0);
            }
            (*frame, out)
        })
        .collect()
}

/// Smooth every video on its own (windows never cross videos).
pub fn smooth_all(preds: &PredictionSet, cfg: &SmoothingConfig) -> PredictionSet {
    preds
        .par_iter()
        .map(|(video, rows)| (video.clone(), smooth_video(rows, cfg)))
        .collect()
}

/// The windows the tuner tries: 1, 3, 5, ..., [`MAX_TUNED_WINDOW`].
pub fn tuning_windows() -> Vec<usize> {
    (1..=MAX_TUNED_WINDOW).step_by(2).collect()
}

/// Every candidate of the grid: window 1 once (it is the same for every method), then every
/// method with every larger window, in the order that wins ties (smaller windows first).
fn candidates() -> Vec<Smoothing> {
    let mut out = vec![Smoothing::NONE];
    for window in tuning_windows().into_iter().skip(1) {
        for method in Method::ALL {
            out.push(Smoothing { method, window });
        }
    }
    out
}

/// One group's scores at the annotated rows for one candidate.
fn candidate_score(
    group: Group,
    s: Smoothing,
    videos: &[Columns],
    rows: &[(usize, usize)],
    labels: &[FrameLabels],
    thresholds: &[f32; N_AU],
) -> f64 {
    let kernel = Kernel::new(s);
    let mut scratch = Vec::new();
    let mut at = |x: &[f32], i: usize| -> f32 {
        if s.window <= 1 {
            x[i]
        } else {
            kernel.at(x, i, &mut scratch)
        }
    };
    let mut preds = Vec::with_capacity(rows.len());
    for &(v, i) in rows {
        let c = &videos[v];
        let mut p = Prediction {
            valence: 0.0,
            arousal: 0.0,
            expression: [0.0; N_EXPR],
            aus: [0.0; N_AU],
        };
        match group {
            Group::Valence => p.valence = at(&c.valence, i),
            Group::Arousal => p.arousal = at(&c.arousal, i),
            Group::Expr => {
                for k in 0..N_EXPR {
                    p.expression[k] = at(&c.expr[k], i);
                }
                if s.window > 1 {
                    renormalise(&mut p.expression);
                }
            }
            Group::Au => {
                for a in 0..N_AU {
                    p.aus[a] = at(&c.au[a], i);
                }
            }
        }
        preds.push(p);
    }
    group.score(&score_predictions(labels, &preds, thresholds))
}

/// The four task groups the tuner treats separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Valence,
    Arousal,
    Expr,
    Au,
}

impl Group {
    const ALL: [Group; 4] = [Group::Valence, Group::Arousal, Group::Expr, Group::Au];

    fn name(self) -> &'static str {
        match self {
            Group::Valence => "valence",
            Group::Arousal => "arousal",
            Group::Expr => "expr",
            Group::Au => "au",
        }
    }

    fn score(self, s: &shared::metrics::MtlScore) -> f64 {
        match self {
            Group::Valence => s.ccc_valence,
            Group::Arousal => s.ccc_arousal,
            Group::Expr => s.f1_expr,
            Group::Au => s.f1_au,
        }
    }
}

/// Grid search (see the module documentation): for each group the candidate with the best
/// score on the annotated frames; window 1 and smaller windows win ties. `labels_path` names the
/// annotation file in errors and in the report. Errors if an annotated frame has no prediction.
pub fn tune(
    preds: &PredictionSet,
    labels_path: &Path,
    au_thresholds: &[f32; N_AU],
) -> Result<SmoothingFile> {
    let truth = read_mtl_annotations(labels_path)?;
    let located = annotated_rows(preds, &truth, Path::new("the predictions"))?;
    let index: BTreeMap<&VideoId, usize> = preds.keys().enumerate().map(|(i, v)| (v, i)).collect();
    let videos: Vec<Columns> = preds.values().map(|rows| Columns::of(rows)).collect();
    let rows: Vec<(usize, usize)> = located.iter().map(|(v, i, _)| (index[v], *i)).collect();
    let labels: Vec<FrameLabels> = located.iter().map(|(_, _, l)| *l).collect();
    let grid = candidates();
    let mut chosen = [Smoothing::NONE; 4];
    let mut groups = BTreeMap::new();
    for (g, group) in Group::ALL.into_iter().enumerate() {
        let scores: Vec<f64> = grid
            .par_iter()
            .map(|&s| candidate_score(group, s, &videos, &rows, &labels, au_thresholds))
            .collect();
        let mut best = 0;
        for (c, &score) in scores.iter().enumerate() {
            // Strictly better only: the first (window 1, then smaller windows) wins ties; a
            // NaN score never wins.
            if score > scores[best] {
                best = c;
            }
        }
        chosen[g] = grid[best];
        groups.insert(
            group.name().to_owned(),
            GroupTuning {
                unsmoothed: scores[0],
                smoothed: scores[best],
            },
        );
    }
    Ok(SmoothingFile {
        smoothing: SmoothingConfig {
            valence: chosen[0],
            arousal: chosen[1],
            expr: chosen[2],
            au: chosen[3],
        },
        tuning: Some(TuningReport {
            labels: labels_path.to_path_buf(),
            max_window: MAX_TUNED_WINDOW,
            groups,
        }),
    })
}

/// Read a `smoothing.json` (the chosen smoothing; the tuning report is optional).
pub fn read_smoothing_file(path: &Path) -> Result<SmoothingFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the smoothing file", path.display()))?;
    let file: SmoothingFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a smoothing file (expected valence, arousal, expr and au, each \
             {{\"method\": \"mean|binomial|exponential|median\", \"window\": odd}}); \
             use the smoothing.json that `temporal smooth --tune` writes",
            path.display()
        )
    })?;
    file.smoothing
        .check()
        .with_context(|| format!("{}", path.display()))?;
    Ok(file)
}

/// Run the command: choose the smoothing (flags, `--config` or `--tune`), smooth every video,
/// write the CSVs (and `smoothing.json` when tuning), print what was done and where.
pub fn run(args: &SmoothArgs) -> Result<()> {
    let preds = read_prediction_dir(&args.preds)?;
    let file = if let Some(labels) = &args.tune {
        let thresholds = parse_au_thresholds(&args.au_thresholds)?;
        let file = tune(&preds, labels, &thresholds)
            .with_context(|| format!("tuning the smoothing of {}", args.preds.display()))?;
        let path = args.out.join(SMOOTHING_FILE);
        let json = serde_json::to_string_pretty(&file)?;
        shared::atomic::write_atomically(&path, |w| w.write_all(json.as_bytes()))?;
        if let Some(t) = &file.tuning {
            println!(
                "tuned on {} (windows 1..{MAX_TUNED_WINDOW}):",
                labels.display()
            );
            for (name, s) in file.smoothing.groups() {
                let g = t.groups[name];
                println!(
                    "  {name:<8} {s:<24} {:.4} -> {:.4}",
                    g.unsmoothed, g.smoothed
                );
            }
        }
        println!("smoothing choice written to {}", path.display());
        file
    } else if let Some(path) = &args.config {
        read_smoothing_file(path)?
    } else {
        let windows = match &args.window {
            Some(spec) => Windows::parse(spec)?,
            None => Windows::all(DEFAULT_WINDOW),
        };
        SmoothingFile {
            smoothing: SmoothingConfig::uniform(args.method, windows),
            tuning: None,
        }
    };
    let smoothed = smooth_all(&preds, &file.smoothing);
    write_prediction_dir(&args.out, &smoothed)?;
    super::other::carry_marker(&[args.preds.as_path()], &args.out)?;
    let summary: Vec<String> = file
        .smoothing
        .groups()
        .iter()
        .map(|(name, s)| format!("{name}: {s}"))
        .collect();
    println!(
        "smoothed {} videos ({}) into {}",
        smoothed.len(),
        summary.join(", "),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn s(method: Method, window: usize) -> Smoothing {
        Smoothing { method, window }
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert_relative_eq!(f64::from(*g), *w, epsilon = 1e-6);
        }
    }

    #[test]
    fn window_one_is_identity_for_every_method() {
        let x = [0.3f32, -0.1, 0.7];
        for m in Method::ALL {
            assert_eq!(smooth_series(&x, s(m, 1)), x);
        }
    }

    #[test]
    fn mean_shrinks_at_edges() {
        // W = 3 on [1, 2, 6, 3]: (1+2)/2, (1+2+6)/3, (2+6+3)/3, (6+3)/2.
        close(
            &smooth_series(&[1.0, 2.0, 6.0, 3.0], s(Method::Mean, 3)),
            &[1.5, 3.0, 11.0 / 3.0, 4.5],
        );
    }

    #[test]
    fn binomial_weights_renormalise_at_edges() {
        // W = 5: weights 1 4 6 4 1. Row 0 sees offsets 0..2: (6*1 + 4*2 + 1*6) / 11 = 20/11.
        // Row 1 sees -1..2: (4*1 + 6*2 + 4*6 + 1*3) / 15 = 43/15. Row 2: (1 + 8 + 36 + 12)/15
        // = 57/15. Row 3 sees -2..0: (1*2 + 4*6 + 6*3) / 11 = 44/11.
        close(
            &smooth_series(&[1.0, 2.0, 6.0, 3.0], s(Method::Binomial, 5)),
            &[20.0 / 11.0, 43.0 / 15.0, 57.0 / 15.0, 4.0],
        );
    }

    #[test]
    fn exponential_weights_are_centred() {
        // W = 5: r = 1/2, weights 1/4 1/2 1 1/2 1/4. Row 0: (1 + 1 + 1.5)/1.75 = 2;
        // row 1: (0.5 + 2 + 3 + 0.75)/2.25 = 25/9; row 2: (0.25 + 1 + 6 + 1.5)/2.25 = 35/9;
        // row 3: (0.5 + 3 + 3)/1.75 = 26/7.
        close(
            &smooth_series(&[1.0, 2.0, 6.0, 3.0], s(Method::Exponential, 5)),
            &[2.0, 25.0 / 9.0, 35.0 / 9.0, 26.0 / 7.0],
        );
    }

    #[test]
    fn median_averages_the_middle_pair_at_edges() {
        // W = 3 on [1, 9, 2, 8]: median(1,9) = 5, median(1,9,2) = 2, median(9,2,8) = 8,
        // median(2,8) = 5.
        close(
            &smooth_series(&[1.0, 9.0, 2.0, 8.0], s(Method::Median, 3)),
            &[5.0, 2.0, 8.0, 5.0],
        );
    }

    #[test]
    fn window_larger_than_the_video_covers_it_all() {
        close(
            &smooth_series(&[1.0, 2.0], s(Method::Mean, 61)),
            &[1.5, 1.5],
        );
        assert_eq!(smooth_series(&[4.0], s(Method::Binomial, 61)), [4.0]);
    }

    #[test]
    fn window_specs_parse_and_reject_even_or_unknown() {
        assert_eq!(Windows::parse("5").unwrap(), Windows::all(5));
        let w = Windows::parse("va=3,expr=7").unwrap();
        assert_eq!(
            (w.valence, w.arousal, w.expr, w.au),
            (3, 3, 7, DEFAULT_WINDOW)
        );
        let w = Windows::parse("valence=1, au=11").unwrap();
        assert_eq!((w.valence, w.arousal, w.au), (1, DEFAULT_WINDOW, 11));
        for (bad, says) in [
            ("4", "not an odd number"),
            ("expr=0", "not an odd number"),
            ("face=3", "unknown group"),
            ("au=x", "not a whole number"),
            ("au", "not a whole number"),
            ("au=3,expr", "not of the form"),
        ] {
            let err = format!("{:#}", Windows::parse(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn grid_has_no_smoothing_first_and_every_method_per_window() {
        let c = candidates();
        assert_eq!(c[0], Smoothing::NONE);
        assert_eq!(c.len(), 1 + 4 * 30);
        assert_eq!(c.last().unwrap().window, MAX_TUNED_WINDOW);
    }
}
