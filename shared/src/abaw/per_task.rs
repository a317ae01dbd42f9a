//! The per-task Aff-Wild2 layout: one label file per video and task, and per-task submissions.
//!
//! What it does: name the folders (`VA_Estimation_Challenge`, `EXPR_Classification_Challenge`,
//! `AU_Detection_Challenge`; `Train_Set`, `Validation_Set`), read and write
//! `<root>/<task>/<split>/<video>.txt` (header, then line i+1 is frame i, 1-based), read a whole
//! split folder, and write per-task submissions in the same layout.
//!
//! File contents by task: VA rows `valence,arousal` (-5 invalid); EXPR rows one class id (-1
//! invalid); AU rows 12 values in {-1, 0, 1} (the frame's AU label is invalid if any is -1).
//! Every malformed line is an error `file:line: what is wrong`.
//!
//! What it does not: merge the three tasks into one label set or match frames to images.

use super::text::{
    after_header, au_text, expression_decision_text, expression_label_text, numbered_lines,
    read_text, va_decision_text, va_label_text, Row,
};
use crate::atomic::write_atomically;
use crate::error::{FormatError, Result};
use crate::tasks::{Decision, FrameLabels, Task, AUS, EXPRESSIONS, N_AU};
use crate::video_id::VideoId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One of the three per-task challenges of Aff-Wild2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PerTask {
    /// Valence-arousal estimation (`VA_Estimation_Challenge`).
    Va,
    /// Expression classification (`EXPR_Classification_Challenge`).
    Expr,
    /// Action unit detection (`AU_Detection_Challenge`).
    Au,
}

impl PerTask {
    /// The three tasks in ABAW order.
    pub const ALL: [PerTask; 3] = [PerTask::Va, PerTask::Expr, PerTask::Au];

    /// The folder of this task's files.
    pub fn folder(self) -> &'static str {
        match self {
            PerTask::Va => "VA_Estimation_Challenge",
            PerTask::Expr => "EXPR_Classification_Challenge",
            PerTask::Au => "AU_Detection_Challenge",
        }
    }

    /// The first line of this task's files: `valence,arousal`, the 8 expressions, or the 12 AUs.
    pub fn header(self) -> String {
        match self {
            PerTask::Va => "valence,arousal".to_owned(),
            PerTask::Expr => EXPRESSIONS.join(","),
            PerTask::Au => AUS.join(","),
        }
    }

    /// The task group this challenge labels.
    pub fn task(self) -> Task {
        match self {
            PerTask::Va => Task::Va,
            PerTask::Expr => Task::Expr,
            PerTask::Au => Task::Au,
        }
    }

    /// Number of columns of a data row.
    fn columns(self) -> usize {
        match self {
            PerTask::Va => 2,
            PerTask::Expr => 1,
            PerTask::Au => N_AU,
        }
    }

    /// What the columns are, for error messages.
    fn layout(self) -> &'static str {
        match self {
            PerTask::Va => "valence, arousal",
            PerTask::Expr => "one expression class id -1..7",
            PerTask::Au => "the 12 AUs",
        }
    }

    /// The kind of file, for error messages.
    fn what(self) -> &'static str {
        match self {
            PerTask::Va => "a VA_Estimation_Challenge file",
            PerTask::Expr => "an EXPR_Classification_Challenge file",
            PerTask::Au => "an AU_Detection_Challenge file",
        }
    }
}

impl From<Task> for PerTask {
    fn from(task: Task) -> Self {
        match task {
            Task::Va => PerTask::Va,
            Task::Expr => PerTask::Expr,
            Task::Au => PerTask::Au,
        }
    }
}

/// A split of the per-task layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// `Train_Set`.
    Train,
    /// `Validation_Set`.
    Validation,
}

impl Split {
    /// Both splits.
    pub const ALL: [Split; 2] = [Split::Train, Split::Validation];

    /// The folder of this split.
    pub fn folder(self) -> &'static str {
        match self {
            Split::Train => "Train_Set",
            Split::Validation => "Validation_Set",
        }
    }
}

/// Path of `<root>/<task folder>/<split folder>/<video>.txt`.
pub fn per_task_path(root: &Path, task: PerTask, split: Split, video: &VideoId) -> PathBuf {
    split_dir(root, task, split).join(format!("{video}.txt"))
}

/// The folder `<root>/<task folder>/<split folder>`.
pub fn split_dir(root: &Path, task: PerTask, split: Split) -> PathBuf {
    root.join(task.folder()).join(split.folder())
}

/// Line i+1 (after header) is frame i (1-based); returns one FrameLabels per frame with only that task's fields set.
pub fn read_per_task_file(path: &Path, task: PerTask) -> Result<Vec<FrameLabels>> {
    let text = read_text(path)?;
    let lines = numbered_lines(path, &text)?;
    let header = task.header();
    let rows = after_header(path, &lines, &[&header], task.what())?;
    let mut out = Vec::with_capacity(rows.len());
    for &(line, text) in rows {
        let row = Row::split(path, line, text, task.columns(), task.layout())?;
        out.push(match task {
            PerTask::Va => FrameLabels {
                valence: row.va_label(0, "valence")?,
                arousal: row.va_label(1, "arousal")?,
                ..FrameLabels::default()
            },
            PerTask::Expr => FrameLabels {
                expression: row.expression_label(0)?,
                ..FrameLabels::default()
            },
            PerTask::Au => FrameLabels {
                aus: row.au_labels(0)?,
                ..FrameLabels::default()
            },
        });
    }
    Ok(out)
}

/// Write one per-task label file: header, then one row per frame (`labels[0]` is frame 1) with
/// only `task`'s fields; invalid labels are written -5 (VA) or -1 (EXPR, AU). Errors, writing
/// nothing, on a value that would not read back (VA outside [-1, 1], expression above 7).
pub fn write_per_task_file(path: &Path, task: PerTask, labels: &[FrameLabels]) -> Result<()> {
    let mut text = task.header();
    text.push('\n');
    for (i, l) in labels.iter().enumerate() {
        let row = format!("frame {}", i + 1);
        match task {
            PerTask::Va => {
                text.push_str(&va_label_text(path, &row, "valence", l.valence)?);
                text.push(',');
                text.push_str(&va_label_text(path, &row, "arousal", l.arousal)?);
            }
            PerTask::Expr => text.push_str(&expression_label_text(path, &row, l.expression)?),
            PerTask::Au => text.push_str(&au_text(l.aus.as_ref())),
        }
        text.push('\n');
    }
    write_atomically(path, |w| w.write_all(text.as_bytes()))
}

/// Every video of one task+split folder, sorted by id.
///
/// Reads every `<video>.txt` file of `<root>/<task>/<split>/` (other files and subfolders are
/// not labels and are left alone). Errors if the folder is missing or holds no `.txt` file, if a
/// file name is not a valid video id, or on the first malformed file.
pub fn read_per_task_split(
    root: &Path,
    task: PerTask,
    split: Split,
) -> Result<BTreeMap<VideoId, Vec<FrameLabels>>> {
    let dir = split_dir(root, task, split);
    let files = files_with_extension(&dir, "txt")?;
    if files.is_empty() {
        return Err(FormatError::file(
            &dir,
            format!(
                "no <video>.txt label files in this folder; is {} the Aff-Wild2 annotation root?",
                root.display()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (video, path) in files {
        let labels = read_per_task_file(&path, task)?;
        out.insert(video, labels);
    }
    Ok(out)
}

/// Per-task submission: one `<video>.txt` per video in `<out>/`, same layout/header as the label files,
/// expression as the class id and AUs 0/1; VA as values.
///
/// `decisions[0]` is frame 1. Errors, writing nothing, on a valence/arousal that is not finite or
/// outside [-1, 1], or an expression above 7.
pub fn write_per_task_submission(
    dir: &Path,
    task: PerTask,
    video: &VideoId,
    decisions: &[Decision],
) -> Result<()> {
    let path = dir.join(format!("{video}.txt"));
    let mut text = task.header();
    text.push('\n');
    for (i, d) in decisions.iter().enumerate() {
        let row = format!("frame {}", i + 1);
        match task {
            PerTask::Va => {
                text.push_str(&va_decision_text(&path, &row, "valence", d.valence)?);
                text.push(',');
                text.push_str(&va_decision_text(&path, &row, "arousal", d.arousal)?);
            }
            PerTask::Expr => text.push_str(&expression_decision_text(&path, &row, d.expression)?),
            PerTask::Au => text.push_str(&au_text(Some(&d.aus))),
        }
        text.push('\n');
    }
    write_atomically(&path, |w| w.write_all(text.as_bytes()))
}

/// The regular files `<dir>/<video>.<ext>`, sorted by video id. Errors if `dir` cannot be read
/// or a file name before `.<ext>` is not a valid video id.
pub(crate) fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<(VideoId, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| FormatError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| FormatError::io(dir, e))?.path();
        if path.extension().is_none_or(|e| e != ext) || !path.is_file() {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            return Err(FormatError::file(
                &path,
                "file name is not valid UTF-8; rename the file",
            ));
        };
        let video = VideoId::new(stem).map_err(|e| {
            FormatError::file(
                &path,
                format!("the file name is not a video id: {e}; rename the file"),
            )
        })?;
        out.push((video, path));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn vid(s: &str) -> VideoId {
        VideoId::new(s).unwrap()
    }

    fn aus(on: &[usize]) -> [bool; N_AU] {
        let mut a = [false; N_AU];
        for &i in on {
            a[i] = true;
        }
        a
    }

    fn sample(task: PerTask) -> Vec<FrameLabels> {
        let d = FrameLabels::default();
        match task {
            PerTask::Va => vec![
                FrameLabels {
                    valence: Some(0.1),
                    arousal: Some(-0.2),
                    ..d
                },
                FrameLabels {
                    valence: None,
                    arousal: None,
                    ..d
                },
                FrameLabels {
                    valence: Some(-1.0),
                    arousal: Some(1.0),
                    ..d
                },
                FrameLabels {
                    valence: Some(0.5),
                    arousal: None,
                    ..d
                },
            ],
            PerTask::Expr => vec![
                FrameLabels {
                    expression: Some(0),
                    ..d
                },
                FrameLabels {
                    expression: None,
                    ..d
                },
                FrameLabels {
                    expression: Some(7),
                    ..d
                },
            ],
            PerTask::Au => vec![
                FrameLabels {
                    aus: Some(aus(&[0, 11])),
                    ..d
                },
                FrameLabels { aus: None, ..d },
                FrameLabels {
                    aus: Some(aus(&[])),
                    ..d
                },
            ],
        }
    }

    #[test]
    fn folders_and_headers_are_the_challenge_ones() {
        let root = Path::new("/data/annotations");
        assert_eq!(
            per_task_path(
                root,
                PerTask::Expr,
                Split::Validation,
                &vid("1-30-1280x720")
            ),
            Path::new(
                "/data/annotations/EXPR_Classification_Challenge/Validation_Set/1-30-1280x720.txt"
            )
        );
        assert_eq!(
            per_task_path(root, PerTask::Va, Split::Train, &vid("v")),
            Path::new("/data/annotations/VA_Estimation_Challenge/Train_Set/v.txt")
        );
        assert_eq!(PerTask::Au.folder(), "AU_Detection_Challenge");
        assert_eq!(PerTask::Va.header(), "valence,arousal");
        assert_eq!(
            PerTask::Expr.header(),
            "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
        );
        assert_eq!(
            PerTask::Au.header(),
            "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
        );
        for t in PerTask::ALL {
            assert_eq!(PerTask::from(t.task()), t);
        }
    }

    #[test]
    fn per_task_files_round_trip_for_all_tasks() {
        let dir = tempfile::tempdir().unwrap();
        for task in PerTask::ALL {
            let path = per_task_path(dir.path(), task, Split::Train, &vid("v1"));
            let labels = sample(task);
            write_per_task_file(&path, task, &labels).unwrap();
            assert_eq!(read_per_task_file(&path, task).unwrap(), labels, "{task:?}");
        }
        let va = fs::read_to_string(per_task_path(
            dir.path(),
            PerTask::Va,
            Split::Train,
            &vid("v1"),
        ))
        .unwrap();
        assert_eq!(va, "valence,arousal\n0.1,-0.2\n-5,-5\n-1,1\n0.5,-5\n");
        let au = fs::read_to_string(per_task_path(
            dir.path(),
            PerTask::Au,
            Split::Train,
            &vid("v1"),
        ))
        .unwrap();
        assert_eq!(
            au.lines().nth(2).unwrap(),
            "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1"
        );
    }

    #[test]
    fn writer_keeps_only_the_tasks_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.txt");
        let full = FrameLabels {
            valence: Some(0.25),
            arousal: Some(0.5),
            expression: Some(3),
            aus: Some(aus(&[2])),
        };
        write_per_task_file(&path, PerTask::Expr, &[full]).unwrap();
        assert_eq!(
            read_per_task_file(&path, PerTask::Expr).unwrap(),
            [FrameLabels {
                expression: Some(3),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn split_folder_reads_every_video_sorted() {
        let root = tempfile::tempdir().unwrap();
        let videos = ["b-2", "a_1", "c.3"];
        for (i, v) in videos.iter().enumerate() {
            let labels: Vec<FrameLabels> = sample(PerTask::Expr).into_iter().take(i + 1).collect();
            write_per_task_file(
                &per_task_path(root.path(), PerTask::Expr, Split::Validation, &vid(v)),
                PerTask::Expr,
                &labels,
            )
            .unwrap();
        }
        let dir = split_dir(root.path(), PerTask::Expr, Split::Validation);
        fs::write(dir.join("README.md"), "not labels").unwrap();
        fs::create_dir(dir.join("sub.txt")).unwrap();
        let split = read_per_task_split(root.path(), PerTask::Expr, Split::Validation).unwrap();
        let names: Vec<&str> = split.keys().map(VideoId::as_str).collect();
        assert_eq!(names, ["a_1", "b-2", "c.3"]);
        assert_eq!(split[&vid("a_1")], sample(PerTask::Expr)[..2]);
        assert_eq!(split[&vid("b-2")], sample(PerTask::Expr)[..1]);
        assert_eq!(split[&vid("c.3")], sample(PerTask::Expr));
    }

    #[test]
    fn split_folder_errors() {
        let root = tempfile::tempdir().unwrap();
        let err = read_per_task_split(root.path(), PerTask::Va, Split::Train).unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("VA_Estimation_Challenge/Train_Set"),
            "{err}"
        );

        let dir = split_dir(root.path(), PerTask::Va, Split::Train);
        fs::create_dir_all(&dir).unwrap();
        let err = read_per_task_split(root.path(), PerTask::Va, Split::Train).unwrap_err();
        assert!(
            err.to_string().contains("no <video>.txt label files"),
            "{err}"
        );

        fs::write(dir.join("-rf.txt"), "valence,arousal\n").unwrap();
        let err = read_per_task_split(root.path(), PerTask::Va, Split::Train).unwrap_err();
        assert!(err.to_string().contains("-rf.txt") && err.to_string().contains("not a video id"));

        fs::remove_file(dir.join("-rf.txt")).unwrap();
        fs::write(dir.join("v.txt"), "valence,arousal\n0,0\n0,2\n").unwrap();
        let err = read_per_task_split(root.path(), PerTask::Va, Split::Train).unwrap_err();
        let expected = format!(
            "{}:3: arousal 2 outside [-1, 1]",
            dir.join("v.txt").display()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn per_task_parse_errors_name_file_line_and_problem() {
        let cases = [
            (PerTask::Va, "valence,arousal\n0.1\n", 2, "expected 2 columns"),
            (PerTask::Va, "valence,arousal\n0.1,0.2\n0.1,x\n", 3, "arousal \"x\" is not a number"),
            (PerTask::Va, "valence,arousal\n-1.5,0.2\n", 2, "valence -1.5 outside [-1, 1]"),
            (PerTask::Va, "arousal,valence\n0,0\n", 1, "bad header"),
            (PerTask::Expr, "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1\n9\n", 3, "expression 9 outside -1..7"),
            (PerTask::Expr, "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n1,2\n", 2, "expected 1 columns"),
            (PerTask::Expr, "valence,arousal\n1\n", 1, "is this an EXPR_Classification_Challenge file?"),
            (PerTask::Au, "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n0,0,0,0,0,0,0,0,0,0,0,0\n0,0,0,0,0,0,0,0,0,0,0\n", 3, "expected 12 columns"),
            (PerTask::Au, "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n0,0,0,0,0,0,0,0,0,0,0,5\n", 2, "AU26 5 outside {-1, 0, 1}"),
            (PerTask::Au, "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n\n0,0,0,0,0,0,0,0,0,0,0,0\n", 2, "blank line"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (task, content, line, problem) in cases {
            let path = dir.path().join("video.txt");
            fs::write(&path, content).unwrap();
            let err = read_per_task_file(&path, task).unwrap_err().to_string();
            let prefix = format!("{}:{line}: ", path.display());
            assert!(
                err.starts_with(&prefix) && err.contains(problem),
                "{problem}: {err}"
            );
        }
        let err = read_per_task_file(&dir.path().join("missing.txt"), PerTask::Va).unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }) && err.to_string().contains("missing.txt"));
    }

    #[test]
    fn per_task_submission_round_trips_through_the_label_reader() {
        let dir = tempfile::tempdir().unwrap();
        let decisions = [
            Decision {
                valence: 0.75,
                arousal: -0.125,
                expression: 5,
                aus: aus(&[1, 10]),
            },
            Decision {
                valence: -1.0,
                arousal: 0.0,
                expression: 0,
                aus: aus(&[]),
            },
        ];
        let video = vid("1-30-1280x720");
        for task in PerTask::ALL {
            let out = dir.path().join(task.folder());
            write_per_task_submission(&out, task, &video, &decisions).unwrap();
            let back = read_per_task_file(&out.join("1-30-1280x720.txt"), task).unwrap();
            let expected: Vec<FrameLabels> = decisions
                .iter()
                .map(|d| match task {
                    PerTask::Va => FrameLabels {
                        valence: Some(d.valence),
                        arousal: Some(d.arousal),
                        ..Default::default()
                    },
                    PerTask::Expr => FrameLabels {
                        expression: Some(d.expression),
                        ..Default::default()
                    },
                    PerTask::Au => FrameLabels {
                        aus: Some(d.aus),
                        ..Default::default()
                    },
                })
                .collect();
            assert_eq!(back, expected, "{task:?}");
        }
        let expr = fs::read_to_string(
            dir.path()
                .join("EXPR_Classification_Challenge/1-30-1280x720.txt"),
        )
        .unwrap();
        assert_eq!(
            expr,
            "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n5\n0\n"
        );
        let bad = [Decision {
            valence: 1.5,
            ..decisions[0]
        }];
        let err = write_per_task_submission(dir.path(), PerTask::Va, &video, &bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("frame 1: valence 1.5 is not in [-1, 1]"),
            "{err}"
        );
    }
}
