//! The ABAW challenge metrics, computed as the organisers score them (scikit-learn semantics).
//!
//! What it does:
//! - [`ccc`]: concordance correlation coefficient with population statistics, accumulated in `f64`.
//! - [`f1_binary`], [`macro_f1`], [`au_f1`], [`confusion_matrix`]: F1 scores with
//!   `zero_division=0`; the expression macro F1 averages over every class, present or not.
//! - [`score_decisions`] / [`score_predictions`]: the full multi-task score [`MtlScore`] with
//!   `P_MTL = (CCC_v + CCC_a) / 2 + F1_expr + F1_au`; a frame whose label is invalid for one task
//!   (`None` in [`FrameLabels`]) is left out of that task only.
//! - [`tune_au_thresholds`]: per-AU decision thresholds that maximise each AU's F1.
//!
//! What it does not: read or write files, align predictions with labels (callers pass both in the
//! same frame order), smooth or ensemble predictions, or print (see [`MtlScore::table`]).

use serde::{Deserialize, Serialize};

use crate::tasks::{Decision, FrameLabels, Prediction, AUS, EXPRESSIONS, N_AU, N_EXPR};

/// The AU thresholds [`tune_au_thresholds`] chooses from: 0.05, 0.10, ..., 0.95.
pub const AU_THRESHOLD_GRID: [f32; 19] = [
    0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80,
    0.85, 0.90, 0.95,
];

/// Index of 0.5 in [`AU_THRESHOLD_GRID`] (the challenge default, preferred on ties).
const GRID_DEFAULT_INDEX: usize = 9;

/// Concordance correlation coefficient of `pred` against `gold`, as the ABAW organisers compute it:
/// `2 cov / (var_pred + var_gold + (mean_pred - mean_gold)^2)` with population statistics
/// (divided by n, not n - 1), accumulated in `f64`.
///
/// Degenerate cases: empty input gives 0. When the denominator is 0 (both series constant with
/// the same mean) the result is defined as 0 here, where the organisers' numpy code would give
/// NaN; a constant series against a varying one gives 0 (its covariance is 0). A NaN in either
/// series gives NaN.
///
/// # Panics
/// When the two slices differ in length (a caller bug: pass one prediction per labelled frame).
pub fn ccc(pred: &[f32], gold: &[f32]) -> f64 {
    assert_eq!(
        pred.len(),
        gold.len(),
        "ccc: {} predictions but {} gold values; pass one prediction per labelled frame",
        pred.len(),
        gold.len()
    );
    if pred.is_empty() {
        return 0.0;
    }
    let n = pred.len() as f64;
    let mean_p = pred.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let mean_g = gold.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (mut var_p, mut var_g, mut cov) = (0.0f64, 0.0f64, 0.0f64);
    for (&p, &g) in pred.iter().zip(gold) {
        let dp = f64::from(p) - mean_p;
        let dg = f64::from(g) - mean_g;
        var_p += dp * dp;
        var_g += dg * dg;
        cov += dp * dg;
    }
    let (var_p, var_g, cov) = (var_p / n, var_g / n, cov / n);
    let denominator = var_p + var_g + (mean_p - mean_g).powi(2);
    if denominator == 0.0 {
        return 0.0;
    }
    2.0 * cov / denominator
}

/// F1 from counts, `2 tp / (2 tp + fp + fn)`, and 0 when there is no positive at all
/// (scikit-learn's `zero_division=0`).
fn f1_from_counts(tp: u64, fp: u64, fn_: u64) -> f64 {
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

/// Binary F1 of the positive class (`true`), as scikit-learn's `f1_score(zero_division=0)`.
///
/// Degenerate cases: no true positive gives 0, including when neither `pred` nor `gold` has any
/// positive (scikit-learn's 0/0 case with `zero_division=0`) and for empty input.
///
/// # Panics
/// When the two slices differ in length (a caller bug).
pub fn f1_binary(pred: &[bool], gold: &[bool]) -> f64 {
    assert_eq!(
        pred.len(),
        gold.len(),
        "f1_binary: {} predictions but {} gold values; pass one prediction per labelled frame",
        pred.len(),
        gold.len()
    );
    let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p, g) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    f1_from_counts(tp, fp, fn_)
}

/// Macro F1 over classes `0..n_classes`, as scikit-learn's
/// `f1_score(average='macro', labels=range(n_classes), zero_division=0)`; returns
/// `(mean, per-class F1)`.
///
/// Degenerate cases: a class with no true and no predicted sample scores 0 and still counts in the
/// mean (so with 8 classes and only 2 present, a perfect prediction scores 0.25). Empty input gives
/// 0 for every class. A value `>= n_classes` in `gold` or `pred` belongs to no scored class but,
/// as in scikit-learn, still counts against the class on the other side (a false positive or a
/// false negative of it).
///
/// # Panics
/// When the two slices differ in length (a caller bug).
pub fn macro_f1(pred: &[u8], gold: &[u8], n_classes: usize) -> (f64, Vec<f64>) {
    assert_eq!(
        pred.len(),
        gold.len(),
        "macro_f1: {} predictions but {} gold values; pass one prediction per labelled frame",
        pred.len(),
        gold.len()
    );
    let mut tp = vec![0u64; n_classes];
    let mut predicted = vec![0u64; n_classes];
    let mut actual = vec![0u64; n_classes];
    for (&p, &g) in pred.iter().zip(gold) {
        let (p, g) = (usize::from(p), usize::from(g));
        if p < n_classes {
            predicted[p] += 1;
        }
        if g < n_classes {
            actual[g] += 1;
            if p == g {
                tp[g] += 1;
            }
        }
    }
    let per_class: Vec<f64> = (0..n_classes)
        .map(|k| f1_from_counts(tp[k], predicted[k] - tp[k], actual[k] - tp[k]))
        .collect();
    let mean = if n_classes == 0 {
        0.0
    } else {
        per_class.iter().sum::<f64>() / n_classes as f64
    };
    (mean, per_class)
}

/// Confusion matrix indexed `[gold][pred]` over classes `0..n_classes`, as scikit-learn's
/// `confusion_matrix(gold, pred, labels=range(n_classes))`.
///
/// A sample whose gold or predicted class is `>= n_classes` is left out (as scikit-learn does with
/// `labels`). Empty input gives an all-zero matrix.
///
/// # Panics
/// When the two slices differ in length (a caller bug).
pub fn confusion_matrix(pred: &[u8], gold: &[u8], n_classes: usize) -> Vec<Vec<u64>> {
    assert_eq!(
        pred.len(),
        gold.len(),
        "confusion_matrix: {} predictions but {} gold values; pass one prediction per labelled frame",
        pred.len(),
        gold.len()
    );
    let mut matrix = vec![vec![0u64; n_classes]; n_classes];
    for (&p, &g) in pred.iter().zip(gold) {
        let (p, g) = (usize::from(p), usize::from(g));
        if p < n_classes && g < n_classes {
            matrix[g][p] += 1;
        }
    }
    matrix
}

/// AU F1: binary F1 ([`f1_binary`] semantics) of each of the 12 AUs and their mean; returns
/// `(mean, per-AU F1)`.
///
/// Degenerate cases: an AU with no true positive scores 0 and still counts in the mean; empty
/// input gives 0 everywhere.
///
/// # Panics
/// When the two slices differ in length (a caller bug).
pub fn au_f1(pred: &[[bool; N_AU]], gold: &[[bool; N_AU]]) -> (f64, Vec<f64>) {
    assert_eq!(
        pred.len(),
        gold.len(),
        "au_f1: {} predictions but {} gold values; pass one prediction per labelled frame",
        pred.len(),
        gold.len()
    );
    let mut counts = [(0u64, 0u64, 0u64); N_AU];
    for (p, g) in pred.iter().zip(gold) {
        for (a, c) in counts.iter_mut().enumerate() {
            match (p[a], g[a]) {
                (true, true) => c.0 += 1,
                (true, false) => c.1 += 1,
                (false, true) => c.2 += 1,
                (false, false) => {}
            }
        }
    }
    let per_au: Vec<f64> = counts
        .iter()
        .map(|&(tp, fp, fn_)| f1_from_counts(tp, fp, fn_))
        .collect();
    (per_au.iter().sum::<f64>() / N_AU as f64, per_au)
}

/// The challenge's multi-task score: `(ccc_valence + ccc_arousal) / 2 + f1_expr + f1_au`.
pub fn p_mtl(ccc_valence: f64, ccc_arousal: f64, f1_expr: f64, f1_au: f64) -> f64 {
    (ccc_valence + ccc_arousal) / 2.0 + f1_expr + f1_au
}

/// The multi-task score of a set of frames, per task and overall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtlScore {
    /// CCC of valence over frames with a valid valence label.
    pub ccc_valence: f64,
    /// CCC of arousal over frames with a valid arousal label.
    pub ccc_arousal: f64,
    /// Macro F1 over the 8 expressions (every class counts) on frames with a valid expression.
    pub f1_expr: f64,
    /// Mean F1 over the 12 AUs on frames with valid AU labels.
    pub f1_au: f64,
    /// `(ccc_valence + ccc_arousal) / 2 + f1_expr + f1_au`.
    pub p_mtl: f64,
    /// F1 of each expression, in [`EXPRESSIONS`] order.
    pub f1_expr_per_class: Vec<f64>,
    /// F1 of each AU, in [`AUS`] order.
    pub f1_au_per_au: Vec<f64>,
    /// Frames scored for valence.
    pub n_valence: usize,
    /// Frames scored for arousal.
    pub n_arousal: usize,
    /// Frames scored for expression.
    pub n_expr: usize,
    /// Frames scored for the AUs.
    pub n_au: usize,
}

impl MtlScore {
    /// A readable multi-line table: each task with its frame count, P_MTL, then the F1 of each
    /// expression and of each AU.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<12} {:>8} {:>10}  {}\n",
            "task", "frames", "score", "metric"
        ));
        let rows = [
            ("valence", self.n_valence, self.ccc_valence, "CCC"),
            ("arousal", self.n_arousal, self.ccc_arousal, "CCC"),
            (
                "expression",
                self.n_expr,
                self.f1_expr,
                "macro F1 (8 classes)",
            ),
            ("AU", self.n_au, self.f1_au, "mean F1 (12 AUs)"),
        ];
        for (task, n, score, metric) in rows {
            out.push_str(&format!("{task:<12} {n:>8} {score:>10.4}  {metric}\n"));
        }
        out.push_str(&format!(
            "{:<12} {:>8} {:>10.4}  (CCC_v + CCC_a)/2 + F1_expr + F1_au\n",
            "P_MTL", "", self.p_mtl
        ));
        out.push_str("\nexpression F1 per class:\n");
        for (name, f1) in EXPRESSIONS.iter().zip(&self.f1_expr_per_class) {
            out.push_str(&format!("  {name:<10} {f1:>8.4}\n"));
        }
        out.push_str("\nAU F1 per unit:\n");
        for (name, f1) in AUS.iter().zip(&self.f1_au_per_au) {
            out.push_str(&format!("  {name:<10} {f1:>8.4}\n"));
        }
        out
    }
}

/// Score decisions against labels frame by frame (same length, same order). Invalid labels skip
/// that task only: a frame with a valid valence but no valid expression still counts for the
/// valence CCC. VA values are used as given (a [`Decision`] is already clipped to [-1, 1]).
///
/// A task with no valid frame scores 0 (see [`ccc`], [`macro_f1`], [`au_f1`]) and reports 0
/// frames.
///
/// # Panics
/// When `labels` and `decisions` differ in length (a caller bug: align them by frame first).
pub fn score_decisions(labels: &[FrameLabels], decisions: &[Decision]) -> MtlScore {
    assert_eq!(
        labels.len(),
        decisions.len(),
        "score_decisions: {} labelled frames but {} decisions; pass one decision per labelled \
         frame, in the same order",
        labels.len(),
        decisions.len()
    );
    let (mut v_pred, mut v_gold) = (Vec::new(), Vec::new());
    let (mut a_pred, mut a_gold) = (Vec::new(), Vec::new());
    let (mut e_pred, mut e_gold) = (Vec::new(), Vec::new());
    let (mut au_pred, mut au_gold) = (Vec::new(), Vec::new());
    for (l, d) in labels.iter().zip(decisions) {
        if let Some(v) = l.valence {
            v_pred.push(d.valence);
            v_gold.push(v);
        }
        if let Some(a) = l.arousal {
            a_pred.push(d.arousal);
            a_gold.push(a);
        }
        if let Some(e) = l.expression {
            e_pred.push(d.expression);
            e_gold.push(e);
        }
        if let Some(aus) = l.aus {
            au_pred.push(d.aus);
            au_gold.push(aus);
        }
    }
    let ccc_valence = ccc(&v_pred, &v_gold);
    let ccc_arousal = ccc(&a_pred, &a_gold);
    let (f1_expr, f1_expr_per_class) = macro_f1(&e_pred, &e_gold, N_EXPR);
    let (f1_au, f1_au_per_au) = au_f1(&au_pred, &au_gold);
    MtlScore {
        ccc_valence,
        ccc_arousal,
        f1_expr,
        f1_au,
        p_mtl: p_mtl(ccc_valence, ccc_arousal, f1_expr, f1_au),
        f1_expr_per_class,
        f1_au_per_au,
        n_valence: v_gold.len(),
        n_arousal: a_gold.len(),
        n_expr: e_gold.len(),
        n_au: au_gold.len(),
    }
}

/// Score probabilistic predictions: VA as is (clipped to [-1, 1]), expression argmax (first on
/// ties), AU `a` active when its probability is `>= au_thresholds[a]`; see [`Prediction::decide`]
/// and [`score_decisions`] (same frame order, invalid labels skip that task only).
///
/// # Panics
/// When `labels` and `preds` differ in length (a caller bug: align them by frame first).
pub fn score_predictions(
    labels: &[FrameLabels],
    preds: &[Prediction],
    au_thresholds: &[f32; N_AU],
) -> MtlScore {
    assert_eq!(
        labels.len(),
        preds.len(),
        "score_predictions: {} labelled frames but {} predictions; pass one prediction per \
         labelled frame, in the same order",
        labels.len(),
        preds.len()
    );
    let decisions: Vec<Decision> = preds.iter().map(|p| p.decide(au_thresholds)).collect();
    score_decisions(labels, &decisions)
}

/// Per-AU thresholds from [`AU_THRESHOLD_GRID`] (0.05, 0.10, ..., 0.95) that maximise each AU's
/// F1 on the frames with valid AU labels, with `p >= threshold` as positive.
///
/// Ties go to the threshold closest to 0.5, and between two equally close ones to the lower.
/// An AU gets 0.5 when no frame has a valid AU label, or when it has no gold positive (its F1 is
/// then 0 at every threshold).
///
/// # Panics
/// When `labels` and `preds` differ in length (a caller bug: align them by frame first).
pub fn tune_au_thresholds(labels: &[FrameLabels], preds: &[Prediction]) -> [f32; N_AU] {
    assert_eq!(
        labels.len(),
        preds.len(),
        "tune_au_thresholds: {} labelled frames but {} predictions; pass one prediction per \
         labelled frame, in the same order",
        labels.len(),
        preds.len()
    );
    const BUCKETS: usize = AU_THRESHOLD_GRID.len() + 1;
    // For each AU, frames counted by how many grid thresholds their probability reaches
    // (bucket c: positive exactly at the thresholds with index < c), split by gold label.
    let mut gold_pos = [[0u64; BUCKETS]; N_AU];
    let mut gold_neg = [[0u64; BUCKETS]; N_AU];
    for (l, p) in labels.iter().zip(preds) {
        let Some(gold) = l.aus else { continue };
        for a in 0..N_AU {
            let prob = p.aus[a];
            let bucket = AU_THRESHOLD_GRID.partition_point(|&t| prob >= t);
            if gold[a] {
                gold_pos[a][bucket] += 1;
            } else {
                gold_neg[a][bucket] += 1;
            }
        }
    }
    let mut thresholds = [AU_THRESHOLD_GRID[GRID_DEFAULT_INDEX]; N_AU];
    for a in 0..N_AU {
        let total_pos: u64 = gold_pos[a].iter().sum();
        let mut best: Option<(f64, usize)> = None;
        for j in 0..AU_THRESHOLD_GRID.len() {
            let tp: u64 = gold_pos[a][j + 1..].iter().sum();
            let fp: u64 = gold_neg[a][j + 1..].iter().sum();
            let f1 = f1_from_counts(tp, fp, total_pos - tp);
            let better = match best {
                None => true,
                Some((best_f1, best_j)) => {
                    f1 > best_f1
                        || (f1 == best_f1
                            && j.abs_diff(GRID_DEFAULT_INDEX) < best_j.abs_diff(GRID_DEFAULT_INDEX))
                }
            };
            if better {
                best = Some((f1, j));
            }
        }
        if let Some((_, j)) = best {
            thresholds[a] = AU_THRESHOLD_GRID[j];
        }
    }
    thresholds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::DEFAULT_AU_THRESHOLDS;
    use approx::assert_relative_eq;

    // ---- CCC ----

    #[test]
    fn ccc_of_small_series_matches_hand_computation() {
        // pred [1,2,3], gold [1,2,4]: mean_p = 2, mean_g = 7/3.
        // var_p = (1 + 0 + 1)/3 = 2/3; gold deviations -4/3, -1/3, 5/3 -> var_g = 42/27 = 14/9.
        // cov = ((-1)(-4/3) + 0 + (1)(5/3))/3 = 1; (mean_p - mean_g)^2 = 1/9.
        // ccc = 2 / (2/3 + 14/9 + 1/9) = 2 / (21/9) = 6/7.
        assert_relative_eq!(
            ccc(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]),
            6.0 / 7.0,
            epsilon = 1e-12
        );
        // Symmetric in its arguments.
        assert_relative_eq!(
            ccc(&[1.0, 2.0, 4.0], &[1.0, 2.0, 3.0]),
            6.0 / 7.0,
            epsilon = 1e-12
        );
    }

    #[test]
    fn ccc_penalises_scale_where_pearson_would_not() {
        // pred [0,1,2,3], gold [0,2,4,6] (Pearson r = 1): mean_p = 1.5, mean_g = 3.
        // var_p = (2.25 + 0.25 + 0.25 + 2.25)/4 = 5/4; var_g = 4 * 5/4 = 5; cov = 2 * 5/4 = 5/2.
        // ccc = 5 / (5/4 + 5 + 9/4) = 5 / 8.5 = 10/17.
        assert_relative_eq!(
            ccc(&[0.0, 1.0, 2.0, 3.0], &[0.0, 2.0, 4.0, 6.0]),
            10.0 / 17.0,
            epsilon = 1e-12
        );
    }

    #[test]
    fn ccc_of_perfect_agreement_is_one() {
        let x = [0.1f32, -0.4, 0.7, 0.0, -1.0];
        assert_relative_eq!(ccc(&x, &x), 1.0, epsilon = 1e-12);
    }

    #[test]
    fn ccc_of_zero_mean_negation_is_minus_one_and_shifted_negation_is_not() {
        // [-1,0,1] vs [1,0,-1]: cov = -2/3, both variances 2/3, equal means -> -1.
        assert_relative_eq!(
            ccc(&[-1.0, 0.0, 1.0], &[1.0, 0.0, -1.0]),
            -1.0,
            epsilon = 1e-12
        );
        // [1,2,3] vs [-1,-2,-3]: cov = -2/3, variances 2/3, (2 - (-2))^2 = 16
        // -> (-4/3) / (4/3 + 16) = -1/13.
        assert_relative_eq!(
            ccc(&[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0]),
            -1.0 / 13.0,
            epsilon = 1e-12
        );
    }

    #[test]
    fn ccc_of_constant_prediction_is_zero() {
        // cov = 0; denominator = 0 + 2/3 + (0.5 - 2)^2 > 0.
        assert_eq!(ccc(&[0.5, 0.5, 0.5], &[1.0, 2.0, 3.0]), 0.0);
        // Two different constants: cov = 0, denominator (1 - 2)^2 = 1.
        assert_eq!(ccc(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
    }

    #[test]
    fn ccc_degenerate_cases_are_zero() {
        assert_eq!(ccc(&[], &[]), 0.0);
        // Both constant and equal: denominator 0, defined as 0 (numpy would give nan).
        assert_eq!(ccc(&[0.3; 4], &[0.3; 4]), 0.0);
        // A single frame has no variance either.
        assert_eq!(ccc(&[0.2], &[0.2]), 0.0);
    }

    #[test]
    #[should_panic(expected = "2 predictions but 3 gold values")]
    fn ccc_rejects_length_mismatch() {
        ccc(&[0.0, 1.0], &[0.0, 1.0, 2.0]);
    }

    // ---- binary F1 ----

    #[test]
    fn f1_binary_matches_hand_computation() {
        // tp = 2 (frames 0, 4), fp = 1 (frame 1), fn = 1 (frame 2): 2*2 / (4 + 1 + 1) = 2/3.
        let pred = [true, true, false, false, true];
        let gold = [true, false, true, false, true];
        assert_relative_eq!(f1_binary(&pred, &gold), 2.0 / 3.0, epsilon = 1e-12);
        assert_eq!(f1_binary(&[true, false], &[true, false]), 1.0);
    }

    #[test]
    fn f1_binary_zero_division_cases_are_zero() {
        // No positive anywhere: sklearn's 0/0 with zero_division=0.
        assert_eq!(f1_binary(&[false; 4], &[false; 4]), 0.0);
        // Positives predicted but none in gold: tp = 0.
        assert_eq!(f1_binary(&[true, false], &[false, false]), 0.0);
        // Positives in gold but none predicted: tp = 0.
        assert_eq!(f1_binary(&[false, false], &[true, false]), 0.0);
        assert_eq!(f1_binary(&[], &[]), 0.0);
    }

    // ---- macro F1 and confusion matrix ----

    #[test]
    fn macro_f1_agrees_with_scikit_learn_documentation_example() {
        // scikit-learn's f1_score docs: y_true = [0,1,2,0,1,2], y_pred = [0,2,1,0,0,1]
        // give average=None -> [0.8, 0, 0] and average='macro' -> 0.2666...
        // (class 0: tp 2, fp 1, fn 0 -> 4/5; classes 1 and 2: tp 0).
        let gold = [0u8, 1, 2, 0, 1, 2];
        let pred = [0u8, 2, 1, 0, 0, 1];
        let (mean, per_class) = macro_f1(&pred, &gold, 3);
        assert_relative_eq!(mean, 0.8 / 3.0, epsilon = 1e-12);
        assert_eq!(per_class.len(), 3);
        assert_relative_eq!(per_class[0], 0.8, epsilon = 1e-12);
        assert_eq!((per_class[1], per_class[2]), (0.0, 0.0));
        // With labels=range(8): the five absent classes score 0 and still count: 0.8 / 8 = 0.1.
        let (mean8, per_class8) = macro_f1(&pred, &gold, N_EXPR);
        assert_relative_eq!(mean8, 0.1, epsilon = 1e-12);
        assert_eq!(per_class8.len(), N_EXPR);
        assert!(per_class8[3..].iter().all(|&f| f == 0.0));
    }

    #[test]
    fn macro_f1_counts_absent_classes_as_zero() {
        // Perfect prediction, only classes 0 and 1 occur: per class [1, 1, 0 x 6], mean 2/8.
        let labels = [0u8, 1, 1, 0];
        let (mean, per_class) = macro_f1(&labels, &labels, N_EXPR);
        assert_relative_eq!(mean, 0.25, epsilon = 1e-12);
        assert_eq!(per_class, vec![1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn macro_f1_matches_hand_computation() {
        // gold [0,0,1,1,2], pred [0,1,1,1,2]:
        // class 0: tp 1, fp 0, fn 1 -> 2/3; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: 1.
        // mean = (2/3 + 4/5 + 1)/3 = 37/45.
        let (mean, per_class) = macro_f1(&[0, 1, 1, 1, 2], &[0, 0, 1, 1, 2], 3);
        assert_relative_eq!(per_class[0], 2.0 / 3.0, epsilon = 1e-12);
        assert_relative_eq!(per_class[1], 0.8, epsilon = 1e-12);
        assert_eq!(per_class[2], 1.0);
        assert_relative_eq!(mean, 37.0 / 45.0, epsilon = 1e-12);
    }

    #[test]
    fn macro_f1_out_of_range_values_count_against_the_other_side() {
        // gold [9, 0], pred [0, 0], classes {0, 1}: the frame with gold 9 is a false positive of
        // class 0 (as scikit-learn with labels=[0, 1]): tp 1, fp 1, fn 0 -> 2/3; class 1: 0.
        let (mean, per_class) = macro_f1(&[0, 0], &[9, 0], 2);
        assert_relative_eq!(per_class[0], 2.0 / 3.0, epsilon = 1e-12);
        assert_eq!(per_class[1], 0.0);
        assert_relative_eq!(mean, 1.0 / 3.0, epsilon = 1e-12);
    }

    #[test]
    fn macro_f1_of_empty_input_is_zero() {
        let (mean, per_class) = macro_f1(&[], &[], N_EXPR);
        assert_eq!(mean, 0.0);
        assert_eq!(per_class, vec![0.0; N_EXPR]);
    }

    #[test]
    fn confusion_matrix_agrees_with_scikit_learn_documentation_example() {
        // scikit-learn's confusion_matrix docs: y_true = [2,0,2,2,0,1], y_pred = [0,0,2,2,0,2]
        // -> [[2,0,0],[0,0,1],[1,0,2]] (rows gold, columns predicted).
        let m = confusion_matrix(&[0, 0, 2, 2, 0, 2], &[2, 0, 2, 2, 0, 1], 3);
        assert_eq!(m, vec![vec![2, 0, 0], vec![0, 0, 1], vec![1, 0, 2]]);
        // Samples outside the classes are left out.
        let m = confusion_matrix(&[0, 5, 1], &[7, 1, 1], 2);
        assert_eq!(m, vec![vec![0, 0], vec![0, 1]]);
    }

    // ---- AU F1 ----

    #[test]
    fn au_f1_scores_each_unit_and_averages_over_all_twelve() {
        // AU1: gold [T,F], pred [T,T] -> tp 1, fp 1 -> 2/3. AU2: no positive anywhere -> 0.
        // AU4: gold [F,T], pred [F,T] -> 1. Other AUs: no positive -> 0.
        // mean = (2/3 + 1)/12 = 5/36.
        let mut gold = [[false; N_AU]; 2];
        let mut pred = [[false; N_AU]; 2];
        gold[0][0] = true;
        pred[0][0] = true;
        pred[1][0] = true;
        gold[1][2] = true;
        pred[1][2] = true;
        let (mean, per_au) = au_f1(&pred, &gold);
        assert_relative_eq!(per_au[0], 2.0 / 3.0, epsilon = 1e-12);
        assert_eq!(per_au[1], 0.0);
        assert_eq!(per_au[2], 1.0);
        assert!(per_au[3..].iter().all(|&f| f == 0.0));
        assert_relative_eq!(mean, 5.0 / 36.0, epsilon = 1e-12);
    }

    #[test]
    fn au_threshold_half_is_positive_just_below_is_not() {
        // AU1 prob exactly 0.5 (gold positive) and the largest f32 below 0.5 (gold negative):
        // with p >= 0.5 both are right -> F1 1; with p > 0.5 it would be 0.
        let below_half = f32::from_bits(0.5f32.to_bits() - 1);
        assert!(below_half < 0.5);
        let mut labels = [label_with_aus([false; N_AU]); 2];
        let mut aus = [false; N_AU];
        aus[0] = true;
        labels[0].aus = Some(aus);
        let mut preds = [prediction([0.0; N_AU]); 2];
        preds[0].aus[0] = 0.5;
        preds[1].aus[0] = below_half;
        let score = score_predictions(&labels, &preds, &DEFAULT_AU_THRESHOLDS);
        assert_eq!(score.f1_au_per_au[0], 1.0);
        assert_eq!(score.n_au, 2);
        // A per-AU threshold above 0.5 turns the frame negative: tp 0 -> F1 0.
        let mut thresholds = DEFAULT_AU_THRESHOLDS;
        thresholds[0] = 0.6;
        let score = score_predictions(&labels, &preds, &thresholds);
        assert_eq!(score.f1_au_per_au[0], 0.0);
    }

    // ---- multi-task scoring ----

    fn label_with_aus(aus: [bool; N_AU]) -> FrameLabels {
        FrameLabels {
            valence: None,
            arousal: None,
            expression: None,
            aus: Some(aus),
        }
    }

    fn prediction(aus: [f32; N_AU]) -> Prediction {
        Prediction {
            valence: 0.0,
            arousal: 0.0,
            expression: [0.125; N_EXPR],
            aus,
        }
    }

    /// Four frames, each invalid for a different task, and decisions that would change every
    /// score if an invalid label were counted.
    fn mixed_validity_frames() -> (Vec<FrameLabels>, Vec<Decision>) {
        let aus = |on: &[usize]| {
            let mut a = [false; N_AU];
            for &i in on {
                a[i] = true;
            }
            a
        };
        let labels = vec![
            FrameLabels {
                valence: Some(-0.5),
                arousal: None,
                expression: Some(0),
                aus: Some(aus(&[0, 2])),
            },
            FrameLabels {
                valence: Some(0.0),
                arousal: Some(0.25),
                expression: None,
                aus: Some(aus(&[0])),
            },
            FrameLabels {
                valence: Some(0.5),
                arousal: Some(-0.25),
                expression: Some(1),
                aus: None,
            },
            FrameLabels {
                valence: None,
                arousal: Some(0.75),
                expression: Some(1),
                aus: Some(aus(&[2])),
            },
        ];
        let decisions = vec![
            Decision {
                valence: -0.5,
                arousal: 0.9, // invalid arousal label: ignored
                expression: 0,
                aus: aus(&[0, 2]),
            },
            Decision {
                valence: 0.0,
                arousal: 0.25,
                expression: 5, // invalid expression label: ignored
                aus: aus(&[]),
            },
            Decision {
                valence: 1.0,
                arousal: -0.25,
                expression: 1,
                aus: [true; N_AU], // invalid AU label: ignored
            },
            Decision {
                valence: 0.3, // invalid valence label: ignored
                arousal: 0.75,
                expression: 0,
                aus: aus(&[2]),
            },
        ];
        (labels, decisions)
    }

    #[test]
    fn score_decisions_excludes_invalid_labels_per_task_and_combines_p_mtl() {
        let (labels, decisions) = mixed_validity_frames();
        let s = score_decisions(&labels, &decisions);
        assert_eq!((s.n_valence, s.n_arousal, s.n_expr, s.n_au), (3, 3, 3, 3));
        // Valence (frames 0-2): gold [-0.5, 0, 0.5], pred [-0.5, 0, 1] is [1,2,3] vs [1,2,4]
        // mapped by x -> (x - 2)/2; CCC is invariant to a common affine map -> 6/7.
        assert_relative_eq!(s.ccc_valence, 6.0 / 7.0, epsilon = 1e-9);
        // Arousal (frames 1-3): perfect -> 1.
        assert_relative_eq!(s.ccc_arousal, 1.0, epsilon = 1e-9);
        // Expression (frames 0, 2, 3): gold [0,1,1], pred [0,1,0].
        // class 0: tp 1, fp 1 -> 2/3; class 1: tp 1, fn 1 -> 2/3; six absent classes 0.
        // macro = (4/3)/8 = 1/6.
        assert_relative_eq!(s.f1_expr_per_class[0], 2.0 / 3.0, epsilon = 1e-12);
        assert_relative_eq!(s.f1_expr_per_class[1], 2.0 / 3.0, epsilon = 1e-12);
        assert_relative_eq!(s.f1_expr, 1.0 / 6.0, epsilon = 1e-12);
        // AUs (frames 0, 1, 3): AU1 gold [T,T,F] pred [T,F,F] -> 2/3; AU4 gold [T,F,T] pred
        // [T,F,T] -> 1; the other ten have no positive -> 0. mean = (5/3)/12 = 5/36.
        assert_relative_eq!(s.f1_au_per_au[0], 2.0 / 3.0, epsilon = 1e-12);
        assert_eq!(s.f1_au_per_au[2], 1.0);
        assert_relative_eq!(s.f1_au, 5.0 / 36.0, epsilon = 1e-12);
        // P_MTL = (6/7 + 1)/2 + 1/6 + 5/36 = 13/14 + 11/36 = (234 + 77)/252 = 311/252.
        assert_relative_eq!(s.p_mtl, 311.0 / 252.0, epsilon = 1e-9);
    }

    #[test]
    fn score_predictions_decides_then_scores() {
        let (labels, decisions) = mixed_validity_frames();
        // Probabilities whose decisions are exactly `decisions`: VA beyond 1 is clipped,
        // expression argmax, AU on at exactly 0.5 and off just below.
        let preds: Vec<Prediction> = decisions
            .iter()
            .map(|d| {
                let mut expression = [0.1f32; N_EXPR];
                expression[d.expression as usize] = 0.3;
                let mut aus = [0.49f32; N_AU];
                for (p, &on) in aus.iter_mut().zip(&d.aus) {
                    if on {
                        *p = 0.5;
                    }
                }
                Prediction {
                    valence: if d.valence == 1.0 { 1.7 } else { d.valence },
                    arousal: d.arousal,
                    expression,
                    aus,
                }
            })
            .collect();
        let from_preds = score_predictions(&labels, &preds, &DEFAULT_AU_THRESHOLDS);
        assert_eq!(from_preds, score_decisions(&labels, &decisions));
        assert_relative_eq!(from_preds.p_mtl, 311.0 / 252.0, epsilon = 1e-9);
    }

    #[test]
    fn score_of_no_frames_is_zero_everywhere() {
        let s = score_decisions(&[], &[]);
        assert_eq!(s.p_mtl, 0.0);
        assert_eq!((s.n_valence, s.n_arousal, s.n_expr, s.n_au), (0, 0, 0, 0));
        assert_eq!(s.f1_expr_per_class, vec![0.0; N_EXPR]);
        assert_eq!(s.f1_au_per_au, vec![0.0; N_AU]);
    }

    #[test]
    #[should_panic(expected = "4 labelled frames but 3 decisions")]
    fn score_decisions_rejects_length_mismatch() {
        let (labels, decisions) = mixed_validity_frames();
        score_decisions(&labels, &decisions[..3]);
    }

    #[test]
    fn p_mtl_adds_mean_ccc_and_both_f1() {
        // (0.4 + 0.6)/2 + 0.3 + 0.2 = 1.0
        assert_relative_eq!(p_mtl(0.4, 0.6, 0.3, 0.2), 1.0, epsilon = 1e-12);
    }

    #[test]
    fn table_lists_every_task_class_and_unit() {
        let (labels, decisions) = mixed_validity_frames();
        let s = score_decisions(&labels, &decisions);
        let table = s.table();
        for name in EXPRESSIONS.iter().chain(AUS.iter()) {
            assert!(table.contains(name), "{name} missing from\n{table}");
        }
        // 311/252 = 1.23412...
        assert!(
            table.contains("P_MTL") && table.contains("1.2341"),
            "{table}"
        );
        // 6/7 = 0.857142...
        assert!(table.contains("0.8571"), "{table}");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<MtlScore>(&json).unwrap(), s);
    }

    // ---- threshold tuning ----

    /// Tune on frames where only AU `au` varies (gold and probability); the other AUs are all
    /// negative with probability 0 and must keep 0.5.
    fn tune_one(au: usize, gold: &[bool], probs: &[f32]) -> f32 {
        let labels: Vec<FrameLabels> = gold
            .iter()
            .map(|&g| {
                let mut aus = [false; N_AU];
                aus[au] = g;
                label_with_aus(aus)
            })
            .collect();
        let preds: Vec<Prediction> = probs
            .iter()
            .map(|&p| {
                let mut aus = [0.0; N_AU];
                aus[au] = p;
                prediction(aus)
            })
            .collect();
        let t = tune_au_thresholds(&labels, &preds);
        for (a, &ta) in t.iter().enumerate() {
            if a != au {
                assert_eq!(ta, 0.5, "AU index {a} without positives must keep 0.5");
            }
        }
        t[au]
    }

    #[test]
    fn tuner_picks_the_best_threshold_closest_to_half() {
        // Gold [T,T,F,F], probs [0.95,0.9,0.75,0.1]: F1 = 1 exactly for t in (0.75, 0.9],
        // i.e. grid {0.80, 0.85, 0.90}; closest to 0.5 is 0.80.
        assert_eq!(
            tune_one(0, &[true, true, false, false], &[0.95, 0.9, 0.75, 0.1]),
            0.8
        );
        // Gold [F,T,F,F], probs [0.2,0.3,0.1,0.05]: F1 = 1 for t in (0.2, 0.3] -> {0.25, 0.30};
        // 0.30 works only because p >= t counts (0.3 is on the grid): the tuner returns 0.30.
        assert_eq!(
            tune_one(5, &[false, true, false, false], &[0.2, 0.3, 0.1, 0.05]),
            0.3
        );
    }

    #[test]
    fn tuner_prefers_the_threshold_nearest_half_then_the_lower() {
        // Gold [T,F,F,T], probs [0.9,0.53,0.52,0.47]:
        //   t <= 0.45: all positive: tp 2, fp 2 -> 4/6 = 2/3;
        //   t = 0.50: {0.9, 0.53, 0.52}: tp 1, fp 2, fn 1 -> 2/5;
        //   0.55 <= t <= 0.90: {0.9}: tp 1, fn 1 -> 2/3;  t = 0.95: nothing -> 0.
        // Best 2/3 at 0.05..0.45 and 0.55..0.90; 0.45 and 0.55 are equally close -> lower, 0.45.
        assert_eq!(
            tune_one(3, &[true, false, false, true], &[0.9, 0.53, 0.52, 0.47]),
            0.45
        );
        // Gold [T,F], probs [0.9,0.4]: F1 = 1 for t in (0.4, 0.9], which includes 0.5 -> 0.5.
        assert_eq!(tune_one(11, &[true, false], &[0.9, 0.4]), 0.5);
    }

    #[test]
    fn tuner_ignores_frames_without_valid_au_labels() {
        // Frame 1 has no valid AU label; counted (as gold negative at p = 0.85) it would push
        // AU1's best threshold above 0.85. Valid frames: gold [T,F], probs [0.9,0.2] -> 1 on
        // (0.2, 0.9], closest to 0.5 is 0.5.
        let mut positive = [false; N_AU];
        positive[0] = true;
        let labels = [
            label_with_aus(positive),
            FrameLabels {
                valence: Some(0.0),
                ..FrameLabels::default()
            },
            label_with_aus([false; N_AU]),
        ];
        let mut preds = [prediction([0.0; N_AU]); 3];
        preds[0].aus[0] = 0.9;
        preds[1].aus[0] = 0.85;
        preds[2].aus[0] = 0.2;
        assert_eq!(tune_au_thresholds(&labels, &preds), [0.5; N_AU]);
        // No valid AU frame at all -> 0.5 everywhere.
        assert_eq!(tune_au_thresholds(&labels[1..2], &preds[1..2]), [0.5; N_AU]);
    }
}
