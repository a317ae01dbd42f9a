//! Readers and writers for the ABAW challenge files (formats in DESIGN.md, "Formats").
//!
//! What it does:
//! - [`frame_ref`]: image names `video/00001.jpg` ([`FrameRef`]);
//! - [`mtl`]: the multi-task annotation files, the test list and the MTL submission;
//! - [`per_task`]: the per-task Aff-Wild2 layout (`VA_Estimation_Challenge/Train_Set/<video>.txt`, ...)
//!   and per-task submissions;
//! - [`predictions`]: the per-video prediction CSVs `<preds>/<video>.csv` and whole folders of them;
//! - [`au_thresholds`]: the per-AU decision thresholds file `{"AU1": 0.45, ...}`.
//!
//! Every parser reports `file:line: what is wrong` and skips nothing; invalid-label markers
//! become `None` in [`crate::FrameLabels`]. Every writer checks its input first (what it writes
//! reads back) and writes atomically ([`crate::atomic`]).
//!
//! What it does not: decide where a data root keeps its files, align predictions with labels,
//! or score anything (see [`crate::metrics`]).

pub mod au_thresholds;
pub mod frame_ref;
pub mod mtl;
pub mod per_task;
pub mod predictions;
mod text;

pub use au_thresholds::{read_au_thresholds, write_au_thresholds};
pub use frame_ref::{frame_file_name, FrameRef};
pub use mtl::{
    mtl_annotation_header, read_mtl_annotations, read_mtl_submission, read_test_list,
    write_mtl_annotations, write_mtl_submission, write_test_list, MtlAnnotations, MTL_HEADER,
};
pub use per_task::{
    per_task_path, read_per_task_file, read_per_task_split, split_dir, write_per_task_file,
    write_per_task_submission, PerTask, Split,
};
pub use predictions::{
    prediction_path, read_prediction_dir, read_predictions, write_prediction_dir,
    write_predictions, PredictionSet, PREDICTION_HEADER,
};
