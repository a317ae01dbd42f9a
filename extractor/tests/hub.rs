//! `hf:ORG/REPO[@REVISION][:FILE]` weights against a loopback server that answers like the
//! Hugging Face hub (HEAD and GET on `/ORG/REPO/resolve/REV/FILE`, `X-Repo-Commit`,
//! `X-Linked-Etag` = the file's sha256, a redirect to the blob, `X-Error-Code` on 404s): first
//! use downloads into the huggingface_hub cache layout, later uses read the cache without a
//! request; offline, unreachable, missing repo / revision / file and cut downloads are errors
//! that name repo, revision and file and say where to place the file; `extractor extract
//! --backbone vit_b16 --weights hf:timm/...` runs end to end and records the file's sha256.
//!
//! The served file is a small MAE ViT written by the test with timm's names (`norm`, as timm's
//! `vit_base_patch16_224.mae`). The server runs in a thread of the test process on 127.0.0.1
//! and counts its requests; each test has its own server and cache, and the hub settings are
//! passed explicitly ([`Hub::new`]) or to the child process's environment, never set in this
//! process's environment.

use extractor::backbones::hub::{HfSpec, Hub, HubError};
use extractor::backbones::weights::{file_sha256, save_safetensors};
use extractor::backbones::{Backbone, BackboneConfig, Vit, WeightsFile};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tch::{Device, Tensor};

const REPO: &str = "timm/vit_tiny_patch16_32.mae";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One file the fake hub serves.
#[derive(Clone)]
struct Entry {
    repo: String,
    revision: String,
    file: String,
    bytes: Vec<u8>,
    /// Send only this many bytes of the body (a connection cut mid-download).
    cut_at: Option<usize>,
}

struct FakeHub {
    endpoint: String,
    hits: Arc<AtomicUsize>,
}

impl FakeHub {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A server on 127.0.0.1 answering like the hub for `entries`, until the test process ends.
fn serve(entries: Vec<Entry>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = answer(stream, &entries);
        }
    });
    FakeHub { endpoint, hits }
}

fn answer(mut stream: TcpStream, entries: &[Entry]) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let head = method == "HEAD";
    let mut reply = |status: &str, headers: &[(String, String)], body: &[u8], len: usize| {
        let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str(&format!("Content-Length: {len}\r\n\r\n"));
        stream.write_all(r.as_bytes())?;
        if !head {
            stream.write_all(body)?;
        }
        stream.flush()
    };
    let not_found = |code: &str| vec![("X-Error-Code".to_string(), code.to_string())];
    if let Some(sha) = path.strip_prefix("/cdn/") {
        return match entries.iter().find(|e| sha_hex(&e.bytes) == sha) {
            Some(e) => {
                let body = &e.bytes[..e.cut_at.unwrap_or(e.bytes.len())];
                reply("200 OK", &[], body, e.bytes.len())
            }
            None => reply("404 Not Found", &[], b"", 0),
        };
    }
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() != 5 || segs[2] != "resolve" {
        return reply("404 Not Found", &[], b"", 0);
    }
    // A renamed repo: the hub answers with a relative redirect to the new name.
    if segs[0] == "renamed" {
        let to = format!("/timm/{}/resolve/{}/{}", segs[1], segs[3], segs[4]);
        return reply("307 Temporary Redirect", &[("Location".into(), to)], b"", 0);
    }
    let (repo, rev, file) = (format!("{}/{}", segs[0], segs[1]), segs[3], segs[4]);
    let of_repo: Vec<&Entry> = entries.iter().filter(|e| e.repo == repo).collect();
    if of_repo.is_empty() {
        return reply("404 Not Found", &not_found("RepoNotFound"), b"", 0);
    }
    let of_rev: Vec<&&Entry> = of_repo
        .iter()
        .filter(|e| e.revision == rev || rev == COMMIT)
        .collect();
    if of_rev.is_empty() {
        return reply("404 Not Found", &not_found("RevisionNotFound"), b"", 0);
    }
    match of_rev.iter().find(|e| e.file == file) {
        None => reply("404 Not Found", &not_found("EntryNotFound"), b"", 0),
        Some(e) => {
            let sha = sha_hex(&e.bytes);
            let headers = vec![
                ("Location".to_string(), format!("/cdn/{sha}")),
                ("X-Repo-Commit".to_string(), COMMIT.to_string()),
                ("X-Linked-Etag".to_string(), format!("\"{sha}\"")),
                ("X-Linked-Size".to_string(), e.bytes.len().to_string()),
            ];
            reply("302 Found", &headers, b"", 0)
        }
    }
}

/// An endpoint where nothing listens.
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A small MAE ViT (32 px, patch 16, 2 blocks of width 32) as a vit_b16 config.
fn tiny_config() -> BackboneConfig {
    let mut cfg = BackboneConfig::named("vit_b16");
    cfg.embed_dim = Some(32);
    cfg.depth = Some(2);
    cfg.num_heads = Some(2);
    cfg.input_size = Some(32);
    cfg.seed = 5;
    cfg
}

/// The bytes of a small MAE ViT safetensors file with timm's names (`norm`, not `fc_norm`).
fn tiny_mae_bytes(dir: &Path) -> Vec<u8> {
    let mut cfg = tiny_config();
    cfg.seed = 99;
    let vit = Vit::new(&cfg, Device::Cpu).unwrap();
    let ours = dir.join("ours.safetensors");
    save_safetensors(vit.var_store(), &ours).unwrap();
    let renamed: Vec<(String, Tensor)> = Tensor::read_safetensors(&ours)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n.replace("fc_norm.", "norm."), t))
        .collect();
    let timm = dir.join("timm.safetensors");
    Tensor::write_safetensors(&renamed, &timm).unwrap();
    std::fs::read(timm).unwrap()
}

fn entry(repo: &str, file: &str, bytes: &[u8]) -> Entry {
    Entry {
        repo: repo.into(),
        revision: "main".into(),
        file: file.into(),
        bytes: bytes.to_vec(),
        cut_at: None,
    }
}

fn spec(text: &str) -> HfSpec {
    HfSpec::parse(text).expect("an hf: spec").unwrap()
}

fn hub(endpoint: &str, cache: &Path) -> Hub {
    Hub::new(endpoint, cache).progress(false)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_hub_file_is_downloaded_once_into_the_huggingface_cache_layout_then_read_without_a_request() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_mae_bytes(tmp.path());
    let server = serve(vec![entry(REPO, "model.safetensors", &bytes)]);
    let cache = tmp.path().join("hf/hub");
    let hub = hub(&server.endpoint, &cache);

    let path = hub.resolve(&spec(&format!("hf:{REPO}"))).unwrap();
    assert!(server.hits() >= 2, "HEAD and GET, got {}", server.hits());
    let folder = cache.join("models--timm--vit_tiny_patch16_32.mae");
    assert_eq!(
        path,
        folder
            .join("snapshots")
            .join(COMMIT)
            .join("model.safetensors")
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let sha = sha_hex(&bytes);
    assert!(
        path.is_symlink(),
        "a snapshot links to its blob as huggingface_hub does"
    );
    assert_eq!(
        std::fs::read(folder.join("blobs").join(&sha)).unwrap(),
        bytes
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(
        !files_under(&folder)
            .iter()
            .any(|p| p.to_string_lossy().contains("incomplete")),
        "{:?}",
        files_under(&folder)
    );

    let hits = server.hits();
    let again = hub.resolve(&spec(&format!("hf:{REPO}@main"))).unwrap();
    assert_eq!(again, path);
    assert_eq!(server.hits(), hits, "the second use reads the cache only");
    let offline = Hub::new(dead_endpoint(), &cache).offline(true);
    assert_eq!(offline.resolve(&spec(&format!("hf:{REPO}"))).unwrap(), path);
    let by_commit = hub
        .resolve(&spec(&format!("hf:{REPO}@{COMMIT}:model.safetensors")))
        .unwrap();
    assert_eq!(by_commit, path);
    assert_eq!(server.hits(), hits);

    // The weights id recorded in the feature cache is the downloaded file's sha256.
    let w = WeightsFile::open(&path).unwrap();
    assert_eq!(w.weights_id(), format!("sha256:{sha}"));
    assert_eq!(file_sha256(&path).unwrap(), sha);
}

#[test]
fn a_renamed_repo_is_followed_to_its_new_name_on_the_same_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(vec![entry(REPO, "model.safetensors", b"weights")]);
    let hub = hub(&server.endpoint, tmp.path());
    let path = hub
        .resolve(&spec("hf:renamed/vit_tiny_patch16_32.mae"))
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"weights");
    assert!(
        path.starts_with(tmp.path().join("models--renamed--vit_tiny_patch16_32.mae")),
        "cached under the name asked for, as huggingface_hub does: {path:?}"
    );
}

#[test]
fn pytorch_model_bin_is_fetched_when_the_repo_has_no_model_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(vec![entry(
        "org/old-style",
        "pytorch_model.bin",
        b"not really a pickle",
    )]);
    let hub = hub(&server.endpoint, tmp.path());
    let path = hub.resolve(&spec("hf:org/old-style")).unwrap();
    assert!(
        path.ends_with(format!("snapshots/{COMMIT}/pytorch_model.bin")),
        "{path:?}"
    );
    assert_eq!(std::fs::read(path).unwrap(), b"not really a pickle");
}

#[test]
fn an_unreachable_hub_names_repo_revision_and_file_and_where_to_place_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&dead_endpoint(), tmp.path());
    let err = hub
        .resolve(&spec(&format!("hf:{REPO}@v2:weights/model.safetensors")))
        .unwrap_err();
    assert!(matches!(err, HubError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        REPO,
        "v2",
        "weights/model.safetensors",
        "`huggingface-cli download timm/vit_tiny_patch16_32.mae weights/model.safetensors --revision v2`",
    ] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    let folder = tmp.path().join("models--timm--vit_tiny_patch16_32.mae");
    assert!(
        msg.contains(&format!(
            "{}/snapshots/<COMMIT>/weights/model.safetensors",
            folder.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}/refs/v2", folder.display())),
        "{msg}"
    );
    assert!(files_under(tmp.path()).is_empty(), "nothing written");
}

#[test]
fn offline_a_missing_file_is_an_error_sending_no_request_and_a_file_placed_by_hand_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(vec![entry(REPO, "model.safetensors", b"x")]);
    let err = hub(&server.endpoint, tmp.path())
        .offline(true)
        .resolve(&spec(&format!("hf:{REPO}")))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HubError::NotCached { .. }), "{msg}");
    assert!(
        msg.contains(REPO) && msg.contains("main") && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    assert!(
        msg.contains("model.safetensors or pytorch_model.bin"),
        "{msg}"
    );
    assert_eq!(server.hits(), 0);

    // Placed by hand as the error says: found offline.
    let folder = tmp.path().join("models--timm--vit_tiny_patch16_32.mae");
    std::fs::create_dir_all(folder.join("snapshots/local")).unwrap();
    std::fs::write(folder.join("snapshots/local/model.safetensors"), b"by hand").unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), "local").unwrap();
    let path = hub(&server.endpoint, tmp.path())
        .offline(true)
        .resolve(&spec(&format!("hf:{REPO}")))
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"by hand");
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_missing_repo_revision_or_file_is_an_error_naming_which() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(vec![entry(REPO, "model.safetensors", b"x")]);
    let hub = hub(&server.endpoint, tmp.path());

    let err = hub.resolve(&spec("hf:nobody/nothing")).unwrap_err();
    assert!(matches!(err, HubError::RepoNotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("nobody/nothing: no such model repo"),
        "{err}"
    );

    let err = hub.resolve(&spec(&format!("hf:{REPO}@v9"))).unwrap_err();
    assert!(matches!(err, HubError::RevisionNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("no revision `v9`"), "{err}");

    let err = hub
        .resolve(&spec(&format!("hf:{REPO}:other.safetensors")))
        .unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{REPO}@main: no file other.safetensors")),
        "{msg}"
    );
    assert!(msg.contains("huggingface-cli download"), "{msg}");
    assert!(
        !files_under(tmp.path())
            .iter()
            .any(|p| p.to_string_lossy().contains("snapshots")),
        "{:?}",
        files_under(tmp.path())
    );
}

#[test]
fn a_download_cut_short_leaves_no_file_that_looks_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut e = entry(REPO, "model.safetensors", &bytes);
    e.cut_at = Some(40_000);
    let server = serve(vec![e]);
    let hub = hub(&server.endpoint, tmp.path());
    let err = hub.resolve(&spec(&format!("hf:{REPO}"))).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(REPO) && msg.contains("model.safetensors"),
        "{msg}"
    );
    assert!(
        msg.contains("connection broke") || msg.contains("cut short"),
        "{msg}"
    );
    let left = files_under(tmp.path());
    assert!(
        left.iter()
            .all(|p| !p.to_string_lossy().contains("snapshots") && !p.ends_with(sha_hex(&bytes))),
        "{left:?}"
    );
    assert!(
        left.iter()
            .all(|p| !p.to_string_lossy().ends_with(".incomplete")),
        "{left:?}"
    );
}

#[test]
fn extract_with_hf_weights_runs_against_the_loopback_hub_and_records_the_file_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_mae_bytes(tmp.path());
    let server = serve(vec![entry(REPO, "model.safetensors", &bytes)]);
    let data = tmp.path().join("data");
    let colours = [[200u8, 30, 40], [10, 220, 90], [60, 70, 250]];
    for (i, c) in colours.iter().enumerate() {
        let p = data.join(format!("cropped_aligned/vid/{:05}.png", i + 1));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(32, 32, image::Rgb(*c))
            .save(&p)
            .unwrap();
    }
    let config = tmp.path().join("features.toml");
    std::fs::write(
        &config,
        "[sets.vit_b16]\nname = \"vit_b16\"\nembed_dim = 32\ndepth = 2\nnum_heads = 2\ninput_size = 32\n",
    )
    .unwrap();
    let extract = |out: &Path, endpoint: &str, home: &Path, offline: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_extractor"))
            .args(["extract", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(["--backbone", "vit_b16", "--device", "cpu", "--threads", "1"])
            .args(["--weights", &format!("hf:{REPO}")])
            .env("HF_ENDPOINT", endpoint)
            .env("HF_HOME", home)
            .env("HF_HUB_OFFLINE", offline)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .output()
            .unwrap()
    };
    let home = tmp.path().join("hf-home");
    let out = tmp.path().join("cache");
    let run = extract(&out, &server.endpoint, &home, "");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (attrs, feats) =
        shared::cache::read_video(&out.join("vit_b16/vid.h5")).expect("the video's features");
    assert_eq!(attrs.weights, format!("sha256:{}", sha_hex(&bytes)));
    assert_eq!(feats.features.shape(), [3, 32]);

    // The features are those of the served weights (timm's `norm` layout), not of a seed.
    let local = tmp.path().join("local.safetensors");
    std::fs::write(&local, &bytes).unwrap();
    let mut cfg = tiny_config();
    cfg.weights = Some(local);
    let vit = Vit::new(&cfg, Device::Cpu).unwrap();
    let images: Vec<Tensor> = colours
        .iter()
        .map(|c| {
            Tensor::from_slice(&c.map(|v| v as f32 / 255.0))
                .view([1, 3, 1, 1])
                .expand([1, 3, 32, 32], false)
        })
        .collect();
    let want = vit.forward(&Tensor::cat(&images, 0));
    let got = Tensor::from_slice(feats.features.as_slice().unwrap()).view([3, 32]);
    let diff = (got - &want).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "max difference {diff}");
    let seeded = Vit::new(&tiny_config(), Device::Cpu).unwrap();
    let seeded_diff = (seeded.forward(&Tensor::cat(&images, 0)) - &want)
        .abs()
        .max()
        .double_value(&[]);
    assert!(seeded_diff > 1e-3, "the weights file changes the features");

    // With HF_HUB_OFFLINE and no hub, the HF_HOME cache alone gives the same features.
    let out3 = tmp.path().join("cache3");
    let run = extract(&out3, &dead_endpoint(), &home, "1");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (attrs3, feats3) = shared::cache::read_video(&out3.join("vit_b16/vid.h5")).unwrap();
    assert_eq!(attrs3.weights, attrs.weights);
    assert_eq!(feats3.features, feats.features);

    // A run in a fresh HF_HOME with no hub: the failure is named, nothing downloaded.
    let run = extract(
        &tmp.path().join("cache2"),
        &dead_endpoint(),
        &tmp.path().join("empty-home"),
        "",
    );
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(REPO) && err.contains("main") && err.contains("model.safetensors"),
        "{err}"
    );
    assert!(err.contains("cannot download"), "{err}");
    // Offline in a fresh HF_HOME: the same, saying it is offline.
    let run = extract(
        &tmp.path().join("cache4"),
        &server.endpoint,
        &tmp.path().join("empty-home"),
        "1",
    );
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(REPO) && err.contains("HF_HUB_OFFLINE is set"),
        "{err}"
    );
}

#[test]
fn a_hostile_checkpoint_from_the_hub_is_refused_without_running_it() {
    let marker = Path::new("/tmp/affect-toolkit-pth-fixture-was-executed");
    let _ = std::fs::remove_file(marker);
    let tmp = tempfile::tempdir().unwrap();
    let hostile = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth/hostile_reduce.pth"),
    )
    .unwrap();
    let server = serve(vec![entry("evil/model", "pytorch_model.bin", &hostile)]);
    let path = hub(&server.endpoint, tmp.path())
        .resolve(&spec("hf:evil/model"))
        .unwrap();
    let err = WeightsFile::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("posix.system") && msg.contains("Nothing was executed"),
        "{msg}"
    );
    assert!(!marker.exists(), "the hostile payload ran");
}
