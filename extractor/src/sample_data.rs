//! `extractor sample-data`: write the synthetic Aff-Wild2 sample data set.
//!
//! What it does: turn the command-line flags into a [`SampleConfig`], run
//! [`shared::sample::generate_with_progress`] with a progress bar (frames/s, ETA), and print
//! where the files went and what the data set holds.
//!
//! What it does not: decide anything about the data (that is `shared::sample`, whose module
//! docs describe the layout, the labels and the injected faults).

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::sample::{self, SampleConfig, SampleSummary};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Write the synthetic Aff-Wild2 sample data set (frames, annotations, optional features).
#[derive(Debug, Clone, Args)]
pub struct SampleDataArgs {
    /// Output folder. It is created; an earlier sample data set in it is replaced (with its
    /// feature caches if the arguments differ); any other non-empty folder is refused.
    #[arg(long, value_name = "DIR", default_value = "data/sample")]
    pub out: PathBuf,
    /// Number of videos, split by video into about 2/3 train, 1/6 validation and 1/6 test
    /// (at least one each, so at least 3).
    #[arg(long, value_name = "N", default_value_t = 96)]
    pub videos: usize,
    /// Frames per video: the mean length (each video has 0.6x to 1.4x this many), or the exact
    /// length with --equal-lengths.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub frames: usize,
    /// Seed of everything random; the same arguments give byte-identical files.
    #[arg(long, value_name = "S", default_value_t = 7)]
    pub seed: u64,
    /// Side of the square JPEG frames in pixels (16 to 4096).
    #[arg(long, value_name = "PX", default_value_t = 112)]
    pub size: u32,
    /// Also write a feature cache `<out>/features/synthetic/<video>.h5` with DIM dimensions:
    /// a fixed random projection of the latent state plus noise (no pixels needed).
    #[arg(long, value_name = "DIM")]
    pub synthetic_features: Option<usize>,
    /// Also write a token cache `<out>/features/synthetic-tokens/<video>.h5` of shape
    /// (frames, N, --token-dim), like a backbone's spatial map (IResNet's 7 x 7 map is 49
    /// tokens): tokens tile the face, each AU shows mostly in the tokens of its region (upper-face
    /// AUs in the top rows, lower-face AUs below), valence, arousal, expression and nuisance in
    /// every token. Independent of --synthetic-features (either, both or none).
    #[arg(long, value_name = "N")]
    pub synthetic_tokens: Option<usize>,
    /// Width of each synthetic token (with --synthetic-tokens).
    #[arg(long, value_name = "C", default_value_t = sample::tokens::DEFAULT_TOKEN_DIM)]
    pub token_dim: usize,
    /// Element type of the synthetic tokens on disk: f16 (half the space, as `extract --output
    /// tokens` writes) or f32.
    #[arg(long, value_name = "f16|f32", default_value = "f16")]
    pub token_dtype: shared::cache::Dtype,
    /// Skip the JPEG frames (annotations and, with --synthetic-features or --synthetic-tokens,
    /// features only).
    #[arg(long)]
    pub no_frames: bool,
    /// Give every video exactly --frames frames (e.g. 64 x 1500 for the benchmark).
    #[arg(long)]
    pub equal_lengths: bool,
}

impl SampleDataArgs {
    /// The generator configuration these flags describe.
    pub fn config(&self) -> SampleConfig {
        SampleConfig {
            videos: self.videos,
            frames: self.frames,
            seed: self.seed,
            size: self.size,
            synthetic_features: self.synthetic_features,
            synthetic_tokens: self.synthetic_tokens,
            token_dim: self.token_dim,
            token_dtype: self.token_dtype,
            write_frames: !self.no_frames,
            equal_lengths: self.equal_lengths,
        }
    }
}

/// Generate the data set under `args.out` with a progress bar, then print a short summary.
pub fn run(args: &SampleDataArgs) -> anyhow::Result<()> {
    let cfg = args.config();
    let total: usize = if cfg.check(&args.out).is_ok() {
        sample::plan_videos(&cfg).iter().map(|p| p.n_frames).sum()
    } else {
        0
    };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "sample-data [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    let summary =
        sample::generate_with_progress(&args.out, &cfg, &|plan| bar.inc(plan.n_frames as u64))
            .with_context(|| {
                format!("cannot write the sample data set to {}", args.out.display())
            })?;
    bar.finish_and_clear();
    print!("{}", report(&cfg, &summary));
    Ok(())
}

/// The summary [`run`] prints: split, counts, and where each kind of file went.
pub fn report(cfg: &SampleConfig, s: &SampleSummary) -> String {
    let p = &s.paths;
    let mut t = String::new();
    let _ = writeln!(t, "sample data ({}) in {}", cfg.to_args(), p.root.display());
    let _ = writeln!(
        t,
        "  videos: {} train, {} validation, {} test; {} frames, {} annotated (train+validation), {} without image",
        s.train.len(),
        s.validation.len(),
        s.test.len(),
        s.frames,
        s.annotated_frames,
        s.missing_images
    );
    if let Some((video, task)) = &s.task_all_invalid {
        let _ = writeln!(
            t,
            "  {video}: every {task} label invalid (a fault on purpose)"
        );
    }
    if s.images_written > 0 {
        let _ = writeln!(
            t,
            "  frames:      {}/<video>/00001.jpg ... ({} files)",
            p.frames.display(),
            s.images_written
        );
    }
    let _ = writeln!(
        t,
        "  annotations: {}, {}",
        p.training_annotations.display(),
        p.validation_annotations.display()
    );
    let _ = writeln!(
        t,
        "  test:        {} (held-out truth: {})",
        p.test_list.display(),
        p.test_annotations.display()
    );
    let _ = writeln!(
        t,
        "  per task:    {}/{{VA_Estimation,EXPR_Classification,AU_Detection}}_Challenge/",
        p.root.display()
    );
    if s.feature_files > 0 {
        let _ = writeln!(
            t,
            "  features:    {}/synthetic/ ({} files)",
            p.features.display(),
            s.feature_files
        );
    }
    if s.token_files > 0 {
        let _ = writeln!(
            t,
            "  tokens:      {}/{}/ ({} files, {} tokens x {} per frame)",
            p.features.display(),
            sample::tokens::BACKBONE,
            s.token_files,
            cfg.synthetic_tokens.unwrap_or_default(),
            cfg.token_dim
        );
    }
    for stale in &s.removed_stale {
        let _ = writeln!(
            t,
            "  removed {} (feature caches of the earlier data set made with other arguments)",
            stale.display()
        );
    }
    let _ = writeln!(t, "  details:     {}", p.readme.display());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SampleDataArgs,
    }

    #[test]
    fn defaults_are_the_demo_set() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.out, PathBuf::from("data/sample"));
        assert_eq!(cli.args.config(), SampleConfig::default());
    }

    #[test]
    fn flags_reach_the_config_and_run_writes_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sample");
        let cli = Cli::try_parse_from([
            "x",
            "--out",
            out.to_str().unwrap(),
            "--videos",
            "3",
            "--frames",
            "20",
            "--seed",
            "9",
            "--size",
            "24",
            "--synthetic-features",
            "4",
            "--no-frames",
            "--equal-lengths",
        ])
        .unwrap();
        let cfg = cli.args.config();
        assert_eq!(
            cfg,
            SampleConfig {
                videos: 3,
                frames: 20,
                seed: 9,
                size: 24,
                synthetic_features: Some(4),
                synthetic_tokens: None,
                token_dim: 32,
                token_dtype: shared::cache::Dtype::F16,
                write_frames: false,
                equal_lengths: true,
            }
        );
        run(&cli.args).unwrap();
        assert!(out.join("training_set_annotations.txt").is_file());
        assert!(out.join("features/synthetic/synth-001.h5").is_file());
        assert!(!out.join("cropped_aligned").exists());
    }

    #[test]
    fn synthetic_tokens_flags_write_token_files_of_that_shape() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sample");
        let cli = Cli::try_parse_from([
            "x",
            "--out",
            out.to_str().unwrap(),
            "--videos",
            "3",
            "--frames",
            "30",
            "--synthetic-tokens",
            "4",
            "--token-dim",
            "8",
            "--no-frames",
        ])
        .unwrap();
        let cfg = cli.args.config();
        assert_eq!((cfg.synthetic_tokens, cfg.token_dim), (Some(4), 8));
        assert_eq!(cfg.synthetic_features, None);
        run(&cli.args).unwrap();
        let features = out.join("features");
        assert!(!features.join("synthetic").exists());
        let videos = shared::cache::list_videos(&features, "synthetic-tokens").unwrap();
        assert_eq!(videos.len(), 3);
        for video in &videos {
            let path = shared::cache::video_path(&features, "synthetic-tokens", video);
            let (attrs, got) = shared::cache::read_video(&path).unwrap();
            assert_eq!(
                (attrs.backbone.as_str(), attrs.dim, attrs.dtype),
                ("synthetic-tokens", 8, shared::cache::Dtype::F16),
                "tokens are stored as f16 unless --token-dtype f32"
            );
            let shape = got.features.shape();
            assert_eq!((shape.len(), shape[1], shape[2]), (3, 4, 8));
            assert_eq!(shape[0], got.frames.len());
            assert!(shape[0] > 0);
        }
        let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
        assert!(
            readme.contains("--synthetic-tokens 4 --token-dim 8"),
            "{readme}"
        );
        let summary = sample::generate(&out, &cfg).unwrap();
        let printed = report(&cfg, &summary);
        assert!(
            printed.contains("synthetic-tokens/ (3 files, 4 tokens x 8 per frame)"),
            "{printed}"
        );
        // Without --synthetic-tokens the width is the default and nothing about tokens is written.
        let plain = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(plain.args.config().token_dim, 32);
        assert!(!plain.args.config().to_args().contains("token"));
    }

    #[test]
    fn zero_tokens_or_zero_token_width_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        for (flags, expected) in [
            (
                ["--synthetic-tokens", "0", "--token-dim", "8"],
                "--synthetic-tokens 0",
            ),
            (
                ["--synthetic-tokens", "4", "--token-dim", "0"],
                "--token-dim 0",
            ),
        ] {
            let mut argv = vec!["x", "--out", out, "--no-frames"];
            argv.extend(flags);
            let cli = Cli::try_parse_from(argv).unwrap();
            let err = format!("{:#}", run(&cli.args).unwrap_err());
            assert!(
                err.contains(expected) && err.contains("at least 1"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_flags_are_errors_that_name_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let cli =
            Cli::try_parse_from(["x", "--out", dir.path().to_str().unwrap(), "--videos", "2"])
                .unwrap();
        let err = format!("{:#}", run(&cli.args).unwrap_err());
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(err.contains("--videos 2"), "{err}");
    }
}
