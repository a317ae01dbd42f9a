//! `extractor extract` end to end on generated frames with the `hog` backbone (no weights): a
//! run killed with SIGKILL leaves only complete files and a rerun finishes it into the same bytes
//! as an uninterrupted run; two shards filling one cache give the cache of one process; corrupt,
//! truncated and empty frames are recorded as missing with a reason (and `extractor inspect`
//! reports them); a video file gives as many frames as its frame folder; an unreadable video
//! fails only itself; a rerun with other settings is refused unless `--overwrite`; an unwritable
//! `--out` is a clear error that leaves nothing behind. `--output map` writes a CNN backbone's
//! spatial map as (frames, 49, C) into `<set>-map/` for a built-in name (a set that says
//! `output = "map"` keeps its folder), and is refused for `hog` before anything is written.
//!
//! What it does not: test backbones other than `hog` beyond the shape of their maps, numerical
//! parity with PyTorch (see `extractor/tests/backbones.rs`), or speed.
//!
//! The sample data set and one uninterrupted reference extraction are made once per test process
//! (under cargo's `CARGO_TARGET_TMPDIR`) and shared; tests that change frames work on copies.

use shared::cache::{self, CacheAttrs, Dtype, VideoFeatures};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tests::{binary, run, run_ok, workspace_root};

/// Feature-set (and cache folder) name used everywhere.
const SET: &str = "hog";

/// HOG dimension at the default 112 px input and 16 px cells: 7 x 7 cells, 6 x 6 blocks of
/// 2 x 2 cells with 9 bins each: 36 * 36.
const DIM_CELL16: usize = 6 * 6 * 4 * 9;

/// With 8 px cells: 14 x 14 cells, 13 x 13 blocks: 169 * 36.
const DIM_CELL8: usize = 13 * 13 * 4 * 9;

/// The shared data: a generated sample data set and its uninterrupted extraction.
struct Sample {
    /// This test process's folder of shared data.
    root: PathBuf,
    /// Data root (holds `cropped_aligned/`).
    data: PathBuf,
    /// Cache made by one uninterrupted `extract` run with [`extract_args`] on `data`.
    reference: PathBuf,
    /// Video ids, sorted.
    videos: Vec<String>,
}

/// Made on first use: 6 videos of 36 to 84 frames, extracted once into the reference cache.
fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let root = fixture_root();
        let data = root.join("data");
        run_ok(
            "extractor",
            &[
                "sample-data",
                "--out",
                s(&data),
                "--videos",
                "6",
                "--frames",
                "60",
                "--seed",
                "11",
            ],
        );
        let mut videos: Vec<String> = fs::read_dir(data.join("cropped_aligned"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        videos.sort();
        assert_eq!(videos.len(), 6, "{videos:?}");
        let reference = root.join("reference");
        run_ok("extractor", &strs(&extract_args(&data, &reference)));
        Sample {
            root,
            data,
            reference,
            videos,
        }
    })
}

/// A folder for this process's shared data, `<CARGO_TARGET_TMPDIR>/extractor_cli/<pid>`; folders
/// of earlier test processes that have exited are removed first.
fn fixture_root() -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("extractor_cli");
    if let Ok(entries) = fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let alive = Path::new("/proc").join(&name).exists();
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let root = parent.join(std::process::id().to_string());
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    root
}

/// A path as the `&str` the helpers take.
fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The arguments of every hog extraction here (small batches, one thread: slow enough to kill).
fn extract_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "extract",
        "--data",
        s(data),
        "--out",
        s(out),
        "--backbone",
        SET,
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// `args` as the `&[&str]` that [`run`] and [`run_ok`] take.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Start `extractor` with `args` in the workspace root, output captured.
fn spawn(args: &[&str]) -> std::process::Child {
    Command::new(binary("extractor"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start extractor")
}

/// Panic with the output unless the process succeeded; return its stdout.
fn check_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the files of a folder, sorted (empty if the folder does not exist).
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The `*.h5` files of a feature-set folder, sorted by name.
fn h5_files(set_dir: &Path) -> Vec<String> {
    file_names(set_dir)
        .into_iter()
        .filter(|n| n.ends_with(".h5"))
        .collect()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(base).unwrap().to_path_buf());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The `<video>.h5` names of all sample videos.
fn all_h5(sample: &Sample) -> Vec<String> {
    sample.videos.iter().map(|v| format!("{v}.h5")).collect()
}

/// `<video>.h5` for every video that `shared::cache::list_videos` lists.
fn listed(cache_dir: &Path) -> Vec<String> {
    cache::list_videos(cache_dir, SET)
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|v| format!("{v}.h5"))
        .collect()
}

/// Both caches hold exactly the files `names` for [`SET`], byte for byte the same.
fn assert_same_bytes(got: &Path, want: &Path, names: &[String]) {
    for name in names {
        let a = fs::read(got.join(SET).join(name))
            .unwrap_or_else(|e| panic!("{}/{SET}/{name}: {e}", got.display()));
        let b = fs::read(want.join(SET).join(name)).unwrap();
        assert!(a == b, "{name}: differs from the uninterrupted run's file");
    }
}

/// Read one video of a cache.
fn read(cache_dir: &Path, video: &str) -> (CacheAttrs, VideoFeatures) {
    let path = cache_dir.join(SET).join(format!("{video}.h5"));
    cache::read_video(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The feature row of `frame` in `v` (panics if the frame is not there).
fn row(v: &VideoFeatures, frame: i32) -> &[f32] {
    let i = v
        .frames
        .iter()
        .position(|&f| f == frame)
        .unwrap_or_else(|| panic!("frame {frame} not in the cache"));
    let d = v.features.shape()[1];
    &v.features.as_slice().expect("standard layout")[i * d..(i + 1) * d]
}

/// The numbered frame files of a frame folder, sorted by number.
fn frame_files(dir: &Path) -> Vec<(i32, PathBuf)> {
    let mut frames: Vec<(i32, PathBuf)> = file_names(dir)
        .into_iter()
        .map(|n| (n.trim_end_matches(".jpg").parse().unwrap(), dir.join(n)))
        .collect();
    frames.sort();
    frames
}

/// Copy the frame folder of a sample video to `<to>/<video>/`.
fn copy_video(sample: &Sample, video: &str, to: &Path) -> PathBuf {
    let src = sample.data.join("cropped_aligned").join(video);
    let dst = to.join(video);
    fs::create_dir_all(&dst).unwrap();
    for name in file_names(&src) {
        fs::copy(src.join(&name), dst.join(&name)).unwrap();
    }
    dst
}

/// What an interrupted run left behind.
enum Attempt {
    /// Killed by SIGKILL with this many complete videos (at least one, fewer than all).
    Killed(usize),
    /// The run ended (or completed every video) before the kill could interrupt it.
    Finished,
}

/// Start an extraction into `cache`, SIGKILL it once a video is complete and, if the polling
/// catches one, while another is being written (else at half way), and check
/// what it left: every `*.h5` reads back and equals the uninterrupted run's file, other files
/// are temporary files, and `list_videos` lists exactly the complete files.
fn kill_mid_run(sample: &Sample, cache_dir: &Path) -> Attempt {
    let set_dir = cache_dir.join(SET);
    let mut child = Command::new(binary("extractor"))
        .args(extract_args(&sample.data, cache_dir))
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if child.try_wait().unwrap().is_some() {
            return Attempt::Finished;
        }
        // Kill while a file is being written if the polling catches one, else at half way.
        let names = file_names(&set_dir);
        let complete = names.iter().filter(|n| n.ends_with(".h5")).count();
        let writing = names.len() > complete;
        if complete >= 1 && (writing || 2 * complete >= sample.videos.len()) {
            child.kill().unwrap();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run wrote too little in 300 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = child.wait().unwrap();
    if status.signal() != Some(9) {
        return Attempt::Finished;
    }
    let complete = h5_files(&set_dir);
    if complete.len() == sample.videos.len() {
        return Attempt::Finished;
    }
    for name in file_names(&set_dir) {
        if !name.ends_with(".h5") {
            assert!(
                cache::is_temp_file(&set_dir.join(&name)),
                "{name}: neither a complete file nor a temporary one"
            );
        }
    }
    for name in &complete {
        cache::read_video(&set_dir.join(name))
            .unwrap_or_else(|e| panic!("a file left by the killed run is damaged: {e}"));
    }
    assert_same_bytes(cache_dir, &sample.reference, &complete);
    assert_eq!(
        listed(cache_dir),
        complete,
        "list_videos must list only complete files"
    );
    Attempt::Killed(complete.len())
}

#[test]
fn killed_run_then_rerun_equals_uninterrupted_run() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let mut killed = None;
    for attempt in 0..3 {
        let cache_dir = dir.path().join(format!("cache-{attempt}"));
        if let Attempt::Killed(n) = kill_mid_run(sample, &cache_dir) {
            eprintln!(
                "attempt {attempt}: killed with {n} complete videos and {} temporary files",
                cache::list_temp_files(&cache_dir, SET).unwrap().len()
            );
            killed = Some((cache_dir, n));
            break;
        }
    }
    let (cache_dir, complete) =
        killed.expect("three runs finished before they could be killed mid-run");
    let total = sample.videos.len();
    let out = run_ok("extractor", &strs(&extract_args(&sample.data, &cache_dir)));
    assert!(
        out.contains(&format!("{} videos written", total - complete))
            && out.contains(&format!("{complete} already cached")),
        "the rerun must skip the {complete} complete videos and write the others:\n{out}"
    );
    assert_eq!(h5_files(&cache_dir.join(SET)), all_h5(sample));
    assert_eq!(listed(&cache_dir), all_h5(sample));
    assert_same_bytes(&cache_dir, &sample.reference, &all_h5(sample));
}

#[test]
fn two_concurrent_shards_fill_one_cache_like_one_process() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let children: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            let mut args = extract_args(&sample.data, &cache_dir);
            args.extend(["--shard".to_string(), shard.to_string()]);
            spawn(&strs(&args))
        })
        .collect();
    for (child, shard) in children.into_iter().zip(["0/2", "1/2"]) {
        let out = check_ok(
            &format!("shard {shard}"),
            &child.wait_with_output().unwrap(),
        );
        // 6 videos dealt round-robin: 3 each.
        assert!(out.contains("3 videos written"), "shard {shard}: {out}");
    }
    assert_eq!(h5_files(&cache_dir.join(SET)), all_h5(sample));
    assert!(cache::list_temp_files(&cache_dir, SET).unwrap().is_empty());
    assert_same_bytes(&cache_dir, &sample.reference, &all_h5(sample));
}

/// A copy of the first sample video with four damaged frames, extracted.
struct Damaged {
    /// The cache.
    cache: PathBuf,
    /// The video id.
    video: String,
    /// Frame numbers of the intact frame files.
    intact: Vec<i32>,
    /// Damaged frames: (number, what was done) in frame order.
    damaged: Vec<(i32, &'static str)>,
    /// Standard output and error of the run.
    output: Output,
}

/// Made once: frame files 4, 11, 21 and 31 (by position) of the first video replaced by text,
/// by a JPEG start marker followed by garbage, by the first half of the file, and by nothing.
fn damaged() -> &'static Damaged {
    static DAMAGED: OnceLock<Damaged> = OnceLock::new();
    DAMAGED.get_or_init(|| {
        let sample = sample();
        let dir = sample.root.join("damaged");
        let video = sample.videos[0].clone();
        let frames_dir = copy_video(sample, &video, &dir.join("frames"));
        let files = frame_files(&frames_dir);
        assert!(files.len() > 31, "{} frames", files.len());
        let garbage: Vec<u8> = b"this is not an image at all. ".repeat(40);
        let mut soi_garbage = vec![0xFF, 0xD8, 0xFF, 0xE0];
        soi_garbage.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
        let (n3, p3) = &files[3];
        fs::write(p3, &garbage).unwrap();
        let (n10, p10) = &files[10];
        fs::write(p10, &soi_garbage).unwrap();
        let (n20, p20) = &files[20];
        let bytes = fs::read(p20).unwrap();
        fs::write(p20, &bytes[..bytes.len() / 2]).unwrap();
        let (n30, p30) = &files[30];
        fs::write(p30, b"").unwrap();
        let damaged = vec![
            (*n3, "garbage"),
            (*n10, "jpeg-garbage"),
            (*n20, "truncated"),
            (*n30, "zero-byte"),
        ];
        let bad: Vec<i32> = damaged.iter().map(|d| d.0).collect();
        let intact = files
            .iter()
            .map(|f| f.0)
            .filter(|n| !bad.contains(n))
            .collect();
        let cache_dir = dir.join("cache");
        let output = run(
            "extractor",
            &strs(&extract_args(&dir.join("frames"), &cache_dir)),
        );
        Damaged {
            cache: cache_dir,
            video,
            intact,
            damaged,
            output,
        }
    })
}

#[test]
fn corrupt_truncated_and_empty_frames_are_missing_with_a_reason() {
    let d = damaged();
    let stdout = check_ok("extract with damaged frames", &d.output);
    assert!(stdout.contains("4 missing"), "{stdout}");
    let (_, v) = read(&d.cache, &d.video);
    assert_eq!(v.frames, d.intact, "every intact frame is embedded");
    assert_eq!(v.features.shape(), &[d.intact.len(), DIM_CELL16]);
    let missing: Vec<i32> = v.missing.iter().map(|m| m.frame).collect();
    let want: Vec<i32> = d.damaged.iter().map(|x| x.0).collect();
    assert_eq!(missing, want);
    for (m, (_, what)) in v.missing.iter().zip(&d.damaged) {
        let reason = m.reason.to_lowercase();
        assert!(!reason.trim().is_empty(), "frame {}: no reason", m.frame);
        match *what {
            "truncated" => assert!(reason.contains("truncat"), "{what}: {reason}"),
            "zero-byte" => assert!(
                reason.contains("zero") || reason.contains("empty"),
                "{what}: {reason}"
            ),
            _ => {}
        }
    }
    // The rows belong to their frames: the same features as the undamaged reference video.
    let (_, reference) = read(&sample().reference, &d.video);
    for &f in &d.intact {
        assert_eq!(row(&v, f), row(&reference, f), "frame {f}");
    }
}

#[test]
fn inspect_reports_missing_frames_and_reasons() {
    let d = damaged();
    check_ok("extract with damaged frames", &d.output);
    let (_, v) = read(&d.cache, &d.video);
    let json = run_ok("extractor", &["inspect", s(&d.cache), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sets = report.as_array().expect("one object per feature set");
    assert_eq!(sets.len(), 1, "{json}");
    let hog = &sets[0];
    assert_eq!(hog["backbone"], SET);
    assert_eq!(hog["videos"], 1);
    assert_eq!(hog["frames"], d.intact.len());
    assert_eq!(hog["dim"], DIM_CELL16);
    assert_eq!(hog["missing_frames"], 4);
    let mut want = serde_json::Map::new();
    for m in &v.missing {
        let n = want.get(&m.reason).and_then(|c| c.as_u64()).unwrap_or(0);
        want.insert(m.reason.clone(), (n + 1).into());
    }
    assert_eq!(hog["missing_reasons"], serde_json::Value::Object(want));
    assert_eq!(hog["incomplete_files"], serde_json::json!([]));
    assert_eq!(hog["unreadable"], serde_json::json!([]));

    let table = run_ok("extractor", &["inspect", s(&d.cache)]);
    assert!(table.contains("4 missing frames"), "{table}");
    for m in &v.missing {
        assert!(table.contains(&m.reason), "{table}");
    }
}

#[test]
fn video_file_gives_the_frame_count_of_its_folder() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    // The longest video; its frames renumbered 1..n (frames without a face have no file).
    let video = sample
        .videos
        .iter()
        .max_by_key(|v| file_names(&sample.data.join("cropped_aligned").join(v)).len())
        .unwrap();
    let files = frame_files(&sample.data.join("cropped_aligned").join(video));
    let seq = dir.path().join("seq");
    fs::create_dir_all(&seq).unwrap();
    for (i, (_, path)) in files.iter().enumerate() {
        fs::copy(path, seq.join(format!("{:05}.jpg", i + 1))).unwrap();
    }
    let videos = dir.path().join("videos");
    fs::create_dir_all(&videos).unwrap();
    let mp4 = videos.join(format!("{video}.mp4"));
    let ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-framerate", "25", "-i"])
        .arg(seq.join("%05d.jpg"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&mp4)
        .output()
        .expect("ffmpeg (make setup installs it)");
    check_ok("ffmpeg", &ffmpeg);

    let from_video = dir.path().join("cache");
    run_ok("extractor", &strs(&extract_args(&videos, &from_video)));
    let (attrs, v) = read(&from_video, video);
    let n = files.len() as i32;
    assert_eq!(v.frames, (1..=n).collect::<Vec<_>>(), "one row per frame");
    assert!(v.missing.is_empty(), "{:?}", v.missing);
    assert_eq!(v.features.shape(), &[files.len(), DIM_CELL16]);
    assert!(
        attrs.source.ends_with(&format!("{video}.mp4")),
        "{}",
        attrs.source
    );
    // The same faces in the same order: video row i matches the folder's i-th frame better, on
    // average, than the frame k places away, for every small shift k (an off-by-one in frame
    // numbering or a dropped first frame would make a shift win).
    let (_, reference) = read(&sample.reference, video);
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum();
        let norm = |x: &[f32]| x.iter().map(|v| f64::from(v * v)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let mean_cos = |shift: i32| {
        let pairs: Vec<f64> = (0..n)
            .filter(|i| (0..n).contains(&(i + shift)))
            .map(|i| {
                let folder_frame = files[(i + shift) as usize].0;
                cos(row(&v, i + 1), row(&reference, folder_frame))
            })
            .collect();
        pairs.iter().sum::<f64>() / pairs.len() as f64
    };
    let aligned = mean_cos(0);
    for shift in (-5..=5).filter(|&k| k != 0) {
        let shifted = mean_cos(shift);
        assert!(
            shifted < aligned,
            "rows shifted by {shift} match better ({shifted}) than aligned rows ({aligned})"
        );
    }
}

#[test]
fn unreadable_video_fails_alone_and_the_others_are_cached() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = &sample.videos[..2];
    for v in good {
        copy_video(sample, v, &data);
    }
    fs::write(
        data.join("broken.mp4"),
        b"\x00\x00\x00\x18ftypmp42 but nothing after it".repeat(20),
    )
    .unwrap();
    let cache_dir = dir.path().join("cache");
    let out = run("extractor", &strs(&extract_args(&data, &cache_dir)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken video must fail the run");
    // The final error: how many failed, that the others are cached, and each failed video.
    let at = stderr
        .rfind("\nerror: ")
        .unwrap_or_else(|| panic!("no error message:\n{stderr}"));
    let error = &stderr[at..];
    assert!(
        error.contains("1 videos could not be read")
            && error.contains("the others are cached")
            && error.contains("hog/broken:")
            && error.contains("broken.mp4"),
        "{stderr}"
    );
    let listed: Vec<String> = cache::list_videos(&cache_dir, SET)
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(listed, good);
    for v in good {
        let (_, got) = read(&cache_dir, v);
        let (_, want) = read(&sample.reference, v);
        assert_eq!(got.frames, want.frames);
        assert_eq!(got.features, want.features);
    }
}

#[test]
fn rerun_with_other_settings_is_refused_unless_overwrite() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let cfg16 = dir.path().join("cell16.toml");
    let cfg8 = dir.path().join("cell8.toml");
    fs::write(&cfg16, "[sets.hog]\nname = \"hog\"\n").unwrap();
    fs::write(&cfg8, "[sets.hog]\nname = \"hog\"\nhog_cell = 8\n").unwrap();
    let cache_dir = dir.path().join("cache");
    let videos = format!("{},{}", sample.videos[0], sample.videos[1]);
    let args = |cfg: &Path, extra: &[&str]| -> Vec<String> {
        let mut a = extract_args(&sample.data, &cache_dir);
        a.extend(["--config", s(cfg), "--videos", &videos].map(String::from));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let names: Vec<String> = sample.videos[..2]
        .iter()
        .map(|v| format!("{v}.h5"))
        .collect();
    run_ok("extractor", &strs(&args(&cfg16, &[])));
    assert_eq!(h5_files(&cache_dir.join(SET)), names);
    let before: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(cache_dir.join(SET).join(n)).unwrap())
        .collect();
    let (old, _) = read(&cache_dir, &sample.videos[0]);
    assert_eq!(old.dim, DIM_CELL16);

    let out = run("extractor", &strs(&args(&cfg8, &[])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let after: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(cache_dir.join(SET).join(n)).unwrap())
        .collect();
    assert!(before == after, "a refused run must not change the cache");
    assert_eq!(
        file_names(&cache_dir.join(SET)),
        names,
        "nothing else written"
    );

    run_ok("extractor", &strs(&args(&cfg8, &["--overwrite"])));
    assert_eq!(file_names(&cache_dir.join(SET)), names);
    let (new, v) = read(&cache_dir, &sample.videos[0]);
    assert_eq!(new.dim, DIM_CELL8);
    assert_eq!(v.features.shape()[1], DIM_CELL8);
    let (_, reference) = read(&sample.reference, &sample.videos[0]);
    assert_eq!(v.frames, reference.frames);
    let (new1, _) = read(&cache_dir, &sample.videos[1]);
    assert_eq!(new1.dim, DIM_CELL8, "every file is replaced");

    // The refusal named the file and both settings, and said how to go on.
    let err = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    let file = cache_dir.join(SET).join(format!("{}.h5", sample.videos[0]));
    assert!(err.contains(s(&file)), "{stderr}");
    assert!(
        err.contains(&DIM_CELL16.to_string()) && err.contains(&DIM_CELL8.to_string()),
        "{stderr}"
    );
    assert!(
        err.contains(&old.preprocessing) && err.contains(&new.preprocessing),
        "{stderr}"
    );
    assert!(err.contains("--overwrite"), "{stderr}");
}

#[test]
fn unwritable_output_is_a_clear_error_and_leaves_no_file() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_video(sample, &sample.videos[0], &data);
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, "a regular file").unwrap();
    let before = tree(dir.path());
    let out_dir = blocker.join("cache");
    let out = run("extractor", &strs(&extract_args(&data, &out_dir)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let err = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    assert!(
        err.contains(s(&out_dir)),
        "the error names the output: {stderr}"
    );
    assert!(err.contains("Not a directory"), "{stderr}");
    assert_eq!(tree(dir.path()), before, "no file left behind");
    assert_eq!(fs::read_to_string(&blocker).unwrap(), "a regular file");
}

/// A small DenseNet feature set that asks for its map itself: growth 8, one layer per block, 16
/// stem channels: 16+8 = 24 -> 12, 12+8 = 20 -> 10, 10+8 = 18 -> 9, 9+8 = 17 channels.
const TINY_DENSE: &str = "[sets.tiny-dense]\nname = \"densenet121\"\ngrowth = 8\n\
                          block_config = [1, 1, 1, 1]\ninit_features = 16\nnum_classes = 0\n\
                          output = \"map\"\n";

#[test]
fn output_map_writes_49_tokens_per_frame_into_a_map_folder() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("features.toml");
    fs::write(&cfg, TINY_DENSE).unwrap();
    let cache_dir = dir.path().join("cache");
    let video = &sample.videos[0];
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "extract",
            "--config",
            s(&cfg),
            "--data",
            s(&sample.data),
            "--out",
            s(&cache_dir),
            "--videos",
            video,
            "--batch-size",
            "16",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let stdout = run_ok(
        "extractor",
        &strs(&args(&[
            "--backbone",
            "iresnet18",
            "--backbone",
            "tiny-dense",
            "--output",
            "map",
        ])),
    );
    // The built-in name gets a `-map` folder; the set already writes its map: its own name.
    assert_eq!(file_names(&cache_dir), ["iresnet18-map", "tiny-dense"]);
    assert!(
        stdout.contains(s(&cache_dir.join("iresnet18-map"))),
        "{stdout}"
    );
    let (_, reference) = read(&sample.reference, video);
    let read_set = |set: &str| {
        cache::read_video(&cache_dir.join(set).join(format!("{video}.h5")))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for (set, backbone, channels) in [
        ("iresnet18-map", "iresnet18", 512),
        ("tiny-dense", "densenet121", 17),
    ] {
        let (attrs, v) = read_set(set);
        assert_eq!(
            v.features.shape(),
            [reference.frames.len(), 49, channels],
            "{set}"
        );
        assert_eq!(v.frames, reference.frames, "{set}");
        assert_eq!(attrs.backbone, backbone);
        assert_eq!(attrs.dim, channels);
        assert_eq!(
            attrs.dtype,
            Dtype::F16,
            "{set}: token features are float16 by default"
        );
        assert!(
            attrs.preprocessing.contains("spatial map 7x7 tokens"),
            "{set}: {}",
            attrs.preprocessing
        );
        // The tokens of a frame differ (a map, not one vector repeated).
        let all = v.features.as_slice().expect("standard layout");
        assert_ne!(
            all[..channels],
            all[24 * channels..25 * channels],
            "{set}: tokens 0 and 24 of frame 0"
        );
    }

    // `extractor inspect` shows what the folder holds.
    let json: serde_json::Value =
        serde_json::from_str(&run_ok("extractor", &["inspect", "--json", s(&cache_dir)])).unwrap();
    let ires = json
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backbone"] == "iresnet18-map")
        .unwrap_or_else(|| panic!("{json}"));
    assert!(
        ires["preprocessing"]
            .as_str()
            .unwrap()
            .contains("spatial map 7x7 tokens"),
        "{ires}"
    );

    // The set's pooled output goes to its own folder, and is the mean of the map's tokens.
    run_ok(
        "extractor",
        &strs(&args(&["--backbone", "tiny-dense", "--output", "pooled"])),
    );
    assert_eq!(
        file_names(&cache_dir),
        ["iresnet18-map", "tiny-dense", "tiny-dense-pooled"]
    );
    let (attrs, pooled) = read_set("tiny-dense-pooled");
    assert_eq!(pooled.features.shape(), [reference.frames.len(), 17]);
    assert!(!attrs.preprocessing.contains("spatial map"));
    assert_eq!(attrs.dtype, Dtype::F32, "vectors stay float32");
    let (_, map) = read_set("tiny-dense");
    let map = map.features.as_slice().expect("standard layout");
    let pooled = pooled.features.as_slice().expect("standard layout");
    // The map is stored as float16 (relative rounding 2^-11 per value).
    let mut diff = 0f32;
    for (i, want) in pooled.iter().enumerate() {
        let (frame, c) = (i / 17, i % 17);
        let tokens = (0..49).map(|t| map[(frame * 49 + t) * 17 + c]);
        let scale = tokens.clone().map(f32::abs).fold(1.0, f32::max);
        let mean = tokens.sum::<f32>() / 49.0;
        diff = diff.max((mean - want).abs() / scale);
    }
    assert!(diff <= 1e-3, "mean of the map tokens vs pooled: {diff}");

    // A ViT's patch tokens: `--output tokens`, into `<set>-tokens`, float16 unless --dtype.
    fs::write(
        &cfg,
        format!(
            "{TINY_DENSE}[sets.tiny-vit]\nname = \"vit_b16\"\nembed_dim = 16\ndepth = 1\n\
             num_heads = 2\ninput_size = 32\n"
        ),
    )
    .unwrap();
    run_ok(
        "extractor",
        &strs(&args(&["--backbone", "tiny-vit", "--output", "tokens"])),
    );
    let (attrs, tokens) = read_set("tiny-vit-tokens");
    assert_eq!(tokens.features.shape(), [reference.frames.len(), 4, 16]);
    assert_eq!(
        (attrs.backbone.as_str(), attrs.dtype),
        ("vit_b16", Dtype::F16)
    );
    let f32_dir = dir.path().join("cache32");
    let mut a = args(&[
        "--backbone",
        "tiny-vit",
        "--output",
        "tokens",
        "--dtype",
        "f32",
    ]);
    let at = a.iter().position(|x| x == "--out").unwrap();
    a[at + 1] = s(&f32_dir).to_string();
    run_ok("extractor", &strs(&a));
    let (attrs, _) =
        cache::read_video(&f32_dir.join("tiny-vit-tokens").join(format!("{video}.h5"))).unwrap();
    assert_eq!(attrs.dtype, Dtype::F32, "--dtype f32 wins");
}

#[test]
fn output_map_with_hog_is_an_error_naming_the_backbone_and_what_to_use() {
    let sample = sample();
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let out = run(
        "extractor",
        &[
            "extract",
            "--data",
            s(&sample.data),
            "--out",
            s(&cache_dir),
            "--backbone",
            "hog",
            "--output",
            "map",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let err = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("");
    assert!(
        err.contains("feature set \"hog\" with --output map")
            && err.contains("backbone `hog` has no spatial feature map"),
        "{stderr}"
    );
    assert!(
        err.contains("drop `--output map`") && err.contains("densenet*"),
        "says what to use instead: {stderr}"
    );
    assert!(!cache_dir.exists(), "nothing written: {stderr}");
}

#[test]
fn extract_help_documents_the_output_flag() {
    let help = run_ok("extractor", &["extract", "--help"]);
    assert!(help.contains("--output <pooled|map|tokens>"), "{help}");
    assert!(help.contains("iresnet50-map"), "{help}");
    assert!(
        help.contains("[49, 512]") && help.contains("[49, 1024]"),
        "{help}"
    );
    assert!(
        help.contains("Possible values:")
            && help.contains("- pooled:")
            && help.contains("- map:")
            && help.contains("- tokens:"),
        "{help}"
    );
    // The short help lists the values too.
    let short = run_ok("extractor", &["extract", "-h"]);
    // Words as clap wraps them to the terminal width.
    let short = short.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(short.contains("--output <pooled|map|tokens>"), "{short}");
    assert!(
        short.contains("possible values: pooled, map, tokens"),
        "{short}"
    );
}
