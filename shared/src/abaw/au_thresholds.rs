//! AU decision thresholds files: `{"AU1": 0.45, ..., "AU26": 0.5}`, one probability per AU.
//!
//! What it does: write the 12 thresholds as that JSON object (what `temporal evaluate
//! --tune-thresholds` saves) and read them back, also accepting an array of 12 numbers. Every
//! threshold must be a probability in [0, 1]; an error names the file and the AU.
//!
//! What it does not: tune thresholds (see [`crate::metrics::tune_au_thresholds`]), parse a
//! command-line value that may be a single number, or decide AUs (see [`crate::Prediction::decide`]).

use crate::atomic::write_atomically;
use crate::error::{FormatError, Result};
use crate::tasks::{AUS, N_AU};
use std::path::Path;

/// Error unless `t` is a finite number in [0, 1].
pub fn check_threshold(t: f32) -> std::result::Result<(), String> {
    if !(0.0..=1.0).contains(&t) {
        return Err(format!("threshold {t} is not a probability in [0, 1]"));
    }
    Ok(())
}

/// Read a thresholds file: an object `{"AU1": 0.45, ..., "AU26": 0.5}` with all 12 AUs, or an
/// array of 12 numbers in challenge order.
pub fn read_au_thresholds(path: &Path) -> Result<[f32; N_AU]> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    let expected = "expected AU thresholds as {\"AU1\": 0.5, ..., \"AU26\": 0.5} (all 12 AUs) \
                    or an array of 12 numbers";
    let bad = |detail: String| FormatError::file(path, format!("{expected}{detail}"));
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!(": {e}")))?;
    let mut out = [0.0f32; N_AU];
    match value {
        serde_json::Value::Array(items) if items.len() == N_AU => {
            for (a, item) in items.iter().enumerate() {
                let v = item
                    .as_f64()
                    .ok_or_else(|| bad(format!(": item {} is not a number", a + 1)))?;
                out[a] = v as f32;
            }
        }
        serde_json::Value::Object(map) => {
            if let Some(key) = map.keys().find(|k| !AUS.contains(&k.as_str())) {
                return Err(bad(format!(": unknown AU {key:?}")));
            }
            for (a, name) in AUS.iter().enumerate() {
                let v = map
                    .get(*name)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| bad(format!(": no number for {name}")))?;
                out[a] = v as f32;
            }
        }
        _ => return Err(bad(String::new())),
    }
    for (name, &t) in AUS.iter().zip(&out) {
        check_threshold(t).map_err(|m| FormatError::file(path, format!("{name}: {m}")))?;
    }
    Ok(out)
}

/// Write per-AU thresholds as `{"AU1": t1, ..., "AU26": t12}` (what [`read_au_thresholds`]
/// reads), atomically.
pub fn write_au_thresholds(path: &Path, thresholds: &[f32; N_AU]) -> Result<()> {
    let map: serde_json::Map<String, serde_json::Value> = AUS
        .iter()
        .zip(thresholds)
        .map(|(name, &t)| ((*name).to_owned(), serde_json::Value::from(f64::from(t))))
        .collect();
    let json = serde_json::to_string_pretty(&map).expect("a map of numbers serialises");
    write_atomically(path, |w| w.write_all(json.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_round_trip_and_arrays_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let mut t = [0.5f32; N_AU];
        t[0] = 0.25;
        t[11] = 0.9;
        write_au_thresholds(&path, &t).unwrap();
        assert_eq!(read_au_thresholds(&path).unwrap(), t);
        std::fs::write(&path, format!("{:?}", [0.3f32; N_AU])).unwrap();
        assert_eq!(read_au_thresholds(&path).unwrap(), [0.3; N_AU]);
    }

    #[test]
    fn a_bad_thresholds_file_names_the_file_and_the_au() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"AU1": 0.5}"#).unwrap();
        let err = read_au_thresholds(&path).unwrap_err().to_string();
        assert!(
            err.contains("t.json") && err.contains("no number for AU2"),
            "{err}"
        );
        std::fs::write(&path, r#"{"AU3": 0.5}"#).unwrap();
        let err = read_au_thresholds(&path).unwrap_err().to_string();
        assert!(err.contains("unknown AU \"AU3\""), "{err}");
        std::fs::write(&path, format!("{:?}", [1.5f32; N_AU])).unwrap();
        let err = read_au_thresholds(&path).unwrap_err().to_string();
        assert!(
            err.contains("AU1: threshold 1.5 is not a probability"),
            "{err}"
        );
    }
}
