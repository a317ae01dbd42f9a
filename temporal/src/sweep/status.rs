//! How far a sweep has come: each member's status from its run folder, the finished runs (for
//! `temporal ensemble`), and the listings `temporal sweep FILE [--list]` prints with the Slurm
//! `--array` to submit or resubmit.
//!
//! What it does not: read or check sweep files (that is [`super::definition`]), or train.

use super::definition::{members, SweepFile, SBATCH_SCRIPT};
use crate::config::TrainConfig;
use crate::run_dir::RunDir;
use anyhow::{Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// How far a member's run has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// No `config.toml` in its run folder.
    NotStarted,
    /// Some epochs done (possibly 0, or still running).
    Partial {
        /// Epochs completed.
        done: usize,
        /// Epochs configured.
        epochs: usize,
    },
    /// Every configured epoch done.
    Finished {
        /// Epochs configured (and done).
        epochs: usize,
    },
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberStatus::NotStarted => f.write_str("not started"),
            MemberStatus::Partial { done, epochs } => write!(f, "partial ({done}/{epochs} epochs)"),
            MemberStatus::Finished { epochs } => write!(f, "finished ({epochs}/{epochs} epochs)"),
        }
    }
}

/// The status of the run folder `dir`, from its `config.toml` (epochs) and `state/progress.json`.
pub fn member_status(dir: &Path) -> Result<MemberStatus> {
    if !dir.join("config.toml").exists() {
        return Ok(MemberStatus::NotStarted);
    }
    let run = RunDir::open(dir)?;
    let epochs = TrainConfig::load(&run.config())?.epochs;
    let done = run.read_progress()?.epochs_done;
    Ok(if done >= epochs {
        MemberStatus::Finished { epochs }
    } else {
        MemberStatus::Partial { done, epochs }
    })
}

/// The finished run folders directly under a sweep folder, sorted by name (sub-folders that are
/// not run folders, or have not finished, are left out).
pub fn finished_runs(sweep_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(sweep_dir)
        .with_context(|| format!("cannot list the sweep folder {}", sweep_dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("cannot list the sweep folder {}", sweep_dir.display()))?
            .path();
        if path.is_dir() && matches!(member_status(&path)?, MemberStatus::Finished { .. }) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Slurm's `--array` syntax for a sorted list of indices, ranges merged: `[0,1,2,5]` -> `0-2,5`.
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if j == i {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(x, w)| format!("{x:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// What `temporal sweep FILE --list` prints: one line per member, then `array size: N` and the
/// submit command.
pub fn list_text(s: &SweepFile, file: &Path) -> String {
    let all = members(s);
    let mut rows = vec![["index", "member", "arch", "topology", "seed", "fold"]
        .map(String::from)
        .to_vec()];
    for m in &all {
        rows.push(vec![
            m.index.to_string(),
            m.name.clone(),
            m.arch.to_string(),
            m.topology.to_string(),
            m.seed.to_string(),
            m.fold.map_or("-".to_string(), |f| f.to_string()),
        ]);
    }
    format!(
        "sweep {}: {} members -> {}\n{}array size: {}\nsubmit: sbatch --array=0-{} {SBATCH_SCRIPT} {}\n",
        s.name,
        all.len(),
        s.out.display(),
        table(&rows),
        all.len(),
        all.len() - 1,
        file.display()
    )
}

/// What `temporal sweep FILE` prints: each member's status, the count of finished members, and
/// the `--array` that reruns the unfinished ones (partial runs resume).
pub fn status_text(s: &SweepFile, file: &Path) -> Result<String> {
    let all = members(s);
    let mut rows = vec![["index", "member", "status", "run folder"]
        .map(String::from)
        .to_vec()];
    let mut todo = Vec::new();
    for m in &all {
        let dir = m.run_dir(s);
        let st = member_status(&dir)?;
        if !matches!(st, MemberStatus::Finished { .. }) {
            todo.push(m.index);
        }
        rows.push(vec![
            m.index.to_string(),
            m.name.clone(),
            st.to_string(),
            dir.display().to_string(),
        ]);
    }
    let mut text = format!(
        "sweep {}: {} members -> {}\n{}finished: {} of {}\n",
        s.name,
        all.len(),
        s.out.display(),
        table(&rows),
        all.len() - todo.len(),
        all.len()
    );
    if !todo.is_empty() {
        text.push_str(&format!(
            "resubmit the rest: sbatch --array={} {SBATCH_SCRIPT} {}\n",
            array_spec(&todo),
            file.display()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, Topology};
    use crate::run_dir::Progress;
    use crate::sweep::definition::tests::{parse, EXAMPLE};

    fn fake_run(dir: &Path, epochs: usize, done: Option<usize>) {
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let cfg = TrainConfig {
            epochs,
            ..Default::default()
        };
        std::fs::write(dir.join("config.toml"), cfg.to_toml().unwrap()).unwrap();
        if let Some(done) = done {
            let p = Progress {
                epochs_done: done,
                ..Default::default()
            };
            std::fs::write(
                dir.join("state/progress.json"),
                serde_json::to_string(&p).unwrap(),
            )
            .unwrap();
        }
    }

    #[test]
    fn status_of_members_and_finished_runs() {
        let dir = tempfile::tempdir().unwrap();
        let s = SweepFile {
            name: "t".into(),
            base: None,
            out: dir.path().join("sweep"),
            seeds: vec![0, 1, 2, 3],
            folds: None,
            archs: vec![Arch::Lstm],
            topologies: vec![Topology::Basic],
            features: None,
        };
        let m = members(&s);
        fake_run(&m[0].run_dir(&s), 3, Some(3));
        fake_run(&m[1].run_dir(&s), 3, Some(1));
        fake_run(&m[2].run_dir(&s), 3, None);
        std::fs::create_dir_all(s.out.join("not-a-run")).unwrap();
        let st: Vec<MemberStatus> = m
            .iter()
            .map(|m| member_status(&m.run_dir(&s)).unwrap())
            .collect();
        assert_eq!(
            st,
            [
                MemberStatus::Finished { epochs: 3 },
                MemberStatus::Partial { done: 1, epochs: 3 },
                MemberStatus::Partial { done: 0, epochs: 3 },
                MemberStatus::NotStarted,
            ]
        );
        assert_eq!(
            finished_runs(&s.out).unwrap(),
            vec![s.out.join("lstm-basic-s0")]
        );
        let text = status_text(&s, Path::new("sw.toml")).unwrap();
        assert!(text.contains("finished: 1 of 4\n"), "{text}");
        assert!(
            text.contains(
                "resubmit the rest: sbatch --array=1-3 configs/slurm/train-sweep.sbatch sw.toml\n"
            ),
            "{text}"
        );
        assert!(text.contains("partial (1/3 epochs)"), "{text}");
    }

    #[test]
    fn list_and_array_spec() {
        let s = parse(EXAMPLE).unwrap();
        let text = list_text(&s, Path::new("configs/sweeps/demo.toml"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 1 + 8 + 2, "{text}");
        assert_eq!(lines[0], "sweep demo: 8 members -> runs/sweeps/demo");
        assert!(lines[1].starts_with("index  member  "), "{text}");
        assert_eq!(
            lines[9].split_whitespace().collect::<Vec<_>>(),
            ["7", "gru-basic-s1-f2of5", "gru", "basic", "1", "2/5"]
        );
        assert_eq!(lines[10], "array size: 8");
        assert_eq!(
            lines[11],
            "submit: sbatch --array=0-7 configs/slurm/train-sweep.sbatch configs/sweeps/demo.toml"
        );
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_spec(&[4]), "4");
        assert_eq!(array_spec(&[]), "");
    }
}
