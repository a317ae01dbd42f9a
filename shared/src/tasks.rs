//! The ABAW task vocabulary and per-frame labels, predictions and decisions.
//!
//! Order is the challenge's everywhere: valence, arousal; the 8 expressions of [`EXPRESSIONS`];
//! the 12 action units of [`AUS`]. Invalid labels (valence/arousal -5, expression -1, AU -1) never
//! become numbers: they are `None` here, so they cannot reach a loss or a metric.

use serde::{Deserialize, Serialize};

/// Number of expression classes.
pub const N_EXPR: usize = 8;
/// Number of action units.
pub const N_AU: usize = 12;

/// Expression class names, index = class id used in annotation and submission files.
pub const EXPRESSIONS: [&str; N_EXPR] = [
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
];

/// Action unit names in ABAW column order.
pub const AUS: [&str; N_AU] = [
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
];

/// Marker of an invalid valence or arousal label in ABAW files.
pub const INVALID_VA: f32 = -5.0;
/// Marker of an invalid expression label in ABAW files.
pub const INVALID_EXPR: i32 = -1;
/// Marker of an invalid AU label in ABAW files.
pub const INVALID_AU: i32 = -1;

/// A task group as named on the command line (`--tasks va,expr,au`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Valence and arousal regression (two outputs in [-1, 1]).
    Va,
    /// 8-class expression classification.
    Expr,
    /// 12 binary action units.
    Au,
}

impl Task {
    /// All tasks in ABAW order.
    pub const ALL: [Task; 3] = [Task::Va, Task::Expr, Task::Au];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Va => "va",
            Task::Expr => "expr",
            Task::Au => "au",
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "va" => Ok(Task::Va),
            "expr" => Ok(Task::Expr),
            "au" => Ok(Task::Au),
            _ => Err(format!("unknown task {s:?}: expected va, expr or au")),
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The labels of one frame; `None` where the file marks the label invalid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameLabels {
    /// Valence in [-1, 1].
    pub valence: Option<f32>,
    /// Arousal in [-1, 1].
    pub arousal: Option<f32>,
    /// Expression class id in 0..8.
    pub expression: Option<u8>,
    /// The 12 AUs; the frame's AU label is valid only when none of the 12 is -1
    /// (as the reference loss treats it).
    pub aus: Option<[bool; N_AU]>,
}

impl FrameLabels {
    /// True when no task has a valid label.
    pub fn is_empty(&self) -> bool {
        self.valence.is_none()
            && self.arousal.is_none()
            && self.expression.is_none()
            && self.aus.is_none()
    }
}

/// A model's output for one frame: VA values and class probabilities (the prediction CSV format).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Valence.
    pub valence: f32,
    /// Arousal.
    pub arousal: f32,
    /// Expression class probabilities (sum to 1).
    pub expression: [f32; N_EXPR],
    /// Per-AU probabilities of being active.
    pub aus: [f32; N_AU],
}

impl Prediction {
    /// The submission decision: VA clipped to [-1, 1], argmax expression (first on ties),
    /// AU active where its probability is at least its threshold.
    pub fn decide(&self, au_thresholds: &[f32; N_AU]) -> Decision {
        let mut expression = 0u8;
        for (k, p) in self.expression.iter().enumerate() {
            if *p > self.expression[expression as usize] {
                expression = k as u8;
            }
        }
        let mut aus = [false; N_AU];
        for (a, (p, t)) in self.aus.iter().zip(au_thresholds).enumerate() {
            aus[a] = p >= t;
        }
        Decision {
            valence: self.valence.clamp(-1.0, 1.0),
            arousal: self.arousal.clamp(-1.0, 1.0),
            expression,
            aus,
        }
    }
}

/// What a submission file holds for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Valence in [-1, 1].
    pub valence: f32,
    /// Arousal in [-1, 1].
    pub arousal: f32,
    /// Expression class id in 0..8.
    pub expression: u8,
    /// AU active (1) or not (0).
    pub aus: [bool; N_AU],
}

/// The default AU decision threshold of the challenge.
pub const DEFAULT_AU_THRESHOLDS: [f32; N_AU] = [0.5; N_AU];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_clips_va_takes_first_argmax_and_thresholds_aus() {
        let mut p = Prediction {
            valence: 1.7,
            arousal: -3.0,
            expression: [0.1, 0.3, 0.3, 0.1, 0.1, 0.05, 0.05, 0.0],
            aus: [0.5; N_AU],
        };
        p.aus[3] = 0.49;
        let d = p.decide(&DEFAULT_AU_THRESHOLDS);
        assert_eq!((d.valence, d.arousal, d.expression), (1.0, -1.0, 1));
        assert!(d.aus[0] && !d.aus[3]);
    }
}
