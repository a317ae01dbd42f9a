//! Any backbone exported from PyTorch with `torch.jit.trace` / `torch.jit.script`.
//!
//! What it does: loads `torchscript:<file>` with libtorch, in eval mode on the requested device,
//! normalises the [0,1] RGB input with the declared `mean` / `std`, and calls the module's
//! `forward` on `[N,3,S,S]`. The config must declare `input_size`, `mean`, `std` and `out_dim`;
//! they are checked once at load with one dry forward on a zero image (the output must be
//! `[1, out_dim]` or `[1, tokens, out_dim]`, float). `weights_id` is the file's sha256.
//!
//! What it does not: guess the preprocessing (TorchScript files do not record it), or accept
//! separate weights (the file carries its own).

use std::path::PathBuf;

use anyhow::Context as _;
use tch::{CModule, Device, Kind, Tensor};

use super::weights::file_sha256;
use super::{Backbone, BackboneConfig, BackboneMeta, Normalise};

/// A TorchScript module ready to embed face crops.
#[derive(Debug)]
pub struct TorchScript {
    meta: BackboneMeta,
    path: PathBuf,
    norm: Normalise,
    module: CModule,
}

impl TorchScript {
    /// Loads the file named by `cfg.name` (`torchscript:<file>`) on `device` and checks the
    /// declared `input_size` / `out_dim` with one dry forward.
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let path = PathBuf::from(cfg.name.strip_prefix("torchscript:").ok_or_else(|| {
            anyhow::anyhow!("backbone `{}` is not `torchscript:<file>`", cfg.name)
        })?);
        let need = |field: &str| {
            anyhow::anyhow!(
                "backbone `{}`: TorchScript files do not record their preprocessing; declare \
                 `{field}` in the backbone config (input_size, mean, std and out_dim are required)",
                cfg.name
            )
        };
        let input_size = cfg.input_size.ok_or_else(|| need("input_size"))?;
        let mean = cfg.mean.ok_or_else(|| need("mean"))?;
        let std = cfg.std.ok_or_else(|| need("std"))?;
        let out_dim = cfg.out_dim.ok_or_else(|| need("out_dim"))?;
        if input_size == 0 || out_dim <= 0 {
            anyhow::bail!(
                "backbone `{}`: input_size and out_dim must be > 0",
                cfg.name
            );
        }
        let weights_id = format!("sha256:{}", file_sha256(&path)?);
        let mut module = CModule::load_on_device(&path, device).with_context(|| {
            format!(
                "{}: cannot load as TorchScript (save it with torch.jit.trace(model, x).save(path))",
                path.display()
            )
        })?;
        module.set_eval();
        let norm = Normalise::new(mean, std, device)?;
        let s = i64::from(input_size);
        let dry = {
            let _guard = tch::no_grad_guard();
            module.forward_ts(&[norm.apply(&Tensor::zeros([1, 3, s, s], (Kind::Float, device)))])
        }
        .with_context(|| {
            format!(
                "{}: a dry forward on a [1, 3, {s}, {s}] image failed; check `input_size`",
                path.display()
            )
        })?;
        let shape = dry.size();
        let ok = matches!(shape.as_slice(), [1, d] | [1, _, d] if *d == out_dim)
            && matches!(
                dry.kind(),
                Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
            );
        if !ok {
            anyhow::bail!(
                "{}: a dry forward on a [1, 3, {s}, {s}] image gave {:?} {shape:?}, but the config \
                 declares out_dim = {out_dim}; expected a float [1, {out_dim}] or [1, tokens, {out_dim}]",
                path.display(),
                dry.kind()
            );
        }
        let meta = BackboneMeta {
            name: cfg.name.clone(),
            input_size,
            output_shape: shape[1..].iter().map(|&d| d as usize).collect(),
            preprocessing: norm.describe(input_size),
            weights_id,
        };
        Ok(Self {
            meta,
            path,
            norm,
            module,
        })
    }
}

impl Backbone for TorchScript {
    fn meta(&self) -> &BackboneMeta {
        &self.meta
    }
    fn forward(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.module
            .forward_ts(&[self.norm.apply(images)])
            .unwrap_or_else(|e| panic!("{}: TorchScript forward failed: {e}", self.path.display()))
            .to_kind(Kind::Float)
    }
}
