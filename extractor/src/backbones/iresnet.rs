//! IResNet (insightface arcface_torch), the face-recognition backbone of the ABAW reference.
//!
//! What it does: the arcface_torch `iresnet18|34|50|100` in tch, with its parameter names
//! (`conv1`, `bn1`, `prelu`, `layerK.N.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0,downsample.1}`,
//! `bn2`, `fc`, `features`), so arcface_torch checkpoints converted to safetensors load as they
//! are. 112x112 RGB, normalised with mean 0.5 / std 0.5, to a 512-d embedding (the BatchNorm1d
//! `features` output). Overrides `layers`, `width` (first-stage channels) and `input_size` give
//! small variants; with weights, the embedding size comes from `fc.weight`. With `output = "map"`
//! it returns instead the last spatial feature map, the `bn2` output that `fc` reads flattened,
//! as `[H*W, C]` tokens per frame (`[49, 512]` at 112 px); `fc` and `features` are still built
//! and loaded (the same checkpoint serves both outputs, and `out_dim` still means the embedding).
//!
//! What it does not: the fp16 autocast of arcface_torch (it computes in float32), or the margin
//! heads used in training.

use tch::nn::{self, BatchNorm, Conv2D, Linear, Module, ModuleT};
use tch::{Device, Tensor};

use super::weights::init_vars;
use super::{
    batch_norm, channels_last, check_out_dim, conv, convs_channels_last, map_description,
    map_tokens, normalised_meta, open_weights, positive, Backbone, BackboneConfig, BackboneMeta,
    Normalise, Output,
};

/// BatchNorm epsilon of arcface_torch.
const EPS: f64 = 1e-5;

/// Published blocks per stage of `name`.
pub fn default_layers(name: &str) -> Option<[usize; 4]> {
    match name {
        "iresnet18" => Some([2, 2, 2, 2]),
        "iresnet34" => Some([3, 4, 6, 3]),
        "iresnet50" => Some([3, 4, 14, 3]),
        "iresnet100" => Some([3, 13, 30, 3]),
        _ => None,
    }
}

#[derive(Debug)]
struct Block {
    bn1: BatchNorm,
    conv1: Conv2D,
    bn2: BatchNorm,
    prelu: Tensor,
    conv2: Conv2D,
    bn3: BatchNorm,
    downsample: Option<(Conv2D, BatchNorm)>,
}

impl Block {
    fn new(p: &nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let downsample = (stride != 1 || inplanes != planes).then(|| {
            let d = p / "downsample";
            (
                conv(&(&d / 0), inplanes, planes, 1, stride, 0),
                batch_norm(&(&d / 1), planes, EPS, 2),
            )
        });
        Self {
            bn1: batch_norm(&(p / "bn1"), inplanes, EPS, 2),
            conv1: conv(&(p / "conv1"), inplanes, planes, 3, 1, 1),
            bn2: batch_norm(&(p / "bn2"), planes, EPS, 2),
            prelu: (p / "prelu").var("weight", &[planes], nn::Init::Const(0.25)),
            conv2: conv(&(p / "conv2"), planes, planes, 3, stride, 1),
            bn3: batch_norm(&(p / "bn3"), planes, EPS, 2),
            downsample,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward_t(x, false);
        let out = self.bn2.forward_t(&self.conv1.forward(&out), false);
        let out = self.conv2.forward(&out.prelu(&self.prelu));
        let mut out = self.bn3.forward_t(&out, false);
        match &self.downsample {
            Some((c, b)) => out += b.forward_t(&c.forward(x), false),
            None => out += x,
        };
        out
    }
}

#[derive(Debug)]
struct Net {
    conv1: Conv2D,
    bn1: BatchNorm,
    prelu: Tensor,
    stages: Vec<Vec<Block>>,
    bn2: BatchNorm,
    fc: Linear,
    features: BatchNorm,
    /// Side of the last feature map (input side halved by each of the 4 stages, rounded up).
    side: i64,
    /// Channels of the last feature map (8 x `width`).
    channels: i64,
}

impl Net {
    fn new(p: &nn::Path, layers: &[usize], width: i64, input: i64, out: i64) -> Self {
        let mut inplanes = width;
        let mut stages = Vec::with_capacity(4);
        let mut side = input;
        for (k, &n) in layers.iter().enumerate() {
            let planes = width << k;
            let sp = p / format!("layer{}", k + 1);
            let mut blocks = Vec::with_capacity(n);
            for i in 0..n {
                let stride = if i == 0 { 2 } else { 1 };
                blocks.push(Block::new(&(&sp / i), inplanes, planes, stride));
                inplanes = planes;
            }
            side = (side - 1) / 2 + 1;
            stages.push(blocks);
        }
        Self {
            conv1: conv(&(p / "conv1"), 3, width, 3, 1, 1),
            bn1: batch_norm(&(p / "bn1"), width, EPS, 2),
            prelu: (p / "prelu").var("weight", &[width], nn::Init::Const(0.25)),
            stages,
            bn2: batch_norm(&(p / "bn2"), inplanes, EPS, 2),
            fc: nn::linear(p / "fc", inplanes * side * side, out, Default::default()),
            features: batch_norm(&(p / "features"), out, EPS, 1),
            side,
            channels: inplanes,
        }
    }

    /// The last feature map, `[N, C, side, side]`: the `bn2` output.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self
            .bn1
            .forward_t(&self.conv1.forward(x), false)
            .prelu(&self.prelu);
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x);
            }
        }
        self.bn2.forward_t(&x, false)
    }

    /// The embedding of a [`Net::map`] output: flatten (over C, H, W), `fc`, `features`.
    fn embed(&self, map: &Tensor) -> Tensor {
        let x = map.flatten(1, -1);
        self.features.forward_t(&self.fc.forward(&x), false)
    }
}

/// An arcface_torch IResNet ready to embed face crops.
#[derive(Debug)]
pub struct IResNet {
    meta: BackboneMeta,
    norm: Normalise,
    vs: nn::VarStore,
    net: Net,
    output: Output,
}

impl IResNet {
    /// Builds `cfg` (an `iresnet*` name) on `device`, loading `cfg.weights` if set.
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let layers = match &cfg.layers {
            Some(l) => l.clone(),
            None => default_layers(&cfg.name)
                .ok_or_else(|| anyhow::anyhow!("`{}` is not an IResNet name", cfg.name))?
                .to_vec(),
        };
        if layers.len() != 4 || layers.contains(&0) {
            anyhow::bail!(
                "backbone `{}`: `layers` must be 4 positive block counts, got {layers:?}",
                cfg.name
            );
        }
        let width = positive(cfg, "width", cfg.width.unwrap_or(64))?;
        let input_size = cfg.input_size.unwrap_or(112);
        let input = positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        let from_file = weights
            .as_ref()
            .and_then(|w| w.shape("fc.weight"))
            .map(|s| s[0]);
        let out_dim = positive(cfg, "out_dim", from_file.or(cfg.out_dim).unwrap_or(512))?;
        check_out_dim(cfg, out_dim)?;
        let (vs, net) = init_vars(cfg.seed, weights.as_ref(), &cfg.name, &[], device, |p| {
            Ok(Net::new(p, &layers, width, input, out_dim))
        })?;
        let output = cfg.output();
        let (side, channels) = (net.side, net.channels);
        let output_shape = match output {
            Output::Pooled => vec![out_dim as usize],
            Output::Map | Output::Tokens => vec![(side * side) as usize, channels as usize],
        };
        let (norm, mut meta) = normalised_meta(
            cfg,
            ([0.5; 3], [0.5; 3]),
            input_size,
            output_shape,
            weights.as_ref(),
            device,
        )?;
        if output == Output::Map {
            meta.preprocessing = format!(
                "{}; {}",
                meta.preprocessing,
                map_description(side, side, "bn2")
            );
        }
        convs_channels_last(&vs);
        Ok(Self {
            meta,
            norm,
            vs,
            net,
            output,
        })
    }

    /// The last spatial feature map (the `bn2` output) of `images` (`[N,3,S,S]` RGB in [0,1]) as
    /// `[N, H*W, C]` tokens, row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        map_tokens(&self.net.map(&channels_last(&self.norm.apply(images))))
    }

    /// The `[N, out_dim]` embedding of `images`, whatever the configured output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.net
            .embed(&self.net.map(&channels_last(&self.norm.apply(images))))
    }

    /// The parameters and buffers, by their arcface_torch names. The convolution weights are
    /// stored channels-last: save with [`super::weights::save_safetensors`].
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for IResNet {
    fn meta(&self) -> &BackboneMeta {
        &self.meta
    }
    fn forward(&self, images: &Tensor) -> Tensor {
        match self.output {
            Output::Pooled => self.forward_pooled(images),
            Output::Map | Output::Tokens => self.forward_map(images),
        }
    }
}
