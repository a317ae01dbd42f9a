//! `extractor extract`: every frame of every video through a backbone into the feature cache.
//!
//! Data flow: a decoder thread lists each video's frames, decodes and resizes a batch at a time
//! on as many threads as the measured rates ask for ([`crate::pipeline`]) and sends it through a
//! queue of the measured depth, while this thread runs the backbone on the previous batch and
//! appends its features to the video's cache file ([`shared::cache::VideoWriter`]: a temporary
//! file renamed into place when the video completes), so memory holds a batch, never a video.
//! Corrupt frames are recorded in the file's `missing` list; a video that cannot be read at all is
//! reported and the others complete; the process then exits non-zero.
//!
//! Cache folders: a feature set writes `<out>/<set>/`. `--output pooled|map|tokens` overrides
//! the sets' `output` (what a backbone writes per frame: its vector, a CNN's last spatial feature
//! map as `[H*W, C]` tokens, or a ViT's patch tokens); when the flag changes what a set writes,
//! the set's folder is `<set>-map`, `<set>-tokens` (or `<set>-pooled`), so `--backbone iresnet50
//! --output map` writes `<out>/iresnet50-map/` and pooled and token features never share a
//! folder. Every set is resolved and checked before anything is written (`--output map` on a
//! backbone without a spatial map, or `tokens` on one without patch tokens, is an error naming
//! it). Token features (a map or patch tokens, `(n, tokens, d)`) are stored as float16 unless
//! `--dtype` (or the config's `dtype`) says otherwise: half the disk, and DINOv2-g's 289 x 1536
//! tokens are 0.9 MB a frame even so; pooled vectors stay float32.
//!
//! `--detect-faces`: the frames are raw footage; the decoder thread detects, tracks and aligns
//! one face per frame ([`crate::faces::stream_video`], the same pass as `extractor faces`, at the
//! backbone's input size) and queues the aligned faces instead of resized frames, so no image is
//! written and memory stays bounded by the batch, whatever the video's length. A frame without
//! a face goes to the file's `missing` list with the reason `no face`; the preprocessing text
//! records the detection and alignment, so such features never mix with ones from crops.
//!
//! What it does not: train models, or decide what a backbone computes (that is
//! [`crate::backbones`]).

use crate::backbones::{self, Backbone, BackboneConfig, Output};
use crate::feature_sets::FeaturesFile;
use crate::pipeline::{self, Gate, Rates};
use crate::shard::Shard;
use crate::sources::{self, video_file, VideoSource};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use shared::cache::{self, CacheAttrs, Dtype, MissingFrame, VideoWriter};
use shared::device::parse_device;
use shared::VideoId;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Embed every frame with one or more feature sets and cache the result in HDF5.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Feature-set file (named sets and defaults); a missing default file is fine.
    #[arg(long, default_value = "configs/features.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Data root with `cropped_aligned/`, a folder of frame folders or video files, or one video
    /// file [default: data/sample, or `[extract] data` of the config].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Cache root; each feature set writes `<out>/<set>/<video>.h5` [default: <data>/features].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Feature set of the config or built-in backbone; repeat for several [default: the config's
    /// `[extract] backbones`, else `hog`].
    #[arg(long = "backbone", value_name = "NAME")]
    pub backbones: Vec<String>,
    /// What a backbone writes per frame: its vector, a CNN's last spatial map (iresnet*,
    /// densenet*, resnet*, mobilenet_v2, regnet_*, efficientnet_*) or a ViT's patch tokens
    /// (vit_b16, dinov2_*). Overrides the sets' `output`; when that changes what a set writes,
    /// its cache folder is `<set>-map`, `<set>-tokens` (or `<set>-pooled`), so pooled and token
    /// features never mix: `--backbone iresnet50 --output map` writes `<out>/iresnet50-map/`.
    /// A backbone without that output is an error [default: the set's `output`, else pooled].
    #[arg(long, value_enum, value_name = "pooled|map|tokens")]
    pub output: Option<Output>,
    /// Weights for the single chosen backbone: safetensors, or a PyTorch checkpoint (.pth, .pt,
    /// .bin: a state dict, also under "state_dict", "model" or "module"; read without Python)
    /// with the public parameter names or a known public layout (timm, transformers DINOv2,
    /// torchvision, arcface_torch); or `hf:ORG/REPO[@REVISION][:FILE]` from the Hugging Face hub
    /// (downloaded once into the HF_HOME cache; HF_ENDPOINT, HF_HUB_OFFLINE honoured).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Where the backbone runs: auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Frames per forward pass [default: 64].
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Process only shard K of N (K from 0); defaults to the Slurm array task when run in one.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Only these videos (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub videos: Vec<String>,
    /// Storage type of the features: f32 or f16 [default: f16 for token features (a map or
    /// patch tokens), f32 for vectors].
    #[arg(long, value_name = "f32|f16")]
    pub dtype: Option<String>,
    /// Replace cached files made with other weights or preprocessing instead of stopping.
    #[arg(long)]
    pub overwrite: bool,
    /// libtorch and decoding threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// On CUDA, run the backbone in float16 autocast (faster; recorded in the cache's
    /// preprocessing, so it never mixes with float32 features). Ignored on the CPU.
    #[arg(long)]
    pub half: bool,
    /// Treat the videos as raw footage: detect (MTCNN), align (ArcFace 5-point template at the
    /// backbone's input size) and embed the face of every frame in one streaming pass, writing
    /// no images; frames without a face are recorded missing with the reason `no face`.
    #[arg(long)]
    pub detect_faces: bool,
    /// With --detect-faces: the folder holding pnet.pt, rnet.pt, onet.pt [default:
    /// third_party/mtcnn, filled by `make setup`].
    #[arg(long, value_name = "DIR", requires = "detect_faces")]
    pub mtcnn_weights: Option<PathBuf>,
}

/// How every feature set of a run is extracted.
#[derive(Debug, Clone)]
pub struct Options {
    /// Frames per forward pass.
    pub batch_size: usize,
    /// Storage type of the features [default: f16 for token features, f32 for vectors].
    pub dtype: Option<Dtype>,
    /// Where the backbone runs.
    pub device: Device,
    /// Replace cached files made differently.
    pub overwrite: bool,
    /// Float16 autocast on CUDA.
    pub half: bool,
    /// Detect and align faces first (`--detect-faces`): the MTCNN weights folder.
    pub detect_faces: Option<PathBuf>,
}

/// What happened to the videos of one feature set.
#[derive(Debug, Default)]
pub struct SetReport {
    /// Videos written now.
    pub written: usize,
    /// Videos already complete in the cache.
    pub skipped: usize,
    /// Frames embedded now.
    pub frames: usize,
    /// Frames recorded missing now.
    pub missing: usize,
    /// Videos that could not be read, with the reason.
    pub failed: Vec<(VideoId, String)>,
}

/// Run the command.
pub fn run(args: &ExtractArgs) -> Result<()> {
    let file = if args.config.exists() {
        FeaturesFile::load(&args.config)?
    } else {
        tracing::info!("no {}: using built-in defaults", args.config.display());
        FeaturesFile::default()
    };
    let defaults = &file.extract;
    let data = args
        .data
        .clone()
        .or_else(|| defaults.data.clone())
        .unwrap_or_else(|| PathBuf::from("data/sample"));
    let out = args
        .out
        .clone()
        .or_else(|| defaults.out.clone())
        .unwrap_or_else(|| {
            if data.is_dir() {
                data.join("features")
            } else {
                PathBuf::from("features")
            }
        });
    let mut set_names = args.backbones.clone();
    if set_names.is_empty() {
        set_names = defaults.backbones.clone();
    }
    if set_names.is_empty() {
        set_names = vec!["hog".to_string()];
    }
    if args.weights.is_some() && set_names.len() != 1 {
        bail!("--weights applies to one backbone; choose it with a single --backbone");
    }
    // Every set resolved and checked before anything is read or written.
    let mut sets: Vec<(String, BackboneConfig)> = Vec::with_capacity(set_names.len());
    for name in &set_names {
        let mut cfg = file.resolve(name, &args.config)?;
        if let Some(w) = &args.weights {
            cfg.weights = Some(w.clone());
        }
        let folder = apply_output(name, &mut cfg, args.output);
        cfg.check_fields().with_context(|| {
            let flag = args
                .output
                .map(|o| format!(" with --output {}", o.as_str()))
                .unwrap_or_default();
            format!("feature set {name:?}{flag}")
        })?;
        sets.push((folder, cfg));
    }
    let batch_size = args.batch_size.or(defaults.batch_size).unwrap_or(64).max(1);
    let dtype = args
        .dtype
        .as_deref()
        .or(defaults.dtype.as_deref())
        .map(parse_dtype)
        .transpose()?;
    let device = parse_device(
        args.device
            .as_deref()
            .or(defaults.device.as_deref())
            .unwrap_or("auto"),
    )?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n as i32);
        // A second call (tests in one process) keeps the first pool; that is fine.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let shard = match args.shard {
        Some(s) => s,
        None => match Shard::from_slurm(|k| std::env::var(k).ok()).map_err(|e| anyhow!(e))? {
            Some(s) => {
                tracing::info!("Slurm array task: processing shard {s}");
                s
            }
            None => Shard::ALL,
        },
    };

    let mut sources = sources::discover(&data)?;
    if !args.videos.is_empty() {
        let wanted: Vec<VideoId> = args
            .videos
            .iter()
            .map(VideoId::new)
            .collect::<Result<_, _>>()?;
        for w in &wanted {
            if !sources.iter().any(|s| s.video() == w) {
                bail!("--videos: no video {w} under {}", data.display());
            }
        }
        sources.retain(|s| wanted.contains(s.video()));
    }
    let sources = shard.select(&sources);
    tracing::info!(
        "{} videos in shard {shard} of {}; cache {}",
        sources.len(),
        data.display(),
        out.display()
    );

    let half = args.half && device.is_cuda();
    if args.half && !half {
        tracing::warn!("--half applies on CUDA only; extracting in float32 on the CPU");
    }
    let opts = Options {
        batch_size,
        dtype,
        device,
        overwrite: args.overwrite,
        half,
        detect_faces: args
            .detect_faces
            .then(|| crate::faces::command::weights_dir(args.mtcnn_weights.as_deref())),
    };
    let mut failures = Vec::new();
    for (name, cfg) in &sets {
        let report = extract_set(name, cfg, &sources, &out, &opts)?;
        println!(
            "{name}: {} videos written ({} frames, {} missing), {} already cached, {} failed -> {}",
            report.written,
            report.frames,
            report.missing,
            report.skipped,
            report.failed.len(),
            out.join(name).display()
        );
        failures.extend(
            report
                .failed
                .into_iter()
                .map(|(v, e)| format!("{name}/{v}: {e}")),
        );
    }
    if !failures.is_empty() {
        bail!(
            "{} videos could not be read (the others are cached; rerun to retry only these):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Applies the `--output` flag to the config of feature set `name` and returns the set's cache
/// folder name (under `--out`): `name` itself, or `<name>-<output>` (`iresnet50-map`) when the
/// flag changes what the set writes, so that pooled and map features never share a folder.
pub fn apply_output(name: &str, cfg: &mut BackboneConfig, flag: Option<Output>) -> String {
    match flag {
        Some(o) if o != cfg.output() => {
            cfg.output = Some(o);
            format!("{name}-{}", o.as_str())
        }
        _ => name.to_string(),
    }
}

fn parse_dtype(s: &str) -> Result<Dtype> {
    match s {
        "f32" => Ok(Dtype::F32),
        "f16" => Ok(Dtype::F16),
        _ => bail!("--dtype {s:?}: expected f32 or f16"),
    }
}

/// One decoded batch of a video, or the end of a video.
enum Decoded {
    Batch {
        frames: Vec<i32>,
        pixels: Vec<f32>,
        missing: Vec<MissingFrame>,
    },
    Done,
    Failed(String),
}

/// Extract one feature set for the given videos.
pub fn extract_set(
    set: &str,
    cfg: &BackboneConfig,
    sources: &[VideoSource],
    out: &Path,
    opts: &Options,
) -> Result<SetReport> {
    let Options {
        batch_size,
        dtype,
        device,
        overwrite,
        half,
        ..
    } = *opts;
    let set_dir = out.join(set);
    std::fs::create_dir_all(&set_dir).with_context(|| {
        format!(
            "cannot create the cache folder {}: choose a writable --out",
            set_dir.display()
        )
    })?;
    let backbone = backbones::build(cfg, device)
        .with_context(|| format!("building the backbone of feature set {set:?}"))?;
    let dtype = dtype.unwrap_or(if backbone.output_shape().len() > 1 {
        Dtype::F16
    } else {
        Dtype::F32
    });
    let detector = match &opts.detect_faces {
        Some(dir) => Some(crate::faces::Mtcnn::load(
            dir,
            crate::faces::MtcnnOptions::default(),
            device,
        )?),
        None => None,
    };
    let template = CacheAttrs {
        backbone: backbone.name().to_string(),
        dim: *backbone.output_shape().last().unwrap_or(&0),
        input_size: backbone.input_size(),
        dtype,
        preprocessing: {
            let mut p = backbone.preprocessing();
            if detector.is_some() {
                p = format!(
                    "{}; {p}",
                    crate::faces::detect_align_description(backbone.input_size())
                );
            }
            if half {
                p = format!("{p}; float16 autocast");
            }
            p
        },
        weights: backbone.weights_id(),
        source: String::new(),
        tool_version: shared::TOOL_VERSION.to_string(),
    };
    let mut report = SetReport::default();
    let mut todo = Vec::new();
    for src in sources {
        let path = cache::video_path(out, set, src.video());
        if path.exists() {
            match cache::read_attrs(&path) {
                Ok(existing) => match existing.compatible_with(&template) {
                    Ok(()) => {
                        report.skipped += 1;
                        continue;
                    }
                    Err(diff) if !overwrite => bail!(
                        "{} was made differently: {diff}. Use another --out, or --overwrite to replace it",
                        path.display()
                    ),
                    Err(_) => {}
                },
                Err(e) if !overwrite => {
                    bail!("{e}; delete the file or pass --overwrite to rewrite it")
                }
                Err(_) => {}
            }
        }
        todo.push(src.clone());
    }
    if todo.is_empty() {
        return Ok(report);
    }

    let total: u64 = todo
        .iter()
        .map(|s| s.frame_count_hint().unwrap_or(0) as u64)
        .sum();
    let bar = progress_bar(set, total);
    let size = backbone.input_size();
    // The queue's hard bound; the decoder keeps to the measured depth through `gate`.
    let (tx, rx) = sync_channel::<(usize, Decoded)>(pipeline::MAX_QUEUE);
    let rates = Arc::new(Rates::new(rayon::current_num_threads()));
    let gate = Arc::new(Gate::default());
    let producer_sources = todo.clone();
    let (producer_rates, producer_gate) = (rates.clone(), gate.clone());
    let producer = std::thread::spawn(move || {
        let mut decoder = Decoder::new(&producer_rates);
        decoder.detector = detector;
        for (i, src) in producer_sources.iter().enumerate() {
            let mut send = |d: Decoded| {
                if matches!(d, Decoded::Batch { .. }) {
                    producer_gate.enter(producer_rates.queue_depth());
                }
                tx.send((i, d)).is_ok()
            };
            let result = decoder.video(src, size, batch_size, &mut send);
            let last = match result {
                Ok(()) => Decoded::Done,
                Err(e) => Decoded::Failed(format!("{e:#}")),
            };
            if tx.send((i, last)).is_err() {
                return;
            }
        }
    });
    let sink = Sink {
        rates: &rates,
        gate: &gate,
        backbone: backbone.as_ref(),
        device,
        half,
        template: &template,
        out,
        set,
        bar: &bar,
    };
    let outcome = sink.consume(&rx, &todo, &mut report);
    drop(rx);
    producer
        .join()
        .map_err(|_| anyhow!("the frame decoder thread panicked"))?;
    bar.finish_and_clear();
    outcome?;
    Ok(report)
}

/// The consuming end of the queue: forward passes and cache writes.
struct Sink<'a> {
    rates: &'a Rates,
    gate: &'a Gate,
    backbone: &'a dyn Backbone,
    device: Device,
    half: bool,
    template: &'a CacheAttrs,
    out: &'a Path,
    set: &'a str,
    bar: &'a ProgressBar,
}

impl Sink<'_> {
    /// The writer of `src`'s cache file (a temporary file until the video is done).
    fn start_video(&self, src: &VideoSource) -> Result<VideoWriter> {
        let mut attrs = self.template.clone();
        attrs.source = src.describe();
        let path = cache::video_path(self.out, self.set, src.video());
        let shape = self.backbone.output_shape();
        Ok(VideoWriter::create(
            &path,
            &attrs,
            &shape,
            src.frame_count_hint(),
        )?)
    }

    fn consume(
        &self,
        rx: &Receiver<(usize, Decoded)>,
        todo: &[VideoSource],
        report: &mut SetReport,
    ) -> Result<()> {
        let Sink {
            rates,
            gate,
            backbone,
            device,
            half,
            set,
            bar,
            ..
        } = *self;
        let size = backbone.input_size() as i64;
        // The video being written: its file grows batch by batch (one batch in memory).
        let mut writer: Option<VideoWriter> = None;
        let mut missing: Vec<MissingFrame> = Vec::new();
        let started = Instant::now();
        // When the first batch finished and the frames done by then: the rate after it leaves
        // out the one-off set-up (oneDNN primitives, first allocations) of the first forward.
        let mut warm: Option<(Instant, usize)> = None;
        let mut done = 0usize;
        while let Ok((i, item)) = rx.recv() {
            let src = &todo[i];
            match item {
                Decoded::Batch {
                    frames: f,
                    pixels,
                    missing: m,
                } => {
                    gate.leave();
                    missing.extend(m);
                    if !f.is_empty() {
                        let forward_started = Instant::now();
                        let n = f.len() as i64;
                        let host = Tensor::from_slice(&pixels).view([n, 3, size, size]);
                        // On CUDA: page-locked host memory and an asynchronous copy.
                        let images = if device.is_cuda() {
                            host.pin_memory(device)
                                .to_device_(device, Kind::Float, true, false)
                        } else {
                            host
                        };
                        let feats = tch::no_grad(|| {
                            if half {
                                tch::autocast(true, || backbone.forward(&images))
                            } else {
                                backbone.forward(&images)
                            }
                        });
                        let values = Vec::<f32>::try_from(
                            feats
                                .to_device(Device::Cpu)
                                .to_kind(tch::Kind::Float)
                                .flatten(0, -1),
                        )?;
                        if warm.is_some() {
                            // the first forward pass carries one-off set-up: not a rate
                            rates.record_forward(f.len(), forward_started.elapsed());
                        }
                        let w = match &mut writer {
                            Some(w) => w,
                            None => writer.insert(self.start_video(src)?),
                        };
                        w.append(&f, &values)?;
                        bar.inc(n as u64);
                        done += n as usize;
                        warm.get_or_insert((Instant::now(), done));
                    }
                }
                Decoded::Done => {
                    let w = match writer.take() {
                        Some(w) => w,
                        None => self.start_video(src)?,
                    };
                    let n_frames = w.rows();
                    missing.sort_by_key(|m| m.frame);
                    report.missing += missing.len();
                    w.finish(&std::mem::take(&mut missing))?;
                    report.written += 1;
                    report.frames += n_frames;
                    tracing::debug!("{set}/{}: {n_frames} frames", src.video());
                }
                Decoded::Failed(reason) => {
                    tracing::error!("{set}/{}: cannot read the video: {reason}", src.video());
                    report.failed.push((src.video().clone(), reason));
                    writer = None; // its temporary file is removed
                    missing.clear();
                }
            }
        }
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let after_first = match warm {
            Some((t, n)) if done > n => format!(
                ", {:.1} frames/s after the first batch",
                (done - n) as f64 / t.elapsed().as_secs_f64().max(1e-9)
            ),
            _ => String::new(),
        };
        tracing::info!(
            "{set}: {} frames in {secs:.1} s ({:.1} frames/s{after_first}; frames decoded on {} \
             thread(s), up to {} batches queued, from the measured rates)",
            report.frames,
            report.frames as f64 / secs,
            rates.decode_threads(),
            rates.queue_depth()
        );
        Ok(())
    }
}

/// The decoding end of the queue: decodes each batch of frames on as many threads as the
/// measured [`Rates`] ask for (one: on this thread; all cores: the global pool).
struct Decoder<'a> {
    rates: &'a Rates,
    /// Thread pools of fewer threads than the cores, made when first needed.
    pools: Vec<Option<rayon::ThreadPool>>,
    /// With `--detect-faces`: the face detector (frames are detected and aligned, not resized).
    detector: Option<crate::faces::Mtcnn>,
}

impl<'a> Decoder<'a> {
    fn new(rates: &'a Rates) -> Decoder<'a> {
        Decoder {
            rates,
            pools: Vec::new(),
            detector: None,
        }
    }

    /// Decodes `chunk` on `threads` threads, in order.
    fn decode(
        &mut self,
        chunk: &[(u32, PathBuf)],
        size: u32,
        threads: usize,
    ) -> Vec<(u32, Result<Vec<f32>, String>)> {
        let one = |(n, path): &(u32, PathBuf)| (*n, sources::load_frame(path, size));
        if threads <= 1 {
            return chunk.iter().map(one).collect();
        }
        if threads >= rayon::current_num_threads() {
            return chunk.par_iter().map(one).collect();
        }
        if self.pools.len() <= threads {
            self.pools.resize_with(threads + 1, || None);
        }
        let pool = self.pools[threads].get_or_insert_with(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("decode-{i}"))
                .build()
                .expect("a thread pool of a few threads")
        });
        pool.install(|| chunk.par_iter().map(one).collect())
    }

    /// Decode one video batch by batch; `send` returns false when the consumer has gone.
    fn video(
        &mut self,
        src: &VideoSource,
        size: u32,
        batch_size: usize,
        send: &mut dyn FnMut(Decoded) -> bool,
    ) -> Result<()> {
        if let Some(detector) = &self.detector {
            return faces_video(detector, src, size, batch_size, send);
        }
        match src {
            VideoSource::Frames { frames: list, .. } => {
                for chunk in list.chunks(batch_size) {
                    let threads = self.rates.decode_threads();
                    let started = Instant::now();
                    let decoded = self.decode(chunk, size, threads);
                    self.rates
                        .record_decode(chunk.len(), threads, started.elapsed());
                    if !send(batch_of(src, size, decoded)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            VideoSource::File { path, .. } => {
                let mut frames_out = Vec::with_capacity(batch_size);
                let mut pixels = Vec::new();
                for item in video_file::decode(path, size)? {
                    let (n, px) = item?;
                    frames_out.push(n as i32);
                    pixels.extend_from_slice(&px);
                    if frames_out.len() == batch_size {
                        let batch = Decoded::Batch {
                            frames: std::mem::take(&mut frames_out),
                            pixels: std::mem::take(&mut pixels),
                            missing: Vec::new(),
                        };
                        if !send(batch) {
                            return Ok(());
                        }
                    }
                }
                if !frames_out.is_empty() {
                    send(Decoded::Batch {
                        frames: frames_out,
                        pixels,
                        missing: Vec::new(),
                    });
                }
                Ok(())
            }
        }
    }
}

/// One video through face detection and alignment ([`crate::faces::stream_video`]), in batches
/// of `batch_size` aligned faces; frames without a face are missing with the reason `no face`.
fn faces_video(
    detector: &crate::faces::Mtcnn,
    src: &VideoSource,
    size: u32,
    batch_size: usize,
    send: &mut dyn FnMut(Decoded) -> bool,
) -> Result<()> {
    let opts = crate::faces::FaceOptions {
        size,
        all_faces: false,
        batch_frames: crate::faces::DETECT_BATCH,
    };
    let mut frames = Vec::with_capacity(batch_size);
    let mut pixels = Vec::new();
    let mut missing = Vec::new();
    let mut gone = false;
    crate::faces::stream_video(detector, src, &opts, &mut |event| {
        match event {
            crate::faces::FrameEvent::Face {
                frame, pixels: px, ..
            } => {
                frames.push(frame as i32);
                pixels.extend_from_slice(&sources::pixels::rgb8_to_chw(&px, size));
            }
            crate::faces::FrameEvent::NoFace(n) => missing.push(MissingFrame {
                frame: n as i32,
                reason: crate::faces::NO_FACE.to_string(),
            }),
            crate::faces::FrameEvent::Unreadable(n, reason) => {
                tracing::warn!("{}: frame {n}: {reason}; recorded as missing", src.video());
                missing.push(MissingFrame {
                    frame: n as i32,
                    reason,
                })
            }
        }
        if frames.len() >= batch_size {
            let batch = Decoded::Batch {
                frames: std::mem::take(&mut frames),
                pixels: std::mem::take(&mut pixels),
                missing: std::mem::take(&mut missing),
            };
            if !send(batch) {
                gone = true;
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if !gone && (!frames.is_empty() || !missing.is_empty()) {
        send(Decoded::Batch {
            frames,
            pixels,
            missing,
        });
    }
    Ok(())
}

/// One batch from decoded frames: the pixels of those that decoded, the others as missing.
fn batch_of(
    src: &VideoSource,
    size: u32,
    decoded: Vec<(u32, Result<Vec<f32>, String>)>,
) -> Decoded {
    let mut frames = Vec::with_capacity(decoded.len());
    let mut pixels = Vec::with_capacity(decoded.len() * 3 * (size * size) as usize);
    let mut missing = Vec::new();
    for (n, result) in decoded {
        match result {
            Ok(px) => {
                frames.push(n as i32);
                pixels.extend_from_slice(&px);
            }
            Err(reason) => {
                tracing::warn!("{}: frame {n}: {reason}; recorded as missing", src.video());
                missing.push(MissingFrame {
                    frame: n as i32,
                    reason,
                });
            }
        }
    }
    Decoded::Batch {
        frames,
        pixels,
        missing,
    }
}

fn progress_bar(set: &str, total: u64) -> ProgressBar {
    let bar = if total > 0 {
        ProgressBar::new(total)
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} frames {per_sec} ETA {eta}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(set.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_flag_that_changes_what_a_set_writes_gives_it_a_suffixed_folder() {
        let builtin = BackboneConfig::named("iresnet50");
        let mut cfg = builtin.clone();
        assert_eq!(apply_output("iresnet50", &mut cfg, None), "iresnet50");
        assert_eq!(cfg, builtin);
        assert_eq!(
            apply_output("iresnet50", &mut cfg, Some(Output::Pooled)),
            "iresnet50"
        );
        assert_eq!(cfg, builtin, "pooled is already what it writes");
        assert_eq!(
            apply_output("iresnet50", &mut cfg, Some(Output::Map)),
            "iresnet50-map"
        );
        assert_eq!(cfg.output(), Output::Map);

        // A set that says `output = "map"` keeps its folder with `--output map`, and goes to
        // `<set>-pooled` with `--output pooled`.
        let set = BackboneConfig {
            output: Some(Output::Map),
            ..BackboneConfig::named("densenet121")
        };
        let mut cfg = set.clone();
        assert_eq!(
            apply_output("dense-map", &mut cfg, Some(Output::Map)),
            "dense-map"
        );
        assert_eq!(cfg, set);
        assert_eq!(
            apply_output("dense-map", &mut cfg, Some(Output::Pooled)),
            "dense-map-pooled"
        );
        assert_eq!(cfg.output(), Output::Pooled);
    }
}
