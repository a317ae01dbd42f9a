//! Prediction files `<preds>/<video>.csv`: a model's per-frame outputs before any decision.
//!
//! What it does: read and write one video's predictions (header [`PREDICTION_HEADER`]; rows
//! `frame,valence,arousal,<8 expression probabilities>,<12 AU probabilities>`, frames strictly
//! increasing), and read or write a whole folder of them ([`PredictionSet`]). Every malformed line is an error
//! `file:line: what is wrong`. Writers check their input and write atomically.
//!
//! What it does not: check that the expression probabilities sum to 1 (averaging and smoothing
//! keep that only up to rounding), decide classes (see [`crate::Prediction::decide`]), or know
//! which frames should be there.

use super::per_task::files_with_extension;
use super::text::{after_header, numbered_lines, read_text, Row};
use crate::atomic::write_atomically;
use crate::error::{FormatError, Result};
use crate::tasks::{Prediction, AUS, EXPRESSIONS, N_AU, N_EXPR};
use crate::video_id::VideoId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Header of a prediction CSV.
pub const PREDICTION_HEADER: &str = "frame,valence,arousal,Neutral,Anger,Disgust,Fear,Happiness,\
Sadness,Surprise,Other,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26";

/// Every video's predictions of a folder, by video id: what [`read_prediction_dir`] reads and
/// [`write_prediction_dir`] writes.
pub type PredictionSet = BTreeMap<VideoId, Vec<(u32, Prediction)>>;

/// Columns of a prediction row: frame, valence, arousal, 8 expressions, 12 AUs.
const COLUMNS: usize = 3 + N_EXPR + N_AU;

/// Read one video's predictions: `(frame, prediction)` with frames strictly increasing.
/// Errors name the file and line: bad header, wrong column count, unparsable number, frame not a
/// positive integer or not increasing, valence/arousal not finite, probability outside [0, 1].
pub fn read_predictions(path: &Path) -> Result<Vec<(u32, Prediction)>> {
    let text = read_text(path)?;
    let lines = numbered_lines(path, &text)?;
    let rows = after_header(path, &lines, &[PREDICTION_HEADER], "a prediction CSV")?;
    let mut out: Vec<(u32, Prediction)> = Vec::with_capacity(rows.len());
    let mut previous: Option<(u32, usize)> = None;
    for &(line, text) in rows {
        let row = Row::split(
            path,
            line,
            text,
            COLUMNS,
            "frame, valence, arousal, 8 expression and 12 AU probabilities",
        )?;
        let frame = match row.integer(0, "frame")? {
            f @ 1..=0xFFFF_FFFF => f as u32,
            f => return Err(row.error(format!("frame {f} is not a frame number (1 or more)"))),
        };
        if let Some((prev, prev_line)) = previous {
            if frame == prev {
                return Err(row.error(format!("duplicate frame {frame}: also on line {prev_line}")));
            }
            if frame < prev {
                return Err(row.error(format!(
                    "frame {frame} after frame {prev} (line {prev_line}): frames must be strictly increasing"
                )));
            }
        }
        previous = Some((frame, line));
        let mut p = Prediction {
            valence: row.finite(1, "valence")?,
            arousal: row.finite(2, "arousal")?,
            expression: [0.0; N_EXPR],
            aus: [0.0; N_AU],
        };
        for (k, name) in EXPRESSIONS.iter().enumerate() {
            p.expression[k] = row.probability(3 + k, name)?;
        }
        for (a, name) in AUS.iter().enumerate() {
            p.aus[a] = row.probability(3 + N_EXPR + a, name)?;
        }
        out.push((frame, p));
    }
    Ok(out)
}

/// Write one video's predictions. Values are written with enough digits to read back exactly.
/// Errors, writing nothing, if frames are not strictly increasing from 1 or more, a
/// valence/arousal is not finite, or a probability is outside [0, 1].
pub fn write_predictions(path: &Path, rows: &[(u32, Prediction)]) -> Result<()> {
    let bad = |message: String| FormatError::file(path, format!("cannot write: {message}"));
    let mut text = String::with_capacity(32 + rows.len() * 200);
    text.push_str(PREDICTION_HEADER);
    text.push('\n');
    let mut previous = 0u32;
    for (frame, p) in rows {
        if *frame == 0 {
            return Err(bad("frame 0: frame numbers start at 1".to_owned()));
        }
        if *frame <= previous {
            return Err(bad(format!(
                "frame {frame} after frame {previous}: frames must be strictly increasing"
            )));
        }
        previous = *frame;
        for (name, v) in [("valence", p.valence), ("arousal", p.arousal)] {
            if !v.is_finite() {
                return Err(bad(format!("frame {frame}: {name} {v} is not finite")));
            }
        }
        let probabilities = EXPRESSIONS
            .iter()
            .zip(&p.expression)
            .chain(AUS.iter().zip(&p.aus));
        for (name, q) in probabilities.clone() {
            if !(0.0..=1.0).contains(q) {
                return Err(bad(format!(
                    "frame {frame}: {name} probability {q} outside [0, 1]"
                )));
            }
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{frame},{},{}", p.valence, p.arousal);
        for (_, q) in probabilities {
            let _ = write!(text, ",{q}");
        }
        text.push('\n');
    }
    write_atomically(path, |w| w.write_all(text.as_bytes()))
}

/// Path of a video's prediction file: `<dir>/<video>.csv`.
pub fn prediction_path(dir: &Path, video: &VideoId) -> PathBuf {
    dir.join(format!("{video}.csv"))
}

/// Read every `<video>.csv` of a folder, sorted by video id. Errors if the folder cannot be read,
/// holds no `.csv` file, has a file name that is not a video id, or on the first malformed file.
pub fn read_prediction_dir(dir: &Path) -> Result<PredictionSet> {
    let files = files_with_extension(dir, "csv")?;
    if files.is_empty() {
        return Err(FormatError::file(
            dir,
            "no <video>.csv prediction files in this folder; point to the folder `temporal predict` wrote",
        ));
    }
    let mut out = BTreeMap::new();
    for (video, path) in files {
        let predictions = read_predictions(&path)?;
        out.insert(video, predictions);
    }
    Ok(out)
}

/// Write every video's predictions as `<dir>/<video>.csv` (each file atomically).
pub fn write_prediction_dir(dir: &Path, preds: &PredictionSet) -> Result<()> {
    for (video, rows) in preds {
        write_predictions(&prediction_path(dir, video), rows)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn prediction(seed: u32) -> Prediction {
        // Expression probabilities k/28 (sum 1), AU probabilities a/11 (0 and 1 included).
        let s = seed as f32;
        let mut expression = [0.0; N_EXPR];
        for (k, e) in expression.iter_mut().enumerate() {
            *e = k as f32 / 28.0;
        }
        let mut aus = [0.0; N_AU];
        for (a, q) in aus.iter_mut().enumerate() {
            *q = a as f32 / 11.0;
        }
        Prediction {
            valence: 0.1 * s - 0.7,
            arousal: 1.5 - 1.0 / (s + 3.0),
            expression,
            aus,
        }
    }

    fn row_text(fields: &[String]) -> String {
        fields.join(",")
    }

    fn good_row(frame: &str) -> Vec<String> {
        let mut f = vec![frame.to_owned(), "0.5".into(), "-0.25".into()];
        f.extend((0..N_EXPR).map(|k| {
            if k == 0 {
                "1".to_owned()
            } else {
                "0".to_owned()
            }
        }));
        f.extend((0..N_AU).map(|_| "0.5".to_owned()));
        f
    }

    #[test]
    fn header_is_built_from_the_task_names() {
        let expected = format!(
            "frame,valence,arousal,{},{}",
            EXPRESSIONS.join(","),
            AUS.join(",")
        );
        assert_eq!(PREDICTION_HEADER, expected);
        assert_eq!(PREDICTION_HEADER.split(',').count(), 23);
    }

    #[test]
    fn predictions_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let video = VideoId::new("1-30-1280x720").unwrap();
        let path = prediction_path(dir.path(), &video);
        assert_eq!(path, dir.path().join("1-30-1280x720.csv"));
        let rows: Vec<(u32, Prediction)> = [1u32, 2, 5, 100_000]
            .iter()
            .map(|&f| (f, prediction(f % 7)))
            .collect();
        write_predictions(&path, &rows).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next().unwrap(), PREDICTION_HEADER);
        assert_eq!(text.lines().count(), 5);
        assert_eq!(read_predictions(&path).unwrap(), rows);
    }

    #[test]
    fn prediction_dir_reads_every_csv() {
        let dir = tempfile::tempdir().unwrap();
        let a = VideoId::new("a").unwrap();
        let b = VideoId::new("b_left").unwrap();
        write_predictions(&prediction_path(dir.path(), &b), &[(3, prediction(1))]).unwrap();
        write_predictions(
            &prediction_path(dir.path(), &a),
            &[(1, prediction(2)), (2, prediction(3))],
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let all = read_prediction_dir(dir.path()).unwrap();
        assert_eq!(
            all.keys().cloned().collect::<Vec<_>>(),
            [a.clone(), b.clone()]
        );
        assert_eq!(all[&a], [(1, prediction(2)), (2, prediction(3))]);
        assert_eq!(all[&b], [(3, prediction(1))]);
    }

    #[test]
    fn prediction_dir_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_prediction_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("no <video>.csv prediction files"), "{err}");
        let err = read_prediction_dir(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }) && err.to_string().contains("missing"));
    }

    #[test]
    fn writer_rejects_unordered_frames_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.csv");
        let err = write_predictions(&path, &[(2, prediction(0)), (2, prediction(1))]).unwrap_err();
        assert!(err.to_string().contains("strictly increasing"), "{err}");
        let err = write_predictions(&path, &[(0, prediction(0))]).unwrap_err();
        assert!(err.to_string().contains("frame 0"), "{err}");
        let mut p = prediction(0);
        p.aus[4] = 1.25;
        let err = write_predictions(&path, &[(1, p)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("AU7 probability 1.25 outside [0, 1]"),
            "{err}"
        );
        let mut p = prediction(0);
        p.arousal = f32::INFINITY;
        let err = write_predictions(&path, &[(1, p)]).unwrap_err();
        assert!(
            err.to_string().contains("arousal inf is not finite"),
            "{err}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn prediction_parse_errors_name_file_line_and_problem() {
        let with = |i: usize, value: &str, frame: &str| {
            let mut f = good_row(frame);
            f[i] = value.to_owned();
            row_text(&f)
        };
        let short = row_text(&good_row("2")[..22]);
        let cases: Vec<(Vec<String>, usize, &str)> = vec![
            (
                vec![row_text(&good_row("1")), short],
                3,
                "expected 23 columns",
            ),
            (
                vec![with(4, "1.5", "1")],
                2,
                "Anger probability 1.5 outside [0, 1]",
            ),
            (
                vec![with(22, "-0.01", "1")],
                2,
                "AU26 probability -0.01 outside [0, 1]",
            ),
            (
                vec![with(1, "nan", "1")],
                2,
                "valence nan is not a finite number",
            ),
            (vec![with(2, "0,5", "1")], 2, "expected 23 columns"),
            (
                vec![with(3, "one", "1")],
                2,
                "Neutral \"one\" is not a number",
            ),
            (
                vec![row_text(&good_row("1.5"))],
                2,
                "frame \"1.5\" is not an integer",
            ),
            (
                vec![row_text(&good_row("0"))],
                2,
                "frame 0 is not a frame number",
            ),
            (
                vec![row_text(&good_row("4")), row_text(&good_row("4"))],
                3,
                "duplicate frame 4: also on line 2",
            ),
            (
                vec![
                    row_text(&good_row("4")),
                    row_text(&good_row("7")),
                    row_text(&good_row("5")),
                ],
                4,
                "frame 5 after frame 7 (line 3): frames must be strictly increasing",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.csv");
        for (rows, line, problem) in cases {
            fs::write(&path, format!("{PREDICTION_HEADER}\n{}\n", rows.join("\n"))).unwrap();
            let err = read_predictions(&path).unwrap_err().to_string();
            let prefix = format!("{}:{line}: ", path.display());
            assert!(
                err.starts_with(&prefix) && err.contains(problem),
                "{problem}: {err}"
            );
        }
        fs::write(&path, "frame,valence,arousal\n").unwrap();
        let err = read_predictions(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:1: bad header", path.display())),
            "{err}"
        );
    }
}
