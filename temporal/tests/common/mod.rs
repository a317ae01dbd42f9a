//! What the integration tests share: a fixture file written by a script of `scripts/fixtures/`
//! (safetensors tensors plus a JSON `fixture` document in the header's metadata), and running
//! the `temporal` binary.
//!
//! What it does not: compare anything (each test file does, with its tolerance).

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// One fixture file: its tensors by name and its metadata.
pub struct Fixture {
    /// The file's stem (`tests/fixtures/<case>.safetensors`).
    pub case: String,
    /// Every tensor of the file.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `fixture` metadata document.
    pub doc: serde_json::Value,
}

impl Fixture {
    /// Reads `tests/fixtures/<case>.safetensors`, checking that its document is of `format`; a
    /// missing file says to regenerate it with `script` (under `scripts/fixtures/`).
    pub fn read(case: &str, format: &str, script: &str) -> Fixture {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("{case}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with scripts/fixtures/{script}",
                path.display()
            )
        });
        let (_, header) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let meta = header.metadata().as_ref().expect("fixture metadata");
        let doc: serde_json::Value =
            serde_json::from_str(&meta["fixture"]).expect("fixture metadata is JSON");
        assert_eq!(doc["format"], format, "{case}: fixture format");
        let tensors = Tensor::read_safetensors(&path)
            .expect("fixture tensors")
            .into_iter()
            .collect();
        Fixture {
            case: case.to_string(),
            tensors,
            doc,
        }
    }

    /// The tensor `name` (panics naming the fixture when it is missing).
    pub fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", self.case))
    }

    /// The reference state dict (`state.<name>` without the prefix) as a safetensors file (what
    /// `checkpoint::load_strict` reads).
    pub fn state_dict_file(&self, dir: &Path) -> PathBuf {
        let named: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix("state.")
                    .map(|n| (n.to_string(), t.shallow_clone()))
            })
            .collect();
        let path = dir.join(format!("{}.safetensors", self.case));
        Tensor::write_safetensors(&named, &path).expect("write the state dict");
        path
    }

    /// The state-dict names and shapes the reference lists, in its order.
    pub fn names_and_shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.doc["state_dict"]
            .as_array()
            .expect("state_dict list")
            .iter()
            .map(|e| {
                let name = e[0].as_str().unwrap().to_string();
                let shape = e[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_i64().unwrap())
                    .collect();
                (name, shape)
            })
            .collect()
    }
}

/// Runs the `temporal` binary of this build with `args`.
pub fn temporal(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_temporal"))
        .args(args)
        .output()
        .expect("run temporal")
}

/// Runs `temporal` and returns its stdout; panics with its output when it fails.
pub fn temporal_ok(args: &[&str]) -> String {
    let out = temporal(args);
    assert!(
        out.status.success(),
        "temporal {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `temporal` expecting a failure and returns its stderr.
pub fn temporal_err(args: &[&str]) -> String {
    let out = temporal(args);
    assert!(
        !out.status.success(),
        "temporal {} succeeded",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
