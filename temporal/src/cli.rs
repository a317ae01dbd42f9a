//! The `temporal` command line: one subcommand per stage after the feature cache.

use clap::{Parser, Subcommand};

/// Temporal multi-task models for ABAW: train, predict, evaluate.
#[derive(Debug, Parser)]
#[command(name = "temporal", version, about, long_about = None)]
pub struct Cli {
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a GRU / LSTM / Transformer multi-task model over cached features.
    Train(Box<crate::train::TrainArgs>),
    /// Score the validation or test videos with a trained run (one CSV per video).
    Predict(crate::predict::PredictArgs),
    /// List the members of a training sweep (and the Slurm array to submit), or their status.
    Sweep(crate::sweep::SweepArgs),
    /// Chance-level predictions drawn from the training labels (the floor to beat).
    Baseline(crate::post::baseline::BaselineArgs),
    /// Score an MTL submission file or a predictions folder against MTL annotations (CCC, F1, P_MTL).
    Evaluate(crate::post::evaluate::EvaluateArgs),
    /// Smooth prediction CSVs over time, per video and task (or tune the smoothing on labels).
    Smooth(crate::post::smooth::SmoothArgs),
    /// Combine the prediction CSVs of several models (mean, vote, best member per task).
    Ensemble(crate::post::ensemble::EnsembleArgs),
    /// Write ABAW submission files (MTL or per-task) from prediction CSVs and a test list.
    Submit(crate::post::submit::SubmitArgs),
    /// The five ABAW7 submissions of a k-fold sweep (best epoch, best per task, fold mean, fold
    /// mean per task, all four), in test-list order.
    SubmitStrategies(crate::strategies::StrategiesArgs),
    /// Training and inference frames/s on synthetic data, timed as the PyTorch peer (JSON).
    Bench(crate::bench::BenchArgs),
    /// How fast the trainer's streamed reader reads a feature cache (MB/s, frames/s; JSON).
    BenchRead(crate::bench_read::BenchReadArgs),
}

impl Command {
    /// Run the chosen subcommand.
    pub fn run(&self) -> anyhow::Result<()> {
        match self {
            Command::Train(a) => crate::train::run(a),
            Command::Predict(a) => crate::predict::run(a),
            Command::Evaluate(a) => crate::post::evaluate::run(a),
            Command::Baseline(a) => crate::post::baseline::run(a),
            Command::Sweep(a) => crate::sweep::run(a),
            Command::Smooth(a) => crate::post::smooth::run(a),
            Command::Ensemble(a) => crate::post::ensemble::run(a),
            Command::Submit(a) => crate::post::submit::run(a),
            Command::SubmitStrategies(a) => crate::strategies::run(a),
            Command::BenchRead(a) => crate::bench_read::run(a),
            Command::Bench(a) => crate::bench::run(a),
        }
    }
}
