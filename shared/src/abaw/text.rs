//! Line and field handling shared by the ABAW text readers and writers (crate-private).
//!
//! What it does: read a file into numbered, trimmed lines (a blank line in the middle is an
//! error, trailing blank lines are not), check a header, split a row into a known number of
//! columns, and parse the label and probability values with `file:line: what is wrong` errors.
//! On the writing side: check values before they are written, so that what is written reads back.
//!
//! What it does not: know which file holds which columns; that is each format's module.

use crate::error::{FormatError, Result};
use crate::tasks::{AUS, INVALID_VA, N_AU};
use std::path::Path;

/// Read a whole text file; a missing or unreadable file is an I/O error naming it.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))
}

/// The lines of `text` with their 1-based numbers, trimmed (so `\r` and surrounding spaces go),
/// without the trailing blank lines. A blank line before the last non-blank one is an error.
pub(crate) fn numbered_lines<'a>(path: &Path, text: &'a str) -> Result<Vec<(usize, &'a str)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    let mut out = Vec::with_capacity(end);
    for (i, line) in lines[..end].iter().enumerate() {
        if line.is_empty() {
            return Err(FormatError::line(
                path,
                i + 1,
                "blank line in the middle of the file; remove it (only trailing blank lines are allowed)",
            ));
        }
        out.push((i + 1, *line));
    }
    Ok(out)
}

/// Check that the first line is one of `accepted` headers and return the data lines after it.
/// `what` names the kind of file for the message, e.g. "an MTL annotation file".
pub(crate) fn after_header<'l, 'a>(
    path: &Path,
    lines: &'l [(usize, &'a str)],
    accepted: &[&str],
    what: &str,
) -> Result<&'l [(usize, &'a str)]> {
    let Some(((line, header), rows)) = lines.split_first() else {
        return Err(FormatError::file(
            path,
            format!(
                "empty file: expected the header `{}` of {what}",
                accepted[0]
            ),
        ));
    };
    if accepted.contains(header) {
        Ok(rows)
    } else {
        Err(FormatError::line(
            path,
            *line,
            format!(
                "bad header `{header}`: expected `{}` (is this {what}?)",
                accepted[0]
            ),
        ))
    }
}

/// A row split at commas into trimmed fields, with its place in the file for error messages.
pub(crate) struct Row<'p, 'a> {
    /// The file.
    pub path: &'p Path,
    /// 1-based line number.
    pub line: usize,
    /// The fields, exactly as many as the caller asked for.
    pub fields: Vec<&'a str>,
}

impl<'p, 'a> Row<'p, 'a> {
    /// Split `text` into exactly `n` fields; `layout` describes the expected columns.
    pub fn split(
        path: &'p Path,
        line: usize,
        text: &'a str,
        n: usize,
        layout: &str,
    ) -> Result<Self> {
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        if fields.len() != n {
            return Err(FormatError::line(
                path,
                line,
                format!("expected {n} columns ({layout}), found {}", fields.len()),
            ));
        }
        Ok(Self { path, line, fields })
    }

    /// An error at this row.
    pub fn error(&self, message: impl Into<String>) -> FormatError {
        FormatError::line(self.path, self.line, message)
    }

    /// Field `i` as a finite number; `name` names the column.
    pub fn finite(&self, i: usize, name: &str) -> Result<f32> {
        let s = self.fields[i];
        let v: f32 = s
            .parse()
            .map_err(|_| self.error(format!("{name} {s:?} is not a number")))?;
        if !v.is_finite() {
            return Err(self.error(format!("{name} {s} is not a finite number")));
        }
        Ok(v)
    }

    /// Field `i` as an integer; `name` names the column.
    pub fn integer(&self, i: usize, name: &str) -> Result<i64> {
        let s = self.fields[i];
        s.parse()
            .map_err(|_| self.error(format!("{name} {s:?} is not an integer")))
    }

    /// Field `i` as a valence/arousal label: `-5` is invalid (None), else a value in [-1, 1].
    pub fn va_label(&self, i: usize, name: &str) -> Result<Option<f32>> {
        let v = self.finite(i, name)?;
        if v == INVALID_VA {
            Ok(None)
        } else if (-1.0..=1.0).contains(&v) {
            Ok(Some(v))
        } else {
            Err(self.error(format!(
                "{name} {v} outside [-1, 1] (-5 marks an invalid label)"
            )))
        }
    }

    /// Field `i` as an expression label: -1 is invalid (None), else a class id 0..7.
    pub fn expression_label(&self, i: usize) -> Result<Option<u8>> {
        match self.integer(i, "expression")? {
            -1 => Ok(None),
            k @ 0..=7 => Ok(Some(k as u8)),
            k => Err(self.error(format!(
                "expression {k} outside -1..7 (-1 marks an invalid label)"
            ))),
        }
    }

    /// Fields `first..first + 12` as AU labels in {-1, 0, 1}; None if any is -1.
    pub fn au_labels(&self, first: usize) -> Result<Option<[bool; N_AU]>> {
        let mut aus = [false; N_AU];
        let mut valid = true;
        for (a, name) in AUS.iter().enumerate() {
            match self.integer(first + a, name)? {
                -1 => valid = false,
                0 => {}
                1 => aus[a] = true,
                v => {
                    return Err(self.error(format!(
                        "{name} {v} outside {{-1, 0, 1}} (-1 marks an invalid label)"
                    )))
                }
            }
        }
        Ok(valid.then_some(aus))
    }

    /// Field `i` as a class decision 0..7 (submissions have no invalid marker).
    pub fn expression_decision(&self, i: usize) -> Result<u8> {
        match self.integer(i, "expression")? {
            k @ 0..=7 => Ok(k as u8),
            k => Err(self.error(format!("expression {k} outside 0..7"))),
        }
    }

    /// Fields `first..first + 12` as AU decisions 0/1.
    pub fn au_decisions(&self, first: usize) -> Result<[bool; N_AU]> {
        let mut aus = [false; N_AU];
        for (a, name) in AUS.iter().enumerate() {
            aus[a] = match self.integer(first + a, name)? {
                0 => false,
                1 => true,
                v => return Err(self.error(format!("{name} {v} is not 0 or 1"))),
            };
        }
        Ok(aus)
    }

    /// Field `i` as a probability in [0, 1]; `name` names the column.
    pub fn probability(&self, i: usize, name: &str) -> Result<f32> {
        let p = self.finite(i, name)?;
        if (0.0..=1.0).contains(&p) {
            Ok(p)
        } else {
            Err(self.error(format!("{name} probability {p} outside [0, 1]")))
        }
    }
}

/// The text of a valence/arousal label: the value, or `-5` when invalid. Errors (naming the
/// file and `row`) if the value would not read back: not finite or outside [-1, 1].
pub(crate) fn va_label_text(path: &Path, row: &str, name: &str, v: Option<f32>) -> Result<String> {
    match v {
        None => Ok("-5".to_owned()),
        Some(v) if v.is_finite() && (-1.0..=1.0).contains(&v) => Ok(v.to_string()),
        Some(v) => Err(FormatError::file(
            path,
            format!(
                "cannot write {row}: {name} {v} is not in [-1, 1]; use None for an invalid label"
            ),
        )),
    }
}

/// The text of an expression label: the class id, or `-1` when invalid.
pub(crate) fn expression_label_text(path: &Path, row: &str, k: Option<u8>) -> Result<String> {
    match k {
        None => Ok("-1".to_owned()),
        Some(k) => expression_decision_text(path, row, k),
    }
}

/// The text of an expression decision; errors if it is not a class id 0..7.
pub(crate) fn expression_decision_text(path: &Path, row: &str, k: u8) -> Result<String> {
    if k < 8 {
        Ok(k.to_string())
    } else {
        Err(FormatError::file(
            path,
            format!("cannot write {row}: expression {k} is not a class id 0..7"),
        ))
    }
}

/// The 12 AU columns: 0/1 each, or twelve `-1` when the AU label is invalid.
pub(crate) fn au_text(aus: Option<&[bool; N_AU]>) -> String {
    let cells: Vec<&str> = match aus {
        Some(aus) => aus.iter().map(|&a| if a { "1" } else { "0" }).collect(),
        None => vec!["-1"; N_AU],
    };
    cells.join(",")
}

/// The text of a decided valence/arousal value; errors if it is not finite or outside [-1, 1].
pub(crate) fn va_decision_text(path: &Path, row: &str, name: &str, v: f32) -> Result<String> {
    if v.is_finite() && (-1.0..=1.0).contains(&v) {
        Ok(v.to_string())
    } else {
        Err(FormatError::file(
            path,
            format!("cannot write {row}: {name} {v} is not in [-1, 1]; clip decisions first (Prediction::decide does)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_drop_trailing_blanks_and_trim() {
        let p = Path::new("f.txt");
        let lines = numbered_lines(p, "\u{feff}h\r\n a \r\nb\n\n  \n").unwrap();
        assert_eq!(lines, [(1, "h"), (2, "a"), (3, "b")]);
        assert!(numbered_lines(p, "").unwrap().is_empty());
        let err = numbered_lines(p, "h\na\n\nb\n").unwrap_err().to_string();
        assert!(err.starts_with("f.txt:3: blank line"), "{err}");
    }

    #[test]
    fn f32_display_round_trips() {
        for v in [
            0.1f32,
            -0.333_333_34,
            1e-7,
            0.999_999_94,
            -1.0,
            f32::MIN_POSITIVE,
        ] {
            assert_eq!(v.to_string().parse::<f32>().unwrap(), v);
        }
    }
}
