//! `extractor inspect DIR`: what a feature cache holds, as a table or as JSON.
//!
//! What it does: summarises every backbone folder with [`shared::cache::summarize`] (videos,
//! frames, dim, dtype, weights, missing frames and why, temporary files of incomplete videos,
//! unreadable files, videos made with other settings) and prints it.
//!
//! What it does not: read features, repair or delete files (it only says what to do), or fail
//! because of a problem it reports; only a folder that cannot be listed is an error.

use anyhow::Context;
use clap::Args;
use shared::cache::{self, BackboneSummary};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Summarise a feature cache: videos, frames, dims, weights, missing frames, incomplete files.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Feature cache folder (the --out of `extractor extract`), holding `<set>/<video>.h5`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the summary as JSON (an array with one object per feature set) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Print the summary of the cache at `args.dir` to standard output.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let text = report(args)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

/// The text [`run`] prints: the table, or pretty JSON with `--json`.
pub fn report(args: &InspectArgs) -> anyhow::Result<String> {
    let summaries = cache::summarize(&args.dir)
        .with_context(|| format!("cannot inspect the feature cache {}", args.dir.display()))?;
    if args.json {
        Ok(serde_json::to_string_pretty(&summaries)? + "\n")
    } else {
        Ok(table(&args.dir, &summaries))
    }
}

/// Longest weights id shown in the table; longer ones (sha256 digests) are cut with `…`.
const WEIGHTS_WIDTH: usize = 20;

/// The readable report: one row per feature set, then the details of every problem.
pub fn table(dir: &Path, summaries: &[BackboneSummary]) -> String {
    let mut s = String::new();
    if summaries.is_empty() {
        let _ = writeln!(
            s,
            "{}: no feature sets (no sub-folders); run `extractor extract`",
            dir.display()
        );
        return s;
    }
    let header = [
        "feature set",
        "videos",
        "frames",
        "dim",
        "dtype",
        "weights",
        "missing",
        "incomplete",
    ];
    let rows: Vec<[String; 8]> = summaries
        .iter()
        .map(|b| {
            [
                b.backbone.clone(),
                b.videos.to_string(),
                b.frames.to_string(),
                b.dim.to_string(),
                b.dtype.to_string(),
                shorten(&b.weights, WEIGHTS_WIDTH),
                b.missing_frames.to_string(),
                b.incomplete_files.len().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let _ = writeln!(s, "feature cache {}", dir.display());
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Names and text to the left, numbers to the right.
            if matches!(i, 0 | 4 | 5) {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    for b in summaries {
        details(&mut s, b);
    }
    s
}

/// The lines below the table for one feature set: missing reasons and every problem.
fn details(s: &mut String, b: &BackboneSummary) {
    let name = &b.backbone;
    if b.videos == 0 && b.incomplete_files.is_empty() && b.unreadable.is_empty() {
        let _ = writeln!(s, "\n{name}: no videos yet");
    }
    if b.missing_frames > 0 {
        let _ = writeln!(
            s,
            "\n{name}: {} missing {}:",
            b.missing_frames,
            plural(b.missing_frames, "frame", "frames")
        );
        let mut reasons: Vec<(&String, &usize)> = b.missing_reasons.iter().collect();
        reasons.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        for (reason, n) in reasons {
            let _ = writeln!(s, "  {n:>8}  {reason}");
        }
    }
    let problems = [
        (
            &b.incomplete_files,
            ["incomplete video", "incomplete videos"],
            "temporary files of a writer still running or killed; once none runs, delete them and \
             rerun `extractor extract`",
        ),
        (
            &b.unreadable,
            ["unreadable file", "unreadable files"],
            "delete them and rerun `extractor extract`",
        ),
        (
            &b.mixed_attrs,
            [
                "video made with other settings than the first",
                "videos made with other settings than the first",
            ],
            "rerun `extractor extract --overwrite` with the settings you want",
        ),
    ];
    for (items, [one, many], todo) in problems {
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n{name}: {} {} ({todo}):",
            items.len(),
            plural(items.len(), one, many)
        );
        for item in items {
            let _ = writeln!(s, "  {item}");
        }
    }
}

/// `one` for a single item, else `many`.
fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `text` cut to at most `width` characters, the last one `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};
    use shared::cache::{CacheAttrs, Dtype, MissingFrame, VideoFeatures};
    use shared::VideoId;
    use std::collections::BTreeMap;

    fn summary(backbone: &str) -> BackboneSummary {
        BackboneSummary {
            backbone: backbone.into(),
            videos: 0,
            frames: 0,
            dim: 0,
            dtype: Dtype::F32,
            weights: String::new(),
            preprocessing: String::new(),
            missing_frames: 0,
            missing_reasons: BTreeMap::new(),
            incomplete_files: vec![],
            unreadable: vec![],
            mixed_attrs: vec![],
        }
    }

    #[test]
    fn table_aligns_columns_and_lists_problems() {
        let hog = BackboneSummary {
            videos: 3,
            frames: 240,
            dim: 342,
            weights: "seed:0".into(),
            missing_frames: 5,
            missing_reasons: BTreeMap::from([("no face".into(), 2), ("cannot decode".into(), 3)]),
            incomplete_files: vec!["v9.h5.tmp-12-00ff".into()],
            ..summary("hog")
        };
        let mae = BackboneSummary {
            videos: 12,
            frames: 1500,
            dim: 768,
            dtype: Dtype::F16,
            weights: "sha256:0123456789abcdef0123".into(),
            unreadable: vec!["v4.h5: not HDF5".into(), "v5.h5: no dataset /frames".into()],
            mixed_attrs: vec![r#"v2: weights "a" vs "b""#.into()],
            ..summary("mae")
        };
        let expected = "\
feature cache /c
feature set  videos  frames  dim  dtype  weights               missing  incomplete
hog               3     240  342  f32    seed:0                      5           1
mae              12    1500  768  f16    sha256:0123456789ab…        0           0

hog: 5 missing frames:
         3  cannot decode
         2  no face

hog: 1 incomplete video (temporary files of a writer still running or killed; once none runs, \
delete them and rerun `extractor extract`):
  v9.h5.tmp-12-00ff

mae: 2 unreadable files (delete them and rerun `extractor extract`):
  v4.h5: not HDF5
  v5.h5: no dataset /frames

mae: 1 video made with other settings than the first (rerun `extractor extract --overwrite` \
with the settings you want):
  v2: weights \"a\" vs \"b\"
";
        assert_eq!(table(Path::new("/c"), &[hog, mae]), expected);
    }

    #[test]
    fn empty_cache_and_empty_set_say_so() {
        assert_eq!(
            table(Path::new("/c"), &[]),
            "/c: no feature sets (no sub-folders); run `extractor extract`\n"
        );
        let text = table(Path::new("/c"), &[summary("ires")]);
        assert!(text.ends_with("\nires: no videos yet\n"), "{text}");
    }

    #[test]
    fn shorten_and_plural() {
        assert_eq!(shorten("seed:0", 6), "seed:0");
        assert_eq!(shorten("abcdefg", 4), "abc…");
        assert_eq!(plural(1, "file", "files"), "file");
        assert_eq!(plural(0, "file", "files"), "files");
    }

    #[test]
    fn report_reads_a_real_cache_as_table_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let attrs = CacheAttrs {
            backbone: "hog".into(),
            dim: 4,
            input_size: 64,
            dtype: Dtype::F32,
            preprocessing: "gray 64".into(),
            weights: "seed:0".into(),
            source: "frames".into(),
            tool_version: shared::TOOL_VERSION.into(),
        };
        let v = VideoFeatures {
            frames: vec![1, 2, 4],
            features: ArrayD::from_elem(IxDyn(&[3, 4]), 0.25),
            missing: vec![MissingFrame {
                frame: 3,
                reason: "no face".into(),
            }],
        };
        let path = cache::video_path(dir.path(), "hog", &VideoId::new("v1").unwrap());
        cache::write_video(&path, &attrs, &v).unwrap();

        let args = InspectArgs {
            dir: dir.path().to_path_buf(),
            json: false,
        };
        let text = report(&args).unwrap();
        let row = text.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["hog", "1", "3", "4", "f32", "seed:0", "1", "0"],
            "{text}"
        );
        assert!(
            text.contains("hog: 1 missing frame:\n         1  no face\n"),
            "{text}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&report(&InspectArgs { json: true, ..args }).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "backbone": "hog", "videos": 1, "frames": 3, "dim": 4, "dtype": "f32",
                "weights": "seed:0", "preprocessing": "gray 64", "missing_frames": 1,
                "missing_reasons": {"no face": 1}, "incomplete_files": [], "unreadable": [],
                "mixed_attrs": []
            }])
        );
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let args = InspectArgs {
            dir: PathBuf::from("/nonexistent/cache"),
            json: false,
        };
        let msg = format!("{:#}", report(&args).unwrap_err());
        assert!(
            msg.contains("/nonexistent/cache") && msg.contains("not a folder"),
            "{msg}"
        );
    }

    #[test]
    fn help_documents_every_argument() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: InspectArgs,
        }
        let help = Wrapper::command().render_help().to_string();
        assert!(
            help.contains("Feature cache folder") && help.contains("--json"),
            "{help}"
        );
        assert!(help.contains("Print the summary as JSON"), "{help}");
    }
}
