//! Which kernel runs a recurrent layer without gradients, chosen by measuring on this machine.
//!
//! What it does: a GRU or LSTM layer in evaluation (validation, `temporal predict`, the
//! benchmark's inference) can run on three kernels that compute the same thing:
//! - [`RnnKernel::Packed`]: [`super::rnn_eval`]'s frame loop with the recurrent product on a
//!   weight packed for MKL's packed GEMM (where libtorch carries MKL, CPU only);
//! - [`RnnKernel::Aten`]: ATen's fused `gru` / `lstm` operator (oneDNN's RNN primitive where ATen
//!   dispatches to it, cuDNN on CUDA);
//! - [`RnnKernel::Addmm`]: the same frame loop with ATen's general GEMM (`addmm`) for the
//!   recurrent product ("plain ATen": what ATen's own RNN does without oneDNN).
//!
//! Which one is fastest depends on the CPU: on a 2-core Intel Xeon with AVX-512 the packed loop
//! was 2x ATen's LSTM; on a 2-core AMD EPYC without AVX-512 oneDNN's LSTM primitive beat it
//! (README, speed section). So with [`KernelPolicy::Auto`] (the default) the first segment of
//! each layer shape (arch, rows `B`, input width, hidden width, device, threads) times every
//! available candidate on that real segment (one warm-up call, then the best of two timed
//! calls each) and keeps the fastest for the process. The choice is cached per machine in
//! `kernels.json` under the user's cache directory (`$XDG_CACHE_HOME/affect-toolkit`, else
//! `~/.cache/affect-toolkit`), keyed by the CPU model, the thread count and the shape, so the
//! next run on the same machine kind starts with it; `--kernel packed|aten|addmm` forces one.
//! [`decisions`] lists what this process chose and why, which `temporal train` writes to the
//! run folder (`kernels.json`) and every command logs.
//!
//! What it does not: choose training kernels (a layer that records gradients runs ATen's LSTM
//! or [`super::gru::train_forward`]; their ratios to PyTorch are at or above 1.17 on both
//! machine kinds measured), change any result beyond the parity tolerance (the three kernels
//! agree to float rounding; a test forces each), or time anything when only one candidate
//! exists (CUDA: ATen's operator).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What `--kernel` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelPolicy {
    /// Measure the candidates on the first segment of each shape (cached per machine).
    #[default]
    Auto,
    /// MKL's packed GEMM in a frame loop (falls back to `aten` where MKL or the CPU is absent).
    Packed,
    /// ATen's fused `gru` / `lstm` operator (oneDNN / cuDNN where ATen uses them).
    Aten,
    /// A frame loop with ATen's `addmm` for the recurrent product.
    Addmm,
}

/// One kernel that runs a recurrent layer in evaluation.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum RnnKernel {
    /// See [`KernelPolicy::Packed`].
    Packed,
    /// See [`KernelPolicy::Aten`].
    Aten,
    /// See [`KernelPolicy::Addmm`].
    Addmm,
}

impl RnnKernel {
    /// Every kernel, in the order they are timed.
    pub const ALL: [RnnKernel; 3] = [RnnKernel::Packed, RnnKernel::Aten, RnnKernel::Addmm];
}

impl fmt::Display for RnnKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RnnKernel::Packed => "packed",
            RnnKernel::Aten => "aten",
            RnnKernel::Addmm => "addmm",
        })
    }
}

/// How a decision was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Timed on this process's first segment of the shape.
    Measured,
    /// Read from the per-machine cache file.
    Cached,
    /// Asked for with `--kernel` (or the only candidate available there).
    Forced,
}

/// The kernel a layer shape runs on, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The kernel.
    pub kernel: RnnKernel,
    /// How it was chosen.
    pub source: Source,
    /// Microseconds per frame of every timed candidate (empty unless measured, or cached from
    /// a measurement).
    #[serde(default)]
    pub us_per_frame: BTreeMap<RnnKernel, f64>,
}

/// A recurrent layer's shape on a device: the key of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerShape {
    /// `gru` or `lstm`.
    pub arch: &'static str,
    /// Rows (streams) per segment.
    pub rows: i64,
    /// Input width.
    pub d_in: i64,
    /// Hidden width.
    pub hidden: i64,
    /// `cpu` or `cuda:N`.
    pub device: String,
}

impl LayerShape {
    /// The key in the cache file and the run's record: the machine (CPU model, libtorch
    /// threads) and the shape.
    pub fn key(&self) -> String {
        format!(
            "{} | {} threads | {} | {} B={} d_in={} H={}",
            cpu_model(),
            tch::get_num_threads(),
            self.device,
            self.arch,
            self.rows,
            self.d_in,
            self.hidden
        )
    }
}

/// The CPU's model name from `/proc/cpuinfo` ("unknown CPU" elsewhere).
pub fn cpu_model() -> &'static str {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL.get_or_init(|| {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string())
    })
}

/// The process-wide policy, cache file and decisions.
#[derive(Debug, Default)]
struct Selector {
    policy: KernelPolicy,
    cache: Option<PathBuf>,
    decisions: BTreeMap<String, Decision>,
}

fn selector() -> &'static Mutex<Selector> {
    static SELECTOR: OnceLock<Mutex<Selector>> = OnceLock::new();
    SELECTOR.get_or_init(|| {
        Mutex::new(Selector {
            // unit tests never write the user's cache
            cache: if cfg!(test) {
                None
            } else {
                default_cache_file()
            },
            ..Selector::default()
        })
    })
}

fn lock() -> std::sync::MutexGuard<'static, Selector> {
    selector().lock().unwrap_or_else(|e| e.into_inner())
}

/// `$XDG_CACHE_HOME/affect-toolkit/kernels.json`, else `~/.cache/affect-toolkit/kernels.json`.
pub fn default_cache_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("affect-toolkit").join("kernels.json"))
}

/// Sets the policy for this process (the commands call it once, from `--kernel`) and forgets
/// earlier decisions.
pub fn configure(policy: KernelPolicy) {
    let mut s = lock();
    s.policy = policy;
    s.decisions.clear();
}

/// What this process has chosen so far, by [`LayerShape::key`].
pub fn decisions() -> BTreeMap<String, Decision> {
    lock().decisions.clone()
}

/// Logs every decision at info level (one line each).
pub fn log_decisions() {
    for (key, d) in decisions() {
        let timings: Vec<String> = d
            .us_per_frame
            .iter()
            .map(|(k, us)| format!("{k} {us:.1} µs/frame"))
            .collect();
        tracing::info!(
            "recurrent kernel for [{key}]: {} ({:?}{}{})",
            d.kernel,
            d.source,
            if timings.is_empty() { "" } else { "; " },
            timings.join(", ")
        );
    }
}

/// Writes [`decisions`] to `path` as JSON (for the run folder); nothing when there are none.
pub fn write_decisions(path: &Path) -> anyhow::Result<()> {
    let d = decisions();
    if d.is_empty() {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&d)?;
    Ok(shared::atomic::write_atomically(path, |w| {
        w.write_all(text.as_bytes())
    })?)
}

/// The kernel for `shape`: forced by the policy, remembered from earlier in the process, read
/// from the machine's cache file, or measured now with `time` (which runs one candidate on the
/// real segment and returns its wall time) over the `available` candidates.
pub fn choose(
    shape: &LayerShape,
    available: &[RnnKernel],
    frames: i64,
    mut time: impl FnMut(RnnKernel) -> Duration,
) -> RnnKernel {
    let key = shape.key();
    let (policy, cache) = {
        let s = lock();
        if let Some(d) = s.decisions.get(&key) {
            return d.kernel;
        }
        (s.policy, s.cache.clone())
    };
    let forced = match policy {
        KernelPolicy::Auto => None,
        KernelPolicy::Packed => Some(RnnKernel::Packed),
        KernelPolicy::Aten => Some(RnnKernel::Aten),
        KernelPolicy::Addmm => Some(RnnKernel::Addmm),
    };
    let decision = if let Some(k) = forced.filter(|k| available.contains(k)) {
        Decision {
            kernel: k,
            source: Source::Forced,
            us_per_frame: BTreeMap::new(),
        }
    } else if forced.is_some() || available.len() < 2 {
        // a forced kernel that cannot run here (no MKL, CUDA), or nothing to choose from
        Decision {
            kernel: available.first().copied().unwrap_or(RnnKernel::Aten),
            source: Source::Forced,
            us_per_frame: BTreeMap::new(),
        }
    } else if let Some(d) = cache
        .as_deref()
        .and_then(|c| read_cache(c).remove(&key))
        .filter(|d| available.contains(&d.kernel))
    {
        Decision {
            source: Source::Cached,
            ..d
        }
    } else {
        let d = measure(available, frames, &mut time);
        if let Some(c) = cache.as_deref() {
            if let Err(e) = update_cache(c, &key, &d) {
                tracing::warn!(
                    "could not record the kernel choice in {}: {e:#}",
                    c.display()
                );
            }
        }
        d
    };
    let kernel = decision.kernel;
    lock().decisions.insert(key, decision);
    kernel
}

/// One warm-up call of every candidate, then two timed rounds in turn; the best time of each.
fn measure(
    available: &[RnnKernel],
    frames: i64,
    time: &mut impl FnMut(RnnKernel) -> Duration,
) -> Decision {
    for &k in available {
        time(k);
    }
    let mut best: BTreeMap<RnnKernel, Duration> = BTreeMap::new();
    for _ in 0..2 {
        for &k in available {
            let t = time(k);
            best.entry(k).and_modify(|b| *b = (*b).min(t)).or_insert(t);
        }
    }
    let kernel = *best
        .iter()
        .min_by_key(|(_, t)| **t)
        .map(|(k, _)| k)
        .expect("at least two candidates");
    Decision {
        kernel,
        source: Source::Measured,
        us_per_frame: best
            .into_iter()
            .map(|(k, t)| (k, t.as_secs_f64() * 1e6 / frames.max(1) as f64))
            .collect(),
    }
}

/// Times one call of `f`.
pub fn time_call(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// The cache file's decisions (empty when it is missing or unreadable: it is only a shortcut).
fn read_cache(path: &Path) -> BTreeMap<String, Decision> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// Adds one decision to the cache file (read, insert, atomic replace).
fn update_cache(path: &Path, key: &str, d: &Decision) -> anyhow::Result<()> {
    let mut all = read_cache(path);
    all.insert(key.to_string(), d.clone());
    let text = serde_json::to_string_pretty(&all)?;
    Ok(shared::atomic::write_atomically(path, |w| {
        w.write_all(text.as_bytes())
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rows: i64) -> LayerShape {
        LayerShape {
            arch: "lstm",
            rows,
            d_in: 3,
            hidden: 2,
            device: "cpu".into(),
        }
    }

    /// One test runs the process-wide selector through its states in order (the selector is
    /// global, so separate tests would race).
    #[test]
    fn the_fastest_candidate_is_kept_cached_and_forced_policies_skip_timing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("kernels.json");
        lock().cache = Some(cache.clone());
        configure(KernelPolicy::Auto);
        let cost = |k: RnnKernel| match k {
            RnnKernel::Packed => Duration::from_micros(300),
            RnnKernel::Aten => Duration::from_micros(100),
            RnnKernel::Addmm => Duration::from_micros(200),
        };
        let mut calls = 0;
        let k = choose(&shape(8), &RnnKernel::ALL, 10, |k| {
            calls += 1;
            cost(k)
        });
        assert_eq!(k, RnnKernel::Aten);
        assert_eq!(calls, 9, "one warm-up and two timed calls of each of three");
        let d = &decisions()[&shape(8).key()];
        assert_eq!(d.source, Source::Measured);
        assert!((d.us_per_frame[&RnnKernel::Aten] - 10.0).abs() < 1e-9);

        // the same shape again: remembered, nothing timed
        let k = choose(&shape(8), &RnnKernel::ALL, 10, |_| panic!("timed again"));
        assert_eq!(k, RnnKernel::Aten);

        // a new process (decisions forgotten) reads the machine's cache file
        configure(KernelPolicy::Auto);
        let k = choose(&shape(8), &RnnKernel::ALL, 10, |_| panic!("cache not read"));
        assert_eq!(k, RnnKernel::Aten);
        assert_eq!(decisions()[&shape(8).key()].source, Source::Cached);

        // forced: no timing; a forced kernel that is unavailable falls back to one that is
        configure(KernelPolicy::Addmm);
        let k = choose(&shape(4), &RnnKernel::ALL, 10, |_| panic!("timed"));
        assert_eq!(k, RnnKernel::Addmm);
        configure(KernelPolicy::Packed);
        let k = choose(&shape(4), &[RnnKernel::Aten], 10, |_| panic!("timed"));
        assert_eq!(k, RnnKernel::Aten);
        assert_eq!(decisions()[&shape(4).key()].source, Source::Forced);

        let record = dir.path().join("run-kernels.json");
        write_decisions(&record).unwrap();
        let back: BTreeMap<String, Decision> =
            serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
        let key = shape(4).key();
        assert_eq!(back[&key], decisions()[&key]);
        lock().cache = None;
        configure(KernelPolicy::Auto);
    }
}
