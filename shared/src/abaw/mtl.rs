//! The multi-task (s-Aff-Wild2) files: annotations, the test list and the MTL submission.
//!
//! What it does: read and write
//! - annotations (`training_set_annotations.txt`, `validation_set_annotations.txt`): header
//!   `image,valence,arousal,expression,AU1,...,AU26`, rows `video/00001.jpg,v,a,k,au1,...,au12`
//!   with the invalid markers -5 / -1 / -1 turned into `None` ([`FrameLabels`]);
//! - the test list: one `video/00001.jpg` per line (an optional `image` header line is skipped);
//! - the MTL submission: header [`MTL_HEADER`], rows `video/00001.jpg,v,a,k,au1,...,au12`.
//!
//! Every malformed line is an error `file:line: what is wrong`; nothing is skipped. Writers
//! check their input first (so the file reads back) and write atomically.
//!
//! What it does not: find the files in a data root, or check that a submission covers the test
//! list (that is the caller's job: `temporal evaluate` / `submit`).

use super::frame_ref::FrameRef;
use super::text::{
    after_header, au_text, expression_decision_text, expression_label_text, numbered_lines,
    read_text, va_decision_text, va_label_text, Row,
};
use crate::atomic::write_atomically;
use crate::error::{FormatError, Result};
use crate::tasks::{Decision, FrameLabels, AUS};
use crate::video_id::VideoId;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Header of an MTL submission file (the challenge's).
pub const MTL_HEADER: &str = "image,valence,arousal,expression,aus";

/// Number of columns of annotation and submission rows: image, valence, arousal, expression, 12 AUs.
const MTL_COLUMNS: usize = 16;

/// What the 16 columns are, for error messages.
const MTL_LAYOUT: &str = "image, valence, arousal, expression and the 12 AUs";

/// Header of an MTL annotation file: `image,valence,arousal,expression,AU1,...,AU26`.
pub fn mtl_annotation_header() -> String {
    format!("image,valence,arousal,expression,{}", AUS.join(","))
}

/// An MTL annotation file: every annotated frame with its labels, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct MtlAnnotations {
    /// The file it was read from.
    pub path: PathBuf,
    /// `(frame, labels)` in file order; no frame appears twice.
    pub rows: Vec<(FrameRef, FrameLabels)>,
}

impl MtlAnnotations {
    /// The videos, in order of first appearance in the file.
    pub fn videos(&self) -> Vec<VideoId> {
        let mut seen = std::collections::HashSet::new();
        self.rows
            .iter()
            .filter(|(f, _)| seen.insert(&f.video))
            .map(|(f, _)| f.video.clone())
            .collect()
    }

    /// The labels grouped by video (sorted by id), each video's frames sorted by frame number.
    pub fn by_video(&self) -> BTreeMap<VideoId, Vec<(u32, FrameLabels)>> {
        let mut out: BTreeMap<VideoId, Vec<(u32, FrameLabels)>> = BTreeMap::new();
        for (f, labels) in &self.rows {
            out.entry(f.video.clone())
                .or_default()
                .push((f.frame, *labels));
        }
        for frames in out.values_mut() {
            frames.sort_by_key(|(frame, _)| *frame);
        }
        out
    }
}

/// Read an MTL annotation file. Errors name the file and line: bad header, wrong column count,
/// unparsable or out-of-range value, hostile video id, duplicate frame, blank line.
pub fn read_mtl_annotations(path: &Path) -> Result<MtlAnnotations> {
    let text = read_text(path)?;
    let lines = numbered_lines(path, &text)?;
    let header = mtl_annotation_header();
    // The organisers' files use the 16-name header; some releases use the submission header.
    let rows = after_header(
        path,
        &lines,
        &[&header, MTL_HEADER],
        "an MTL annotation file",
    )?;
    let mut seen = HashMap::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for &(line, text) in rows {
        let row = Row::split(path, line, text, MTL_COLUMNS, MTL_LAYOUT)?;
        let frame = frame_at(&row, &mut seen)?;
        let labels = FrameLabels {
            valence: row.va_label(1, "valence")?,
            arousal: row.va_label(2, "arousal")?,
            expression: row.expression_label(3)?,
            aus: row.au_labels(4)?,
        };
        out.push((frame, labels));
    }
    Ok(MtlAnnotations {
        path: path.to_path_buf(),
        rows: out,
    })
}

/// Write an MTL annotation file (header `image,valence,arousal,expression,AU1,...,AU26`), with
/// -5 / -1 / -1 for invalid labels. Errors, writing nothing, on a duplicate frame or a value
/// that would not read back (valence/arousal outside [-1, 1], expression above 7).
pub fn write_mtl_annotations(path: &Path, rows: &[(FrameRef, FrameLabels)]) -> Result<()> {
    check_unique(path, rows.iter().map(|(f, _)| f))?;
    let mut text = mtl_annotation_header();
    text.push('\n');
    for (frame, labels) in rows {
        let name = frame.image_name();
        let row = format!("row {name}");
        text.push_str(&format!(
            "{name},{},{},{},{}\n",
            va_label_text(path, &row, "valence", labels.valence)?,
            va_label_text(path, &row, "arousal", labels.arousal)?,
            expression_label_text(path, &row, labels.expression)?,
            au_text(labels.aus.as_ref()),
        ));
    }
    write_atomically(path, |w| w.write_all(text.as_bytes()))
}

/// Read a test list: one `video/00001.jpg` per line, in file order. A first line `image` (a
/// header) is skipped; anything else that is not an image name, and duplicates, are errors.
pub fn read_test_list(path: &Path) -> Result<Vec<FrameRef>> {
    let text = read_text(path)?;
    let lines = numbered_lines(path, &text)?;
    let rows = match lines.split_first() {
        Some((&(_, first), rest)) if first.eq_ignore_ascii_case("image") => rest,
        _ => &lines[..],
    };
    let mut seen = HashMap::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for &(line, text) in rows {
        let row = Row::split(
            path,
            line,
            text,
            1,
            "one image name like video/00001.jpg per line",
        )?;
        out.push(frame_at(&row, &mut seen)?);
    }
    Ok(out)
}

/// Write a test list: one `video/00001.jpg` per line, no header. Errors on a duplicate frame.
pub fn write_test_list(path: &Path, frames: &[FrameRef]) -> Result<()> {
    check_unique(path, frames.iter())?;
    let mut text = String::with_capacity(frames.len() * 24);
    for frame in frames {
        text.push_str(&frame.image_name());
        text.push('\n');
    }
    write_atomically(path, |w| w.write_all(text.as_bytes()))
}

/// Read an MTL submission (header [`MTL_HEADER`]; rows with finite valence/arousal, expression
/// 0..7 and AUs 0/1), in file order. Duplicate frames are errors.
pub fn read_mtl_submission(path: &Path) -> Result<Vec<(FrameRef, Decision)>> {
    let text = read_text(path)?;
    let lines = numbered_lines(path, &text)?;
    let rows = after_header(path, &lines, &[MTL_HEADER], "an MTL submission file")?;
    let mut seen = HashMap::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for &(line, text) in rows {
        let row = Row::split(path, line, text, MTL_COLUMNS, MTL_LAYOUT)?;
        let frame = frame_at(&row, &mut seen)?;
        let decision = Decision {
            valence: row.finite(1, "valence")?,
            arousal: row.finite(2, "arousal")?,
            expression: row.expression_decision(3)?,
            aus: row.au_decisions(4)?,
        };
        out.push((frame, decision));
    }
    Ok(out)
}

/// Write an MTL submission in the given order (that of the test list). Values are written with
/// enough digits to read back exactly. Errors, writing nothing, on a duplicate frame, a
/// valence/arousal that is not finite or outside [-1, 1], or an expression above 7.
pub fn write_mtl_submission(path: &Path, rows: &[(FrameRef, Decision)]) -> Result<()> {
    check_unique(path, rows.iter().map(|(f, _)| f))?;
    let mut text = format!("{MTL_HEADER}\n");
    for (frame, d) in rows {
        let name = frame.image_name();
        let row = format!("row {name}");
        text.push_str(&format!(
            "{name},{},{},{},{}\n",
            va_decision_text(path, &row, "valence", d.valence)?,
            va_decision_text(path, &row, "arousal", d.arousal)?,
            expression_decision_text(path, &row, d.expression)?,
            au_text(Some(&d.aus)),
        ));
    }
    write_atomically(path, |w| w.write_all(text.as_bytes()))
}

/// Parse column 0 of `row` as a frame and record it; a frame seen before is an error naming both
/// lines.
fn frame_at(row: &Row<'_, '_>, seen: &mut HashMap<FrameRef, usize>) -> Result<FrameRef> {
    let frame = FrameRef::parse(row.fields[0]).map_err(|e| row.error(e))?;
    if let Some(first) = seen.insert(frame.clone(), row.line) {
        return Err(row.error(format!(
            "duplicate frame {frame}: also on line {first}; each frame may appear once"
        )));
    }
    Ok(frame)
}

/// Error if a frame appears twice in what is about to be written.
fn check_unique<'a>(path: &Path, frames: impl Iterator<Item = &'a FrameRef>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for frame in frames {
        if !seen.insert(frame) {
            return Err(FormatError::file(
                path,
                format!("cannot write: frame {frame} appears twice; each frame may appear once"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fr(s: &str) -> FrameRef {
        FrameRef::parse(s).unwrap()
    }

    /// Write `content` to a fresh file and return (dir guard, path).
    fn file_with(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("annotations.txt");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

    const H: &str =
        "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26";
    const GOOD: &str = "v1/00001.jpg,0.25,-0.5,3,0,1,0,0,0,0,0,0,0,0,0,1";

    /// The error for an annotation file with `rows` after the header.
    fn annotation_error(rows: &[&str]) -> (PathBuf, String) {
        let (_dir, path) = file_with(&format!("{H}\n{}\n", rows.join("\n")));
        let err = read_mtl_annotations(&path).unwrap_err().to_string();
        (path, err)
    }

    fn assert_annotation_error(rows: &[&str], line: usize, problem: &str) {
        let (path, err) = annotation_error(rows);
        let prefix = format!("{}:{line}: ", path.display());
        assert!(err.starts_with(&prefix), "expected {prefix:?}, got {err}");
        assert!(err.contains(problem), "expected {problem:?} in {err}");
    }

    #[test]
    fn header_constant_matches_design() {
        assert_eq!(mtl_annotation_header(), H);
    }

    #[test]
    fn annotations_round_trip_with_invalid_markers() {
        let mut au = [false; 12];
        au[0] = true;
        au[11] = true;
        let rows = vec![
            (
                fr("v1/00001.jpg"),
                FrameLabels {
                    valence: Some(0.1),
                    arousal: Some(-1.0),
                    expression: Some(7),
                    aus: Some(au),
                },
            ),
            (fr("v1/00002.jpg"), FrameLabels::default()),
            (
                fr("v0/00005.jpg"),
                FrameLabels {
                    valence: None,
                    arousal: Some(0.333_333_34),
                    expression: Some(0),
                    aus: None,
                },
            ),
            (
                fr("v1/00003.jpg"),
                FrameLabels {
                    aus: Some([false; 12]),
                    ..Default::default()
                },
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/training_set_annotations.txt");
        write_mtl_annotations(&path, &rows).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], H);
        assert_eq!(lines[1], "v1/00001.jpg,0.1,-1,7,1,0,0,0,0,0,0,0,0,0,0,1");
        assert_eq!(
            lines[2],
            "v1/00002.jpg,-5,-5,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1"
        );
        let back = read_mtl_annotations(&path).unwrap();
        assert_eq!(back.path, path);
        assert_eq!(back.rows, rows);
        let v0 = VideoId::new("v0").unwrap();
        let v1 = VideoId::new("v1").unwrap();
        assert_eq!(back.videos(), [v1.clone(), v0.clone()]);
        let by_video = back.by_video();
        assert_eq!(by_video.keys().collect::<Vec<_>>(), [&v0, &v1]);
        let frames: Vec<u32> = by_video[&v1].iter().map(|(f, _)| *f).collect();
        assert_eq!(frames, [1, 2, 3]);
        assert_eq!(by_video[&v1][2].1, rows[3].1);
    }

    #[test]
    fn annotations_accept_whitespace_crlf_png_and_partial_au_invalidity() {
        let content =
            format!("  {H} \r\nv1/00001.png , 0.5, -5 ,-1,1,1,1,1,1,1,1,1,1,1,1,-1\r\n\r\n\n");
        let (_dir, path) = file_with(&content);
        let a = read_mtl_annotations(&path).unwrap();
        assert_eq!(a.rows.len(), 1);
        let (f, l) = &a.rows[0];
        assert_eq!(f.image_name(), "v1/00001.jpg");
        assert_eq!(
            *l,
            FrameLabels {
                valence: Some(0.5),
                arousal: None,
                expression: None,
                aus: None
            }
        );
    }

    #[test]
    fn annotations_accept_the_submission_style_header() {
        let (_dir, path) = file_with(&format!("{MTL_HEADER}\n{GOOD}\n"));
        assert_eq!(read_mtl_annotations(&path).unwrap().rows.len(), 1);
    }

    #[test]
    fn annotation_errors_name_file_line_and_problem() {
        assert_annotation_error(&[GOOD, "v1/00002.jpg,0,0,1"], 3, "expected 16 columns");
        assert_annotation_error(
            &["v1/00001.jpg,0.25,-0.5,9,0,1,0,0,0,0,0,0,0,0,0,1"],
            2,
            "expression 9 outside -1..7",
        );
        assert_annotation_error(
            &[GOOD, "v1/00002.jpg,1.5,0,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            3,
            "valence 1.5 outside [-1, 1]",
        );
        assert_annotation_error(
            &["v1/00002.jpg,0,-4,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            2,
            "arousal -4 outside [-1, 1]",
        );
        assert_annotation_error(
            &["v1/00002.jpg,abc,0,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            2,
            "valence \"abc\" is not a number",
        );
        assert_annotation_error(
            &["v1/00002.jpg,NaN,0,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            2,
            "valence NaN is not a finite number",
        );
        assert_annotation_error(
            &["v1/00002.jpg,0,0,1.0,0,0,0,0,0,0,0,0,0,0,0,0"],
            2,
            "expression \"1.0\" is not an integer",
        );
        assert_annotation_error(
            &["v1/00002.jpg,0,0,1,0,0,2,0,0,0,0,0,0,0,0,0"],
            2,
            "AU4 2 outside {-1, 0, 1}",
        );
        assert_annotation_error(
            &[GOOD, GOOD],
            3,
            "duplicate frame v1/00001.jpg: also on line 2",
        );
        assert_annotation_error(
            &["../x/00001.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            2,
            "path separator",
        );
        assert_annotation_error(
            &[GOOD, "", "v1/00002.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0"],
            3,
            "blank line",
        );
    }

    #[test]
    fn annotation_bad_header_and_empty_and_missing_file() {
        let (_d, path) = file_with("image,valence,arousal\nv1/00001.jpg,0,0\n");
        let err = read_mtl_annotations(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:1: bad header", path.display())),
            "{err}"
        );
        assert!(err.contains(H), "{err}");

        let (_d, path) = file_with("\n\n");
        let err = read_mtl_annotations(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("empty file"),
            "{err}"
        );

        let missing = path.with_file_name("nope.txt");
        let err = read_mtl_annotations(&missing).unwrap_err();
        assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("nope.txt"), "{err}");
    }

    #[test]
    fn test_list_round_trips_and_skips_an_image_header() {
        let frames = vec![fr("b/00002.jpg"), fr("a/00001.jpg"), fr("b/00001.jpg")];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test_set.txt");
        write_test_list(&path, &frames).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "b/00002.jpg\na/00001.jpg\nb/00001.jpg\n"
        );
        assert_eq!(read_test_list(&path).unwrap(), frames);
        fs::write(&path, "image\r\nb/00002.jpg\r\n").unwrap();
        assert_eq!(read_test_list(&path).unwrap(), [fr("b/00002.jpg")]);
    }

    #[test]
    fn test_list_errors() {
        let (_d, path) = file_with("a/00001.jpg\nb/00003.jpg\na/00001.jpg\n");
        let err = read_test_list(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3: ", path.display())), "{err}");
        assert!(
            err.contains("duplicate frame a/00001.jpg: also on line 1"),
            "{err}"
        );

        let (_d, path) = file_with("a/00001.jpg\na/00002.jpg,0.5\n");
        let err = read_test_list(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: expected 1 columns", path.display())),
            "{err}"
        );

        let (_d, path) = file_with("a/00001.jpg\nimage\n");
        let err = read_test_list(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:2: ", path.display())), "{err}");
        assert!(err.contains("not of the form video/00001.jpg"), "{err}");

        let err = write_test_list(&path, &[fr("a/00001.jpg"), fr("a/00001.jpg")]).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }

    fn decision(v: f32, a: f32, k: u8, on: &[usize]) -> Decision {
        let mut aus = [false; 12];
        for &i in on {
            aus[i] = true;
        }
        Decision {
            valence: v,
            arousal: a,
            expression: k,
            aus,
        }
    }

    #[test]
    fn submission_round_trips_exactly() {
        let rows = vec![
            (
                fr("v2/00010.jpg"),
                decision(0.123_456_79, -0.999_999_94, 4, &[0, 5, 11]),
            ),
            (fr("v1/00001.jpg"), decision(-1.0, 1.0, 0, &[])),
            (fr("v1/00002.jpg"), decision(1e-7, 0.0, 7, &[3])),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submission.txt");
        write_mtl_submission(&path, &rows).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("image,valence,arousal,expression,aus\n"),
            "{text}"
        );
        assert!(
            text.contains("\nv1/00001.jpg,-1,1,0,0,0,0,0,0,0,0,0,0,0,0,0\n"),
            "{text}"
        );
        assert_eq!(read_mtl_submission(&path).unwrap(), rows);
    }

    #[test]
    fn submission_writer_rejects_values_that_would_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submission.txt");
        let err = write_mtl_submission(
            &path,
            &[(fr("v/00001.jpg"), decision(f32::NAN, 0.0, 0, &[]))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("v/00001.jpg") && err.contains("valence NaN"),
            "{err}"
        );
        let err = write_mtl_submission(&path, &[(fr("v/00001.jpg"), decision(0.0, 0.0, 8, &[]))])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expression 8 is not a class id"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn submission_errors_name_file_line_and_problem() {
        let cases = [
            ("image,valence,arousal,expression,AU1\n", 1, "bad header"),
            ("image,valence,arousal,expression,aus\nv/00001.jpg,0,0,8,0,0,0,0,0,0,0,0,0,0,0,0\n", 2, "expression 8 outside 0..7"),
            ("image,valence,arousal,expression,aus\nv/00001.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0,-1\n", 2, "AU26 -1 is not 0 or 1"),
            ("image,valence,arousal,expression,aus\nv/00001.jpg,inf,0,1,0,0,0,0,0,0,0,0,0,0,0,0\n", 2, "valence inf is not a finite number"),
            ("image,valence,arousal,expression,aus\nv/00001.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0\n", 2, "expected 16 columns"),
            (
                "image,valence,arousal,expression,aus\nv/00001.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0\nv/00001.jpg,0,0,1,0,0,0,0,0,0,0,0,0,0,0,0\n",
                3,
                "duplicate frame v/00001.jpg: also on line 2",
            ),
        ];
        for (content, line, problem) in cases {
            let (_d, path) = file_with(content);
            let err = read_mtl_submission(&path).unwrap_err().to_string();
            let prefix = format!("{}:{line}: ", path.display());
            assert!(
                err.starts_with(&prefix) && err.contains(problem),
                "{problem}: {err}"
            );
        }
    }
}
