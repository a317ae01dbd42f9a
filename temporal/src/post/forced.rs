//! Making a decided class the argmax of a probability row, as little as possible.
//!
//! What it does: [`force_class`] raises one expression class just past the row's largest
//! probability ([`VOTE_MARGIN`]) and renormalises, so that a decision taken elsewhere (a vote,
//! the rule of `ensemble --method rule-vote`, the Other threshold of `submit`) survives in a
//! prediction CSV, whose readers take the argmax; [`first_argmax`] is that argmax (first on
//! ties).
//!
//! What it does not: take the decision (the ensemble and `post::other` do).

use shared::N_EXPR;

/// How far a vote adjustment moves a probability past the value that would decide otherwise.
pub const VOTE_MARGIN: f32 = 1e-4;

/// First index of the largest value.
pub fn first_argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Make `class` the argmax of `expression` (first on ties), changing nothing when it already
/// is: the class is raised to the largest probability plus [`VOTE_MARGIN`] and the row
/// renormalised to sum 1.
pub fn force_class(expression: &mut [f32; N_EXPR], class: usize) {
    if first_argmax(expression) != class {
        let top = expression.iter().cloned().fold(0.0f32, f32::max);
        let mut e = expression.map(f64::from);
        e[class] = f64::from(top) + f64::from(VOTE_MARGIN);
        let sum: f64 = e.iter().sum();
        *expression = e.map(|x| (x / sum) as f32);
    }
}
