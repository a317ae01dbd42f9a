//! `temporal train`: one run of a temporal multi-task model over cached features.
//!
//! Each epoch deals the (seeded, shuffled) training videos over B streams and steps through
//! their segments with the hidden state carried per stream (zeroed at a new video), or, for a
//! frame-level model (`--arch none`), steps through batches of shuffled frames, each step with
//! the optimizer of the configuration ([`crate::optim`]: adam, adamw or sgd, optionally with
//! SAM) at the learning rate of the schedule ([`crate::schedule`]); then streams the validation
//! split the same way without shuffling, scores it with the challenge metrics, appends to
//! `metrics.jsonl` (with the epoch's first learning rate), keeps the best checkpoints and draws
//! the plots. Everything an epoch writes is atomic, and `--resume` restarts after the last
//! completed epoch with the same weights, optimizer state, data order and dropout stream (the
//! schedule is a function of the epoch and step), so it ends where an uninterrupted run would.
//! A NaN or infinite loss stops the run naming the step; the last good checkpoint stays.
//!
//! A polarity-gated VA head trains in two stages within the run: `polarity_epochs` epochs of its
//! classifiers, then its regressors ([`TrainConfig::loss_for_epoch`]); the parts a stage does
//! not train get no gradient and so no update.
//!
//! Staged training: `--init-from RUN` starts from another run's weights ([`crate::staged`],
//! adopting its feature normalisation) and `--freeze PART` leaves parts of the model as they are
//! ([`crate::optim::freeze`]).

use crate::config::TrainConfig;
use crate::data::folds::{apply_fold, Fold, FoldRule};
use crate::data::normalise::Normalisation;
use crate::data::resample::bootstrap_rows;
use crate::data::streams::StreamPlan;
use crate::data::{FeatureStore, FrameMode, Split, SplitData, SplitLabels};
use crate::infer::{infer_rows, inference_plan, scored_predictions};
use crate::loss::{without_other, LossConfig};
use crate::model::config::HeadKinds;
use crate::model::kernels::choice::{self, KernelPolicy};
use crate::model::{Arch, HeadTask, States, TemporalMtl, Topology};
use crate::optim::{Optimizer, OptimizerKind};
use crate::run_dir::{load_weights, save_weights, Checkpoint, EpochMetrics, Progress, RunDir};
use crate::schedule::{Schedule, ScheduleKind};
use crate::staged;
use crate::step::{train_step, NonFiniteLoss};
use crate::sweep::{self, MemberStatus};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::device::parse_device;
use shared::metrics::{score_predictions, MtlScore};
use shared::tasks::{Task, DEFAULT_AU_THRESHOLDS};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::nn::VarStore;
use tch::Device;

/// Train a temporal multi-task model (flags override the config file).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training configuration (TOML; every key of `configs/*.toml`) [default: built-in defaults].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Temporal encoder.
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Multi-task topology.
    #[arg(long, value_enum)]
    pub topology: Option<Topology>,
    /// Feedback topology: the head whose top output feeds the target [default: au].
    #[arg(long, value_enum)]
    pub source: Option<HeadTask>,
    /// Feedback topology: the head that reads the source's output [default: expr].
    #[arg(long, value_enum)]
    pub target: Option<HeadTask>,
    /// Task groups to train, comma-separated: va,expr,au.
    #[arg(long, value_delimiter = ',', value_name = "TASKS")]
    pub tasks: Option<Vec<Task>>,
    /// Feature sets joined by frame, comma-separated (cache folder names).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub features: Option<Vec<String>>,
    /// Data root with the annotation files [default: data/sample].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Feature cache root [default: <data>/features].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Sequence frames: the annotated ones, or every frame with features.
    #[arg(long, value_enum)]
    pub frames: Option<FrameMode>,
    /// Where the features are kept: in memory, or read from the cache step by step (a reader
    /// thread one step ahead; for token sets larger than memory); auto streams a split whose
    /// f32 features would take more than half the available memory [default: auto].
    #[arg(long, value_enum, value_name = "STORE")]
    pub feature_store: Option<FeatureStore>,
    /// Training epochs [default: 50].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Seed of initialisation, data order and dropout [default: 0].
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// auto, cpu, cuda, cuda:N [default: auto].
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// libtorch threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Kernel of GRU/LSTM layers in validation: auto times packed, aten and addmm on the first
    /// segment of each shape and keeps the fastest (cached per machine in
    /// $XDG_CACHE_HOME/affect-toolkit/kernels.json, recorded in <run>/kernels.json).
    #[arg(long, value_enum, default_value = "auto")]
    pub kernel: KernelPolicy,
    /// Segment length in frames [default: 250].
    #[arg(long, value_name = "L")]
    pub seg_len: Option<usize>,
    /// Parallel streams (segments per step) [default: 8].
    #[arg(long, value_name = "B")]
    pub streams: Option<usize>,
    /// Frames per step of a frame-level model (--arch none), drawn shuffled [default: 256].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Frame-level models: the fraction of the training frames each epoch draws uniformly
    /// (0.1 in the LRP-ARL-FF paper) [default: 1, every frame once].
    #[arg(long, value_name = "F")]
    pub resample_uniform: Option<f64>,
    /// Frame-level models: the fraction of the frames with a rare AU (resample.rare_aus in the
    /// config, AU2, AU15, AU23, AU24, AU26 by default) drawn in addition each epoch (0.2 in the
    /// LRP-ARL-FF paper) [default: 0].
    #[arg(long, value_name = "F")]
    pub resample_rare: Option<f64>,
    /// Frame-level models: train on a bootstrap sample of F x n training frames drawn with
    /// replacement, seeded from --seed (bagging; 1.0 = as many frames as the data) [default:
    /// all data without resampling].
    #[arg(long, value_name = "F")]
    pub bootstrap: Option<f64>,
    /// Polarity-gated VA head (`va = "polarity"`): epochs of the polarity classifiers before
    /// the regressors train (0 = both together) [default: 0].
    #[arg(long, value_name = "N")]
    pub polarity_epochs: Option<usize>,
    /// The optimizer, learning-rate schedule and staged-training options (boxed: they would
    /// make every `temporal` command as large as this one).
    #[command(flatten)]
    pub options: Box<TrainingOptions>,
    /// Run folder [default: runs/<arch>-<topology>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in --out (its config.toml is used; only --epochs may change).
    #[arg(long)]
    pub resume: bool,
    /// Run one member of this sweep definition (see `temporal sweep`); a finished member is
    /// skipped and an interrupted one resumed, so a rerun of the array completes what is missing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "arch", "topology", "seed", "out", "resume"])]
    pub sweep: Option<PathBuf>,
    /// Member of --sweep to run [default: $SLURM_ARRAY_TASK_ID].
    #[arg(long, value_name = "N", requires = "sweep")]
    pub sweep_index: Option<usize>,
    /// k-fold by video: validate on fold K of N (0 = the official validation set), train on the
    /// rest of both official splits (see `temporal::data::folds` for the deterministic assignment).
    #[arg(long, value_name = "K/N")]
    pub fold: Option<Fold>,
    /// How --fold deals the training videos into folds 1..N-1: round-robin by id, or frames
    /// (folds of similar frame counts, the ABAW7 task-queries recipe) [default: round-robin].
    #[arg(long, value_enum, value_name = "RULE")]
    pub fold_scheme: Option<FoldRule>,
    /// Fill the invalid labels of the training videos from this predictions folder (another
    /// run's `temporal predict --split train` output): VA as predicted, the expression argmax,
    /// AUs at probability >= 0.5; valid labels and the validation videos are never changed
    /// [default: off].
    #[arg(long, value_name = "PREDS")]
    pub pseudo_labels: Option<PathBuf>,
}

/// The general training options of `temporal train` (optimizer, schedule, staged training).
#[derive(Debug, Default, Args)]
pub struct TrainingOptions {
    /// Learning rate, the schedule's peak [default: 5e-5].
    #[arg(long, value_name = "LR")]
    pub lr: Option<f64>,
    /// Optimizer: adam (torch.optim.Adam, weight decay as L2 on the gradient), adamw (decoupled
    /// weight decay) or sgd (momentum, no dampening) [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Weight decay: L2 added to the gradient for adam and sgd, decoupled for adamw [default: 0].
    #[arg(long, value_name = "WD")]
    pub weight_decay: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long, value_name = "M")]
    pub momentum: Option<f64>,
    /// SGD with Nesterov momentum [default: off].
    #[arg(long)]
    pub nesterov: bool,
    /// Sharpness-aware minimisation around the base optimizer: the radius rho of the ascent step
    /// (gradient at w, w + rho g/||g||, gradient there on the same batch with fresh dropout,
    /// back to w, base step with that gradient); 0 = off, 0.05 in the MTCA paper [default: 0].
    #[arg(long, value_name = "RHO")]
    pub sam_rho: Option<f64>,
    /// Gradient-norm clipping (SAM: of the second gradient) [default: 5].
    #[arg(long, value_name = "NORM")]
    pub clip: Option<f64>,
    /// Learning-rate schedule, per step: constant, cosine (to 0 at the last epoch) or step
    /// (times --lr-gamma at each of --lr-steps) [default: constant].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Epochs of linear warm-up from 0 to --lr before the schedule [default: 0].
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<usize>,
    /// Step schedule: 1-based epochs at whose start the rate is multiplied by --lr-gamma,
    /// comma-separated (e.g. 4,6,8).
    #[arg(long, value_delimiter = ',', value_name = "EPOCHS")]
    pub lr_steps: Option<Vec<usize>>,
    /// Step schedule: the factor [default: 0.1].
    #[arg(long, value_name = "GAMMA")]
    pub lr_gamma: Option<f64>,
    /// Staged training: start from the weights of this run folder; every tensor whose name and
    /// shape match is copied (other shapes under one name are an error), its feature
    /// normalisation is used, and the optimizer starts afresh.
    #[arg(long, value_name = "RUN")]
    pub init_from: Option<PathBuf>,
    /// The checkpoint of --init-from to start from [default: best].
    #[arg(long, value_enum, value_name = "NAME")]
    pub init_checkpoint: Option<Checkpoint>,
    /// Parts of the model not to train, repeatable or comma-separated: PART names the
    /// parameters under `PART.` or `heads.PART.` (e.g. au), which get no updates and whose
    /// BatchNorm running statistics are kept.
    #[arg(long, value_delimiter = ',', value_name = "PART")]
    pub freeze: Option<Vec<String>>,
}

impl TrainArgs {
    /// The configuration: the file (or defaults), then every flag given.
    pub fn resolve(&self) -> Result<TrainConfig> {
        let sweep_file = self.sweep.as_deref().map(sweep::load).transpose()?;
        let mut c = match (&sweep_file, &self.config) {
            (Some(s), _) => sweep::base_config(s)?,
            (None, Some(p)) => TrainConfig::load(p)?,
            (None, None) => TrainConfig::default(),
        };
        macro_rules! set {
            ($field:ident => $($target:tt)+) => {
                if let Some(v) = &self.$field {
                    $($target)+ = v.clone();
                }
            };
        }
        set!(arch => c.model.arch);
        set!(topology => c.model.topology);
        set!(source => c.model.source);
        set!(target => c.model.target);
        set!(tasks => c.tasks);
        set!(features => c.features);
        set!(data => c.data);
        set!(frames => c.frames);
        set!(feature_store => c.feature_store);
        set!(epochs => c.epochs);
        set!(seed => c.seed);
        set!(device => c.device);
        set!(seg_len => c.seg_len);
        set!(streams => c.streams);
        set!(batch_size => c.batch_size);
        set!(resample_uniform => c.resample.uniform);
        set!(resample_rare => c.resample.rare);
        if self.bootstrap.is_some() {
            c.bootstrap = self.bootstrap;
        }
        set!(polarity_epochs => c.polarity_epochs);
        self.options.apply(&mut c);
        if self.cache.is_some() {
            c.cache = self.cache.clone();
        }
        if self.threads.is_some() {
            c.threads = self.threads;
        }
        if self.out.is_some() {
            c.out = self.out.clone();
        }
        if self.fold.is_some() {
            c.fold = self.fold;
        }
        if let Some(rule) = self.fold_scheme {
            c.fold_scheme = rule;
        }
        if self.pseudo_labels.is_some() {
            c.pseudo_labels = self.pseudo_labels.clone();
        }
        if let Some(s) = &sweep_file {
            let index = match self.sweep_index {
                Some(i) => Some(i),
                None => sweep::index_from_env(|k| std::env::var(k).ok())?,
            };
            let member = sweep::select(s, index)?;
            sweep::apply(s, &member, &mut c);
            if member.fold.is_some() {
                c.fold = member.fold;
            }
            tracing::info!(
                "sweep {}: member {} ({})",
                s.name,
                member.index,
                member.name
            );
        }
        if self.tasks.is_some() {
            drop_heads_of_untrained_tasks(&mut c);
        }
        if c.batch_size == 0 {
            bail!("--batch-size 0: a frame-level step needs at least 1 frame (256 in the papers)");
        }
        if c.tasks.is_empty() {
            bail!("--tasks is empty: choose from va, expr, au");
        }
        Ok(c)
    }
}

impl TrainingOptions {
    /// Set every option given on the command line.
    fn apply(&self, c: &mut TrainConfig) {
        macro_rules! set {
            ($field:ident => $($target:tt)+) => {
                if let Some(v) = &self.$field {
                    $($target)+ = v.clone();
                }
            };
        }
        set!(lr => c.lr);
        set!(optimizer => c.optimizer);
        set!(weight_decay => c.weight_decay);
        set!(momentum => c.momentum);
        set!(sam_rho => c.sam_rho);
        set!(clip => c.clip);
        set!(schedule => c.schedule);
        set!(warmup_epochs => c.warmup_epochs);
        set!(lr_steps => c.lr_steps);
        set!(lr_gamma => c.lr_gamma);
        set!(init_checkpoint => c.init_checkpoint);
        set!(freeze => c.freeze);
        if self.nesterov {
            c.nesterov = true;
        }
        if self.init_from.is_some() {
            c.init_from = self.init_from.clone();
        }
    }
}

/// `--tasks` on the command line narrows the tasks of a configuration: a head kind that the
/// configuration chose for a task no longer trained goes back to the default (which builds
/// nothing for an untrained task), so that e.g. the AU stage of a staged system runs as
/// `--config configs/systems/mtca.toml --tasks au`. (In a configuration file alone, a head for a
/// task that is not trained stays an error of the model configuration.)
fn drop_heads_of_untrained_tasks(c: &mut TrainConfig) {
    let heads = &mut c.model.heads;
    let defaults = HeadKinds::default();
    let mut dropped = Vec::new();
    if !c.tasks.contains(&Task::Va) && heads.va != defaults.va {
        heads.va = defaults.va;
        dropped.push("va");
    }
    if !c.tasks.contains(&Task::Expr) && heads.expr != defaults.expr {
        heads.expr = defaults.expr;
        dropped.push("expr");
    }
    if !c.tasks.contains(&Task::Au) && heads.au != defaults.au {
        heads.au = defaults.au;
        dropped.push("au");
    }
    if !dropped.is_empty() {
        tracing::info!(
            "--tasks: the configured heads of {} are not built (those tasks are not trained)",
            dropped.join(", ")
        );
    }
}

/// Run the command.
pub fn run(args: &TrainArgs) -> Result<()> {
    choice::configure(args.kernel);
    let mut cfg = args.resolve()?;
    let run_dir = cfg.run_dir();
    let mut resume = args.resume;
    if args.sweep.is_some() {
        match sweep::member_status(&run_dir)? {
            MemberStatus::Finished { epochs } => {
                println!(
                    "{} has finished its {epochs} epochs; nothing to do",
                    run_dir.display()
                );
                return Ok(());
            }
            MemberStatus::Partial { done, .. } => {
                tracing::info!("{}: {done} epochs done; resuming", run_dir.display());
                resume = true;
            }
            MemberStatus::NotStarted => {}
        }
    }
    if resume {
        let stored = RunDir::open(&run_dir)?;
        let mut saved = TrainConfig::load(&stored.config())?;
        // The stored configuration wins; only the number of epochs may be changed.
        if args.epochs.is_some() {
            saved.epochs = cfg.epochs;
        }
        cfg = saved;
    } else if run_dir.join("state").join("progress.json").exists() {
        bail!(
            "{} already holds a run; continue it with --resume, or choose another --out",
            run_dir.display()
        );
    }
    train(&cfg, resume)?;
    choice::log_decisions();
    choice::write_decisions(&run_dir.join("kernels.json"))
}

/// Train with a resolved configuration; returns the epochs' metrics.
pub fn train(cfg: &TrainConfig, resume: bool) -> Result<Vec<EpochMetrics>> {
    cfg.validate()?;
    if !cfg.lr_steps.is_empty() && cfg.schedule != ScheduleKind::Step {
        tracing::warn!(
            "lr_steps {:?} are ignored: they belong to schedule = \"step\", not {}",
            cfg.lr_steps,
            cfg.schedule
        );
    }
    if let Some(n) = cfg.threads {
        tch::set_num_threads(n as i32);
    }
    let device = parse_device(&cfg.device)?;
    let cache = cfg.cache_root();

    let (train_labels, val_labels) = labelled_splits(cfg)?;
    let load = |labels: &SplitLabels| -> Result<SplitData> {
        SplitData::load(
            &cache,
            &cfg.features,
            labels,
            cfg.frames,
            cfg.feature_store,
            device,
        )
        .with_context(|| format!("loading the {} split", labels.split.name()))
    };
    let mut train_data = load(&train_labels)?;
    let mut val_data = load(&val_labels)?;
    let mut model_cfg = cfg.model.clone();
    model_cfg.feat_dim = train_data.dim() as i64;
    model_cfg.tokens = train_data.tokens as i64;
    model_cfg.tasks = HeadTask::for_tasks(&cfg.tasks);
    model_cfg.validate().with_context(|| {
        format!(
            "the model cannot read the features {} ({} per frame, {} dims)",
            cfg.features.join("+"),
            if train_data.tokens == 1 {
                "one vector".to_string()
            } else {
                format!("{} tokens", train_data.tokens)
            },
            train_data.dim()
        )
    })?;

    // The run folder appears only once the data and the model fit together.
    let dir = RunDir::create(&cfg.run_dir())?;
    // A resumed run that finished an epoch continues from its own weights; otherwise the run
    // starts afresh (from --init-from's weights, if given).
    let mut progress = if resume {
        dir.read_progress()?
    } else {
        Progress::default()
    };
    let fresh = progress.epochs_done == 0;
    let init_from = cfg.init_from.as_deref().filter(|_| fresh);
    let norm = if resume && dir.normalisation().exists() {
        Normalisation::load(&dir.normalisation())?
    } else {
        match init_from {
            Some(src) => match staged::source_normalisation(src, train_data.dim())? {
                Some(norm) => norm,
                None => {
                    tracing::warn!(
                        "--init-from {}: no normalisation of {} columns there; fitting this run's own",
                        src.display(),
                        train_data.dim()
                    );
                    train_data.fit_normalisation()?
                }
            },
            None => train_data.fit_normalisation()?,
        }
    };
    train_data.normalise(&norm)?;
    val_data.normalise(&norm)?;

    let mut loss_cfg = cfg.loss.clone();
    loss_cfg.resolve_auto(&train_data.labels);

    let mut resolved = cfg.clone();
    resolved.model = model_cfg.clone();
    resolved.loss = loss_cfg.clone();
    dir.write_text(&dir.config(), &resolved.to_toml()?)?;
    norm.save(&dir.normalisation())?;

    tch::manual_seed(cfg.seed as i64);
    let vs = VarStore::new(device);
    let model = TemporalMtl::try_new(&vs.root(), &model_cfg)?;
    let mut staged_lines = Vec::new();
    if let Some(src) = init_from {
        let report = staged::init_from(&vs, src, cfg.init_checkpoint, &dir.root)?;
        staged_lines.extend(init_from_lines(src, &report));
    }
    let opt = Optimizer::new(&vs, &cfg.optim_config())
        .with_context(|| format!("setting up the optimizer of {}", dir.root.display()))?;
    if !cfg.freeze.is_empty() {
        let (params, buffers) = opt.frozen_counts();
        staged_lines.push(format!(
            "frozen: {} ({params} parameters and {buffers} running statistics kept as they are)",
            cfg.freeze.join(", ")
        ));
    }
    let bootstrap = cfg
        .bootstrap
        .map(|f| bootstrap_rows(train_data.n_rows(), f, cfg.seed));
    if let Some(rows) = &bootstrap {
        let mut distinct = rows.clone();
        distinct.sort_unstable();
        distinct.dedup();
        staged_lines.push(format!(
            "bootstrap: {} training frames drawn with replacement from {} (F = {}, seed {}; {} distinct)",
            rows.len(),
            train_data.n_rows(),
            cfg.bootstrap.unwrap_or(1.0),
            cfg.seed,
            distinct.len()
        ));
    }
    for line in &staged_lines {
        tracing::info!("{line}");
    }
    let mut trainer = Trainer {
        cfg,
        bootstrap,
        dir: &dir,
        device,
        vs,
        model,
        opt,
        schedule: cfg.schedule(),
        loss_cfg,
        train_data,
        val_data,
    };
    let mut history = Vec::new();
    if !fresh {
        load_weights(&mut trainer.vs, &dir.checkpoint(Checkpoint::Last))?;
        trainer.opt.load(&dir.optimizer())?;
        history = dir.read_metrics()?;
        history.truncate(progress.epochs_done);
        tracing::info!(
            "resuming {} after epoch {}",
            dir.root.display(),
            progress.epochs_done
        );
    }
    trainer.log_line(&format!(
        "train: {} videos, {} frames x {} dims ({}); validation: {} videos, {} frames; model {} {}",
        trainer.train_data.videos.len(),
        trainer.train_data.n_rows(),
        trainer.train_data.dim(),
        cfg.features.join("+"),
        trainer.val_data.videos.len(),
        trainer.val_data.n_rows(),
        model_cfg.arch,
        model_cfg.topology
    ))?;
    trainer.log_line(&optimizer_line(cfg))?;
    for line in &staged_lines {
        trainer.log_line(line)?;
    }

    for epoch in progress.epochs_done + 1..=cfg.epochs {
        let m = trainer.epoch(epoch)?;
        let line = format!(
            "epoch {epoch}/{}: loss {:.4} (lr {:.3e})  val P_MTL {:.4} (CCC v {:.3} a {:.3}, F1 expr {:.3}, F1 au {:.3})  {:.0} frames/s  {:.1} s",
            cfg.epochs, m.loss, m.lr, m.p_mtl, m.validation.ccc_valence, m.validation.ccc_arousal,
            m.validation.f1_expr, m.validation.f1_au, m.train_fps, m.seconds
        );
        eprintln!("{line}");
        trainer.log_line(&line)?;

        // Checkpoints first, progress last: a crash in between replays this epoch on resume.
        trainer.keep_checkpoints(&m, &mut progress)?;
        history.push(m);
        dir.write_metrics(&history)?;
        if let Err(e) = crate::plots::draw(&dir.plots(), &history) {
            tracing::warn!("plots not drawn: {e:#}");
        }
        progress.epochs_done = epoch;
        dir.write_text(&dir.progress(), &serde_json::to_string_pretty(&progress)?)?;
    }
    println!("run folder: {}", dir.root.display());
    if let Some(best) = history.iter().map(|m| m.p_mtl).reduce(f64::max) {
        println!(
            "best validation P_MTL {best:.4} -> {}",
            dir.checkpoint(Checkpoint::Best).display()
        );
    }
    Ok(history)
}

/// The optimizer and schedule of a run, in words (for `train.log`).
fn optimizer_line(cfg: &TrainConfig) -> String {
    let mut line = format!(
        "optimizer {} (lr {}, weight decay {}",
        cfg.optimizer, cfg.lr, cfg.weight_decay
    );
    if cfg.optimizer == OptimizerKind::Sgd {
        line.push_str(&format!(", momentum {}", cfg.momentum));
        if cfg.nesterov {
            line.push_str(", Nesterov");
        }
    }
    if cfg.sam_rho > 0.0 {
        line.push_str(&format!(", SAM rho {}", cfg.sam_rho));
    }
    line.push_str(&format!("), schedule {}", cfg.schedule));
    if cfg.schedule == ScheduleKind::Step {
        line.push_str(&format!(" x{} at epochs {:?}", cfg.lr_gamma, cfg.lr_steps));
    }
    if cfg.warmup_epochs > 0 {
        line.push_str(&format!(" after {} warm-up epochs", cfg.warmup_epochs));
    }
    line
}

/// What `--init-from` copied and left, in words (for `train.log`).
fn init_from_lines(src: &Path, report: &staged::InitReport) -> Vec<String> {
    let mut lines = vec![format!(
        "init-from {}: {} tensors copied from {}",
        src.display(),
        report.copied.len(),
        report.checkpoint.display()
    )];
    for (list, what) in [
        (
            &report.only_model,
            "not in the source run, left at their initialisation",
        ),
        (
            &report.only_source,
            "of the source run not in this model, ignored",
        ),
    ] {
        if !list.is_empty() {
            lines.push(format!(
                "init-from: {} tensors {what}: {}",
                list.len(),
                list.join(", ")
            ));
        }
    }
    lines
}

/// Everything one run's epochs need: the model with its var store, optimizer and learning-rate
/// schedule, the loss, the normalised data of both splits, and the run folder.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    /// The run's bootstrap sample (rows of the training split), with `bootstrap = F`.
    bootstrap: Option<Vec<usize>>,
    dir: &'a RunDir,
    device: Device,
    vs: VarStore,
    model: TemporalMtl,
    opt: Optimizer,
    schedule: Schedule,
    loss_cfg: LossConfig,
    train_data: SplitData,
    val_data: SplitData,
}

impl Trainer<'_> {
    /// One epoch: the shuffled training videos streamed through [`train_step`], then the
    /// validation split scored. A NaN or infinite loss stops it with an error naming the step and
    /// the last good checkpoint.
    fn epoch(&mut self, epoch: usize) -> Result<EpochMetrics> {
        let cfg = self.cfg;
        let started = Instant::now();
        // Data order and dropout depend only on (seed, epoch): a resumed run replays them.
        let epoch_seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        tch::manual_seed(epoch_seed as i64);
        let spans: Vec<(usize, usize)> = self
            .train_data
            .videos
            .iter()
            .map(|v| (v.start, v.len()))
            .collect();
        let plan = if cfg.model.arch.is_frame_level() {
            let rows = match &self.bootstrap {
                Some(sample) => {
                    cfg.resample
                        .rows_of(&self.train_data.labels, sample, epoch_seed)?
                }
                None => cfg.resample.rows(&self.train_data.labels, epoch_seed)?,
            };
            StreamPlan::frame_batches(&spans, &rows, cfg.batch_size, Some(epoch_seed))
        } else {
            StreamPlan::new(&spans, cfg.streams, cfg.seg_len, Some(epoch_seed))
        };
        let n_frames = plan.n_frames();
        self.train_data.features.prefetch(plan.all_step_rows());
        let bar = progress_bar(epoch, cfg.epochs, n_frames as u64);
        let mut states: Option<States> = None;
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = 0.0;
        let first_lr = self.schedule.lr(epoch, 0, plan.n_steps());
        let loss_cfg = cfg.loss_for_epoch(&self.loss_cfg, epoch);
        for t in 0..plan.n_steps() {
            self.opt.lr = self.schedule.lr(epoch, t, plan.n_steps());
            let step = plan.step(t, self.device);
            let done = match train_step(
                &self.model,
                &mut self.opt,
                &self.train_data,
                &step,
                states.as_ref(),
                &loss_cfg,
                cfg.clip,
            ) {
                Ok(done) => done,
                Err(NonFiniteLoss { value }) => {
                    bar.abandon();
                    bail!(
                        "the loss became {value} at epoch {epoch}, step {} of {}; stopped. The last \
                         good checkpoint is {} (epoch {}). Try a lower --lr or check the features \
                         for NaN.",
                        t + 1,
                        plan.n_steps(),
                        self.dir.checkpoint(Checkpoint::Last).display(),
                        epoch - 1
                    );
                }
            };
            let (value, parts) = (done.loss, done.parts);
            states = Some(done.states);
            total += value;
            for (k, v) in parts {
                *sums.entry(k).or_default() += v;
            }
            bar.inc(done.frames as u64);
            bar.set_message(format!("loss {value:.4}"));
        }
        let train_secs = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let steps = plan.n_steps().max(1) as f64;

        let val_started = Instant::now();
        let score = validate(&self.model, &self.val_data, cfg)?;
        let val_secs = val_started.elapsed().as_secs_f64();
        Ok(EpochMetrics {
            epoch,
            lr: first_lr,
            loss: total / steps,
            losses: sums.into_iter().map(|(k, v)| (k, v / steps)).collect(),
            p_mtl: score.p_mtl,
            validation: score,
            seconds: started.elapsed().as_secs_f64(),
            train_fps: n_frames as f64 / train_secs.max(1e-9),
            val_fps: self.val_data.n_rows() as f64 / val_secs.max(1e-9),
        })
    }

    /// Save the weights as every best checkpoint this epoch improved (P_MTL overall, and the
    /// score of each trained task group), then as `last`, with the optimizer state; record the
    /// new bests in `progress` (which the caller writes last).
    fn keep_checkpoints(&self, m: &EpochMetrics, progress: &mut Progress) -> Result<()> {
        let tasks = &self.cfg.tasks;
        for (ckpt, value, trained) in [
            (Checkpoint::Best, m.p_mtl, true),
            (
                Checkpoint::BestVa,
                (m.validation.ccc_valence + m.validation.ccc_arousal) / 2.0,
                tasks.contains(&Task::Va),
            ),
            (
                Checkpoint::BestExpr,
                m.validation.f1_expr,
                tasks.contains(&Task::Expr),
            ),
            (
                Checkpoint::BestAu,
                m.validation.f1_au,
                tasks.contains(&Task::Au),
            ),
        ] {
            let best = progress
                .best
                .get(ckpt.name())
                .copied()
                .unwrap_or(f64::NEG_INFINITY);
            if trained && value > best {
                save_weights(&self.vs, &self.dir.checkpoint(ckpt))?;
                progress.best.insert(ckpt.name().to_string(), value);
            }
        }
        save_weights(&self.vs, &self.dir.checkpoint(Checkpoint::Last))?;
        self.opt.save(&self.dir.optimizer())?;
        Ok(())
    }

    /// Append a line to the run's `train.log`.
    fn log_line(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.root.join("train.log"))?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}

/// The training and validation labels of a run, after its k-fold split if it has one.
pub fn labelled_splits(cfg: &TrainConfig) -> Result<(SplitLabels, SplitLabels)> {
    let mut train = SplitLabels::load(&cfg.data, Split::Train)?;
    let mut validation = SplitLabels::load(&cfg.data, Split::Validation)?;
    if let Some(fold) = cfg.fold {
        apply_fold(&mut train, &mut validation, fold, cfg.fold_scheme)?;
    }
    if let Some(preds) = &cfg.pseudo_labels {
        let done = crate::data::pseudo::fill(&mut train, preds)?;
        tracing::info!(
            "pseudo-labels from {}: filled VA on {} frames, expression on {}, AUs on {}; {} \
             frames without a prediction row",
            preds.display(),
            done.va,
            done.expr,
            done.au,
            done.frames_without_prediction
        );
        if !done.videos_without_predictions.is_empty() {
            tracing::warn!(
                "pseudo-labels: {} has no predictions for {} training video(s) (e.g. {}); their \
                 labels are left as they are",
                preds.display(),
                done.videos_without_predictions.len(),
                done.videos_without_predictions[0]
            );
        }
    }
    Ok((train, validation))
}

/// Stream the validation split and score it.
fn validate(model: &TemporalMtl, data: &SplitData, cfg: &TrainConfig) -> Result<MtlScore> {
    let mut rows = infer_rows(model, data, &inference_plan(data, cfg));
    if cfg.loss.drop_other {
        rows = without_other(&rows);
    }
    let preds = scored_predictions(data, &rows);
    let mut labels = Vec::new();
    let mut flat = Vec::new();
    for span in &data.videos {
        let p = &preds[&span.video];
        for ((_, l), (_, pr)) in span.scored.iter().zip(p) {
            labels.push(*l);
            flat.push(*pr);
        }
    }
    Ok(score_predictions(&labels, &flat, &DEFAULT_AU_THRESHOLDS))
}

fn progress_bar(epoch: usize, epochs: usize, frames: u64) -> ProgressBar {
    let bar = ProgressBar::new(frames);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
