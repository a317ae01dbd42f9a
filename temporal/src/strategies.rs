//! `temporal submit-strategies SWEEP`: the five submissions of the ABAW7 task-queries paper from
//! one k-fold sweep, in one command.
//!
//! What it does: for every member of the sweep (each fold, each seed, ...) it scores the test
//! split with four checkpoints of its run folder (`best` = best validation P_MTL, `best-va`,
//! `best-expr`, `best-au` = best epoch of each task; a task the run did not train falls back to
//! `best`) into `OUT/predictions/<member>/<checkpoint>/` (already complete folders are reused, so
//! a rerun after a crash only scores what is missing), then writes five prediction folders and
//! five MTL submission files, `OUT/<n>-<name>/` and `OUT/<n>-<name>.txt`, in test-list order:
//! 1. `best-overall`: the official-split member (fold 0: validated on the official validation
//!    set; the first such member when seeds repeat it) at its best P_MTL epoch;
//! 2. `best-per-task`: the same member, each task from its own best epoch, concatenated;
//! 3. `folds-mean`: the mean ensemble of every member at its best P_MTL epoch;
//! 4. `folds-per-task`: per task, the mean ensemble of every member at its best epoch for that
//!    task, then the three tasks concatenated;
//! 5. `all-four`: the mean ensemble of the four above.
//!
//! `OUT/strategies.json` lists which folders made each submission. The mean ensemble is
//! `temporal ensemble --method mean` (valence/arousal and probabilities averaged, equal weights);
//! the decisions are `temporal submit`'s (argmax expression, AUs at `--au-thresholds`).
//!
//! What it does not: train (run the sweep first: `temporal sweep`), smooth, tune thresholds, or
//! choose between the five (the paper submits all five; their validation scores are in the
//! members' `metrics.jsonl`).

use crate::config::TrainConfig;
use crate::data::Split;
use crate::post::ensemble::{mean_ensemble, pick_per_task, TaskChoice};
use crate::post::submit::mtl_rows;
use crate::post::thresholds::parse_au_thresholds;
use crate::run_dir::{Checkpoint, RunDir};
use crate::sweep::{self, Member};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use shared::abaw::{
    read_prediction_dir, read_test_list, write_mtl_submission, write_prediction_dir, PredictionSet,
};
use std::path::{Path, PathBuf};

/// Write the five ABAW7 task-queries submissions of a k-fold sweep.
#[derive(Debug, Args)]
pub struct StrategiesArgs {
    /// The sweep definition (a `configs/sweeps/*.toml` with `[folds]`), trained.
    #[arg(value_name = "SWEEP")]
    pub sweep: PathBuf,
    /// Test list: one `video/00001.jpg` per line; fixes the rows and their order.
    #[arg(long, value_name = "FILE")]
    pub test_list: PathBuf,
    /// Output folder: predictions/, five prediction folders, five submission files,
    /// strategies.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// AU decision thresholds: one number for all 12 AUs, or a JSON file written by
    /// `temporal evaluate --tune-thresholds`.
    #[arg(long, value_name = "0.5|TUNED.json", default_value = "0.5")]
    pub au_thresholds: String,
}

/// The five strategies, in the paper's order: (file stem, what it is).
pub const STRATEGIES: [(&str, &str); 5] = [
    ("1-best-overall", "official-split member, best P_MTL epoch"),
    (
        "2-best-per-task",
        "official-split member, each task from its best epoch",
    ),
    ("3-folds-mean", "mean of every member's best P_MTL epoch"),
    (
        "4-folds-per-task",
        "per task, mean of every member's best epoch for it",
    ),
    ("5-all-four", "mean of strategies 1-4"),
];

/// The checkpoints scored per member, in the order [`TaskChoice`] indexes them after `best`.
const CHECKPOINTS: [Checkpoint; 4] = [
    Checkpoint::Best,
    Checkpoint::BestVa,
    Checkpoint::BestExpr,
    Checkpoint::BestAu,
];

/// What `strategies.json` records of one submission.
#[derive(Debug, Serialize)]
struct Made {
    submission: PathBuf,
    predictions: PathBuf,
    what: &'static str,
    from: Vec<PathBuf>,
}

/// Run the command.
pub fn run(args: &StrategiesArgs) -> Result<()> {
    let thresholds = parse_au_thresholds(&args.au_thresholds)?;
    let s = sweep::load(&args.sweep)?;
    let Some(folds) = &s.folds else {
        bail!(
            "{}: the sweep has no [folds]; the five strategies need a k-fold sweep (add [folds] \
             n = 6, scheme = \"frames\")",
            args.sweep.display()
        );
    };
    let members = sweep::members(&s);
    let official = members
        .iter()
        .position(|m| m.fold.is_some_and(|f| f.k == 0))
        .with_context(|| {
            format!(
                "{}: [folds] runs no fold 0 (the official validation split), which strategies 1 \
                 and 2 use; add 0 to `which` (now {:?})",
                args.sweep.display(),
                folds.which
            )
        })?;
    let test_list = read_test_list(&args.test_list)?;
    if test_list.is_empty() {
        bail!(
            "{}: the test list names no frame; pass the challenge's test list",
            args.test_list.display()
        );
    }

    // predictions[member][checkpoint]
    let mut predictions: Vec<Vec<(PathBuf, PredictionSet)>> = Vec::new();
    for m in &members {
        let mut per_ckpt = Vec::new();
        for ckpt in CHECKPOINTS {
            per_ckpt.push(member_predictions(&s, m, ckpt, &args.out)?);
        }
        predictions.push(per_ckpt);
    }

    let sets = |ckpt: usize| -> Vec<PredictionSet> {
        predictions.iter().map(|p| p[ckpt].1.clone()).collect()
    };
    let folders =
        |ckpt: usize| -> Vec<PathBuf> { predictions.iter().map(|p| p[ckpt].0.clone()).collect() };
    let equal = |n: usize| vec![1.0 / n as f64; n];
    let n = members.len();
    let own = &predictions[official];
    let per_task = TaskChoice {
        va: 0,
        expr: 1,
        au: 2,
    };

    let s1 = own[0].1.clone();
    let s2 = pick_per_task(
        &[own[1].1.clone(), own[2].1.clone(), own[3].1.clone()],
        per_task,
    );
    let s3 = mean_ensemble(&sets(0), &equal(n));
    let s4 = pick_per_task(
        &[
            mean_ensemble(&sets(1), &equal(n)),
            mean_ensemble(&sets(2), &equal(n)),
            mean_ensemble(&sets(3), &equal(n)),
        ],
        per_task,
    );
    let s5 = mean_ensemble(&[s1.clone(), s2.clone(), s3.clone(), s4.clone()], &equal(4));
    let from = [
        vec![own[0].0.clone()],
        own[1..].iter().map(|(p, _)| p.clone()).collect(),
        folders(0),
        [folders(1), folders(2), folders(3)].concat(),
        STRATEGIES[..4]
            .iter()
            .map(|(stem, _)| args.out.join(stem))
            .collect(),
    ];

    let mut made = Vec::new();
    for (((stem, what), set), from) in STRATEGIES.iter().zip([s1, s2, s3, s4, s5]).zip(from) {
        let folder = args.out.join(stem);
        write_prediction_dir(&folder, &set)?;
        let rows = mtl_rows(&set, &test_list, &thresholds, &args.test_list)
            .with_context(|| format!("submission {stem}"))?;
        let file = args.out.join(format!("{stem}.txt"));
        write_mtl_submission(&file, &rows)?;
        println!(
            "{stem}: {} frames -> {} ({what})",
            rows.len(),
            file.display()
        );
        made.push(Made {
            submission: file,
            predictions: folder,
            what,
            from,
        });
    }
    let json = args.out.join("strategies.json");
    let text = serde_json::to_string_pretty(&made)?;
    shared::atomic::write_atomically(&json, |w| w.write_all(text.as_bytes()))?;
    Ok(())
}

/// The test predictions of `member` at `ckpt` (its `best` where the run has no such
/// checkpoint), scored into `OUT/predictions/<member>/<ckpt>/` unless a complete folder is there.
fn member_predictions(
    s: &sweep::SweepFile,
    member: &Member,
    ckpt: Checkpoint,
    out: &Path,
) -> Result<(PathBuf, PredictionSet)> {
    let run = member.run_dir(s);
    let dir = RunDir::open(&run).with_context(|| {
        format!(
            "sweep member {} ({}) has no run folder; train it first: temporal train --sweep {} \
             --sweep-index {}",
            member.index,
            member.name,
            run.display(),
            member.index
        )
    })?;
    let ckpt = if dir.checkpoint(ckpt).exists() {
        ckpt
    } else {
        Checkpoint::Best
    };
    if !dir.checkpoint(ckpt).exists() {
        bail!(
            "{}: no {} checkpoint; the member {} has not finished an epoch (temporal train \
             --sweep SWEEP --sweep-index {} resumes it)",
            run.display(),
            ckpt.name(),
            member.name,
            member.index
        );
    }
    let folder = out.join("predictions").join(&member.name).join(ckpt.name());
    let done = folder.join(".complete");
    if !done.exists() {
        let cfg = TrainConfig::load(&dir.config())?;
        let _ = std::fs::remove_dir_all(&folder);
        crate::predict::predict(&dir, &cfg, ckpt, Split::Test, &folder)
            .with_context(|| format!("scoring the test split with {}", run.display()))?;
        std::fs::write(&done, b"").with_context(|| format!("writing {}", done.display()))?;
    }
    let set = read_prediction_dir(&folder)?;
    Ok((folder, set))
}
