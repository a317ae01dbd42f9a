//! The parity fixtures of the backbone tests (`backbones.rs`, `backbones2.rs`, `backbones3.rs`),
//! read one way: a folder under `tests/fixtures/` written by its script in `scripts/fixtures/`,
//! with a `manifest.json` of cases (each a backbone config, PNG images and the file of the
//! reference library's outputs), and the tolerance every parity check uses.
//!
//! Not every test binary uses every reader.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use extractor::backbones::BackboneConfig;
use tch::{Kind, Tensor};

/// One fixture folder.
pub struct Fixtures(pub PathBuf);

impl Fixtures {
    /// `tests/fixtures/<sub>` (`""`: the folder itself).
    pub fn at(sub: &str) -> Fixtures {
        Fixtures(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(sub),
        )
    }

    /// A JSON file of the folder.
    pub fn json(&self, file: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.0.join(file)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The manifest's case `name`.
    pub fn case(&self, name: &str) -> serde_json::Value {
        self.json("manifest.json")["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("fixture case {name} missing from manifest.json"))
            .clone()
    }

    /// The case's backbone config with its weights (and TorchScript) file made absolute.
    pub fn config(&self, case: &serde_json::Value) -> BackboneConfig {
        let mut cfg: BackboneConfig = serde_json::from_value(case["config"].clone()).unwrap();
        cfg.weights = cfg.weights.map(|w| self.0.join(w));
        if let Some(file) = cfg.name.strip_prefix("torchscript:") {
            cfg.name = format!("torchscript:{}", self.0.join(file).display());
        }
        cfg
    }

    /// The case's PNGs decoded with `image` to `[N,3,S,S]` float32 RGB in [0,1].
    pub fn images(&self, case: &serde_json::Value) -> Tensor {
        let batch: Vec<Tensor> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let img = image::open(self.0.join(f.as_str().unwrap()))
                    .unwrap()
                    .to_rgb8();
                let (w, h) = img.dimensions();
                Tensor::from_slice(img.as_raw())
                    .view([h as i64, w as i64, 3])
                    .permute([2, 0, 1])
                    .to_kind(Kind::Float)
                    / 255.0
            })
            .collect();
        Tensor::stack(&batch, 0)
    }

    /// The reference outputs of the case, by name.
    pub fn expected(&self, case: &serde_json::Value) -> HashMap<String, Tensor> {
        let file = self.0.join(case["expected"].as_str().unwrap());
        Tensor::read_safetensors(file)
            .unwrap()
            .into_iter()
            .collect()
    }
}

/// Asserts equal shapes and `max|got - want| <= 1e-4 * max|want|`.
pub fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let err = (got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    eprintln!("{what}: max abs error {err:.3e}, reference scale {scale:.3e}");
    assert!(scale > 0.0, "{what}: reference is all zeros");
    assert!(
        err <= 1e-4 * scale,
        "{what}: max abs error {err} > 1e-4 * {scale}"
    );
}
