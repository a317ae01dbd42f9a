//! ResNet (torchvision names; timm's `resnet*` names are the same), a generic ImageNet backbone.
//!
//! What it does: torchvision's `resnet18|34|50|101|152` in tch with its parameter names
//! (`conv1`, `bn1`, `layerK.N.{conv1,bn1,conv2,bn2[,conv3,bn3]}`, `layerK.N.downsample.{0,1}`),
//! so torchvision checkpoints (`.pth` state dicts or safetensors) load as they are. timm's
//! `resnet18|34|50|101|152` have exactly the same state-dict names and shapes (checked with timm
//! 1.0.31: `timm.create_model(name).state_dict()` equals torchvision's, key for key), so their
//! checkpoints load too. BasicBlock (two 3x3 convolutions) for 18/34, Bottleneck (1x1, 3x3, 1x1,
//! expansion 4) for 50/101/152, with the stride on the 3x3 convolution (torchvision's "ResNet
//! v1.5"), a 1x1 strided `downsample` convolution + BatchNorm where the shape changes, BatchNorm
//! eps 1e-5. 224x224 RGB with ImageNet mean/std. `output = "pooled"` (default) is the global
//! average pool of the `layer4` output, before `fc` (512-d for 18/34, 2048-d for 50/101/152);
//! `fc.*` in a checkpoint is ignored (never built, never applied). `output = "map"` is the
//! `layer4` output as `[H*W, C]` tokens (`[49, C]` at 224 px). Overrides `layers` (4 block
//! counts), `width` (channels of the first stage, 64; stages use 1x, 2x, 4x, 8x, times 4 for the
//! Bottleneck's output) and `input_size` give small variants through the same code.
//!
//! What it does not: the `fc` classifier, grouped / wide variants (ResNeXt, Wide ResNet:
//! `groups` and `width_per_group` are fixed at torchvision's 1 and 64), or timm's other stems
//! (`resnet50d` and friends have other names and are refused by the strict loader).

use tch::nn::{self, BatchNorm, Conv2D, Module, ModuleT};
use tch::{Device, Tensor};

use super::weights::init_vars;
use super::{
    batch_norm, conv, convs_channels_last, halved_side, open_weights, positive, Backbone,
    BackboneConfig, BackboneMeta, LastMap,
};

/// BatchNorm epsilon of torchvision.
const EPS: f64 = 1e-5;
/// Checkpoint names the backbone does not use: the ImageNet classifier.
const IGNORED: &[&str] = &["fc."];

/// The residual block kind of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3x3 convolutions, output = planes (resnet18, resnet34).
    Basic,
    /// 1x1, 3x3 (strided), 1x1 to 4 x planes (resnet50, resnet101, resnet152).
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// Published block kind and blocks per stage of `name`.
pub fn default_layers(name: &str) -> Option<(BlockKind, [usize; 4])> {
    match name {
        "resnet18" => Some((BlockKind::Basic, [2, 2, 2, 2])),
        "resnet34" => Some((BlockKind::Basic, [3, 4, 6, 3])),
        "resnet50" => Some((BlockKind::Bottleneck, [3, 4, 6, 3])),
        "resnet101" => Some((BlockKind::Bottleneck, [3, 4, 23, 3])),
        "resnet152" => Some((BlockKind::Bottleneck, [3, 8, 36, 3])),
        _ => None,
    }
}

#[derive(Debug)]
struct Block {
    /// (conv, bn) in order: two for Basic, three for Bottleneck; ReLU after all but the last.
    convs: Vec<(Conv2D, BatchNorm)>,
    downsample: Option<(Conv2D, BatchNorm)>,
}

impl Block {
    fn new(p: &nn::Path, kind: BlockKind, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * kind.expansion();
        let cb = |i: usize, c_in: i64, c_out: i64, k: i64, s: i64| {
            (
                conv(&(p / format!("conv{i}")), c_in, c_out, k, s, k / 2),
                batch_norm(&(p / format!("bn{i}")), c_out, EPS, 2),
            )
        };
        let convs = match kind {
            BlockKind::Basic => vec![
                cb(1, inplanes, planes, 3, stride),
                cb(2, planes, planes, 3, 1),
            ],
            BlockKind::Bottleneck => vec![
                cb(1, inplanes, planes, 1, 1),
                cb(2, planes, planes, 3, stride),
                cb(3, planes, out, 1, 1),
            ],
        };
        let downsample = (stride != 1 || inplanes != out).then(|| {
            let d = p / "downsample";
            (
                conv(&(&d / 0), inplanes, out, 1, stride, 0),
                batch_norm(&(&d / 1), out, EPS, 2),
            )
        });
        Self { convs, downsample }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.convs.len() - 1;
        let mut out = x.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            out = b.forward_t(&c.forward(&out), false);
            if i != last {
                out = out.relu_();
            }
        }
        match &self.downsample {
            Some((c, b)) => out += b.forward_t(&c.forward(x), false),
            None => out += x,
        };
        out.relu_()
    }
}

#[derive(Debug)]
struct Net {
    conv1: Conv2D,
    bn1: BatchNorm,
    stages: Vec<Vec<Block>>,
    /// Channels of the last feature map (8 x width x expansion).
    channels: i64,
}

impl Net {
    fn new(p: &nn::Path, kind: BlockKind, layers: &[usize], width: i64) -> Self {
        let mut inplanes = width;
        let mut stages = Vec::with_capacity(layers.len());
        for (k, &n) in layers.iter().enumerate() {
            let planes = width << k;
            let sp = p / format!("layer{}", k + 1);
            let blocks = (0..n)
                .map(|i| {
                    let stride = if i == 0 && k > 0 { 2 } else { 1 };
                    let b = Block::new(&(&sp / i), kind, inplanes, planes, stride);
                    inplanes = planes * kind.expansion();
                    b
                })
                .collect();
            stages.push(blocks);
        }
        Self {
            conv1: conv(&(p / "conv1"), 3, width, 7, 2, 3),
            bn1: batch_norm(&(p / "bn1"), width, EPS, 2),
            stages,
            channels: inplanes,
        }
    }

    /// The last feature map, `[N, C, H, W]`: the `layer4` output.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self
            .bn1
            .forward_t(&self.conv1.forward(x), false)
            .relu_()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x);
            }
        }
        x
    }
}

/// A torchvision ResNet ready to embed face crops.
#[derive(Debug)]
pub struct ResNet {
    vs: nn::VarStore,
    net: Net,
    last: LastMap,
}

impl ResNet {
    /// Builds `cfg` (a `resnet*` name) on `device`, loading `cfg.weights` if set (`fc.*` ignored).
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let (kind, published) = default_layers(&cfg.name)
            .ok_or_else(|| anyhow::anyhow!("`{}` is not a ResNet name", cfg.name))?;
        let layers = cfg.layers.clone().unwrap_or_else(|| published.to_vec());
        if layers.len() != 4 || layers.contains(&0) {
            anyhow::bail!(
                "backbone `{}`: `layers` must be 4 positive block counts, got {layers:?}",
                cfg.name
            );
        }
        let width = positive(cfg, "width", cfg.width.unwrap_or(64))?;
        let input_size = cfg.input_size.unwrap_or(224);
        let input = positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        let (vs, net) = init_vars(
            cfg.seed,
            weights.as_ref(),
            &cfg.name,
            IGNORED,
            device,
            |p| Ok(Net::new(p, kind, &layers, width)),
        )?;
        let last = LastMap::new(
            cfg,
            input_size,
            (net.channels, halved_side(input, 5)),
            "layer4",
            weights.as_ref(),
            device,
        )?;
        convs_channels_last(&vs);
        Ok(Self { vs, net, last })
    }

    /// The `layer4` output of `images` (`[N,3,S,S]` RGB in `[0, 1]`) as `[N, H*W, C]` tokens,
    /// row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        self.last.tokens(images, |x| self.net.map(x))
    }

    /// The `[N, C]` globally average-pooled `layer4` output (the input of torchvision's `fc`),
    /// whatever the configured output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        self.last.pooled(images, |x| self.net.map(x))
    }

    /// The parameters and buffers, by their torchvision names. The convolution weights are
    /// stored channels-last: save with [`super::weights::save_safetensors`].
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for ResNet {
    fn meta(&self) -> &BackboneMeta {
        &self.last.meta
    }
    fn forward(&self, images: &Tensor) -> Tensor {
        self.last.forward(images, |x| self.net.map(x))
    }
}
