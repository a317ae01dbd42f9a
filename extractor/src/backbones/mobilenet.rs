//! MobileNetV2 (torchvision names, or timm's `mobilenetv2_100` names), a light ImageNet backbone.
//!
//! What it does: torchvision's `mobilenet_v2` in tch with its parameter names (`features.0.{0,1}`
//! the stem, `features.K.conv.*` the inverted residual blocks, `features.18.{0,1}` the 1x1 head
//! convolution), so torchvision checkpoints (`.pth` state dicts or safetensors) load as they
//! are: a 3x3 stride-2 stem, the seven stages (expansion t, channels c, repeats n, stride s) of
//! the paper, `[1,16,1,1] [6,24,2,2] [6,32,3,2] [6,64,4,2] [6,96,3,1] [6,160,3,2] [6,320,1,1]`,
//! each block a 1x1 expansion (not when t = 1), a 3x3 depthwise convolution (the stride) and a
//! linear 1x1 projection, each followed by BatchNorm (eps 1e-5) and all but the projection by
//! ReLU6, with a residual connection when the stride is 1 and the channels do not change; then a
//! 1x1 convolution to 1280 channels + BatchNorm + ReLU6. 224x224 RGB with ImageNet mean/std.
//! `output = "pooled"` (default) is the global average pool of that last map (1280-d), before
//! the classifier; `classifier.*` in a checkpoint is ignored. `output = "map"` is the last map as
//! `[H*W, 1280]` tokens (`[49, 1280]` at 224 px).
//!
//! timm's `mobilenetv2_100` is the same network under other names (`conv_stem`, `bn1`,
//! `blocks.S.J.{conv_dw,bn1,conv_pw,bn2}` for the t = 1 block, `blocks.S.J.{conv_pw,bn1,conv_dw,
//! bn2,conv_pwl,bn3}` for the others, `conv_head`, `bn2`, `classifier`); a checkpoint with
//! `conv_stem.weight` is read with those names ([`Naming::Timm`], an explicit map tested against
//! timm 1.0.31's key list), any other with torchvision's.
//!
//! Small variants (a choice of this project, torchvision has no such names): `width` is the stem
//! width, 32 by default, giving torchvision's `width_mult = width / 32` (every stage's channels
//! `c * width_mult` rounded to a multiple of 8 as torchvision's `_make_divisible`; the head stays
//! 1280 below width 32, as torchvision), and `layers` the seven repeat counts `n`.
//!
//! What it does not: other width multipliers' published checkpoints under other names (timm's
//! `mobilenetv2_050|110d|120d|140` are refused by the strict loader unless their names and
//! shapes match), MobileNetV3, or the classifier and its dropout.

use tch::nn::{self, BatchNorm, Conv2D, Module, ModuleT};
use tch::{Device, Tensor};

use super::weights::init_vars;
use super::{
    batch_norm, convs_channels_last, halved_side, open_weights, positive, Backbone, BackboneConfig,
    BackboneMeta, LastMap, WeightsFile,
};

/// BatchNorm epsilon of torchvision and timm.
const EPS: f64 = 1e-5;
/// Checkpoint names the backbone does not use: the ImageNet classifier.
const IGNORED: &[&str] = &["classifier."];
/// The stages `(t, c, n, s)` of MobileNetV2 (expansion, channels, repeats, stride).
pub const STAGES: [(i64, i64, usize, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
/// Stem channels at width multiplier 1.
const STEM: i64 = 32;
/// Head channels at width multiplier 1 (and below).
const HEAD: i64 = 1280;

/// Whose parameter names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// torchvision `mobilenet_v2`: `features.*`.
    TorchVision,
    /// timm `mobilenetv2_100`: `conv_stem`, `blocks.*`, `conv_head`.
    Timm,
}

impl Naming {
    /// timm's names if the file has `conv_stem.weight`, else torchvision's.
    pub fn of(weights: Option<&WeightsFile>) -> Naming {
        match weights {
            Some(w) if w.contains("conv_stem.weight") => Naming::Timm,
            _ => Naming::TorchVision,
        }
    }
}

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8, and not more
/// than 10% below `v`.
fn make_divisible(v: f64) -> i64 {
    let mut n = (((v + 4.0) as i64) / 8 * 8).max(8);
    if (n as f64) < 0.9 * v {
        n += 8;
    }
    n
}

/// A convolution without bias, `padding = kernel / 2`, with `groups`.
fn conv_g(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, groups: i64) -> Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        k,
        nn::ConvConfig {
            stride,
            padding: k / 2,
            groups,
            bias: false,
            ..Default::default()
        },
    )
}

/// The path of a dotted name (`features.1.conv.0.0`) under `p`.
fn dotted<'a>(p: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut parts = name.split('.');
    let first = p.sub(parts.next().unwrap_or_default());
    parts.fold(first, |q, part| q.sub(part))
}

/// conv + BatchNorm, with ReLU6 after it or not.
#[derive(Debug)]
struct ConvBn {
    conv: Conv2D,
    bn: BatchNorm,
    relu6: bool,
}

impl ConvBn {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = self.bn.forward_t(&self.conv.forward(x), false);
        if self.relu6 {
            let _ = y.clamp_(0.0, 6.0);
        }
        y
    }
}

/// The paths of one conv + BatchNorm under either naming.
struct Names {
    conv: String,
    bn: String,
}

#[derive(Debug)]
struct Block {
    layers: Vec<ConvBn>,
    residual: bool,
}

#[derive(Debug)]
struct Net {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    channels: i64,
}

impl Net {
    fn new(p: &nn::Path, naming: Naming, layers: &[usize], width_mult: f64) -> Self {
        let cb =
            |names: Names, c_in: i64, c_out: i64, k: i64, s: i64, g: i64, relu6: bool| ConvBn {
                conv: conv_g(dotted(p, &names.conv), c_in, c_out, k, s, g),
                bn: batch_norm(&dotted(p, &names.bn), c_out, EPS, 2),
                relu6,
            };
        let tv = |conv: String, bn: String| Names { conv, bn };
        let mut c_in = make_divisible(STEM as f64 * width_mult);
        let stem_names = match naming {
            Naming::TorchVision => tv("features.0.0".into(), "features.0.1".into()),
            Naming::Timm => tv("conv_stem".into(), "bn1".into()),
        };
        let stem = cb(stem_names, 3, c_in, 3, 2, 1, true);
        let mut blocks = Vec::new();
        let mut feature = 1;
        for (s, (&(t, c, _, stride), &n)) in STAGES.iter().zip(layers).enumerate() {
            let c_out = make_divisible(c as f64 * width_mult);
            for j in 0..n {
                let stride = if j == 0 { stride } else { 1 };
                let hidden = (c_in as f64 * t as f64).round() as i64;
                let f = format!("features.{feature}.conv");
                let b = format!("blocks.{s}.{j}");
                // (torchvision, timm) names of expansion, depthwise and projection.
                let (expand, dw, project) = match (naming, t != 1) {
                    (Naming::TorchVision, true) => (
                        tv(format!("{f}.0.0"), format!("{f}.0.1")),
                        tv(format!("{f}.1.0"), format!("{f}.1.1")),
                        tv(format!("{f}.2"), format!("{f}.3")),
                    ),
                    (Naming::TorchVision, false) => (
                        tv(String::new(), String::new()),
                        tv(format!("{f}.0.0"), format!("{f}.0.1")),
                        tv(format!("{f}.1"), format!("{f}.2")),
                    ),
                    (Naming::Timm, true) => (
                        tv(format!("{b}.conv_pw"), format!("{b}.bn1")),
                        tv(format!("{b}.conv_dw"), format!("{b}.bn2")),
                        tv(format!("{b}.conv_pwl"), format!("{b}.bn3")),
                    ),
                    (Naming::Timm, false) => (
                        tv(String::new(), String::new()),
                        tv(format!("{b}.conv_dw"), format!("{b}.bn1")),
                        tv(format!("{b}.conv_pw"), format!("{b}.bn2")),
                    ),
                };
                let mut layers = Vec::with_capacity(3);
                if t != 1 {
                    layers.push(cb(expand, c_in, hidden, 1, 1, 1, true));
                }
                layers.push(cb(dw, hidden, hidden, 3, stride, hidden, true));
                layers.push(cb(project, hidden, c_out, 1, 1, 1, false));
                blocks.push(Block {
                    layers,
                    residual: stride == 1 && c_in == c_out,
                });
                c_in = c_out;
                feature += 1;
            }
        }
        let last = make_divisible(HEAD as f64 * width_mult.max(1.0));
        let head_names = match naming {
            Naming::TorchVision => tv(
                format!("features.{feature}.0"),
                format!("features.{feature}.1"),
            ),
            Naming::Timm => tv("conv_head".into(), "bn2".into()),
        };
        let head = cb(head_names, c_in, last, 1, 1, 1, true);
        Self {
            stem,
            blocks,
            head,
            channels: last,
        }
    }

    /// The last feature map, `[N, C, H, W]`: the head convolution + BatchNorm + ReLU6.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self.stem.forward(x);
        for b in &self.blocks {
            let mut y = x.shallow_clone();
            for l in &b.layers {
                y = l.forward(&y);
            }
            x = if b.residual { y + x } else { y };
        }
        self.head.forward(&x)
    }
}

/// A torchvision (or timm) MobileNetV2 ready to embed face crops.
#[derive(Debug)]
pub struct MobileNetV2 {
    vs: nn::VarStore,
    net: Net,
    last: LastMap,
}

impl MobileNetV2 {
    /// Builds `cfg` (`mobilenet_v2` plus overrides) on `device`, loading `cfg.weights` if set
    /// (`classifier.*` ignored; torchvision or timm names, see the module docs).
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let layers = cfg
            .layers
            .clone()
            .unwrap_or_else(|| STAGES.iter().map(|s| s.2).collect());
        if layers.len() != STAGES.len() || layers.contains(&0) {
            anyhow::bail!(
                "backbone `{}`: `layers` must be 7 positive repeat counts (published: \
                 [1, 2, 3, 4, 3, 3, 1]), got {layers:?}",
                cfg.name
            );
        }
        let width = positive(cfg, "width", cfg.width.unwrap_or(STEM))?;
        let width_mult = width as f64 / STEM as f64;
        let input_size = cfg.input_size.unwrap_or(224);
        let input = positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        let naming = Naming::of(weights.as_ref());
        let (vs, net) = init_vars(
            cfg.seed,
            weights.as_ref(),
            &cfg.name,
            IGNORED,
            device,
            |p| Ok(Net::new(p, naming, &layers, width_mult)),
        )?;
        let last = LastMap::new(
            cfg,
            input_size,
            (net.channels, halved_side(input, 5)),
            "head 1x1 conv + BN + ReLU6",
            weights.as_ref(),
            device,
        )?;
        convs_channels_last(&vs);
        Ok(Self { vs, net, last })
    }

    /// The last spatial map of `images` (`[N,3,S,S]` RGB in `[0, 1]`) as `[N, H*W, C]` tokens,
    /// row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        self.last.tokens(images, |x| self.net.map(x))
    }

    /// The `[N, C]` globally average-pooled last map (the classifier's input), whatever the
    /// configured output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        self.last.pooled(images, |x| self.net.map(x))
    }

    /// The parameters and buffers, by their checkpoint's names (torchvision's without one).
    /// The convolution weights are stored channels-last: save with
    /// [`super::weights::save_safetensors`].
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for MobileNetV2 {
    fn meta(&self) -> &BackboneMeta {
        &self.last.meta
    }
    fn forward(&self, images: &Tensor) -> Tensor {
        self.last.forward(images, |x| self.net.map(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_to_multiples_of_8_as_torchvision() {
        // torchvision's _make_divisible(v, 8) for these v.
        assert_eq!(make_divisible(32.0), 32);
        assert_eq!(make_divisible(16.0 * 0.25), 8);
        assert_eq!(make_divisible(24.0 * 0.25), 8);
        assert_eq!(make_divisible(160.0 * 0.25), 40);
        assert_eq!(make_divisible(96.0 * 0.35), 32);
        assert_eq!(make_divisible(1280.0 * 1.4), 1792);
        assert_eq!(make_divisible(60.0), 64);
        assert_eq!(make_divisible(44.0), 48);
        assert_eq!(make_divisible(43.9), 40);
    }
}
