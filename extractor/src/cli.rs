//! The `extractor` command line.

use clap::{Parser, Subcommand};

/// Frames and videos to backbone embeddings in a crash-safe, shardable HDF5 feature cache.
#[derive(Debug, Parser)]
#[command(name = "extractor", version, about, long_about = None)]
pub struct Cli {
    /// The job to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the synthetic Aff-Wild2 sample data set (frames, annotations, optional features).
    SampleData(crate::sample_data::SampleDataArgs),
    /// Embed every frame with one or more feature sets into the feature cache.
    Extract(crate::extract::ExtractArgs),
    /// Detect, align and crop the faces of raw videos (MTCNN, ArcFace template) into cropped_aligned/.
    Faces(crate::faces::command::FacesArgs),
    /// Summarise a feature cache: videos, frames, dims, weights, missing frames, incomplete files.
    Inspect(crate::inspect::InspectArgs),
    /// Forward-only frames/s of a backbone on a random pre-decoded batch (no decoding, no writing).
    Bench(crate::bench::BenchArgs),
}
