//! Temporal multi-task models over cached backbone features, and everything after the model.
//!
//! What it does: joins feature sets and labels into video segments, trains GRU / LSTM /
//! Transformer encoders with basic, share-bottom and feedback multi-task topologies (hidden state
//! carried from segment to segment), scores held-out videos, then smooths, ensembles, evaluates
//! and writes challenge submissions.
//!
//! The layout follows the data, one way:
//! - [`data`]: cache + labels -> one tensor per split, segments over streams, k-fold splits;
//! - [`model`]: the architecture ([`model::encoder`], [`model::topology`], [`model::heads`]) and,
//!   apart, its hand-written CPU kernels ([`model::kernels`]);
//! - training: [`config`] (the run's TOML), [`loss`], [`optim`] (optimizers, SAM, frozen parts),
//!   [`schedule`] (learning rate per step), [`staged`] (starting from another run's weights),
//!   [`step`] (one training or inference step), [`train`] (`temporal train`: epochs and
//!   checkpoint keeping), [`run_dir`] (the run folder's files), [`plots`] (training curves),
//!   [`sweep`] (many runs, one per Slurm array task);
//! - scoring: [`infer`] (streaming a split through a model) and [`predict`] (`temporal predict`);
//! - [`post`]: everything after the model (smooth, ensemble, submit, evaluate, baseline);
//! - [`strategies`]: `temporal submit-strategies`, the five ABAW7 submissions of a k-fold sweep
//!   (its members scored by [`predict`], combined and written by [`post`]);
//! - [`cli`], [`bench`] and [`bench_read`]: the command line, `temporal bench` and `temporal bench-read`.
//!
//! What it does not: read frames or run image backbones (that is `extractor`), or define the file
//! formats and metrics (that is `shared`).

#![warn(missing_docs)]

pub mod bench;
pub mod bench_read;
pub mod cli;
pub mod config;
pub mod data;
pub mod infer;
pub mod loss;
pub mod model;
pub mod optim;
pub mod plots;
pub mod post;
pub mod predict;
pub mod run_dir;
pub mod schedule;
pub mod staged;
pub mod step;
pub mod strategies;
pub mod sweep;
pub mod train;
