//! `temporal bench`: training and inference throughput of a model on synthetic in-memory data,
//! timed exactly as the PyTorch peers time their own, so that `scripts/bench-temporal.sh` can
//! print the ratio of the two.
//!
//! What it does: builds a split of `--videos` x `--frames` random feature rows of `--tokens` x
//! `--dim` columns (standard normal, seeded) with labels of which ~10% per task are invalid;
//! builds the model; runs the peer's warm-up (`--warmup-steps` untimed training steps on a plan
//! of its own, and two untimed inference steps, as the peer's `run_epoch(..., max_steps=1,
//! warmup=1)`); then times `--epochs` training passes over a freshly shuffled [`StreamPlan`]
//! each and `--infer-reps` inference passes (unshuffled), each capped at `--max-steps` steps,
//! with the trainer's own step functions ([`crate::step::train_step`]: gather, carry, forward,
//! loss, backward, clip, optimizer (twice forward and backward with SAM);
//! [`crate::step::infer_step`]: gather, carry, forward, probabilities into rows). Frames/s is
//! the number of real frames over the seconds of a pass; the JSON object printed on stdout gives
//! every pass, the median, min and max, the peak resident memory (`VmHWM`), and the mean
//! milliseconds per timed step of each phase of a step ([`crate::step::Phases`]:
//! `train_phases_ms` gather / forward / loss / backward / update, `infer_phases_ms` gather /
//! forward / outputs), the numbers `scripts/bench-temporal.sh` with `PHASES=1` sets beside the
//! peer's own.
//!
//! Two ways to choose the model ([`BenchSetup::from_args`]):
//! - without `--system`: the temporal reference (`--arch` x `--topology`, the reference's
//!   hyper-parameters, masked MSE/CE/BCE loss, Adam 5e-5, clipping at 5) on segments of
//!   `--seg-len` frames over `--batch` streams, against `../shared/peers/torch_temporal_ref.py`;
//! - `--system FILE`, a training config (`configs/systems/*.toml`, `configs/bench/*.toml`): its
//!   model (`[model]`, the heads of its `tasks`), loss (`[loss]`, `auto` weights counted on the
//!   synthetic training labels as `temporal train` does), optimizer (`optimizer`, `lr`,
//!   `momentum`, `weight_decay`, `nesterov`, `sam_rho`, `freeze`), `clip` and batch sizes; the
//!   input width is `--tokens` x `--dim`. A frame-level model (`arch = "none"`) trains on
//!   [`StreamPlan::shuffled_frames`] batches of `batch_size` frames, as `temporal train`, and
//!   infers on batches of as many frames in row order; the peer is
//!   `scripts/bench/torch_frame_ref.py`. The learning-rate schedule, resampling and
//!   `init_from` of the file are not used (a constant `lr`, every frame once per pass).
//!
//! `--lr`, `--clip`, `--batch`, `--seg-len` and `--infer-batch` override either choice.
//!
//! What it does not: read a feature cache, validate, write a run folder, or compare with the
//! peer (the script does that).

use crate::config::TrainConfig;
use crate::data::join::label_tensors;
use crate::data::streams::StreamPlan;
use crate::data::{FeatureRows, SplitData, VideoSpan};
use crate::loss::LossConfig;
use crate::model::kernels::choice::{self, Decision, KernelPolicy};
use crate::model::{Arch, Config, HeadTask, States, TemporalMtl, Topology};
use crate::optim::{OptimConfig, Optimizer};
use crate::step::{infer_step_phased, train_step, Phases};
use anyhow::{bail, Context, Result};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shared::{FrameLabels, VideoId, N_AU, N_EXPR};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Time training and inference on synthetic data (the sizes and defaults of the PyTorch peer).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Temporal encoder (without --system).
    #[arg(long, value_enum, default_value = "gru")]
    pub arch: Arch,
    /// Multi-task topology (without --system).
    #[arg(long, value_enum, default_value = "basic")]
    pub topology: Topology,
    /// Feedback topology: the head whose top output feeds the target (without --system).
    #[arg(long, value_enum, default_value = "au")]
    pub source: HeadTask,
    /// Feedback topology: the head that reads the source's output (without --system).
    #[arg(long, value_enum, default_value = "expr")]
    pub target: HeadTask,
    /// A training config whose model, loss, optimizer, clipping and batch sizes are benchmarked
    /// instead of the reference's (e.g. configs/systems/mtca.toml, configs/bench/anfl.toml).
    #[arg(long, value_name = "FILE")]
    pub system: Option<PathBuf>,
    /// Timed training passes.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub epochs: usize,
    /// libtorch threads.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub threads: usize,
    /// Synthetic videos.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub videos: usize,
    /// Frames per video.
    #[arg(long, default_value_t = 1500, value_name = "N")]
    pub frames: usize,
    /// Feature width per token (the reference's four feature sets: 2134).
    #[arg(long, default_value_t = 2134, value_name = "D")]
    pub dim: usize,
    /// Tokens per frame (49 for a 7 x 7 backbone map); a row has tokens x dim columns.
    #[arg(long, default_value_t = 1, value_name = "T")]
    pub tokens: usize,
    /// Segment length l in frames [default: 250, or the system's seg_len].
    #[arg(long, value_name = "L")]
    pub seg_len: Option<usize>,
    /// Parallel streams B of a training step [default: 8, or the system's streams]; for a
    /// frame-level model, frames per step [default: 256, or the system's batch_size].
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,
    /// Parallel streams of an inference step [default: 8]; for a frame-level model, frames
    /// per step [default: the training batch].
    #[arg(long, value_name = "B")]
    pub infer_batch: Option<usize>,
    /// Learning rate [default: Adam's 5e-5, or the system's lr].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Gradient-norm clipping, as `temporal train` [default: 5, or the system's clip; the
    /// temporal peer does not clip].
    #[arg(long, value_name = "NORM")]
    pub clip: Option<f64>,
    /// Untimed training steps before the timed passes.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub warmup_steps: usize,
    /// Cap every timed pass (training and inference) at N steps [default: a whole pass].
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Timed inference passes.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub infer_reps: usize,
    /// Seed of the data, the initialisation, the data order and dropout.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// cpu, cuda, cuda:N, auto.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Kernel of GRU/LSTM layers in inference: auto measures packed, aten and addmm on the first
    /// (warm-up) segment; the choice is in the report's `kernels`.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernel: KernelPolicy,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            arch: Arch::Gru,
            topology: Topology::Basic,
            source: HeadTask::Au,
            target: HeadTask::Expr,
            system: None,
            epochs: 1,
            threads: 2,
            videos: 64,
            frames: 1500,
            dim: 2134,
            tokens: 1,
            seg_len: None,
            batch: None,
            infer_batch: None,
            lr: None,
            clip: None,
            warmup_steps: 3,
            max_steps: None,
            infer_reps: 3,
            seed: 0,
            device: "cpu".to_string(),
            kernel: KernelPolicy::Auto,
        }
    }
}

/// The reference's segment length, streams and Adam learning rate (the temporal peer's).
const REFERENCE_SEG_LEN: usize = 250;
const REFERENCE_STREAMS: usize = 8;
const REFERENCE_LR: f64 = 5e-5;
const DEFAULT_CLIP: f64 = 5.0;
const DEFAULT_FRAME_BATCH: usize = 256;

impl BenchArgs {
    /// The model configuration without `--system`: the reference's hyper-parameters with this
    /// arch, topology, feedback pair and input width.
    pub fn model_config(&self) -> Config {
        Config {
            arch: self.arch,
            topology: self.topology,
            source: self.source,
            target: self.target,
            feat_dim: self.dim as i64,
            tokens: self.tokens as i64,
            ..Config::default()
        }
    }
}

/// How the steps are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Segments of `seg_len` frames over `streams` parallel streams with a carried state
    /// ([`StreamPlan::new`]); inference over `infer_streams`.
    Segments {
        /// Training streams B.
        streams: usize,
        /// Segment length l.
        seg_len: usize,
        /// Inference streams.
        infer_streams: usize,
    },
    /// Shuffled frames in batches of `batch` ([`StreamPlan::shuffled_frames`]); inference on
    /// batches of `infer_batch` frames in row order.
    Frames {
        /// Frames per training step.
        batch: usize,
        /// Frames per inference step.
        infer_batch: usize,
    },
}

/// Everything a benchmark run is built from (see [`BenchSetup::from_args`]).
#[derive(Debug, Clone)]
pub struct BenchSetup {
    /// The `--system` file's stem, `None` for the temporal reference.
    pub system: Option<String>,
    /// The model (its `feat_dim` and `tokens` are the synthetic input's).
    pub model: Config,
    /// The loss (`auto` weights are resolved on the synthetic labels).
    pub loss: LossConfig,
    /// The optimizer.
    pub optim: OptimConfig,
    /// Gradient-norm clipping.
    pub clip: f64,
    /// How steps are batched.
    pub batching: Batching,
}

impl BenchSetup {
    /// The setup `args` describe: the temporal reference, or the `--system` file's model, loss,
    /// optimizer, clipping and batch sizes on an input of `--tokens` x `--dim`; the override
    /// flags last.
    pub fn from_args(args: &BenchArgs) -> Result<BenchSetup> {
        let (system, model, loss, mut optim, clip, streams, seg_len, frame_batch) =
            match &args.system {
                None => (
                    None,
                    args.model_config(),
                    LossConfig::default(),
                    OptimConfig::adam(REFERENCE_LR),
                    DEFAULT_CLIP,
                    REFERENCE_STREAMS,
                    REFERENCE_SEG_LEN,
                    DEFAULT_FRAME_BATCH,
                ),
                Some(path) => {
                    let cfg = TrainConfig::load(path)?;
                    cfg.validate()
                        .with_context(|| format!("temporal bench --system {}", path.display()))?;
                    let mut model = cfg.model.clone();
                    model.feat_dim = args.dim as i64;
                    model.tokens = args.tokens as i64;
                    model.tasks = HeadTask::for_tasks(&cfg.tasks);
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| path.display().to_string());
                    (
                        Some(name),
                        model,
                        cfg.loss.clone(),
                        cfg.optim_config(),
                        cfg.clip,
                        cfg.streams,
                        cfg.seg_len,
                        cfg.batch_size,
                    )
                }
            };
        if let Some(lr) = args.lr {
            optim.lr = lr;
        }
        let batching = if model.arch.is_frame_level() {
            let batch = args.batch.unwrap_or(frame_batch);
            Batching::Frames {
                batch,
                infer_batch: args.infer_batch.unwrap_or(batch),
            }
        } else {
            Batching::Segments {
                streams: args.batch.unwrap_or(streams),
                seg_len: args.seg_len.unwrap_or(seg_len),
                infer_streams: args.infer_batch.unwrap_or(REFERENCE_STREAMS),
            }
        };
        Ok(BenchSetup {
            system,
            model,
            loss,
            optim,
            clip: args.clip.unwrap_or(clip),
            batching,
        })
    }

    /// The optimizer as one word: `adam`, `adamw`, `sgd`, with `+sam` when SAM is on.
    pub fn optimizer_name(&self) -> String {
        let sam = if self.optim.sam_rho > 0.0 { "+sam" } else { "" };
        format!("{}{sam}", self.optim.kind)
    }
}

/// One timed pass.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pass {
    /// Real frames processed.
    pub frames: usize,
    /// Steps taken.
    pub steps: usize,
    /// Wall-clock seconds (3 decimals).
    pub seconds: f64,
    /// `frames / seconds` (1 decimal).
    pub fps: f64,
}

impl Pass {
    fn new(frames: usize, steps: usize, seconds: f64) -> Pass {
        Pass {
            frames,
            steps,
            seconds: round_to(seconds, 3),
            fps: round_to(frames as f64 / seconds.max(1e-12), 1),
        }
    }
}

/// The benchmark's result, printed as one JSON object (the peer's keys where they mean the same).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `temporal`.
    pub tool: String,
    /// Version of this crate.
    pub version: String,
    /// The `--system` file's stem, null for the temporal reference.
    pub system: Option<String>,
    /// Encoder.
    pub arch: String,
    /// Topology.
    pub topology: String,
    /// `source->target` for feedback, else null.
    pub feedback: Option<String>,
    /// The optimizer (`adam`, `adamw`, `sgd`, `+sam` with SAM).
    pub optimizer: String,
    /// libtorch threads.
    pub threads: usize,
    /// Trainable parameters.
    pub params: i64,
    /// Synthetic videos.
    pub videos: usize,
    /// Frames per video.
    pub frames_per_video: usize,
    /// Feature width per token.
    pub dim: usize,
    /// Tokens per frame (a row is `tokens * dim` wide).
    pub tokens: usize,
    /// Segment length (1 for frame-level models).
    pub seg_len: usize,
    /// Training streams (frames per step for frame-level models).
    pub batch_streams: usize,
    /// Inference streams (frames per step for frame-level models).
    pub infer_batch: usize,
    /// Gradient clipping norm.
    pub clip: f64,
    /// Seconds to make the synthetic data.
    pub data_gen_s: f64,
    /// Size of the feature tensor in MiB.
    pub data_mb: f64,
    /// The timed training passes.
    pub train_epochs: Vec<Pass>,
    /// Median training frames/s.
    pub train_fps: f64,
    /// Min and max training frames/s.
    pub train_fps_min_max: [f64; 2],
    /// The timed inference passes.
    pub infer_epochs: Vec<Pass>,
    /// Median inference frames/s.
    pub infer_fps: f64,
    /// Min and max inference frames/s.
    pub infer_fps_min_max: [f64; 2],
    /// Peak resident set size in MiB (`VmHWM` of `/proc/self/status`), null where unavailable.
    pub peak_rss_mb: Option<f64>,
    /// The recurrent inference kernel of each layer shape and why (empty without GRU/LSTM).
    pub kernels: BTreeMap<String, Decision>,
    /// Mean milliseconds per timed training step in each phase (gather, forward, loss,
    /// backward, update).
    pub train_phases_ms: BTreeMap<String, f64>,
    /// Mean milliseconds per timed inference step in each phase (gather, forward, outputs).
    pub infer_phases_ms: BTreeMap<String, f64>,
}

/// The phases of many steps added up, for their mean per step.
#[derive(Debug, Default)]
struct PhaseTotals {
    seconds: BTreeMap<String, f64>,
    steps: usize,
}

impl PhaseTotals {
    fn add(&mut self, phases: &Phases) {
        for (name, s) in phases.iter() {
            *self.seconds.entry(name.to_string()).or_default() += s;
        }
        self.steps += 1;
    }

    /// Milliseconds per step of each phase (2 decimals).
    fn mean_ms(&self) -> BTreeMap<String, f64> {
        let steps = self.steps.max(1) as f64;
        self.seconds
            .iter()
            .map(|(name, s)| (name.clone(), round_to(s * 1000.0 / steps, 2)))
            .collect()
    }
}

/// Run the command: print the report as one JSON line on stdout.
pub fn run(args: &BenchArgs) -> Result<()> {
    choice::configure(args.kernel);
    let report = bench(args, &BenchSetup::from_args(args)?)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The benchmark with an explicit setup (its model must read `args.tokens` x `args.dim`).
pub fn bench(args: &BenchArgs, setup: &BenchSetup) -> Result<BenchReport> {
    check(args, setup)?;
    let model_cfg = &setup.model;
    tch::set_num_threads(args.threads as i32);
    let device = shared::device::parse_device(&args.device)?;

    let started = Instant::now();
    let data = synthetic_split(
        args.videos,
        args.frames,
        args.tokens,
        args.dim,
        args.seed,
        device,
    )?;
    let data_gen_s = started.elapsed().as_secs_f64();
    tracing::info!(
        "synthetic data: {} videos x {} frames x {} tokens x {} dims in {data_gen_s:.1} s",
        args.videos,
        args.frames,
        args.tokens,
        args.dim
    );

    tch::manual_seed(args.seed as i64);
    let vs = VarStore::new(device);
    let model = TemporalMtl::try_new(&vs.root(), model_cfg)?;
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64;
    let mut opt = Optimizer::new(&vs, &setup.optim)?;
    let mut loss_cfg = setup.loss.clone();
    loss_cfg.validate()?;
    loss_cfg.resolve_auto(&data.labels);
    let spans: Vec<(usize, usize)> = data.videos.iter().map(|v| (v.start, v.len())).collect();

    let train_pass = |opt: &mut Optimizer,
                      plan: &StreamPlan,
                      max: usize,
                      phases: &mut PhaseTotals|
     -> Result<(usize, usize)> {
        let mut states: Option<States> = None;
        let mut frames = 0;
        let steps = plan.n_steps().min(max);
        for t in 0..steps {
            let t0 = Instant::now();
            let s = train_step(
                &model,
                opt,
                &data,
                &plan.step(t, device),
                states.as_ref(),
                &loss_cfg,
                setup.clip,
            )
            .with_context(|| format!("training step {} of the benchmark", t + 1))?;
            frames += s.frames;
            phases.add(&s.phases);
            states = Some(s.states);
            tracing::debug!(
                "training step {}: {:.3} s",
                t + 1,
                t0.elapsed().as_secs_f64()
            );
        }
        Ok((frames, steps))
    };
    let infer_pass = |plan: &StreamPlan, max: usize, phases: &mut PhaseTotals| -> (usize, usize) {
        // As `infer_rows`: every row of the split gets its outputs.
        let mut rows = Tensor::zeros(
            [data.n_rows() as i64, crate::infer::PRED_COLS],
            (Kind::Float, device),
        );
        let mut states: Option<States> = None;
        let mut frames = 0;
        let steps = plan.n_steps().min(max);
        for t in 0..steps {
            let step = plan.step(t, device);
            let (next, p) = infer_step_phased(&model, &data, &step, states.as_ref(), &mut rows);
            states = Some(next);
            phases.add(&p);
            frames += crate::step::step_frames(&step);
        }
        (frames, steps)
    };
    let train_plan = |seed: u64| match setup.batching {
        Batching::Segments {
            streams, seg_len, ..
        } => StreamPlan::new(&spans, streams, seg_len, Some(seed)),
        Batching::Frames { batch, .. } => StreamPlan::shuffled_frames(&spans, batch, seed),
    };

    // Warm-up, untimed, as the peer: a plan of its own (seed 10 000) for the training steps.
    train_pass(
        &mut opt,
        &train_plan(10_000),
        args.warmup_steps,
        &mut PhaseTotals::default(),
    )?;
    let (mut train_phases, mut infer_phases) = (PhaseTotals::default(), PhaseTotals::default());

    let max = args.max_steps.unwrap_or(usize::MAX);
    let mut train_epochs = Vec::with_capacity(args.epochs);
    for epoch in 0..args.epochs {
        let seed = args.seed + epoch as u64;
        tch::manual_seed(seed as i64);
        let plan = train_plan(seed);
        let t0 = Instant::now();
        let (frames, steps) = train_pass(&mut opt, &plan, max, &mut train_phases)?;
        let pass = Pass::new(frames, steps, t0.elapsed().as_secs_f64());
        tracing::info!("train pass {}: {} frames/s", epoch + 1, pass.fps);
        train_epochs.push(pass);
    }

    let (plan, seg_len, batch_streams, infer_batch) = match setup.batching {
        Batching::Segments {
            streams,
            seg_len,
            infer_streams,
        } => (
            StreamPlan::new(&spans, infer_streams, seg_len, None),
            seg_len,
            streams,
            infer_streams,
        ),
        Batching::Frames { batch, infer_batch } => (
            StreamPlan::in_order_frames(&spans, infer_batch),
            1,
            batch,
            infer_batch,
        ),
    };
    infer_pass(&plan, 2, &mut PhaseTotals::default());
    let mut infer_epochs = Vec::with_capacity(args.infer_reps);
    for rep in 0..args.infer_reps {
        let t0 = Instant::now();
        let (frames, steps) = infer_pass(&plan, max, &mut infer_phases);
        let pass = Pass::new(frames, steps, t0.elapsed().as_secs_f64());
        tracing::info!("inference pass {}: {} frames/s", rep + 1, pass.fps);
        infer_epochs.push(pass);
    }

    let summary = |passes: &[Pass]| {
        let fps: Vec<f64> = passes.iter().map(|p| p.fps).collect();
        (
            round_to(median(&fps), 1),
            [
                fps.iter().copied().fold(f64::INFINITY, f64::min),
                fps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ],
        )
    };
    let (train_fps, train_fps_min_max) = summary(&train_epochs);
    let (infer_fps, infer_fps_min_max) = summary(&infer_epochs);
    let peak_rss_mb = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| vm_hwm_kib(&s))
        .map(|kib| round_to(kib as f64 / 1024.0, 1));
    Ok(BenchReport {
        tool: "temporal".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        system: setup.system.clone(),
        arch: model_cfg.arch.to_string(),
        topology: model_cfg.topology.to_string(),
        feedback: (model_cfg.topology == Topology::Feedback)
            .then(|| format!("{}->{}", model_cfg.source, model_cfg.target)),
        optimizer: setup.optimizer_name(),
        threads: args.threads,
        params,
        videos: args.videos,
        frames_per_video: args.frames,
        dim: args.dim,
        tokens: args.tokens,
        seg_len,
        batch_streams,
        infer_batch,
        clip: setup.clip,
        data_gen_s: round_to(data_gen_s, 2),
        data_mb: round_to(
            data.features.resident().map_or(0, Tensor::numel) as f64 * 4.0 / (1u64 << 20) as f64,
            1,
        ),
        train_epochs,
        train_fps,
        train_fps_min_max,
        infer_epochs,
        infer_fps,
        infer_fps_min_max,
        peak_rss_mb,
        kernels: choice::decisions(),
        train_phases_ms: train_phases.mean_ms(),
        infer_phases_ms: infer_phases.mean_ms(),
    })
}

fn check(args: &BenchArgs, setup: &BenchSetup) -> Result<()> {
    let (batch, seg_len, infer_batch) = match setup.batching {
        Batching::Segments {
            streams,
            seg_len,
            infer_streams,
        } => (streams, seg_len, infer_streams),
        Batching::Frames { batch, infer_batch } => (batch, 1, infer_batch),
    };
    let positive = [
        ("--videos", args.videos),
        ("--frames", args.frames),
        ("--dim", args.dim),
        ("--tokens", args.tokens),
        ("--seg-len", seg_len),
        ("--batch", batch),
        ("--infer-batch", infer_batch),
        ("--threads", args.threads),
        ("--epochs", args.epochs),
        ("--infer-reps", args.infer_reps),
    ];
    for (flag, value) in positive {
        if value == 0 {
            bail!("temporal bench {flag} 0: give a positive number");
        }
    }
    if args.max_steps == Some(0) {
        bail!("temporal bench --max-steps 0: give a positive number, or leave it out for whole passes");
    }
    if setup.clip.is_nan() || setup.clip <= 0.0 {
        bail!(
            "temporal bench: clip = {} would scale every gradient to 0; give a positive norm",
            setup.clip
        );
    }
    let m = &setup.model;
    if (m.feat_dim, m.tokens) != (args.dim as i64, args.tokens as i64) {
        bail!(
            "temporal bench: the model reads {} tokens x {} dims but --tokens is {} and --dim is {}",
            m.tokens,
            m.feat_dim,
            args.tokens,
            args.dim
        );
    }
    Ok(())
}

/// A split of `videos` videos of `frames` rows each: features standard normal
/// `[N, tokens * dim]` (`tokens` tokens of `dim` per row) drawn
/// from ChaCha8 seeded with `seed` on stream 1 (filled into one tensor in chunks, so the host
/// never holds a second copy, and independent of libtorch's global generator, which other
/// threads may draw from); labels drawn from ChaCha8 seeded with `seed` as the peer's: valence and arousal uniform in [-1, 1)
/// and both invalid with probability 0.1, expression uniform in 0..8 and invalid with
/// probability 0.1, AUs 0/1 with probability 1/2 each and the whole frame's AUs invalid with
/// probability 0.1 (each task independently). Frame numbers are 1..=frames per video.
pub fn synthetic_split(
    videos: usize,
    frames: usize,
    tokens: usize,
    dim: usize,
    seed: u64,
    device: Device,
) -> Result<SplitData> {
    let n = videos * frames;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<FrameLabels> = (0..n).map(|_| random_labels(&mut rng, 0.1)).collect();
    let (va, expr, au) = label_tensors(&labels, device);
    let spans = (0..videos)
        .map(|v| {
            Ok(VideoSpan {
                video: VideoId::new(format!("synthetic-{v:04}"))?,
                start: v * frames,
                frames: (1..=frames as u32).collect(),
                scored: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let feats = standard_normal_rows(n, tokens * dim, seed, device);
    Ok(SplitData {
        features: FeatureRows::Memory(feats),
        tokens,
        va,
        expr,
        au,
        labels,
        videos: spans,
        set_dims: vec![("synthetic".to_string(), dim)],
    })
}

/// `[n, dim]` standard normal values from ChaCha8 (`seed`, stream 1), copied into the tensor
/// 4096 rows at a time.
fn standard_normal_rows(n: usize, dim: usize, seed: u64, device: Device) -> Tensor {
    const CHUNK_ROWS: usize = 4096;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let feats = Tensor::empty([n as i64, dim as i64], (Kind::Float, device));
    let mut buf = vec![0f32; CHUNK_ROWS.min(n) * dim];
    for start in (0..n).step_by(CHUNK_ROWS) {
        let rows = CHUNK_ROWS.min(n - start);
        let chunk = &mut buf[..rows * dim];
        chunk
            .iter_mut()
            .for_each(|x| *x = rng.sample(rand_distr::StandardNormal));
        feats
            .narrow(0, start as i64, rows as i64)
            .copy_(&Tensor::from_slice(chunk).view([rows as i64, dim as i64]));
    }
    feats
}

fn random_labels(rng: &mut impl Rng, invalid: f64) -> FrameLabels {
    let va_ok = !rng.gen_bool(invalid);
    let (v, a) = (rng.gen_range(-1.0f32..1.0), rng.gen_range(-1.0f32..1.0));
    let expr_ok = !rng.gen_bool(invalid);
    let expression = rng.gen_range(0..N_EXPR as u8);
    let au_ok = !rng.gen_bool(invalid);
    let aus: [bool; N_AU] = std::array::from_fn(|_| rng.gen_bool(0.5));
    FrameLabels {
        valence: va_ok.then_some(v),
        arousal: va_ok.then_some(a),
        expression: expr_ok.then_some(expression),
        aus: au_ok.then_some(aus),
    }
}

/// The median as Python's `statistics.median` (mean of the two middle values for an even
/// count); NaN for no value.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The peak resident set size in KiB from the text of `/proc/self/status` (`VmHWM:  123 kB`).
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_matches_python_statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.5]), 7.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn peak_rss_is_read_from_vmhwm() {
        let status = "Name:\ttemporal\nVmPeak:\t  999 kB\nVmHWM:\t 2150400 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(2_150_400));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        // this process has one
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_hwm_kib(&own).unwrap() > 0);
    }

    #[test]
    fn synthetic_split_has_the_sizes_and_about_ten_percent_invalid_labels() {
        tch::set_num_threads(1);
        let d = synthetic_split(4, 2500, 1, 3, 5, Device::Cpu).unwrap();
        assert_eq!(d.features.resident().unwrap().size(), vec![10_000, 3]);
        assert_eq!(d.n_rows(), 10_000);
        assert_eq!(d.videos.len(), 4);
        assert_eq!((d.videos[3].start, d.videos[3].len()), (7_500, 2_500));
        // 10 000 Bernoulli(0.1) draws: mean 1000, sd 30; allow 5 sd.
        let invalid = |f: &dyn Fn(&FrameLabels) -> bool| d.labels.iter().filter(|l| f(l)).count();
        for (task, count) in [
            ("va", invalid(&|l| l.valence.is_none())),
            ("expr", invalid(&|l| l.expression.is_none())),
            ("au", invalid(&|l| l.aus.is_none())),
        ] {
            assert!((850..=1150).contains(&count), "{task}: {count} invalid");
        }
        // valence and arousal are invalid together, as the peer's `va[...] = -5`
        assert!(d
            .labels
            .iter()
            .all(|l| l.valence.is_some() == l.arousal.is_some()));
        // the tensors carry the markers
        let n_invalid_expr = d.expr.eq(-1).sum(Kind::Int64).int64_value(&[]);
        assert_eq!(
            n_invalid_expr as usize,
            invalid(&|l| l.expression.is_none())
        );
        // features: standard normal
        let mean = d
            .features
            .resident()
            .unwrap()
            .mean(Kind::Double)
            .double_value(&[]);
        let std = d.features.resident().unwrap().std(true).double_value(&[]);
        assert!(
            mean.abs() < 0.05 && (std - 1.0).abs() < 0.05,
            "{mean} {std}"
        );
        // seeded
        let again = synthetic_split(4, 2500, 1, 3, 5, Device::Cpu).unwrap();
        assert!(again
            .features
            .resident()
            .unwrap()
            .equal(d.features.resident().unwrap()));
        assert_eq!(again.labels, d.labels);
        let other = synthetic_split(4, 2500, 1, 3, 6, Device::Cpu).unwrap();
        assert!(!other
            .features
            .resident()
            .unwrap()
            .equal(d.features.resident().unwrap()));
    }

    /// A small end-to-end run: 5 videos of 30 frames, B = 2, l = 10. The plan deals videos of
    /// equal length as 3 to one stream and 2 to the other: 9 steps, the last 3 with one real
    /// segment (10 frames) each. Capped at 4 steps every pass has 4 x 2 x 10 = 80 frames; the
    /// inference plan with B = 3 has 2 + 2 + 1 videos -> 6 steps, 150 frames.
    #[test]
    fn bench_counts_the_frames_of_the_steps_it_times() {
        tch::set_num_threads(1);
        let args = BenchArgs {
            arch: Arch::Lstm,
            topology: Topology::Feedback,
            epochs: 2,
            threads: 1,
            videos: 5,
            frames: 30,
            dim: 6,
            seg_len: Some(10),
            batch: Some(2),
            infer_batch: Some(3),
            max_steps: Some(4),
            infer_reps: 2,
            ..BenchArgs::default()
        };
        let mut setup = BenchSetup::from_args(&args).unwrap();
        setup.model.hidden = 8;
        let r = bench(&args, &setup).unwrap();
        assert_eq!(r.train_epochs.len(), 2);
        for p in &r.train_epochs {
            assert_eq!((p.frames, p.steps), (80, 4));
            assert!(p.fps > 0.0 && p.seconds >= 0.0);
        }
        let r_all = bench(
            &BenchArgs {
                max_steps: None,
                ..args.clone()
            },
            &setup,
        )
        .unwrap();
        for p in &r_all.train_epochs {
            assert_eq!((p.frames, p.steps), (150, 9));
        }
        for p in &r_all.infer_epochs {
            assert_eq!((p.frames, p.steps), (150, 6));
        }
        let fps: Vec<f64> = r.train_epochs.iter().map(|p| p.fps).collect();
        assert_eq!(r.train_fps, round_to(median(&fps), 1));
        assert_eq!(r.train_fps_min_max[0], fps[0].min(fps[1]));
        assert_eq!(r.feedback.as_deref(), Some("au->expr"));
        assert_eq!((r.arch.as_str(), r.topology.as_str()), ("lstm", "feedback"));
        assert!(r.peak_rss_mb.unwrap() > 0.0);
        // LSTM (4 * 8 * (6 + 8 + 2) = 512) + 4 tops (3 x 4*8*(8+8+2) + 4*8*(16+8+2))
        // + 4 heads of Linear(8, 512), Linear(512, 256), Linear(256, out) with out 1, 1, 8, 12.
        let lstm = |d_in: i64| 4 * 8 * (d_in + 8 + 2);
        let head = |out: i64| (8 * 512 + 512) + (512 * 256 + 256) + (256 * out + out);
        let want = lstm(6) + 3 * lstm(8) + lstm(16) + head(1) + head(1) + head(8) + head(12);
        assert_eq!(r.params, want);
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "train_fps",
            "infer_fps",
            "peak_rss_mb",
            "train_epochs",
            "params",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    /// The phases of a step are timed inside it: each is reported, none is negative, and per
    /// step they add up to no more than the timed passes took.
    #[test]
    fn the_report_gives_each_phase_of_a_step_in_milliseconds() {
        tch::set_num_threads(1);
        let args = BenchArgs {
            arch: Arch::Gru,
            topology: Topology::ShareBottom,
            epochs: 2,
            threads: 1,
            videos: 4,
            frames: 40,
            dim: 6,
            seg_len: Some(10),
            batch: Some(2),
            infer_batch: Some(2),
            infer_reps: 2,
            ..BenchArgs::default()
        };
        let mut setup = BenchSetup::from_args(&args).unwrap();
        setup.model.hidden = 8;
        let r = bench(&args, &setup).unwrap();
        let names = |m: &BTreeMap<String, f64>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&r.train_phases_ms),
            ["backward", "forward", "gather", "loss", "update"]
        );
        assert_eq!(names(&r.infer_phases_ms), ["forward", "gather", "outputs"]);
        let per_step_ms = |passes: &[Pass]| {
            let (s, n) = passes
                .iter()
                .fold((0.0, 0), |(s, n), p| (s + p.seconds, n + p.steps));
            s * 1000.0 / n as f64
        };
        for (phases, passes) in [
            (&r.train_phases_ms, &r.train_epochs),
            (&r.infer_phases_ms, &r.infer_epochs),
        ] {
            assert!(phases.values().all(|ms| *ms >= 0.0), "{phases:?}");
            assert!(phases["forward"] > 0.0, "{phases:?}");
            let sum: f64 = phases.values().sum();
            // Rounding: 2 decimals per phase, 3 decimals of seconds per pass.
            assert!(sum <= per_step_ms(passes) + 0.1, "{phases:?} {passes:?}");
        }
    }

    /// The frame-level systems: a bench config and every system config (tiny sizes) run
    /// through `--system`: model, optimizer and batch from the file, shuffled frame batches (or
    /// segments, for a segment system).
    #[test]
    fn a_system_file_is_benchmarked_on_shuffled_frame_batches() {
        tch::set_num_threads(1);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let args = BenchArgs {
            system: Some(root.join("configs/bench/anfl.toml")),
            epochs: 2,
            threads: 1,
            videos: 3,
            frames: 50,
            dim: 6,
            batch: Some(32),
            max_steps: Some(3),
            infer_reps: 1,
            warmup_steps: 1,
            ..BenchArgs::default()
        };
        let setup = BenchSetup::from_args(&args).unwrap();
        assert_eq!(setup.model.arch, Arch::None);
        assert_eq!(setup.model.tasks, vec![HeadTask::Au]);
        assert_eq!(
            setup.batching,
            Batching::Frames {
                batch: 32,
                infer_batch: 32
            }
        );
        let r = bench(&args, &setup).unwrap();
        // 150 frames in batches of 32: 5 steps, capped at 3 of 32 frames
        for p in &r.train_epochs {
            assert_eq!((p.frames, p.steps), (96, 3));
        }
        for p in &r.infer_epochs {
            assert_eq!((p.frames, p.steps), (96, 3));
        }
        assert_eq!(r.system.as_deref(), Some("anfl"));
        assert_eq!((r.arch.as_str(), r.optimizer.as_str()), ("none", "adamw"));
        assert_eq!((r.tokens, r.seg_len, r.batch_streams), (1, 1, 32));
        // ANFL on C = 6: 12 blocks (fc C x C + C, bn 2C), U and V (C x C + C), bnv (2 x 12), sc
        let c = 6;
        assert_eq!(
            r.params,
            12 * (c * c + 3 * c) + 2 * (c * c + c) + 24 + 12 * c
        );

        let mut files: Vec<std::path::PathBuf> = ["configs/bench", "configs/systems"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{files:?}");
        for file in files {
            let cfg = TrainConfig::load(&file).unwrap();
            let tokens = if cfg.model.heads.au == crate::model::AuHead::LrpArlFf
                || cfg.model.heads.all == crate::model::config::JointHead::TaskQueries
            {
                4
            } else {
                1
            };
            // A segment system (the multi-rate encoder) on segments of 8: each video in a stream
            // of its own, 2 steps of 2 x 8 frames.
            let seg_len = (!cfg.model.arch.is_frame_level()).then_some(8);
            let args = BenchArgs {
                system: Some(file.clone()),
                threads: 1,
                videos: 2,
                frames: 20,
                dim: 8,
                tokens,
                batch: Some(16),
                seg_len,
                max_steps: Some(2),
                infer_reps: 1,
                warmup_steps: 1,
                ..BenchArgs::default()
            };
            let setup = BenchSetup::from_args(&args).unwrap();
            let r = bench(&args, &setup).unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
            assert_eq!(r.train_epochs[0].frames, 32, "{}", file.display());
            assert_eq!(r.infer_epochs[0].frames, 32, "{}", file.display());
            assert!(r.train_fps > 0.0 && r.infer_fps > 0.0);
            if cfg.sam_rho > 0.0 {
                assert!(r.optimizer.ends_with("+sam"), "{}", r.optimizer);
            }
        }
    }

    #[test]
    fn inference_batches_take_the_frames_in_row_order() {
        let plan = StreamPlan::in_order_frames(&[(0, 5), (5, 3)], 3);
        assert_eq!(plan.n_steps(), 3);
        let mut rows = Vec::new();
        for t in 0..plan.n_steps() {
            let s = plan.step(t, Device::Cpu);
            let idx = Vec::<i64>::try_from(s.index.flatten(0, -1)).unwrap();
            let valid = Vec::<bool>::try_from(s.valid.flatten(0, -1)).unwrap();
            rows.extend(idx.iter().zip(&valid).filter(|(_, v)| **v).map(|(i, _)| *i));
        }
        assert_eq!(rows, (0..8).collect::<Vec<i64>>());
        assert_eq!(plan.step(0, Device::Cpu).segments[2].unwrap().video, 0);
        assert_eq!(plan.step(1, Device::Cpu).segments[2].unwrap().video, 1);
    }

    #[test]
    fn a_zero_clip_is_refused() {
        let args = BenchArgs {
            clip: Some(0.0),
            ..BenchArgs::default()
        };
        let err = bench(&args, &BenchSetup::from_args(&args).unwrap()).unwrap_err();
        assert!(err.to_string().contains("clip"), "{err}");
    }
}
