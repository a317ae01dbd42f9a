//! The vocabulary and file formats every stage of the toolkit agrees on.
//!
//! What it does:
//! - [`tasks`]: the ABAW tasks (valence, arousal, 8 expressions, 12 action units in challenge order)
//!   and per-frame labels whose invalid markers (VA -5, expression -1, AU -1) are explicit masks.
//! - [`video_id`]: video ids that are names, never paths; [`k_of_n`]: the `K/N` of shards and folds.
//! - [`abaw`]: readers and writers for the ABAW annotation, test-list, submission and prediction files.
//! - [`metrics`]: the challenge metrics (CCC, macro F1, AU F1, P_MTL) exactly as the organisers score.
//! - [`cache`]: the HDF5 feature cache `<cache>/<backbone>/<video>.h5`, written atomically.
//! - `sample` (cargo feature `sample`, which only the extractor enables): a synthetic Aff-Wild2
//!   (faces that carry their labels, files in the ABAW layout).
//! - [`device`]: the `--device` value of both binaries (`parse_device` with the feature `torch`).
//!
//! What it does not: decode videos, run neural networks or train models (that is `extractor` and
//! `temporal`), print, or exit. Errors are values naming the file, the line or the video.

#![warn(missing_docs)]

pub mod abaw;
pub mod atomic;
pub mod cache;
pub mod device;
pub mod error;
pub mod k_of_n;
pub mod logging;
pub mod metrics;
#[cfg(feature = "sample")]
pub mod sample;
pub mod tasks;
pub mod video_id;

pub use error::{FormatError, Result};
pub use tasks::{Decision, FrameLabels, Prediction, AUS, EXPRESSIONS, N_AU, N_EXPR};
pub use video_id::VideoId;

/// Version of the toolkit, written into every file it produces.
pub const TOOL_VERSION: &str = concat!("affect-toolkit ", env!("CARGO_PKG_VERSION"));
