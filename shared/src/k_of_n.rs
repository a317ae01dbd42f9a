//! The `K/N` notation of one part of a deterministic split: `--shard K/N` (extractor) and
//! `--fold K/N` (temporal).
//!
//! What it does: split the text at `/` and read K and N as whole numbers, with an error that
//! names the flag and shows an example. What it does not: check K against N or decide which
//! items a part holds (each split has its own rule and messages: `Shard::new`, `Fold::new`).

/// Read `K/N` as two whole numbers. `flag` (e.g. `--shard`) and `example` (e.g. `0/4`) go into the
/// error message.
pub fn parse_k_of_n(flag: &str, example: &str, text: &str) -> Result<(usize, usize), String> {
    let (k, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{flag} {text:?}: expected K/N, e.g. {example}"))?;
    let whole = |part: &str, name: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|_| format!("{flag} {text:?}: {name} is not a whole number"))
    };
    Ok((whole(k, "K")?, whole(n, "N")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_and_n_are_read_around_the_slash() {
        assert_eq!(parse_k_of_n("--fold", "2/5", "2/5"), Ok((2, 5)));
        assert_eq!(parse_k_of_n("--fold", "2/5", " 0 / 6 "), Ok((0, 6)));
    }

    #[test]
    fn malformed_parts_name_the_flag_and_which_number() {
        let err = parse_k_of_n("--shard", "0/4", "3").unwrap_err();
        assert_eq!(err, "--shard \"3\": expected K/N, e.g. 0/4");
        let err = parse_k_of_n("--shard", "0/4", "-1/2").unwrap_err();
        assert!(err.ends_with("K is not a whole number"), "{err}");
        let err = parse_k_of_n("--fold", "2/5", "1/x").unwrap_err();
        assert!(err.ends_with("N is not a whole number"), "{err}");
    }
}
