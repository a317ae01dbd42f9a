//! `extractor bench`: forward-only frames/s of a backbone on one pre-decoded batch.
//!
//! What it does: builds a backbone exactly as `extractor extract` does (a feature set of the
//! config or a built-in name, [`crate::backbones::build`]), makes one seeded random batch
//! `[N,3,S,S]` of pixels in `[0,1)` on the device, runs untimed warm-up passes, then times
//! `--reps` forward passes under `no_grad` and reports every rate and their median, as a line
//! for people and one JSON object (stdout) for `scripts/bench-extract.sh`.
//!
//! What it does not: decode, resize or write anything (that is the pipeline, timed by
//! `extractor extract` itself), or compare with PyTorch (the script runs the peer).

use crate::backbones::{self, Backbone};
use crate::feature_sets::FeaturesFile;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use shared::device::parse_device;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Time the forward pass of a backbone alone on a random pre-decoded batch.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Feature-set file (named sets); a missing default file is fine.
    #[arg(long, default_value = "configs/features.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Feature set of the config or built-in backbone (iresnet50, densenet121, vit_b16, ...).
    #[arg(long, default_value = "iresnet50", value_name = "NAME")]
    pub backbone: String,
    /// Weights (safetensors or a PyTorch .pth/.pt/.bin state dict, public parameter names); a
    /// seeded random init without.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Frames per forward pass.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch_size: usize,
    /// Timed forward passes; the median is reported.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub reps: usize,
    /// Untimed forward passes before the timed ones.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub warmup: usize,
    /// libtorch threads [default: libtorch's own choice, all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Where the backbone runs: auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Seed of the random input batch.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: i64,
}

/// The measured forward-only throughput of one backbone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// Backbone name as in the cache attrs (e.g. "iresnet50").
    pub backbone: String,
    /// Square input side in pixels.
    pub input: u32,
    /// Output feature shape per frame.
    pub out_shape: Vec<usize>,
    /// Frames per forward pass.
    pub batch: usize,
    /// libtorch intra-op threads in use.
    pub threads: i32,
    /// Untimed warm-up passes.
    pub warmup: usize,
    /// Seconds of the first (cold) warm-up pass, if there was one.
    pub first_pass_s: Option<f64>,
    /// Frames/s of each timed pass, in order.
    pub forward_fps_all: Vec<f64>,
    /// Median of [`BenchReport::forward_fps_all`].
    pub forward_fps: f64,
}

/// Run the command: print a summary line on stderr and the JSON report on stdout.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads 0: give at least 1 thread");
        }
        tch::set_num_threads(n as i32);
    }
    let device = parse_device(&args.device)?;
    let file = if args.config.exists() {
        FeaturesFile::load(&args.config)?
    } else {
        FeaturesFile::default()
    };
    let mut cfg = file.resolve(&args.backbone, &args.config)?;
    if let Some(w) = &args.weights {
        cfg.weights = Some(w.clone());
    }
    let backbone = backbones::build(&cfg, device)
        .with_context(|| format!("building the backbone {:?}", args.backbone))?;
    let report = forward_fps(
        backbone.as_ref(),
        device,
        args.batch_size,
        args.warmup,
        args.reps,
        args.seed,
    )?;
    let all: Vec<String> = report
        .forward_fps_all
        .iter()
        .map(|f| format!("{f:.2}"))
        .collect();
    eprintln!(
        "{}: forward-only {:.2} frames/s (median of {} passes [{}]; batch {}, {} threads, {}x{})",
        report.backbone,
        report.forward_fps,
        args.reps,
        all.join(", "),
        report.batch,
        report.threads,
        report.input,
        report.input
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Times `reps` forward passes of `backbone` on one seeded random batch of `batch` frames in
/// `[0,1)`, after `warmup` untimed passes, and checks every output is `[batch, ...output_shape]`.
///
/// Errors if `batch` or `reps` is 0, or if the backbone returns another shape (a backbone bug).
pub fn forward_fps(
    backbone: &dyn Backbone,
    device: Device,
    batch: usize,
    warmup: usize,
    reps: usize,
    seed: i64,
) -> Result<BenchReport> {
    if batch == 0 {
        bail!("--batch-size 0: give at least 1 frame per pass");
    }
    if reps == 0 {
        bail!("--reps 0: give at least 1 timed pass");
    }
    let size = backbone.input_size() as i64;
    tch::manual_seed(seed);
    let images = Tensor::rand([batch as i64, 3, size, size], (Kind::Float, device));
    let mut expected = vec![batch];
    expected.extend(backbone.output_shape());
    let pass = || -> Result<f64> {
        let start = Instant::now();
        let out = tch::no_grad(|| backbone.forward(&images));
        if let Device::Cuda(n) = device {
            tch::Cuda::synchronize(n as i64);
        }
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        let got: Vec<usize> = out.size().iter().map(|&d| d as usize).collect();
        if got != expected {
            bail!(
                "backbone {}: output shape {got:?}, expected {expected:?} (batch x output_shape); \
                 this is a bug in the backbone",
                backbone.name()
            );
        }
        Ok(secs)
    };
    let mut first_pass_s = None;
    for i in 0..warmup {
        let secs = pass()?;
        if i == 0 {
            first_pass_s = Some(secs);
        }
    }
    let forward_fps_all = (0..reps)
        .map(|_| pass().map(|s| batch as f64 / s))
        .collect::<Result<Vec<f64>>>()?;
    Ok(BenchReport {
        backbone: backbone.name().to_string(),
        input: backbone.input_size(),
        out_shape: backbone.output_shape(),
        batch,
        threads: tch::get_num_threads(),
        warmup,
        first_pass_s,
        forward_fps: median(&forward_fps_all),
        forward_fps_all,
    })
}

/// The median of `values` (the mean of the two middle values for an even count); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbones::BackboneConfig;

    /// A tiny IResNet (one block per stage, width 4, 16 px) so a forward pass takes milliseconds.
    fn tiny() -> Box<dyn Backbone> {
        let cfg = BackboneConfig {
            layers: Some(vec![1, 1, 1, 1]),
            width: Some(4),
            input_size: Some(16),
            out_dim: Some(8),
            ..BackboneConfig::named("iresnet18")
        };
        backbones::build(&cfg, Device::Cpu).unwrap()
    }

    #[test]
    fn median_of_odd_even_and_unsorted_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn times_every_rep_and_reports_the_backbone() {
        let b = tiny();
        let r = forward_fps(b.as_ref(), Device::Cpu, 5, 2, 3, 0).unwrap();
        assert_eq!(r.backbone, "iresnet18");
        assert_eq!(r.input, 16);
        assert_eq!(r.out_shape, vec![8]);
        assert_eq!(r.batch, 5);
        assert_eq!(r.warmup, 2);
        assert!(r.first_pass_s.is_some_and(|s| s > 0.0));
        assert_eq!(r.forward_fps_all.len(), 3);
        assert!(r.forward_fps_all.iter().all(|f| f.is_finite() && *f > 0.0));
        assert_eq!(r.forward_fps, median(&r.forward_fps_all));
        assert!(r.threads >= 1);
    }

    #[test]
    fn no_warmup_means_no_first_pass_time() {
        let b = tiny();
        let r = forward_fps(b.as_ref(), Device::Cpu, 2, 0, 1, 0).unwrap();
        assert_eq!(r.first_pass_s, None);
        assert_eq!(r.forward_fps_all.len(), 1);
    }

    #[test]
    fn zero_batch_or_reps_is_an_error_naming_the_flag() {
        let b = tiny();
        let e = forward_fps(b.as_ref(), Device::Cpu, 0, 1, 3, 0).unwrap_err();
        assert!(e.to_string().contains("--batch-size"), "{e}");
        let e = forward_fps(b.as_ref(), Device::Cpu, 4, 1, 0, 0).unwrap_err();
        assert!(e.to_string().contains("--reps"), "{e}");
    }

    #[test]
    fn report_serialises_with_the_field_names_the_script_reads() {
        let b = tiny();
        let r = forward_fps(b.as_ref(), Device::Cpu, 2, 1, 1, 0).unwrap();
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for key in [
            "backbone",
            "forward_fps",
            "forward_fps_all",
            "batch",
            "threads",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
    }
}
