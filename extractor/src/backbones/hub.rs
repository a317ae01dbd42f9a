//! Weights from the Hugging Face hub: `hf:ORG/REPO[@REVISION][:FILE]` resolved to a local file.
//!
//! What it does: [`HfSpec::parse`] reads the spec (default revision `main`; default file
//! `model.safetensors`, else `pytorch_model.bin` when the hub answers that the first does not
//! exist). [`Hub::resolve`] finds the file in the huggingface_hub cache layout
//! (`<cache>/models--ORG--REPO/{blobs/<etag>, snapshots/<commit>/<FILE>, refs/<REVISION>}`), so
//! files Python users downloaded are found and files this tool downloads are found by Python.
//! The cache directory is `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; the server is
//! `HF_ENDPOINT` (default `https://huggingface.co`); `HF_HUB_OFFLINE=1` uses the cache only;
//! `HF_TOKEN` (else `$HF_HOME/token`) is sent as a bearer token for gated or private repos.
//! A download goes to `blobs/<etag>.incomplete` and is renamed when its size (and, for LFS
//! files, whose etag is their sha256, its digest) is checked, then linked from the snapshot
//! folder: a crash never leaves a half file that looks complete. Large downloads show a progress
//! bar on stderr. Processes that download the same file at once (Slurm array tasks sharing
//! HF_HOME) each write their own temporary file; the renames leave one complete blob. Every
//! error names the repo, revision and file, and says where to place the file by hand or which
//! `huggingface-cli download` command fetches it.
//!
//! Choices where huggingface_hub differs or is silent: a file already in the cache for the
//! revision (`refs/<REVISION>` -> snapshot) is used without asking the server whether the branch
//! moved (no network once downloaded; the feature cache records the file's sha256 either way, so
//! a different file cannot silently mix with old features). To pick up a newer commit, pass it
//! as `@REVISION` or delete `refs/<REVISION>`. Plain HTTP over `ureq` is used rather than the
//! `hf-hub` crate, whose current release needs an async runtime.
//!
//! What it does not: upload, list repos, resume a partial download (it starts again), follow
//! `.gitattributes`, or read datasets and spaces (models only).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The public hub, when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Files tried, in order, when the spec names none.
pub const DEFAULT_FILES: &[&str] = &["model.safetensors", "pytorch_model.bin"];
/// Downloads at least this large show a progress bar.
const PROGRESS_MIN_BYTES: u64 = 8 << 20;

/// `hf:ORG/REPO[@REVISION][:FILE]`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfSpec {
    /// `ORG/REPO` (or a bare `REPO`).
    pub repo: String,
    /// Branch, tag or commit (`main` by default).
    pub revision: String,
    /// The file inside the repo, if named (else [`DEFAULT_FILES`]).
    pub file: Option<String>,
}

impl HfSpec {
    /// `None` if `text` does not start with `hf:`, else the spec or an error saying the form.
    pub fn parse(text: &str) -> Option<Result<HfSpec, HubError>> {
        let rest = text.strip_prefix("hf:")?;
        let bad = |why: &str| {
            Some(Err(HubError::Spec {
                spec: text.to_string(),
                why: why.to_string(),
            }))
        };
        let (head, file) = match rest.split_once(':') {
            Some((h, f)) => (h, Some(f)),
            None => (rest, None),
        };
        let (repo, revision) = match head.split_once('@') {
            Some((r, v)) => (r, Some(v)),
            None => (head, None),
        };
        let ok_part = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
            return bad("the repo must be ORG/REPO (letters, digits, `-`, `_`, `.`)");
        }
        if revision.is_some_and(|v| v.is_empty() || v.contains("..") || v.starts_with('/')) {
            return bad("the revision after `@` is empty or not a branch, tag or commit");
        }
        if let Some(f) = file {
            if f.is_empty() || f.starts_with('/') || f.split('/').any(|p| p.is_empty() || p == "..")
            {
                return bad("the file after `:` must be a relative path inside the repo");
            }
        }
        Some(Ok(HfSpec {
            repo: repo.to_string(),
            revision: revision.unwrap_or("main").to_string(),
            file: file.map(str::to_string),
        }))
    }

    /// The files to try, in order.
    fn files(&self) -> Vec<String> {
        match &self.file {
            Some(f) => vec![f.clone()],
            None => DEFAULT_FILES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The spec as written (`hf:ORG/REPO@REV:FILE`).
    pub fn display(&self) -> String {
        let mut s = format!("hf:{}@{}", self.repo, self.revision);
        if let Some(f) = &self.file {
            s.push(':');
            s.push_str(f);
        }
        s
    }
}

/// What was asked for, and where: repo, revision, file(s), server and cache (in every hub error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `ORG/REPO`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// The file, or the files tried (`a or b`).
    pub file: String,
    /// The server.
    pub endpoint: String,
    /// The hub cache directory.
    pub cache: PathBuf,
}

/// Why a hub file could not be had; each names repo, revision and file and says what to do.
#[derive(Debug)]
pub enum HubError {
    /// The spec is malformed.
    Spec {
        /// The text given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// Offline (HF_HUB_OFFLINE) and not in the cache.
    NotCached {
        /// What was asked for.
        at: Box<Wanted>,
    },
    /// The server could not be reached.
    Unreachable {
        /// What was asked for.
        at: Box<Wanted>,
        /// The transport error.
        cause: String,
    },
    /// The repo does not exist (or is private / gated and no token was given).
    RepoNotFound {
        /// What was asked for.
        at: Box<Wanted>,
        /// HTTP status.
        status: u16,
    },
    /// The revision does not exist.
    RevisionNotFound {
        /// What was asked for.
        at: Box<Wanted>,
    },
    /// The file does not exist at that revision.
    FileNotFound {
        /// What was asked for.
        at: Box<Wanted>,
    },
    /// The server answered something else, or the download was cut or corrupt.
    Download {
        /// What was asked for.
        at: Box<Wanted>,
        /// What went wrong.
        why: String,
    },
    /// Writing the cache failed.
    Cache {
        /// What was asked for.
        at: Box<Wanted>,
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |w: &Wanted| hint(&w.repo, &w.revision, &w.file, &w.cache);
        match self {
            HubError::Spec { spec, why } => write!(
                f,
                "`{spec}`: {why}; write hf:ORG/REPO[@REVISION][:FILE], e.g. hf:timm/vit_base_patch16_224.mae"
            ),
            HubError::NotCached { at: w } => write!(
                f,
                "{}@{}: {} is not in the hub cache {} and HF_HUB_OFFLINE is set, so nothing was downloaded.\n{}",
                w.repo, w.revision, w.file, w.cache.display(), tail(w)
            ),
            HubError::Unreachable { at: w, cause } => write!(
                f,
                "{}@{}: cannot download {} from {} ({cause}); the file is not in the hub cache {}. \
                 Check the network or HF_ENDPOINT.\n{}",
                w.repo, w.revision, w.file, w.endpoint, w.cache.display(), tail(w)
            ),
            HubError::RepoNotFound { at: w, status } => write!(
                f,
                "{}: no such model repo on {} (HTTP {status}), looking for {} at revision {}; check \
                 the name, or set HF_TOKEN if the repo is private or gated.\n{}",
                w.repo, w.endpoint, w.file, w.revision, tail(w)
            ),
            HubError::RevisionNotFound { at: w } => write!(
                f,
                "{}: no revision `{}` on {} (looking for {}); use a branch, tag or commit of the repo.\n{}",
                w.repo, w.revision, w.endpoint, w.file, tail(w)
            ),
            HubError::FileNotFound { at: w } => write!(
                f,
                "{}@{}: no file {} in the repo on {}; name the weights file with hf:{}@{}:FILE.\n{}",
                w.repo, w.revision, w.file, w.endpoint, w.repo, w.revision, tail(w)
            ),
            HubError::Download { at: w, why } => write!(
                f,
                "{}@{}: downloading {} from {} failed: {why}.\n{}",
                w.repo, w.revision, w.file, w.endpoint, tail(w)
            ),
            HubError::Cache { at: w, path, cause } => write!(
                f,
                "{}@{}: cannot write {} into the hub cache at {}: {cause}; check HF_HOME / \
                 HF_HUB_CACHE and free space",
                w.repo, w.revision, w.file, path.display()
            ),
        }
    }
}

impl std::error::Error for HubError {}

/// How to get the file without this tool: the exact place in the cache, or the Python CLI.
fn hint(repo: &str, revision: &str, file: &str, cache: &Path) -> String {
    let folder = cache.join(repo_folder(repo));
    let one = file.split(" or ").next().unwrap_or(file);
    format!(
        "To place it by hand: run `huggingface-cli download {repo} {one} --revision {revision}` where \
         there is network, with HF_HOME set as here (then copy that HF_HOME's hub folder to this \
         machine); or copy the file to {}/snapshots/<COMMIT>/{one} and write <COMMIT> (any name, \
         e.g. `local`) into {}/refs/{revision}; or pass the file's own path to --weights.",
        folder.display(),
        folder.display()
    )
}

/// `models--ORG--REPO`, the folder huggingface_hub uses.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

/// A hub endpoint plus a local cache.
#[derive(Debug, Clone)]
pub struct Hub {
    endpoint: String,
    cache: PathBuf,
    offline: bool,
    token: Option<String>,
    progress: bool,
}

impl Hub {
    /// A hub at `endpoint` (e.g. `https://huggingface.co`) caching under `cache` (the `hub`
    /// folder, holding `models--ORG--REPO`), online, without a token.
    pub fn new(endpoint: impl Into<String>, cache: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache: cache.into(),
            offline: false,
            token: None,
            progress: true,
        }
    }

    /// From the environment as huggingface_hub reads it (see the module doc).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// As [`Hub::from_env`], with `var` giving each variable's value (testable without touching
    /// the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let home_dir = || var("HOME").map(PathBuf::from).unwrap_or_default();
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home_dir().join(".cache"))
                .join("huggingface")
        });
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let truthy = |k: &str| {
            var(k).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            })
        };
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        let mut hub = Hub::new(endpoint, cache);
        hub.offline = truthy("HF_HUB_OFFLINE");
        hub.token = token;
        hub.progress = !truthy("HF_HUB_DISABLE_PROGRESS_BARS");
        hub
    }

    /// Uses the cache only (as `HF_HUB_OFFLINE=1`).
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Whether large downloads show a progress bar.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The server.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The hub cache directory (holding `models--ORG--REPO`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Where `file` of `repo` at `commit` lives in the cache.
    pub fn snapshot_path(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.cache
            .join(repo_folder(repo))
            .join("snapshots")
            .join(commit)
            .join(file)
    }

    /// The commit `revision` points to in the cache, if known.
    fn cached_commit(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let r = self
            .cache
            .join(repo_folder(repo))
            .join("refs")
            .join(revision);
        std::fs::read_to_string(r)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains('/') && s != "." && s != "..")
    }

    /// The local path of the spec's file: from the cache, else downloaded into it.
    pub fn resolve(&self, spec: &HfSpec) -> Result<PathBuf, HubError> {
        let files = spec.files();
        let wanted = files.join(" or ");
        if let Some(commit) = self.cached_commit(&spec.repo, &spec.revision) {
            for f in &files {
                let p = self.snapshot_path(&spec.repo, &commit, f);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        if self.offline {
            return Err(HubError::NotCached {
                at: self.wanted(&spec.repo, &spec.revision, &wanted),
            });
        }
        for (i, f) in files.iter().enumerate() {
            match self.download(spec, f, &wanted)? {
                Some(p) => return Ok(p),
                None if i + 1 < files.len() => continue,
                None => {}
            }
        }
        Err(HubError::FileNotFound {
            at: self.wanted(&spec.repo, &spec.revision, &wanted),
        })
    }

    fn wanted(&self, repo: &str, revision: &str, file: &str) -> Box<Wanted> {
        Box::new(Wanted {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
            endpoint: self.endpoint.clone(),
            cache: self.cache.clone(),
        })
    }

    fn agent(&self, redirects: u32) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(redirects)
            .max_redirects_will_error(false)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(None)
            .build()
            .into()
    }

    /// `Ok(None)` when the hub says the file does not exist (so the next default is tried).
    fn download(
        &self,
        spec: &HfSpec,
        file: &str,
        wanted: &str,
    ) -> Result<Option<PathBuf>, HubError> {
        let repo = &spec.repo;
        let rev = &spec.revision;
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            repo,
            encode_path(rev),
            encode_path(file)
        );
        let unreachable = |cause: String| HubError::Unreachable {
            at: self.wanted(repo, rev, wanted),
            cause,
        };
        let failed = |why: String| HubError::Download {
            at: self.wanted(repo, rev, file),
            why,
        };
        let with_auth = |req: ureq::RequestBuilder<ureq::typestate::WithoutBody>| match &self.token
        {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        };
        // HEAD without following redirects: the hub's own answer carries the commit and etag.
        // A relative redirect without a commit (a renamed repo) stays on the hub and is
        // followed, as huggingface_hub does; a redirect to a CDN is not.
        let mut url = url;
        let mut hops = 0;
        let head = loop {
            let head = with_auth(
                self.agent(0)
                    .head(&url)
                    .header("Accept-Encoding", "identity"),
            )
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
            let relative = head
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .filter(|l| l.starts_with('/') && !l.starts_with("//"))
                .map(str::to_string);
            match relative {
                Some(next)
                    if head.status().is_redirection()
                        && !head.headers().contains_key("x-repo-commit")
                        && hops < 5 =>
                {
                    url = format!("{}{next}", self.endpoint);
                    hops += 1;
                }
                _ => break head,
            }
        };
        let status = head.status().as_u16();
        let header = |name: &str| {
            head.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if status == 404 || status == 401 || status == 403 {
            let code = header("x-error-code").unwrap_or_default();
            return match code.as_str() {
                "RepoNotFound" | "GatedRepo" => Err(HubError::RepoNotFound {
                    at: self.wanted(repo, rev, wanted),
                    status,
                }),
                "RevisionNotFound" => Err(HubError::RevisionNotFound {
                    at: self.wanted(repo, rev, wanted),
                }),
                _ if status == 404 => Ok(None),
                _ => Err(HubError::RepoNotFound {
                    at: self.wanted(repo, rev, wanted),
                    status,
                }),
            };
        }
        if !(200..400).contains(&status) {
            return Err(failed(format!("the server answered HTTP {status}")));
        }
        let commit = header("x-repo-commit")
            .filter(|c| is_commit(c))
            .or_else(|| is_commit(rev).then(|| rev.clone()))
            .ok_or_else(|| failed("the server's answer has no X-Repo-Commit header".into()))?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains('/') && !e.contains(".."));
        let size = header("x-linked-size")
            .or_else(|| (status < 300).then(|| header("content-length")).flatten())
            .and_then(|s| s.parse::<u64>().ok());
        let folder = self.cache.join(repo_folder(repo));
        let snapshot = self.snapshot_path(repo, &commit, file);
        let cache_err = |path: &Path, cause: std::io::Error| HubError::Cache {
            at: self.wanted(repo, rev, file),
            path: path.to_path_buf(),
            cause,
        };
        if !snapshot.is_file() {
            let blobs = folder.join("blobs");
            std::fs::create_dir_all(&blobs).map_err(|e| cache_err(&blobs, e))?;
            let blob_name = etag.clone();
            let part = blobs.join(format!(
                "{}.{}.incomplete",
                blob_name.as_deref().unwrap_or("download"),
                std::process::id()
            ));
            let mut resp = with_auth(
                self.agent(10)
                    .get(&url)
                    .header("Accept-Encoding", "identity"),
            )
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
            if resp.status().as_u16() != 200 {
                return Err(failed(format!(
                    "the download answered HTTP {}",
                    resp.status().as_u16()
                )));
            }
            let size = size.or_else(|| {
                resp.headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
            });
            let mut out = std::fs::File::create(&part).map_err(|e| cache_err(&part, e))?;
            let bar = self.progress_bar(size, &format!("{repo}/{file}"));
            let mut hasher = Sha256::new();
            let mut reader = resp.body_mut().as_reader();
            let mut buf = vec![0u8; 1 << 16];
            let mut got: u64 = 0;
            let copied: Result<(), HubError> = loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        break Err(failed(format!(
                            "the connection broke after {got} bytes ({e})"
                        )))
                    }
                };
                if let Err(e) = out.write_all(&buf[..n]) {
                    break Err(cache_err(&part, e));
                }
                hasher.update(&buf[..n]);
                got += n as u64;
                if let Some(b) = &bar {
                    b.set_position(got);
                }
            };
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            let checked = copied.and_then(|()| {
                out.sync_all().map_err(|e| cache_err(&part, e))?;
                let digest = hex::encode(hasher.finalize_reset());
                if let Some(s) = size {
                    if s != got {
                        return Err(failed(format!("expected {s} bytes, received {got} (cut short)")));
                    }
                }
                if let Some(e) = &etag {
                    if e.len() == 64 && e.chars().all(|c| c.is_ascii_hexdigit()) && *e != digest {
                        return Err(failed(format!(
                            "the file's sha256 {digest} differs from the hub's {e} (corrupt download)"
                        )));
                    }
                }
                Ok(digest)
            });
            drop(out);
            let digest = match checked {
                Ok(d) => d,
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            };
            let blob = blobs.join(blob_name.unwrap_or(digest));
            std::fs::rename(&part, &blob).map_err(|e| cache_err(&blob, e))?;
            let dir = snapshot.parent().expect("a snapshot path has a parent");
            std::fs::create_dir_all(dir).map_err(|e| cache_err(dir, e))?;
            link_blob(&blob, &snapshot).map_err(|e| cache_err(&snapshot, e))?;
        }
        if !is_commit(rev) {
            let refs = folder.join("refs").join(rev);
            write_atomic(&refs, commit.as_bytes()).map_err(|e| cache_err(&refs, e))?;
        }
        Ok(Some(snapshot))
    }

    fn progress_bar(&self, size: Option<u64>, what: &str) -> Option<indicatif::ProgressBar> {
        let size = size?;
        if !self.progress || size < PROGRESS_MIN_BYTES {
            return None;
        }
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("download {what}"));
        Some(bar)
    }
}

/// Percent-encodes what a URL path cannot carry as is (keeps `/` between parts).
fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Makes `link` point at `blob`: a relative symlink as huggingface_hub makes, else a copy.
fn link_blob(blob: &Path, link: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(link);
    #[cfg(unix)]
    {
        let depth = link
            .parent()
            .and_then(|p| p.strip_prefix(blob.parent()?.parent()?).ok())
            .map(|rel| rel.components().count())
            .unwrap_or(0);
        if depth > 0 {
            let mut rel = PathBuf::new();
            for _ in 0..depth {
                rel.push("..");
            }
            rel.push("blobs");
            rel.push(blob.file_name().expect("a blob has a name"));
            // Another process (a Slurm array task) may have linked it first: that link is as good.
            if std::os::unix::fs::symlink(&rel, link).is_ok() || link.is_file() {
                return Ok(());
            }
        }
    }
    let tmp = link.with_file_name(format!(
        ".{}.{}.incomplete",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::copy(blob, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("ref"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `path` itself, or for `hf:...` the local file it names (from the cache, else downloaded)
/// using the environment's hub settings ([`Hub::from_env`]).
pub fn resolve_weights(path: &Path) -> Result<PathBuf, HubError> {
    match path.to_str().and_then(HfSpec::parse) {
        None => Ok(path.to_path_buf()),
        Some(spec) => {
            let spec = spec?;
            let local = Hub::from_env().resolve(&spec)?;
            tracing::info!("weights {} -> {}", spec.display(), local.display());
            Ok(local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_bad_ones_say_the_form() {
        assert!(HfSpec::parse("weights/vit.safetensors").is_none());
        let s = HfSpec::parse("hf:timm/vit_base_patch16_224.mae")
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            HfSpec {
                repo: "timm/vit_base_patch16_224.mae".into(),
                revision: "main".into(),
                file: None
            }
        );
        let s = HfSpec::parse("hf:facebook/dinov2-small@v1.0:sub/model.safetensors")
            .unwrap()
            .unwrap();
        assert_eq!(s.revision, "v1.0");
        assert_eq!(s.file.as_deref(), Some("sub/model.safetensors"));
        for bad in [
            "hf:",
            "hf:a/b/c",
            "hf:a/b@",
            "hf:a/b:",
            "hf:a/b:../x",
            "hf:a b/c",
        ] {
            let e = HfSpec::parse(bad).unwrap().unwrap_err().to_string();
            assert!(e.contains("hf:ORG/REPO[@REVISION][:FILE]"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_environment_sets_endpoint_cache_offline_and_token_as_huggingface_hub_does() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let hub = Hub::from_vars(vars(&[("HOME", "/home/u")]));
        assert_eq!(hub.endpoint(), DEFAULT_ENDPOINT);
        assert_eq!(hub.cache_dir(), Path::new("/home/u/.cache/huggingface/hub"));
        assert!(!hub.offline);
        let hub = Hub::from_vars(vars(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/data/hf"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_TOKEN", "secret"),
        ]));
        assert_eq!(hub.endpoint(), "http://127.0.0.1:9");
        assert_eq!(hub.cache_dir(), Path::new("/data/hf/hub"));
        assert!(hub.offline);
        assert_eq!(hub.token.as_deref(), Some("secret"));
        let hub = Hub::from_vars(vars(&[
            ("XDG_CACHE_HOME", "/x"),
            ("HF_HUB_CACHE", "/y/hub"),
        ]));
        assert_eq!(hub.cache_dir(), Path::new("/y/hub"));
        let hub = Hub::from_vars(vars(&[("XDG_CACHE_HOME", "/x")]));
        assert_eq!(hub.cache_dir(), Path::new("/x/huggingface/hub"));
    }
}
