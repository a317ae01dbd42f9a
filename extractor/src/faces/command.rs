//! `extractor faces`: raw videos to ABAW-style aligned face crops and a landmarks CSV per video.
//!
//! What it does: for every video under `--data` (video files or folders of full frames, as
//! [`crate::sources::discover`] finds them), optionally one `--shard`, streams the frames through
//! [`super::stream_video`] and writes
//! - `OUT/cropped_aligned/<video>/00001.jpg`, ...: the aligned face of each frame that has one
//!   (1-based frame numbers in decode order, as in the ABAW layout; a frame without a face has
//!   no file), JPEG quality `--jpeg-quality`;
//! - `OUT/faces/<video>.csv` with header [`CSV_HEADER`]: one row per written crop, the box,
//!   O-Net probability and five landmarks in pixel coordinates of the original frame.
//!
//! With `--all-faces` each face track `k` (1, 2, ... in order of appearance) gets its own folder
//! `OUT/cropped_aligned/<video>_face<k>/` (the ABAW convention of one folder per person, e.g.
//! `video_left`), and the CSV starts with a `track` column: a choice of ours.
//!
//! Crash safety and resumption follow `extract`: a video is written into
//! `OUT/.partial/<video>/` and then moved into place, crop folders first and the CSV last; the
//! CSV is the mark of a complete video. A rerun skips videos whose CSV exists, removes stale
//! partial work and crop folders left without their CSV, and redoes those videos. A video that
//! cannot be read is reported with its file; the others complete and the command exits non-zero.
//!
//! What it does not: embed faces (`extract --detect-faces` does that in one pass without
//! writing images), or keep frames without a face.

use super::{stream_video, FaceOptions, FrameEvent, Mtcnn, MtcnnOptions};
use crate::shard::Shard;
use crate::sources::{self, VideoSource};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::device::parse_device;
use shared::VideoId;
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The header of `faces/<video>.csv` (one face per frame).
pub const CSV_HEADER: &str = "frame,x1,y1,x2,y2,score,lex,ley,rex,rey,nx,ny,mlx,mly,mrx,mry";

/// Detect, align and crop the faces of raw videos into an ABAW-style `cropped_aligned/` folder.
#[derive(Debug, Args, Clone)]
pub struct FacesArgs {
    /// Video files, a folder of them, or a folder of full-frame folders (`<video>/00001.jpg`).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Output root: writes `cropped_aligned/<video>/00001.jpg` and `faces/<video>.csv` there.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Side of the aligned crops in pixels (the ArcFace 112 template scaled).
    #[arg(long, default_value_t = 112, value_name = "PX")]
    pub size: u32,
    /// Write every face as its own track (`<video>_face<k>/`) instead of one face per frame.
    #[arg(long)]
    pub all_faces: bool,
    /// Process only shard K of N (K from 0); defaults to the Slurm array task when run in one.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Only these videos (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub videos: Vec<String>,
    /// Where the detector runs: auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,
    /// Frames detected per batch (fewer when frames are large).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch_size: usize,
    /// libtorch threads [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Smallest face side searched for, in pixels (facenet-pytorch's default).
    #[arg(long, default_value_t = 20.0, value_name = "PX")]
    pub min_face_size: f64,
    /// P-Net, R-Net, O-Net probability thresholds (facenet-pytorch's defaults).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [0.6, 0.7, 0.7], value_name = "P,R,O")]
    pub thresholds: Vec<f64>,
    /// Scale ratio between image-pyramid levels (facenet-pytorch's default).
    #[arg(long, default_value_t = 0.709, value_name = "F")]
    pub factor: f64,
    /// Folder holding pnet.pt, rnet.pt, onet.pt [default: third_party/mtcnn, filled by `make
    /// setup`].
    #[arg(long, value_name = "DIR")]
    pub mtcnn_weights: Option<PathBuf>,
    /// JPEG quality of the crops (1-100).
    #[arg(long, default_value_t = 95, value_name = "Q")]
    pub jpeg_quality: u8,
}

/// The detector options of the flags.
pub fn mtcnn_options(min_face_size: f64, thresholds: &[f64], factor: f64) -> Result<MtcnnOptions> {
    let [p, r, o] = thresholds else {
        bail!("--thresholds takes three values P,R,O, got {thresholds:?}");
    };
    let opts = MtcnnOptions {
        min_face_size,
        thresholds: [*p, *r, *o],
        factor,
    };
    opts.check()?;
    Ok(opts)
}

/// `--mtcnn-weights`, else `third_party/mtcnn` of the working directory if present, else of the
/// source tree the binary was built from.
pub fn weights_dir(flag: Option<&Path>) -> PathBuf {
    match flag {
        Some(p) => p.to_path_buf(),
        None => {
            let local = Path::new("third_party").join("mtcnn");
            if local.join("pnet.pt").is_file() {
                local
            } else {
                super::mtcnn::default_weights_dir()
            }
        }
    }
}

/// The shard from the flag, else from Slurm, else all.
pub fn resolve_shard(flag: Option<Shard>) -> Result<Shard> {
    Ok(match flag {
        Some(s) => s,
        None => match Shard::from_slurm(|k| std::env::var(k).ok()).map_err(|e| anyhow!(e))? {
            Some(s) => {
                tracing::info!("Slurm array task: processing shard {s}");
                s
            }
            None => Shard::ALL,
        },
    })
}

/// The videos under `data`, restricted to `videos` if given (an error names a missing one).
pub fn select_sources(data: &Path, videos: &[String]) -> Result<Vec<VideoSource>> {
    let mut sources = sources::discover(data)?;
    if !videos.is_empty() {
        let wanted: Vec<VideoId> = videos.iter().map(VideoId::new).collect::<Result<_, _>>()?;
        for w in &wanted {
            if !sources.iter().any(|s| s.video() == w) {
                bail!("--videos: no video {w} under {}", data.display());
            }
        }
        sources.retain(|s| wanted.contains(s.video()));
    }
    Ok(sources)
}

/// What a run did.
#[derive(Debug, Default)]
pub struct FacesReport {
    /// Videos written now.
    pub written: usize,
    /// Videos already complete.
    pub skipped: usize,
    /// Face crops written now.
    pub crops: usize,
    /// Frames without a face.
    pub no_face: usize,
    /// Frames that could not be decoded.
    pub unreadable: usize,
    /// Videos that failed, with the reason (naming the file).
    pub failed: Vec<(VideoId, String)>,
    /// Time in detection + tracking + alignment.
    pub stats: super::StreamStats,
}

/// Run the command.
pub fn run(args: &FacesArgs) -> Result<()> {
    let report = faces(args)?;
    println!(
        "faces: {} videos written ({} crops, {} frames without a face, {} unreadable frames), {} \
         already done, {} failed -> {}",
        report.written,
        report.crops,
        report.no_face,
        report.unreadable,
        report.skipped,
        report.failed.len(),
        args.out.display()
    );
    if !report.failed.is_empty() {
        bail!(
            "{} videos could not be read (the others are written; rerun to retry only these):\n  {}",
            report.failed.len(),
            report
                .failed
                .iter()
                .map(|(v, e)| format!("{v}: {e}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    Ok(())
}

/// The command's work, returning the report instead of printing it.
pub fn faces(args: &FacesArgs) -> Result<FacesReport> {
    if args.size < 16 {
        bail!("--size {}: crops must be at least 16 pixels", args.size);
    }
    if !(1..=100).contains(&args.jpeg_quality) {
        bail!("--jpeg-quality {}: must be in 1..=100", args.jpeg_quality);
    }
    let opts = mtcnn_options(args.min_face_size, &args.thresholds, args.factor)?;
    let device = parse_device(&args.device)?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n as i32);
    }
    let shard = resolve_shard(args.shard)?;
    let sources = shard.select(&select_sources(&args.data, &args.videos)?);
    let detector = Mtcnn::load(&weights_dir(args.mtcnn_weights.as_deref()), opts, device)?;
    let crops_root = args.out.join(sources::CROPPED_ALIGNED);
    let csv_root = args.out.join("faces");
    let partial_root = args.out.join(".partial");
    for d in [&crops_root, &csv_root, &partial_root] {
        std::fs::create_dir_all(d)
            .with_context(|| format!("cannot create {}: choose a writable --out", d.display()))?;
    }
    let face_opts = FaceOptions {
        size: args.size,
        all_faces: args.all_faces,
        batch_frames: args.batch_size.max(1),
    };
    let mut report = FacesReport::default();
    let todo: Vec<&VideoSource> = sources
        .iter()
        .filter(|s| {
            let done = csv_root.join(format!("{}.csv", s.video())).is_file();
            if done {
                report.skipped += 1;
            }
            !done
        })
        .collect();
    let total: u64 = todo
        .iter()
        .map(|s| s.frame_count_hint().unwrap_or(0) as u64)
        .sum();
    let bar = progress_bar(total);
    for src in todo {
        match one_video(&detector, src, &face_opts, args, &bar) {
            Ok((counts, stats)) => {
                report.stats.add(&stats);
                report.written += 1;
                report.crops += counts.0;
                report.no_face += counts.1;
                report.unreadable += counts.2;
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(partial_root.join(src.video().as_str()));
                let reason = format!("{e:#}");
                tracing::error!("{}: {reason}", src.video());
                report.failed.push((src.video().clone(), reason));
            }
        }
    }
    bar.finish_and_clear();
    let s = &report.stats;
    if s.frames > 0 {
        tracing::info!(
            "detection + alignment: {} frames in {:.2} s ({:.2} frames/s; {} after the first batch)",
            s.frames,
            s.seconds,
            s.frames as f64 / s.seconds.max(1e-9),
            s.warm_rate()
                .map(|r| format!("{r:.2} frames/s"))
                .unwrap_or_else(|| "no rate".into())
        );
    }
    Ok(report)
}

/// The crop folder name of track `track` of `video`.
fn track_dir(video: &VideoId, track: usize, all_faces: bool) -> String {
    if all_faces {
        format!("{video}_face{}", track + 1)
    } else {
        video.to_string()
    }
}

/// Writes one video's crops and CSV atomically; `(crops, frames without a face, unreadable)`
/// and the time spent detecting and aligning.
fn one_video(
    detector: &Mtcnn,
    src: &VideoSource,
    opts: &FaceOptions,
    args: &FacesArgs,
    bar: &ProgressBar,
) -> Result<((usize, usize, usize), super::StreamStats)> {
    let video = src.video();
    let partial = args.out.join(".partial").join(video.as_str());
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove stale {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let csv_tmp = partial.join(format!("{video}.csv"));
    let mut csv = BufWriter::new(
        std::fs::File::create(&csv_tmp)
            .with_context(|| format!("cannot create {}", csv_tmp.display()))?,
    );
    if opts.all_faces {
        writeln!(csv, "track,{CSV_HEADER}")?;
    } else {
        writeln!(csv, "{CSV_HEADER}")?;
    }
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let (mut crops, mut no_face, mut unreadable) = (0usize, 0usize, 0usize);
    let mut last_frame = 0u32;
    let quality = args.jpeg_quality;
    let stats = stream_video(detector, src, opts, &mut |event| {
        let frame = match &event {
            FrameEvent::Face { frame, .. } => *frame,
            FrameEvent::NoFace(n) | FrameEvent::Unreadable(n, _) => *n,
        };
        if frame != last_frame {
            bar.inc(1);
            last_frame = frame;
        }
        match event {
            FrameEvent::Face {
                frame,
                track,
                face,
                pixels,
            } => {
                let dir = track_dir(video, track, opts.all_faces);
                let folder = partial.join(&dir);
                if dirs.insert(dir.clone()) {
                    std::fs::create_dir_all(&folder)
                        .with_context(|| format!("cannot create {}", folder.display()))?;
                }
                let file = folder.join(format!("{frame:05}.jpg"));
                write_jpeg(&file, &pixels, opts.size, quality)?;
                if opts.all_faces {
                    write!(csv, "{},", track + 1)?;
                }
                let [x1, y1, x2, y2] = face.bbox;
                write!(
                    csv,
                    "{frame},{x1:.2},{y1:.2},{x2:.2},{y2:.2},{:.5}",
                    face.score
                )?;
                for [x, y] in face.landmarks {
                    write!(csv, ",{x:.2},{y:.2}")?;
                }
                writeln!(csv)?;
                crops += 1;
            }
            FrameEvent::NoFace(_) => no_face += 1,
            FrameEvent::Unreadable(n, reason) => {
                tracing::warn!("{video}: frame {n} cannot be decoded ({reason}); skipped");
                unreadable += 1;
            }
        }
        Ok(true)
    })
    .with_context(|| format!("video {video}"))?;
    csv.into_inner()
        .map_err(|e| anyhow!("{}: {}", csv_tmp.display(), e.error()))?
        .sync_all()?;
    // Move into place: crop folders first, the CSV (the completion mark) last.
    let crops_root = args.out.join(sources::CROPPED_ALIGNED);
    for dir in &dirs {
        let target = crops_root.join(dir);
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot replace the incomplete {}", target.display()))?;
        }
        std::fs::rename(partial.join(dir), &target)
            .with_context(|| format!("cannot move crops to {}", target.display()))?;
    }
    let csv_final = args.out.join("faces").join(format!("{video}.csv"));
    std::fs::rename(&csv_tmp, &csv_final)
        .with_context(|| format!("cannot write {}", csv_final.display()))?;
    let _ = std::fs::remove_dir_all(&partial);
    tracing::debug!("{video}: {crops} crops, {no_face} frames without a face");
    Ok(((crops, no_face, unreadable), stats))
}

/// A `size x size` RGB crop as a JPEG file.
pub fn write_jpeg(path: &Path, rgb: &[u8], size: u32, quality: u8) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, quality)
        .encode(rgb, size, size, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn progress_bar(total: u64) -> ProgressBar {
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
    bar.set_prefix("faces");
    bar
}
