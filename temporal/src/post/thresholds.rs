//! The `--au-thresholds` value of `temporal evaluate | smooth | submit`: one number for all 12
//! AUs, or the path of a thresholds file (`shared::abaw::au_thresholds`, as `temporal evaluate
//! --tune-thresholds` writes it).
//!
//! What it does not: read or write the file format itself (that is `shared::abaw`), or tune.

use anyhow::{bail, Result};
use shared::abaw::au_thresholds::check_threshold;
use shared::abaw::read_au_thresholds;
use shared::{FormatError, N_AU};
use std::path::Path;

/// Parse `--au-thresholds`: a number in [0, 1] for every AU, or the path of a JSON file holding
/// either an object `{"AU1": 0.45, ..., "AU26": 0.5}` with all 12 AUs or an array of 12 numbers.
pub fn parse_au_thresholds(spec: &str) -> Result<[f32; N_AU]> {
    if let Ok(t) = spec.trim().parse::<f32>() {
        if let Err(message) = check_threshold(t) {
            bail!("--au-thresholds {spec}: {message}");
        }
        return Ok([t; N_AU]);
    }
    match read_au_thresholds(Path::new(spec)) {
        Ok(t) => Ok(t),
        Err(FormatError::Io { cause, .. }) => bail!(
            "--au-thresholds {spec:?} is neither a number nor a readable JSON file ({cause}); \
             give a threshold like 0.5 or the file `temporal evaluate --tune-thresholds` wrote"
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::abaw::write_au_thresholds;

    #[test]
    fn thresholds_parse_from_a_number_an_object_or_an_array() {
        assert_eq!(parse_au_thresholds("0.4").unwrap(), [0.4; N_AU]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let mut t = [0.5f32; N_AU];
        t[0] = 0.25;
        t[11] = 0.9;
        write_au_thresholds(&path, &t).unwrap();
        assert_eq!(parse_au_thresholds(path.to_str().unwrap()).unwrap(), t);
        std::fs::write(&path, format!("{:?}", [0.3f32; N_AU])).unwrap();
        assert_eq!(
            parse_au_thresholds(path.to_str().unwrap()).unwrap(),
            [0.3; N_AU]
        );
    }

    #[test]
    fn bad_thresholds_say_what_is_wrong() {
        let err = format!("{:#}", parse_au_thresholds("1.5").unwrap_err());
        assert!(err.contains("not a probability"), "{err}");
        let err = format!("{:#}", parse_au_thresholds("/no/such.json").unwrap_err());
        assert!(
            err.contains("neither a number nor a readable JSON file"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"AU1": 0.5}"#).unwrap();
        let err = format!(
            "{:#}",
            parse_au_thresholds(path.to_str().unwrap()).unwrap_err()
        );
        assert!(err.contains("no number for AU2"), "{err}");
        std::fs::write(&path, r#"{"AU3": 0.5}"#).unwrap();
        let err = format!(
            "{:#}",
            parse_au_thresholds(path.to_str().unwrap()).unwrap_err()
        );
        assert!(err.contains("unknown AU \"AU3\""), "{err}");
    }
}
