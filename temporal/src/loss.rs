//! The masked multi-task loss of the reference (`mtl_loss` in
//! `../shared/peers/torch_temporal_ref.py`) and its options.
//!
//! What it does: [`mtl_loss`] sums one loss per task present in the model's [`Outputs`], each
//! averaged over the frames whose label is valid (and that are not padding), 0 when there are none:
//! - valence, arousal: squared error (the reference) or `1 - CCC` over the batch's valid frames
//!   ([`VaLoss::Ccc`], population statistics, denominator + 1e-8);
//! - expr: cross-entropy over the 8 classes; with class weights `w`, the weighted mean
//!   `sum(w[y] * ce) / sum(w[y])` (PyTorch's `reduction="mean"` convention);
//! - au: binary cross-entropy with logits averaged over the 12 AUs (optional `pos_weight` per AU),
//!   or ME-GraphAU's weighted asymmetric loss ([`AuLoss::Wal`]): per AU
//!   `-w_i [y log p + (1 - y) p' log(1 - p)]` with `p'` = p without gradient and the logs clamped
//!   at 1e-8, averaged over the AUs (`au_weights`: `auto` is `w_i = 12 (1/r_i) / sum_j (1/r_j)`
//!   from the training AU occurrence rates r, [`wal_weights_auto`]). Heads that output AU
//!   probabilities (ANFL) are scored on them directly (BCE without the sigmoid); logits go
//!   through a sigmoid for WAL. `bce+circle` adds the multi-label circle loss of LRP-ARL-FF to
//!   the BCE ([`circle_loss`]). A frame's AU label is valid only when none of its 12 values is -1.
//!   `focal` ([`AuLoss::Focal`], ABAW5 Wang et al.): per AU the binary focal loss
//!   `-alpha_t (1 - p_t)^gamma log p_t` with `p_t = p`, `alpha_t = alpha_i` on a positive label
//!   and `p_t = 1 - p`, `alpha_t = 1 - alpha_i` on a negative one, averaged over the 12 AUs then
//!   over the valid frames (as BCE); `log p_t` is the log-sigmoid of the logit (logs clamped at
//!   1e-8 for heads that output probabilities). `focal_gamma` (default 2, the paper's) and
//!   `focal_alpha`: a number for every AU, 12 numbers, or `"frequency"`, which the paper leaves
//!   open; our choice is `alpha_i = 1 - r_i` clamped to [0.05, 0.95], with `r_i` the AU's
//!   occurrence rate over the training frames with a valid AU label ([`focal_alpha_auto`]): a
//!   rare AU's positives weigh more, the 0.5 of an AU active half the time weighs both sides
//!   alike, and the clamp keeps a side that never occurs from getting weight 0.
//! - expr with `expr_loss = "ce+dice"` (ABAW5 Wang et al.): the cross-entropy above (with its
//!   class weights) plus `dice_weight` (lambda, default 1) times the soft dice loss
//!   `1 - mean_i 2 TP_i / (2 TP_i + FP_i + FN_i)` over the classes, with the softmax
//!   probabilities in place of counts over the batch's valid frames: `TP_i = sum p_i y_i`,
//!   `FP_i = sum p_i (1 - y_i)`, `FN_i = sum (1 - p_i) y_i` (so the denominator is
//!   `sum p_i + sum y_i`, plus 1e-8 ([`DICE_EPS`]) so a class absent from the batch and from the
//!   predictions gives 0, not NaN); unweighted by class, 0 without a valid frame.
//! - `drop_other = true` (ABAW5 Wang et al.'s second scheme): frames labelled 7 (Other) are not
//!   expression targets (as an invalid label), the cross-entropy and the dice run over the
//!   first 7 logits only (the head still outputs 8; logit 7 gets no gradient), `auto` class
//!   weights ignore class 7, and predictions are the softmax over those 7 with class 7 at 0
//!   ([`without_other`]); `temporal evaluate --tune-other-threshold` / `submit --other-threshold`
//!   then decide Other by a threshold on the top probability.
//!
//! - a polarity-gated VA head ([`crate::model::polarity`], outputs `<task>_polarity`): the
//!   cross-entropy of its 3-class classifiers against [`polarity_class`] of the label
//!   (`valence_polarity`, `arousal_polarity`), and the VA loss above of its regressors over the
//!   frames whose label is not extreme (`|y| < va_extreme`); [`PolarityStage`] chooses one or both.
//!
//! The total is `sum(task_weight * task_loss)`. An invalid label (valence/arousal -5, expression
//! -1, any AU -1, or a padded frame) contributes neither loss nor gradient, whatever the values at
//! that frame. [`class_weights_auto`] and [`pos_weight_auto`] derive `auto` weights from training
//! label counts ([`LabelCounts`]); [`LossConfig::resolve`] puts them in place.
//!
//! What it does not: count labels over a data set by itself (the trainer feeds [`LabelCounts`]),
//! or compute challenge metrics (that is `shared::metrics`).

use crate::model::Outputs;
use serde::{Deserialize, Serialize};
use shared::tasks::{FrameLabels, N_AU, N_EXPR};
use std::collections::BTreeMap;
use tch::{Kind, Reduction, Tensor};

/// Marker of an invalid valence/arousal label.
const INVALID_VA: f64 = -5.0;
/// Marker of an invalid expression or AU label.
const INVALID_CLASS: i64 = -1;
/// The clamp of the probabilities inside WAL's logs (ME-GraphAU's `eps`).
pub const WAL_EPS: f64 = 1e-8;
/// Added to the CCC denominator so a batch with constant predictions and labels stays finite.
pub const CCC_EPS: f64 = 1e-8;
/// Added to each class's soft dice denominator (a class absent from labels and predictions).
pub const DICE_EPS: f64 = 1e-8;
/// The clamp of the frequency-derived focal alpha (`alpha_i = 1 - r_i` in [0.05, 0.95]).
pub const FOCAL_ALPHA_CLAMP: (f64, f64) = (0.05, 0.95);
/// The clamp of probabilities inside the focal loss's logs (heads that output probabilities).
pub const FOCAL_EPS: f64 = 1e-8;
/// The expression class "Other", dropped from training by `drop_other`.
pub const OTHER: i64 = 7;

/// The labels of a batch of segments, with the ABAW invalid markers.
#[derive(Debug)]
pub struct LabelTensors {
    /// `[B, L, 2]` f32 valence and arousal; -5 = invalid.
    pub va: Tensor,
    /// `[B, L]` i64 expression class in 0..8; -1 = invalid.
    pub expr: Tensor,
    /// `[B, L, 12]` f32 AU labels 0/1; -1 = invalid (the whole frame's AU label).
    pub au: Tensor,
}

/// The valence/arousal loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaLoss {
    /// Mean squared error (the reference).
    #[default]
    Mse,
    /// `1 - CCC` (concordance correlation coefficient, the challenge metric) over the batch.
    Ccc,
}

/// The action-unit loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuLoss {
    /// Binary cross-entropy (the reference), with `au_pos_weight`.
    #[default]
    Bce,
    /// ME-GraphAU's weighted asymmetric loss, with `au_weights`.
    Wal,
    /// Binary cross-entropy plus the multi-label circle loss ([`circle_loss`], LRP-ARL-FF).
    #[serde(rename = "bce+circle")]
    BceCircle,
    /// The binary focal loss per AU, with `focal_gamma` and `focal_alpha` (ABAW5 Wang et al.).
    Focal,
}

/// The expression loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExprLoss {
    /// Cross-entropy (the reference), with `expr_class_weights`.
    #[default]
    Ce,
    /// Cross-entropy plus `dice_weight` times the soft dice loss ([`soft_dice_loss`]).
    #[serde(rename = "ce+dice")]
    CeDice,
}

/// The focal loss's alpha: from the training AU frequencies, or fixed.
///
/// In TOML: `"frequency"`, one number for every AU, or a list of 12 numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AlphaRepr", into = "AlphaRepr")]
pub enum FocalAlpha {
    /// `alpha_i = 1 - r_i` clamped to [0.05, 0.95] ([`focal_alpha_auto`]), put in place by
    /// [`LossConfig::resolve`].
    #[default]
    Frequency,
    /// The same alpha for every AU.
    Fixed(f64),
    /// One alpha per AU.
    PerAu(Vec<f64>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AlphaRepr {
    Number(f64),
    Word(String),
    List(Vec<f64>),
}

impl TryFrom<AlphaRepr> for FocalAlpha {
    type Error = String;
    fn try_from(r: AlphaRepr) -> Result<Self, String> {
        match r {
            AlphaRepr::Word(w) if w == "frequency" => Ok(FocalAlpha::Frequency),
            AlphaRepr::Word(w) => Err(format!(
                "focal_alpha {w:?}: expected \"frequency\", a number in [0, 1] or a list of 12"
            )),
            AlphaRepr::Number(a) => Ok(FocalAlpha::Fixed(a)),
            AlphaRepr::List(v) => Ok(FocalAlpha::PerAu(v)),
        }
    }
}

impl From<FocalAlpha> for AlphaRepr {
    fn from(a: FocalAlpha) -> Self {
        match a {
            FocalAlpha::Frequency => AlphaRepr::Word("frequency".into()),
            FocalAlpha::Fixed(a) => AlphaRepr::Number(a),
            FocalAlpha::PerAu(v) => AlphaRepr::List(v),
        }
    }
}

/// Which parts of a polarity-gated VA head ([`crate::model::polarity`]) a step trains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PolarityStage {
    /// The classifiers (cross-entropy) and the regressors (CCC / MSE) together.
    #[default]
    Both,
    /// The polarity classifiers alone (the first stage).
    Classifiers,
    /// The regressors alone, on the frames whose label is not extreme (the second stage).
    Regressors,
}

/// Class weights or AU positive weights: none, `auto` from training label counts, or explicit.
///
/// In TOML: `"none"`, `"auto"`, or a list of numbers (8 for expressions, 12 for AUs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WeightsRepr", into = "WeightsRepr")]
pub enum Weights {
    /// All weights 1 (the reference).
    #[default]
    None,
    /// Computed from the training label counts by [`LossConfig::resolve`].
    Auto,
    /// Explicit weights.
    Values(Vec<f64>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum WeightsRepr {
    Word(String),
    List(Vec<f64>),
}

impl TryFrom<WeightsRepr> for Weights {
    type Error = String;
    fn try_from(r: WeightsRepr) -> Result<Self, String> {
        match r {
            WeightsRepr::Word(w) if w == "none" => Ok(Weights::None),
            WeightsRepr::Word(w) if w == "auto" => Ok(Weights::Auto),
            WeightsRepr::Word(w) => Err(format!(
                "weights {w:?}: expected \"none\", \"auto\" or a list of numbers"
            )),
            WeightsRepr::List(v) => Ok(Weights::Values(v)),
        }
    }
}

impl From<Weights> for WeightsRepr {
    fn from(w: Weights) -> Self {
        match w {
            Weights::None => WeightsRepr::Word("none".into()),
            Weights::Auto => WeightsRepr::Word("auto".into()),
            Weights::Values(v) => WeightsRepr::List(v),
        }
    }
}

/// Per-task multipliers of the total loss (all 1 in the reference).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskWeights {
    /// Valence.
    pub valence: f64,
    /// Arousal.
    pub arousal: f64,
    /// Expression.
    pub expr: f64,
    /// Action units.
    pub au: f64,
}

impl Default for TaskWeights {
    fn default() -> Self {
        TaskWeights {
            valence: 1.0,
            arousal: 1.0,
            expr: 1.0,
            au: 1.0,
        }
    }
}

impl TaskWeights {
    /// The weight of the head named `task` (`valence`, `arousal`, `expr`, `au`); 1 otherwise.
    pub fn get(&self, task: &str) -> f64 {
        match task {
            "valence" => self.valence,
            "arousal" => self.arousal,
            "expr" => self.expr,
            "au" => self.au,
            _ => 1.0,
        }
    }
}

/// Loss options; the default is the reference's loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// `mse` (reference) or `ccc` for valence and arousal.
    pub va_loss: VaLoss,
    /// Cross-entropy class weights (8).
    pub expr_class_weights: Weights,
    /// BCE positive weight per AU (12).
    pub au_pos_weight: Weights,
    /// `bce` (reference) or `wal` for the action units.
    pub au_loss: AuLoss,
    /// WAL weight per AU (12); `auto` from the training AU occurrence rates.
    pub au_weights: Weights,
    /// Multipliers of each task's loss in the total.
    pub task_weights: TaskWeights,
    /// `ce` (reference) or `ce+dice` for the expressions.
    pub expr_loss: ExprLoss,
    /// `ce+dice`: the weight lambda of the soft dice loss.
    pub dice_weight: f64,
    /// Train the expressions without class 7 (Other): its frames are no target, 7 logits scored.
    pub drop_other: bool,
    /// `au_loss = "focal"`: the focusing exponent gamma.
    pub focal_gamma: f64,
    /// `au_loss = "focal"`: alpha per AU (`"frequency"`, a number, or 12 numbers).
    pub focal_alpha: FocalAlpha,
    /// Polarity-gated VA head: a label with |y| >= this is extreme (class -1 or +1 of the
    /// polarity classifiers, left out of the regressors' loss) [default: 1, the paper's "exactly
    /// -1 or 1"; lower it for data without labels of exactly +-1, e.g. the synthetic sample].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub va_extreme: Option<f64>,
    /// Polarity-gated VA head: the parts trained (set by the trainer per epoch, not in TOML).
    #[serde(skip)]
    pub polarity_stage: PolarityStage,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            va_loss: VaLoss::default(),
            expr_class_weights: Weights::default(),
            au_pos_weight: Weights::default(),
            au_loss: AuLoss::default(),
            au_weights: Weights::default(),
            task_weights: TaskWeights::default(),
            expr_loss: ExprLoss::default(),
            dice_weight: 1.0,
            drop_other: false,
            focal_gamma: 2.0,
            focal_alpha: FocalAlpha::default(),
            va_extreme: None,
            polarity_stage: PolarityStage::default(),
        }
    }
}

/// A loss configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossConfigError {
    /// Wrong number of weights.
    #[error("loss config: `{key}` has {found} weights; give exactly {expected} (one per class), \"auto\" or \"none\"")]
    Length {
        /// The config key.
        key: &'static str,
        /// How many are needed.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// A value out of its range (`what` says the range).
    #[error("loss config: `{key}` = {value}: {what}")]
    Range {
        /// The config key.
        key: &'static str,
        /// The bad value.
        value: f64,
        /// What it must be.
        what: &'static str,
    },
    /// An extreme-label threshold outside (0, 1].
    #[error("loss config: `va_extreme` = {0}; it must be in (0, 1] (1 = labels of exactly -1 or +1 are extreme)")]
    Extreme(f64),
    /// A negative or non-finite weight.
    #[error("loss config: `{key}` holds {value}; weights must be finite and >= 0")]
    Value {
        /// The config key.
        key: &'static str,
        /// The bad value.
        value: f64,
    },
}

/// Label counts over the training frames, for `auto` weights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCounts {
    /// Frames per expression class.
    pub expr: [u64; N_EXPR],
    /// Frames with a valid AU label where each AU is active.
    pub au_pos: [u64; N_AU],
    /// Frames with a valid AU label where each AU is inactive.
    pub au_neg: [u64; N_AU],
}

impl LabelCounts {
    /// Counts one frame's valid labels.
    pub fn add(&mut self, labels: &FrameLabels) {
        if let Some(k) = labels.expression {
            self.expr[k as usize] += 1;
        }
        if let Some(aus) = labels.aus {
            for (a, on) in aus.iter().enumerate() {
                if *on {
                    self.au_pos[a] += 1;
                } else {
                    self.au_neg[a] += 1;
                }
            }
        }
    }
}

/// Inverse-frequency class weights normalised to mean 1: `w_k = (1/n_k) / mean_j(1/n_j)` over
/// the classes present (`n_j > 0`). A class with no training frame gets 1 (it never is a
/// training target, so its weight only matters for other data); all zero counts give all 1.
///
/// E.g. counts `[1, 3]` give `[1.5, 0.5]`.
pub fn class_weights_auto(counts: &[u64]) -> Vec<f64> {
    let inv: Vec<f64> = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| 1.0 / n as f64)
        .collect();
    if inv.is_empty() {
        return vec![1.0; counts.len()];
    }
    let mean = inv.iter().sum::<f64>() / inv.len() as f64;
    counts
        .iter()
        .map(|&n| if n > 0 { 1.0 / n as f64 / mean } else { 1.0 })
        .collect()
}

/// ME-GraphAU's WAL weights `w_i = n (1/r_i) / sum_j (1/r_j)` from the AU occurrence rates
/// `r_i = pos_i / (pos_i + neg_i)` of the training frames ([`wal_weights`]).
pub fn wal_weights_auto(pos: &[u64], neg: &[u64]) -> Vec<f64> {
    let rates: Vec<f64> = pos
        .iter()
        .zip(neg)
        .map(|(&p, &n)| {
            if p + n > 0 {
                p as f64 / (p + n) as f64
            } else {
                0.0
            }
        })
        .collect();
    wal_weights(&rates)
}

/// `w_i = n (1/r_i) / sum_j (1/r_j)` (mean 1: rare AUs weigh more). An AU that never occurs
/// (`r_i = 0`) gets the largest weight of the others instead of an infinite one (all 1 when no
/// AU occurs).
pub fn wal_weights(rates: &[f64]) -> Vec<f64> {
    let inv: Vec<Option<f64>> = rates.iter().map(|&r| (r > 0.0).then(|| 1.0 / r)).collect();
    let largest = inv.iter().flatten().copied().fold(f64::NAN, f64::max);
    if largest.is_nan() {
        return vec![1.0; rates.len()];
    }
    let inv: Vec<f64> = inv.into_iter().map(|x| x.unwrap_or(largest)).collect();
    let sum: f64 = inv.iter().sum();
    inv.iter().map(|x| inv.len() as f64 * x / sum).collect()
}

/// The focal loss's alpha from the training AU counts: `alpha_i = 1 - r_i`, clamped to
/// [`FOCAL_ALPHA_CLAMP`], with `r_i = pos_i / (pos_i + neg_i)` (0.5 for an AU without any
/// valid frame).
///
/// E.g. an AU active in 1 of 10 frames gets 0.9, one active in 99 of 100 frames 0.05.
pub fn focal_alpha_auto(pos: &[u64], neg: &[u64]) -> Vec<f64> {
    let (lo, hi) = FOCAL_ALPHA_CLAMP;
    pos.iter()
        .zip(neg)
        .map(|(&p, &n)| {
            if p + n == 0 {
                0.5
            } else {
                (1.0 - p as f64 / (p + n) as f64).clamp(lo, hi)
            }
        })
        .collect()
}

/// BCE positive weights `n_neg / n_pos` per AU (PyTorch's recommendation for
/// `BCEWithLogitsLoss(pos_weight)`: positives and negatives then weigh the same in total).
/// An AU with no positive (or no negative) frame gets 1.
pub fn pos_weight_auto(pos: &[u64], neg: &[u64]) -> Vec<f64> {
    pos.iter()
        .zip(neg)
        .map(|(&p, &n)| {
            if p > 0 && n > 0 {
                n as f64 / p as f64
            } else {
                1.0
            }
        })
        .collect()
}

fn check(key: &'static str, w: &Weights, expected: usize) -> Result<(), LossConfigError> {
    if let Weights::Values(v) = w {
        if v.len() != expected {
            return Err(LossConfigError::Length {
                key,
                expected,
                found: v.len(),
            });
        }
        if let Some(&value) = v.iter().find(|x| !x.is_finite() || **x < 0.0) {
            return Err(LossConfigError::Value { key, value });
        }
    }
    Ok(())
}

impl LossConfig {
    /// Checks the explicit weights (count, finite, >= 0).
    pub fn validate(&self) -> Result<(), LossConfigError> {
        if let Some(x) = self.va_extreme {
            if !(x > 0.0 && x <= 1.0) {
                return Err(LossConfigError::Extreme(x));
            }
        }
        check("expr_class_weights", &self.expr_class_weights, N_EXPR)?;
        check("au_pos_weight", &self.au_pos_weight, N_AU)?;
        check("au_weights", &self.au_weights, N_AU)?;
        if !(self.dice_weight.is_finite() && self.dice_weight >= 0.0) {
            return Err(LossConfigError::Range {
                key: "dice_weight",
                value: self.dice_weight,
                what: "the weight of the dice loss must be a finite number >= 0",
            });
        }
        if !(self.focal_gamma.is_finite() && self.focal_gamma >= 0.0) {
            return Err(LossConfigError::Range {
                key: "focal_gamma",
                value: self.focal_gamma,
                what: "the focusing exponent must be a finite number >= 0 (2 in the paper)",
            });
        }
        let alphas: &[f64] = match &self.focal_alpha {
            FocalAlpha::Frequency => &[],
            FocalAlpha::Fixed(a) => std::slice::from_ref(a),
            FocalAlpha::PerAu(v) => {
                if v.len() != N_AU {
                    return Err(LossConfigError::Length {
                        key: "focal_alpha",
                        expected: N_AU,
                        found: v.len(),
                    });
                }
                v
            }
        };
        if let Some(&value) = alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(LossConfigError::Range {
                key: "focal_alpha",
                value,
                what: "alpha weighs the positive side of each AU: a number in [0, 1]",
            });
        }
        Ok(())
    }

    /// The focal alpha of each AU (after [`LossConfig::resolve`]).
    ///
    /// # Panics
    /// If `focal_alpha` is still `"frequency"`.
    pub fn focal_alphas(&self) -> Vec<f64> {
        match &self.focal_alpha {
            FocalAlpha::Frequency => panic!(
                "loss config: `focal_alpha` is still \"frequency\"; call LossConfig::resolve with the training label counts first"
            ),
            FocalAlpha::Fixed(a) => vec![*a; N_AU],
            FocalAlpha::PerAu(v) => v.clone(),
        }
    }

    /// The same options with every `auto` replaced by weights from the training `counts`
    /// ([`class_weights_auto`], [`pos_weight_auto`]).
    pub fn resolve(&self, counts: &LabelCounts) -> Result<LossConfig, LossConfigError> {
        self.validate()?;
        let mut out = self.clone();
        out.fill_auto(counts);
        Ok(out)
    }

    /// Replaces every `auto` in place by weights counted over the training frames `labels`
    /// (explicit weights are left as they are; check them with [`LossConfig::validate`]).
    pub fn resolve_auto(&mut self, labels: &[FrameLabels]) {
        let mut counts = LabelCounts::default();
        for l in labels {
            counts.add(l);
        }
        self.fill_auto(&counts);
    }

    fn fill_auto(&mut self, counts: &LabelCounts) {
        if self.expr_class_weights == Weights::Auto {
            let mut expr = counts.expr;
            if self.drop_other {
                // Class 7 is no target: it neither gets nor shapes a weight (its weight is 1).
                expr[OTHER as usize] = 0;
            }
            self.expr_class_weights = Weights::Values(class_weights_auto(&expr));
        }
        if self.au_loss == AuLoss::Focal && self.focal_alpha == FocalAlpha::Frequency {
            self.focal_alpha = FocalAlpha::PerAu(focal_alpha_auto(&counts.au_pos, &counts.au_neg));
        }
        if self.au_pos_weight == Weights::Auto {
            self.au_pos_weight = Weights::Values(pos_weight_auto(&counts.au_pos, &counts.au_neg));
        }
        if self.au_weights == Weights::Auto {
            self.au_weights = Weights::Values(wal_weights_auto(&counts.au_pos, &counts.au_neg));
        }
    }
}

fn weight_tensor(key: &str, w: &Weights, n: usize, like: &Tensor) -> Option<Tensor> {
    match w {
        Weights::None => None,
        Weights::Auto => panic!(
            "loss config: `{key}` is still \"auto\"; call LossConfig::resolve with the training label counts first"
        ),
        Weights::Values(v) => {
            assert_eq!(v.len(), n, "loss config: `{key}` needs {n} weights, has {}", v.len());
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            Some(Tensor::from_slice(&v).to_device(like.device()).to_kind(like.kind()))
        }
    }
}

/// `num / den`, 0 when `den` is 0 (then `num` is 0 too: no valid frame).
fn safe_div(num: Tensor, den: &Tensor) -> Tensor {
    num / den.clamp_min(1e-12)
}

/// Squared error or `1 - CCC` of `pred` vs `y` (`[B, L]`) over the frames where `m` is true.
fn va_loss(pred: &Tensor, y: &Tensor, m: &Tensor, kind: VaLoss) -> Tensor {
    let not_m = m.logical_not();
    let y = y.masked_fill(&not_m, 0.0);
    let n = m.to_kind(pred.kind()).sum(pred.kind());
    match kind {
        VaLoss::Mse => safe_div(
            (pred - &y)
                .square()
                .masked_fill(&not_m, 0.0)
                .sum(pred.kind()),
            &n,
        ),
        VaLoss::Ccc => {
            let n1 = n.clamp_min(1.0);
            let mean = |t: &Tensor| t.masked_fill(&not_m, 0.0).sum(pred.kind()) / &n1;
            let (mx, my) = (mean(pred), mean(&y));
            let (dx, dy) = (pred - &mx, &y - &my);
            let vx = mean(&dx.square());
            let vy = mean(&dy.square());
            let cov = mean(&(&dx * &dy));
            let ccc = cov * 2.0 / (vx + vy + (mx - my).square() + CCC_EPS);
            (1.0 - ccc) * n.gt(0.0).to_kind(pred.kind())
        }
    }
}

/// The polarity class of a VA label: 0 for `y <= -extreme`, 2 for `y >= extreme`, 1 otherwise.
pub fn polarity_class(y: &Tensor, extreme: f64) -> Tensor {
    let ones = y.ones_like().to_kind(Kind::Int64);
    ones.masked_fill(&y.le(-extreme), 0)
        .masked_fill(&y.ge(extreme), 2)
}

/// Cross-entropy of the polarity `logits [B, L, 3]` against the polarity classes of `y [B, L]`,
/// averaged over the frames where `m` is true (0 when there is none).
fn polarity_ce(logits: &Tensor, y: &Tensor, m: &Tensor, extreme: f64) -> Tensor {
    let target = polarity_class(y, extreme);
    let ce = logits
        .reshape([-1, 3])
        .cross_entropy_loss::<Tensor>(&target.reshape([-1]), None, Reduction::None, -100, 0.0)
        .view_as(&target);
    let n = m.to_kind(logits.kind()).sum(logits.kind());
    safe_div(ce.masked_fill(&m.logical_not(), 0.0).sum(logits.kind()), &n)
}

/// The AU loss of every frame `[B, L]` (mean over the 12 AUs), from logits or, with
/// `probabilities`, from probabilities.
fn au_loss(out: &Tensor, target: &Tensor, probabilities: bool, cfg: &LossConfig) -> Tensor {
    let kind = out.kind();
    match cfg.au_loss {
        AuLoss::BceCircle => {
            let bce = au_loss(
                out,
                target,
                probabilities,
                &LossConfig {
                    au_loss: AuLoss::Bce,
                    ..cfg.clone()
                },
            );
            let logits = if probabilities {
                out.clamp(1e-7, 1.0 - 1e-7).logit(None)
            } else {
                out.shallow_clone()
            };
            bce + circle_loss(&logits, target)
        }
        AuLoss::Bce => {
            let pw = weight_tensor("au_pos_weight", &cfg.au_pos_weight, N_AU, out);
            if probabilities {
                // BCE on probabilities, with PyTorch's log clamp at -100 and the same pos_weight.
                let log_p: Tensor = out.log().clamp_min(-100.0);
                let log_q: Tensor = (out.neg() + 1.0).log().clamp_min(-100.0);
                let pos: Tensor = match &pw {
                    Some(w) => target * w * log_p,
                    None => target * log_p,
                };
                let neg: Tensor = (target.neg() + 1.0) * log_q;
                (pos + neg).mean_dim(-1, false, kind).neg()
            } else {
                out.binary_cross_entropy_with_logits::<Tensor>(target, None, pw, Reduction::None)
                    .mean_dim(-1, false, kind)
            }
        }
        AuLoss::Focal => focal_loss(
            out,
            target,
            probabilities,
            &cfg.focal_alphas(),
            cfg.focal_gamma,
        )
        .mean_dim(-1, false, kind),
        AuLoss::Wal => {
            let p = if probabilities {
                out.shallow_clone()
            } else {
                out.sigmoid()
            };
            let log_p: Tensor = p.clamp_min(WAL_EPS).log();
            let log_q: Tensor = (p.neg() + 1.0).clamp_min(WAL_EPS).log();
            let neg: Tensor = (target.neg() + 1.0) * p.detach() * log_q;
            let mut l: Tensor = target * log_p + neg;
            if let Some(w) = weight_tensor("au_weights", &cfg.au_weights, N_AU, out) {
                l *= w;
            }
            l.mean_dim(-1, false, kind).neg()
        }
    }
}

/// The binary focal loss of every output `[..., n]` (no reduction) against 0/1 `target`, with
/// `alpha[i]` for the positives of AU i (`1 - alpha[i]` for its negatives) and exponent `gamma`:
/// `-alpha_t (1 - p_t)^gamma log p_t` (see the module documentation). `out` holds logits, or
/// probabilities when `probabilities` is true.
pub fn focal_loss(
    out: &Tensor,
    target: &Tensor,
    probabilities: bool,
    alpha: &[f64],
    gamma: f64,
) -> Tensor {
    let (log_p, log_q) = if probabilities {
        (
            out.clamp_min(FOCAL_EPS).log(),
            (out.neg() + 1.0).clamp_min(FOCAL_EPS).log(),
        )
    } else {
        (out.log_sigmoid(), out.neg().log_sigmoid())
    };
    let alpha: Vec<f32> = alpha.iter().map(|&a| a as f32).collect();
    let alpha = Tensor::from_slice(&alpha)
        .to_device(out.device())
        .to_kind(out.kind());
    let pos = target * &alpha * (log_q.exp().pow_tensor_scalar(gamma)) * &log_p;
    let neg = (target.neg() + 1.0)
        * (alpha.neg() + 1.0)
        * (log_p.exp().pow_tensor_scalar(gamma))
        * &log_q;
    (pos + neg).neg()
}

/// The soft dice loss `1 - mean_i 2 TP_i / (2 TP_i + FP_i + FN_i)` over the classes of `probs`
/// `[N, C]` against `onehot` `[N, C]`, rows with `weight [N]` 0 left out (see the module
/// documentation); 0 when no row counts.
pub fn soft_dice_loss(probs: &Tensor, onehot: &Tensor, weight: &Tensor) -> Tensor {
    let kind = probs.kind();
    let w = weight.unsqueeze(-1);
    let p = probs * &w;
    let y = onehot * &w;
    let tp = (&p * &y).sum_dim_intlist([0i64].as_slice(), false, kind);
    let den = p.sum_dim_intlist([0i64].as_slice(), false, kind)
        + y.sum_dim_intlist([0i64].as_slice(), false, kind)
        + DICE_EPS;
    let dice = (tp * 2.0 / den).mean(kind);
    let any = weight.sum(kind).gt(0.0).to_kind(kind);
    (dice.neg() + 1.0) * any
}

/// Prediction rows `[N, 22]` (valence, arousal, 8 expression and 12 AU probabilities) of a model
/// trained with `drop_other`: the expression probabilities renormalised over classes 0..6 and
/// class 7 set to 0 (the softmax over the first 7 logits).
pub fn without_other(rows: &Tensor) -> Tensor {
    let out = rows.copy();
    let mut expr = out.narrow(1, 2, OTHER);
    let sum = expr.sum_dim_intlist([1i64].as_slice(), true, expr.kind());
    expr.copy_(&(&expr / sum.clamp_min(1e-12)));
    let _ = out.narrow(1, 2 + OTHER, 1).fill_(0.0);
    out
}

/// The multi-label circle loss of every frame (LRP-ARL-FF, no scale or margin) on logits
/// `s [..., n]` with 0/1 labels: `log(1 + sum_{y=0} e^{s_i}) + log(1 + sum_{y=1} e^{-s_j})`,
/// each term a log-sum-exp over the selected values and 0 (an empty set gives 0).
pub fn circle_loss(s: &Tensor, y: &Tensor) -> Tensor {
    let zero = s.zeros_like().narrow(-1, 0, 1);
    let positive = y.gt(0.5);
    let term = |values: &Tensor, keep: &Tensor| {
        let selected = values.masked_fill(&keep.logical_not(), f64::NEG_INFINITY);
        Tensor::cat(&[&zero, &selected], -1).logsumexp([-1i64].as_slice(), false)
    };
    term(s, &positive.logical_not()) + term(&s.neg(), &positive)
}

/// The masked multi-task loss (see the module documentation): returns the weighted total, to
/// back-propagate, and each present task's own (unweighted) loss by head name.
///
/// `valid [B, L]` bool is false on padding.
///
/// # Panics
/// If `cfg` still holds `auto` weights ([`LossConfig::resolve`] first) or weights of the wrong
/// length, or if a valid expression label is outside 0..8.
pub fn mtl_loss(
    out: &Outputs,
    labels: &LabelTensors,
    valid: &Tensor,
    cfg: &LossConfig,
) -> (Tensor, BTreeMap<String, f64>) {
    let valid = valid.to_kind(Kind::Bool);
    let mut losses: Vec<(&str, Tensor)> = Vec::new();
    for (i, (task, polarity)) in [
        ("valence", "valence_polarity"),
        ("arousal", "arousal_polarity"),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(logits) = out.by_task.get(polarity) {
            let y = labels.va.select(-1, i as i64).to_kind(logits.kind());
            let m = y.ne(INVALID_VA).logical_and(&valid);
            let extreme = cfg.va_extreme.unwrap_or(1.0);
            if cfg.polarity_stage != PolarityStage::Regressors {
                losses.push((polarity, polarity_ce(logits, &y, &m, extreme)));
            }
            if cfg.polarity_stage != PolarityStage::Classifiers {
                let reg = &out.by_task[&format!("{task}_regressor")];
                let m = m.logical_and(&y.abs().lt(extreme));
                losses.push((task, va_loss(&reg.squeeze_dim(-1), &y, &m, cfg.va_loss)));
            }
            continue;
        }
        if let Some(pred) = out.by_task.get(task) {
            let y = labels.va.select(-1, i as i64).to_kind(pred.kind());
            let m = y.ne(INVALID_VA).logical_and(&valid);
            losses.push((task, va_loss(&pred.squeeze_dim(-1), &y, &m, cfg.va_loss)));
        }
    }
    if let Some(logits) = out.by_task.get("expr") {
        let mut m = labels.expr.ne(INVALID_CLASS).logical_and(&valid);
        let n_classes = if cfg.drop_other {
            m = m.logical_and(&labels.expr.ne(OTHER));
            OTHER
        } else {
            N_EXPR as i64
        };
        let logits = logits.narrow(-1, 0, n_classes);
        let target = labels
            .expr
            .to_kind(Kind::Int64)
            .masked_fill(&m.logical_not(), 0);
        let flat_logits = logits.reshape([-1, n_classes]);
        let flat_target = target.reshape([-1]);
        let ce = flat_logits
            .cross_entropy_loss::<Tensor>(&flat_target, None, Reduction::None, -100, 0.0)
            .view_as(&target);
        let w = match weight_tensor(
            "expr_class_weights",
            &cfg.expr_class_weights,
            N_EXPR,
            &logits,
        ) {
            Some(w) => w.index_select(0, &flat_target).view_as(&target),
            None => Tensor::ones_like(&ce),
        };
        let w = w.masked_fill(&m.logical_not(), 0.0);
        let num = (ce * &w)
            .masked_fill(&m.logical_not(), 0.0)
            .sum(logits.kind());
        let mut loss = safe_div(num, &w.sum(logits.kind()));
        if cfg.expr_loss == ExprLoss::CeDice {
            let probs = flat_logits.softmax(-1, logits.kind());
            let onehot = flat_target.one_hot(n_classes).to_kind(logits.kind());
            let rows = m.reshape([-1]).to_kind(logits.kind());
            loss += soft_dice_loss(&probs, &onehot, &rows) * cfg.dice_weight;
        }
        losses.push(("expr", loss));
    }
    if let Some(logits) = out.by_task.get("au") {
        let au = labels.au.to_kind(logits.kind());
        let m = au
            .ne(INVALID_CLASS as f64)
            .all_dim(-1, false)
            .logical_and(&valid);
        let not_m = m.logical_not();
        let target = au.clamp_min(0.0).masked_fill(&not_m.unsqueeze(-1), 0.0);
        let per_frame = au_loss(logits, &target, out.au_probabilities, cfg);
        let n = m.to_kind(logits.kind()).sum(logits.kind());
        losses.push((
            "au",
            safe_div(per_frame.masked_fill(&not_m, 0.0).sum(logits.kind()), &n),
        ));
    }
    let mut total: Option<Tensor> = None;
    let mut values = BTreeMap::new();
    for (task, loss) in losses {
        values.insert(task.to_string(), loss.double_value(&[]));
        let weighted = &loss * cfg.task_weights.get(task);
        total = Some(match total {
            Some(t) => t + weighted,
            None => weighted,
        });
    }
    let total = total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, valid.device())));
    (total, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn outputs(pairs: Vec<(&str, Tensor)>) -> Outputs {
        Outputs {
            by_task: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            deferred: Default::default(),
            au_probabilities: false,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-5 * (1.0 + b.abs())
    }

    /// One segment `[1, 3]`: frame 0 valid, frame 1 with invalid labels, frame 2 padding.
    fn case() -> (Outputs, LabelTensors, Tensor) {
        let v = Tensor::from_slice(&[0.5f32, 9.0, -7.0]).view([1, 3, 1]);
        let a = Tensor::from_slice(&[0.0f32, 1.0, 2.0]).view([1, 3, 1]);
        let mut e = vec![0f32; 24];
        e[2] = (2f32).ln(); // frame 0: logits [0, 0, ln 2, 0, ...]
        let expr = Tensor::from_slice(&e).view([1, 3, 8]);
        let mut u = vec![0f32; 36];
        u[0] = 1.0; // frame 0: AU1 logit 1, the rest 0
        let au = Tensor::from_slice(&u).view([1, 3, 12]);
        let out = outputs(vec![
            ("valence", v),
            ("arousal", a),
            ("expr", expr),
            ("au", au),
        ]);
        let va = Tensor::from_slice(&[0.25f32, -0.5, -5.0, -5.0, 3.0, 3.0]).view([1, 3, 2]);
        let expr_y = Tensor::from_slice(&[2i64, -1, 5]).view([1, 3]);
        let mut au_y = vec![0f32; 36];
        au_y[0] = 1.0; // frame 0: AU1 on, others off
        au_y[12 + 3] = -1.0; // frame 1: one AU invalid -> the frame's AU label is invalid
        let au_y = Tensor::from_slice(&au_y).view([1, 3, 12]);
        let valid = Tensor::from_slice(&[true, true, false]).view([1, 3]);
        (
            out,
            LabelTensors {
                va,
                expr: expr_y,
                au: au_y,
            },
            valid,
        )
    }

    #[test]
    fn reference_loss_by_hand() {
        let (out, labels, valid) = case();
        let (total, parts) = mtl_loss(&out, &labels, &valid, &LossConfig::default());
        // valence: only frame 0 -> (0.5 - 0.25)^2; arousal: only frame 0 -> (0 + 0.5)^2.
        assert!(
            close(parts["valence"], 0.0625) && close(parts["arousal"], 0.25),
            "{parts:?}"
        );
        // expr: frame 0, logits [0,0,ln2,0,0,0,0,0], target 2: -ln(2 / 9).
        assert!(close(parts["expr"], -(2.0f64 / 9.0).ln()), "{parts:?}");
        // au: frame 0: AU1 logit 1 target 1 -> ln(1+e^-1); 11 AUs logit 0 target 0 -> ln 2.
        let au = ((1.0 + (-1.0f64).exp()).ln() + 11.0 * 2f64.ln()) / 12.0;
        assert!(close(parts["au"], au), "{parts:?}");
        let sum: f64 = parts.values().sum();
        assert!(close(total.double_value(&[]), sum));
    }

    #[test]
    fn options_by_hand() {
        let (out, labels, valid) = case();
        let mut ew = vec![1.0; 8];
        ew[2] = 3.0;
        let mut pw = vec![1.0; 12];
        pw[0] = 2.0;
        let cfg = LossConfig {
            va_loss: VaLoss::Ccc,
            expr_class_weights: Weights::Values(ew),
            au_pos_weight: Weights::Values(pw),
            au_loss: AuLoss::Bce,
            au_weights: Weights::None,
            task_weights: TaskWeights {
                valence: 2.0,
                arousal: 0.0,
                expr: 1.0,
                au: 0.5,
            },
            ..LossConfig::default()
        };
        let (total, parts) = mtl_loss(&out, &labels, &valid, &cfg);
        // One valid VA frame: variances and covariance 0, CCC = 0 -> loss 1.
        assert!(
            close(parts["valence"], 1.0) && close(parts["arousal"], 1.0),
            "{parts:?}"
        );
        // A weighted mean over one frame is that frame's loss.
        assert!(close(parts["expr"], -(2.0f64 / 9.0).ln()), "{parts:?}");
        // pos_weight 2 doubles AU1's positive term.
        let au = (2.0 * (1.0 + (-1.0f64).exp()).ln() + 11.0 * 2f64.ln()) / 12.0;
        assert!(close(parts["au"], au), "{parts:?}");
        let want = 2.0 * parts["valence"] + parts["expr"] + 0.5 * parts["au"];
        assert!(close(total.double_value(&[]), want));
    }

    #[test]
    fn ccc_of_a_perfect_and_a_shifted_prediction() {
        let valid = Tensor::ones([1, 4], (Kind::Bool, Device::Cpu));
        let y = [0.1f32, -0.3, 0.6, 0.2];
        let va: Vec<f32> = y.iter().flat_map(|&v| [v, v]).collect();
        let labels = LabelTensors {
            va: Tensor::from_slice(&va).view([1, 4, 2]),
            expr: Tensor::full([1, 4], -1, (Kind::Int64, Device::Cpu)),
            au: Tensor::full([1, 4, 12], -1.0, (Kind::Float, Device::Cpu)),
        };
        let perfect = Tensor::from_slice(&y).view([1, 4, 1]);
        let shifted = &perfect + 0.5;
        let out = outputs(vec![("valence", perfect), ("arousal", shifted)]);
        let cfg = LossConfig {
            va_loss: VaLoss::Ccc,
            ..Default::default()
        };
        let (_, parts) = mtl_loss(&out, &labels, &valid, &cfg);
        assert!(parts["valence"].abs() < 1e-6, "{parts:?}");
        // Shift s: CCC = 2 var / (2 var + s^2); var of y = 0.1025 (population).
        let var = 0.1025f64;
        assert!(
            close(parts["arousal"], 1.0 - 2.0 * var / (2.0 * var + 0.25)),
            "{parts:?}"
        );
    }

    #[test]
    fn no_valid_frame_gives_zero_loss_and_zero_gradient() {
        tch::set_num_threads(1);
        let none = Tensor::zeros([1, 3], (Kind::Bool, Device::Cpu));
        for va_loss in [VaLoss::Mse, VaLoss::Ccc] {
            let (out, labels, _) = case();
            for t in out.by_task.values() {
                let _ = t.set_requires_grad(true);
            }
            let cfg = LossConfig {
                va_loss,
                ..Default::default()
            };
            let (total, parts) = mtl_loss(&out, &labels, &none, &cfg);
            assert!(parts.values().all(|v| *v == 0.0), "{parts:?}");
            total.backward();
            for (k, t) in &out.by_task {
                assert_eq!(
                    t.grad().abs().sum(Kind::Double).double_value(&[]),
                    0.0,
                    "{k}"
                );
            }
        }
    }

    /// Losses and output gradients for one configuration.
    fn loss_and_grads(
        out: &Outputs,
        labels: &LabelTensors,
        valid: &Tensor,
        cfg: &LossConfig,
    ) -> (f64, Vec<Tensor>) {
        let leaves: Vec<Tensor> = out
            .by_task
            .values()
            .map(|t| t.detach().copy().set_requires_grad(true))
            .collect();
        let out2 = Outputs {
            by_task: out
                .by_task
                .keys()
                .cloned()
                .zip(leaves.iter().map(Tensor::shallow_clone))
                .collect(),
            deferred: Default::default(),
            au_probabilities: false,
        };
        let (total, _) = mtl_loss(&out2, labels, valid, cfg);
        total.backward();
        (
            total.double_value(&[]),
            leaves.iter().map(|t| t.grad().copy()).collect(),
        )
    }

    #[test]
    fn invalid_labels_change_neither_loss_nor_gradients() {
        tch::set_num_threads(1);
        tch::manual_seed(5);
        let (b, l) = (2, 5);
        let f = (Kind::Float, Device::Cpu);
        let out = outputs(vec![
            ("valence", Tensor::randn([b, l, 1], f)),
            ("arousal", Tensor::randn([b, l, 1], f)),
            ("expr", Tensor::randn([b, l, 8], f)),
            ("au", Tensor::randn([b, l, 12], f)),
        ]);
        let va = Tensor::rand([b, l, 2], f) * 2.0 - 1.0;
        let expr = Tensor::randint(8, [b, l], (Kind::Int64, Device::Cpu));
        let au = Tensor::randint(2, [b, l, 12], f);
        // Invalid: VA of (0,1) valence only, expr of (1,2), one AU of (0,3); (1,4) is padding.
        let _ = va.get(0).get(1).get(0).fill_(-5.0);
        let _ = expr.get(1).get(2).fill_(-1);
        let _ = au.get(0).get(3).get(7).fill_(-1.0);
        let valid = Tensor::ones([b, l], (Kind::Bool, Device::Cpu));
        let _ = valid.get(1).get(4).fill_(0);
        let labels = LabelTensors { va, expr, au };
        // The same labels with every ignored value replaced by something else.
        let changed = LabelTensors {
            va: labels.va.copy(),
            expr: labels.expr.copy(),
            au: labels.au.copy(),
        };
        let _ = changed.au.get(0).get(3).narrow(0, 0, 7).fill_(1.0); // rest of an invalid AU frame
        let _ = changed.va.get(1).get(4).fill_(0.9); // padding
        let _ = changed.expr.get(1).get(4).fill_(3);
        let _ = changed.au.get(1).get(4).fill_(1.0);
        let mut pw = vec![1.5; 12];
        pw[7] = 4.0;
        let cfgs = [
            LossConfig::default(),
            LossConfig {
                va_loss: VaLoss::Ccc,
                expr_class_weights: Weights::Values((1..=8).map(f64::from).collect()),
                au_pos_weight: Weights::Values(pw),
                au_loss: AuLoss::Bce,
                au_weights: Weights::None,
                task_weights: TaskWeights {
                    valence: 0.5,
                    arousal: 2.0,
                    expr: 1.5,
                    au: 3.0,
                },
                ..Default::default()
            },
            LossConfig {
                expr_loss: ExprLoss::CeDice,
                dice_weight: 0.7,
                au_loss: AuLoss::Focal,
                focal_alpha: FocalAlpha::Fixed(0.25),
                ..LossConfig::default()
            },
        ];
        for cfg in &cfgs {
            let (l1, g1) = loss_and_grads(&out, &labels, &valid, cfg);
            let (l2, g2) = loss_and_grads(&out, &changed, &valid, cfg);
            assert_eq!(l1, l2, "{cfg:?}");
            for (a, b) in g1.iter().zip(&g2) {
                assert_eq!(a, b, "{cfg:?}");
            }
            // The ignored frames get no gradient at all.
            assert_eq!(
                g1[0]
                    .get(1)
                    .get(4)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[]),
                0.0
            );
            // Outputs in `by_task` order: arousal, au, expr, valence.
            assert_eq!(
                g1[1]
                    .get(0)
                    .get(3)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[]),
                0.0
            );
            assert_eq!(
                g1[2]
                    .get(1)
                    .get(2)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[]),
                0.0
            );
            assert_eq!(
                g1[3]
                    .get(0)
                    .get(1)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[]),
                0.0
            );
            // ... while a valid frame does (the check above is not vacuous).
            assert!(
                g1[3]
                    .get(0)
                    .get(0)
                    .abs()
                    .sum(Kind::Double)
                    .double_value(&[])
                    > 0.0
            );
        }
    }

    #[test]
    fn auto_weights() {
        assert_eq!(class_weights_auto(&[1, 3]), vec![1.5, 0.5]);
        assert_eq!(class_weights_auto(&[2, 0, 2]), vec![1.0, 1.0, 1.0]);
        assert_eq!(class_weights_auto(&[0, 0]), vec![1.0, 1.0]);
        let w = class_weights_auto(&[10, 20, 40, 80]);
        assert!(close(w.iter().sum::<f64>() / 4.0, 1.0) && close(w[0] / w[3], 8.0));
        assert_eq!(pos_weight_auto(&[1, 4, 0], &[3, 4, 9]), vec![3.0, 1.0, 1.0]);

        let mut counts = LabelCounts::default();
        let mut aus = [false; N_AU];
        aus[0] = true;
        counts.add(&FrameLabels {
            expression: Some(1),
            aus: Some(aus),
            ..Default::default()
        });
        counts.add(&FrameLabels {
            expression: Some(1),
            aus: Some([false; N_AU]),
            ..Default::default()
        });
        counts.add(&FrameLabels {
            expression: Some(4),
            ..Default::default()
        });
        assert_eq!(
            (
                counts.expr[1],
                counts.expr[4],
                counts.au_pos[0],
                counts.au_neg[0]
            ),
            (2, 1, 1, 1)
        );
        let cfg = LossConfig {
            expr_class_weights: Weights::Auto,
            au_pos_weight: Weights::Auto,
            ..Default::default()
        };
        let r = cfg.resolve(&counts).unwrap();
        // Present classes 1 (n=2) and 4 (n=1): inverse 0.5 and 1, mean 0.75.
        let Weights::Values(ew) = &r.expr_class_weights else {
            panic!("not resolved")
        };
        assert!(close(ew[1], 0.5 / 0.75) && close(ew[4], 1.0 / 0.75) && ew[0] == 1.0);
        let Weights::Values(pw) = &r.au_pos_weight else {
            panic!("not resolved")
        };
        assert_eq!((pw[0], pw[1]), (1.0, 1.0));

        // resolve_auto counts the frames itself: AU1 active in 1 of 4 valid frames -> 3 / 1;
        // classes 0 (2 frames) and 3 (1 frame) -> inverse 0.5 and 1, mean 0.75.
        let off = FrameLabels {
            aus: Some([false; N_AU]),
            ..Default::default()
        };
        let frames = [
            FrameLabels {
                expression: Some(0),
                aus: Some(aus),
                ..Default::default()
            },
            FrameLabels {
                expression: Some(0),
                ..off
            },
            FrameLabels {
                expression: Some(3),
                ..off
            },
            off,
            FrameLabels::default(),
        ];
        let mut inplace = cfg.clone();
        inplace.resolve_auto(&frames);
        let Weights::Values(pw) = &inplace.au_pos_weight else {
            panic!("not resolved")
        };
        assert_eq!((pw[0], pw[1]), (3.0, 1.0));
        let Weights::Values(ew) = &inplace.expr_class_weights else {
            panic!("not resolved")
        };
        assert!(close(ew[0], 0.5 / 0.75) && close(ew[3], 1.0 / 0.75) && ew[1] == 1.0);
    }

    #[test]
    fn config_in_toml() {
        let c: LossConfig = toml::from_str(
            "va_loss = \"ccc\"\nexpr_class_weights = \"auto\"\nau_pos_weight = [1,1,1,1,1,1,1,1,1,1,1,2.5]\n[task_weights]\nexpr = 2.0\n",
        )
        .unwrap();
        assert_eq!(c.va_loss, VaLoss::Ccc);
        assert_eq!(c.expr_class_weights, Weights::Auto);
        assert_eq!(
            c.task_weights,
            TaskWeights {
                expr: 2.0,
                ..Default::default()
            }
        );
        c.validate().unwrap();
        let back: LossConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let bad = LossConfig {
            au_pos_weight: Weights::Values(vec![1.0; 3]),
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(LossConfigError::Length {
                expected: 12,
                found: 3,
                ..
            })
        ));
        assert!(toml::from_str::<LossConfig>("expr_class_weights = \"balanced\"\n").is_err());
    }

    #[test]
    fn ce_plus_dice_by_hand() {
        let (out, labels, valid) = case();
        let cfg = LossConfig {
            expr_loss: ExprLoss::CeDice,
            dice_weight: 0.5,
            ..Default::default()
        };
        let (_, parts) = mtl_loss(&out, &labels, &valid, &cfg);
        // One valid frame, target 2, probabilities 2/9 for class 2 and 1/9 for the others.
        // Class 2: TP = 2/9, 2 TP + FP + FN = sum p + sum y = 2/9 + 1 -> dice 4/11; the other
        // seven classes have TP = 0 -> dice 0. Mean 1/22, loss 21/22.
        let want = -(2.0f64 / 9.0).ln() + 0.5 * 21.0 / 22.0;
        assert!(close(parts["expr"], want), "{parts:?}");
    }

    #[test]
    fn soft_dice_of_two_frames_by_hand() {
        let p = Tensor::from_slice(&[0.75f32, 0.25, 0.5, 0.5, 0.1, 0.9]).view([3, 2]);
        let y = Tensor::from_slice(&[1f32, 0.0, 0.0, 1.0, 1.0, 0.0]).view([3, 2]);
        // The third row does not count.
        let w = Tensor::from_slice(&[1f32, 1.0, 0.0]);
        let d = soft_dice_loss(&p, &y, &w).double_value(&[]);
        // Class 0: TP 0.75, sum p + sum y = 1.25 + 1 -> 1.5 / 2.25; class 1: TP 0.5,
        // 0.75 + 1 -> 1 / 1.75.
        let want = 1.0 - (1.5 / 2.25 + 1.0 / 1.75) / 2.0;
        assert!(close(d, want), "{d} vs {want}");
        // Perfect one-hot predictions give 0; no counted row gives 0.
        assert!(soft_dice_loss(&y, &y, &w).double_value(&[]).abs() < 1e-6);
        let none = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        assert_eq!(soft_dice_loss(&p, &y, &none).double_value(&[]), 0.0);
    }

    #[test]
    fn drop_other_scores_seven_classes_and_ignores_frames_labelled_other() {
        tch::set_num_threads(1);
        let (out, labels, valid) = case();
        let cfg = LossConfig {
            drop_other: true,
            ..Default::default()
        };
        let (_, parts) = mtl_loss(&out, &labels, &valid, &cfg);
        // Logits 0..6 = [0, 0, ln 2, 0, 0, 0, 0], target 2: -ln(2 / 8).
        assert!(close(parts["expr"], 4f64.ln()), "{parts:?}");
        // The same frame labelled Other: no target, no loss and no gradient.
        let other = LabelTensors {
            va: labels.va.copy(),
            expr: Tensor::from_slice(&[7i64, -1, 5]).view([1, 3]),
            au: labels.au.copy(),
        };
        let expr = out.by_task["expr"].detach().copy().set_requires_grad(true);
        let only = outputs(vec![("expr", expr.shallow_clone())]);
        let cfg = LossConfig {
            drop_other: true,
            expr_loss: ExprLoss::CeDice,
            ..Default::default()
        };
        let (total, parts) = mtl_loss(&only, &other, &valid, &cfg);
        assert_eq!(parts["expr"], 0.0);
        total.backward();
        assert_eq!(expr.grad().abs().sum(Kind::Double).double_value(&[]), 0.0);
        // Logit 7 never gets a gradient, even on a frame with a target.
        let expr = out.by_task["expr"].detach().copy().set_requires_grad(true);
        let only = outputs(vec![("expr", expr.shallow_clone())]);
        let (total, _) = mtl_loss(&only, &labels, &valid, &cfg);
        total.backward();
        let g = expr.grad();
        assert!(g.get(0).get(0).abs().sum(Kind::Double).double_value(&[]) > 0.0);
        assert_eq!(g.get(0).get(0).get(7).double_value(&[]), 0.0);
        // `auto` class weights ignore class 7's frames.
        let mut c = LossConfig {
            expr_class_weights: Weights::Auto,
            drop_other: true,
            ..Default::default()
        };
        let counts = LabelCounts {
            expr: [2, 1, 0, 0, 0, 0, 0, 100],
            ..Default::default()
        };
        c = c.resolve(&counts).unwrap();
        // Present classes 0 (2) and 1 (1): inverse 0.5 and 1, mean 0.75; class 7 gets 1.
        let Weights::Values(w) = &c.expr_class_weights else {
            panic!("not resolved")
        };
        assert!(close(w[0], 0.5 / 0.75) && close(w[1], 1.0 / 0.75) && w[7] == 1.0);
    }

    #[test]
    fn predictions_without_other_renormalise_the_seven_classes() {
        let mut row = vec![0.3f32, -0.2];
        row.extend([0.1f32, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2]);
        row.extend([0.5f32; 12]);
        let rows = Tensor::from_slice(&row).view([1, 22]);
        let out = Vec::<f32>::try_from(without_other(&rows).view([-1])).unwrap();
        assert_eq!(&out[..2], &[0.3, -0.2]);
        let want = [0.125f32, 0.125, 0.25, 0.125, 0.125, 0.125, 0.125, 0.0];
        for (a, b) in out[2..10].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{out:?}");
        }
        assert_eq!(&out[10..], &[0.5; 12]);
    }

    #[test]
    fn focal_loss_by_hand() {
        let (out, labels, valid) = case();
        let cfg = LossConfig {
            au_loss: AuLoss::Focal,
            focal_alpha: FocalAlpha::Fixed(0.25),
            ..Default::default()
        };
        let (_, parts) = mtl_loss(&out, &labels, &valid, &cfg);
        // Frame 0: AU1 logit 1, target 1: p = sigmoid(1), 0.25 (1 - p)^2 (-ln p); the 11 others
        // logit 0, target 0: p_t = 0.5, 0.75 x 0.5^2 x ln 2.
        let p = 1.0 / (1.0 + (-1.0f64).exp());
        let au1 = 0.25 * (1.0 - p).powi(2) * -p.ln();
        let want = (au1 + 11.0 * 0.75 * 0.25 * 2f64.ln()) / 12.0;
        assert!(close(parts["au"], want), "{parts:?}");
        // gamma 0 and alpha 0.5 is half the BCE.
        let half = LossConfig {
            au_loss: AuLoss::Focal,
            focal_alpha: FocalAlpha::Fixed(0.5),
            focal_gamma: 0.0,
            ..Default::default()
        };
        let (_, focal) = mtl_loss(&out, &labels, &valid, &half);
        let (_, bce) = mtl_loss(&out, &labels, &valid, &LossConfig::default());
        assert!(close(focal["au"], 0.5 * bce["au"]), "{focal:?} {bce:?}");
    }

    #[test]
    fn focal_alpha_from_frequencies_and_in_toml() {
        // Rates 0.1, 0.5, 0.99 and an AU without frames.
        let a = focal_alpha_auto(&[1, 5, 99, 0], &[9, 5, 1, 0]);
        assert!(close(a[0], 0.9) && close(a[1], 0.5) && close(a[2], 0.05) && a[3] == 0.5);
        let mut counts = LabelCounts::default();
        counts.au_pos[0] = 1;
        counts.au_neg[0] = 3;
        let cfg: LossConfig = toml::from_str("au_loss = \"focal\"\n").unwrap();
        assert_eq!(
            (cfg.focal_alpha.clone(), cfg.focal_gamma),
            (FocalAlpha::Frequency, 2.0)
        );
        let r = cfg.resolve(&counts).unwrap();
        assert!(close(r.focal_alphas()[0], 0.75) && r.focal_alphas()[1] == 0.5);
        let fixed: LossConfig =
            toml::from_str("au_loss = \"focal\"\nfocal_alpha = 0.25\nfocal_gamma = 1.5\n").unwrap();
        assert_eq!(fixed.focal_alphas(), vec![0.25; 12]);
        let back: LossConfig = toml::from_str(&toml::to_string(&fixed).unwrap()).unwrap();
        assert_eq!(back, fixed);
        let dice: LossConfig =
            toml::from_str("expr_loss = \"ce+dice\"\ndice_weight = 0.3\ndrop_other = true\n")
                .unwrap();
        assert_eq!(
            (dice.expr_loss, dice.dice_weight, dice.drop_other),
            (ExprLoss::CeDice, 0.3, true)
        );
        let bad = |text: &str| {
            toml::from_str::<LossConfig>(text)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
                .unwrap_err()
        };
        assert!(bad("focal_alpha = 1.5\n").contains("`focal_alpha` = 1.5"));
        assert!(bad("focal_alpha = [0.5, 0.5]\n").contains("has 2 weights"));
        assert!(bad("focal_alpha = \"rates\"\n").contains("frequency"));
        assert!(bad("focal_gamma = -1\n").contains("`focal_gamma` = -1"));
        assert!(bad("dice_weight = -0.5\n").contains("`dice_weight` = -0.5"));
        assert!(bad("expr_loss = \"dice\"\n").contains("ce+dice"));
    }
}
