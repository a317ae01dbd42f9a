//! Training sweeps: many `temporal train` runs from one TOML definition, one per Slurm array task.
//!
//! What it does:
//! - [`definition`]: the sweep file, its checks and its members (which array task runs what);
//! - [`status`]: which members have finished, so a user knows what to resubmit and
//!   `temporal ensemble` can pick up the finished ones;
//! - `temporal sweep FILE [--list]` ([`run`]): prints the members and the array size to submit,
//!   or each member's status and the `--array` of the unfinished ones.
//!
//! What it does not: train (`temporal train --sweep FILE --sweep-index N` runs one member),
//! split videos into folds (`crate::data::folds`), submit jobs (see
//! `configs/slurm/train-sweep.sbatch`), or ensemble.

pub mod definition;
pub mod status;

pub use definition::{
    apply, base_config, index_from_env, load, members, select, FoldScheme, FoldSelection, Member,
    SweepFile, SBATCH_SCRIPT,
};
pub use status::{finished_runs, member_status, MemberStatus};

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

/// List a sweep's members (`--list`), or show how far each has come.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep definition (TOML: name, base, out, seeds, archs, topologies, optional [folds]).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the members and the array size to submit, without looking at their run folders.
    #[arg(long)]
    pub list: bool,
}

/// Run `temporal sweep`.
pub fn run(args: &SweepArgs) -> Result<()> {
    let s = load(&args.file)?;
    let text = if args.list {
        status::list_text(&s, &args.file)
    } else {
        status::status_text(&s, &args.file)?
    };
    print!("{text}");
    Ok(())
}
