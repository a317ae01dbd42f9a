//! Temporal multi-task models over cached backbone features, and everything after the model.
//!
//! What it does: joins feature sets and labels into video segments, trains GRU / LSTM /
//! Transformer encoders with basic, share-bottom and feedback multi-task topologies (hidden state
//! carried from segment to segment), scores held-out videos, and evaluates predictions with the
//! challenge metrics.
//!
//! What it does not: read frames or run image backbones (that is `extractor`), or define the file
//! formats and metrics (that is `shared`).

#![warn(missing_docs)]

pub mod baseline;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod ensemble;
pub mod eval_plots;
pub mod evaluate;
pub mod infer;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plots;
pub mod predict;
pub mod run;
pub mod smooth;
pub mod step;
pub mod submit;
pub mod sweep;
pub mod train;
