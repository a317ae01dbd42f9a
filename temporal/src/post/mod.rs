//! Everything after the model: prediction folders in, prediction folders, scores and submission
//! files out.
//!
//! What it does, one subcommand per module:
//! - [`smooth`]: per-task temporal smoothing of prediction CSVs, tuned on validation labels;
//! - [`ensemble`]: mean, vote or best member per task over several prediction folders;
//! - [`submit`]: ABAW submission files (MTL or per task) in test-list order;
//! - [`evaluate`]: the challenge metrics, with [`eval_plots`] (confusion matrix, per-AU F1);
//! - [`baseline`]: chance-level predictions drawn from the training label distribution;
//! - [`other`]: expression class 7 (Other) by a threshold on the top probability, tuned by
//!   `evaluate --tune-other-threshold`, applied by `submit --other-threshold`.
//!
//! And what they share: [`align`] pairs predictions with annotated frames, [`thresholds`] parses
//! `--au-thresholds`, [`forced`] writes a decided class into a probability row. The file formats themselves are `shared::abaw`'s.
//!
//! What it does not: run a model (that is [`crate::predict`]) or read the feature cache.

pub mod align;
pub mod baseline;
pub mod ensemble;
pub mod eval_plots;
pub mod evaluate;
pub mod forced;
pub mod other;
pub mod smooth;
pub mod submit;
pub mod thresholds;
