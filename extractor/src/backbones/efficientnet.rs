//! EfficientNet-B0 and -B2 (timm names; torchvision checkpoints load through a name map), the
//! architecture of the HSEmotion affect models.
//!
//! What it does: the EfficientNet of Tan & Le (2019) as timm's `efficientnet_b0` /
//! `efficientnet_b2` build it, in tch with timm's parameter names: `conv_stem` (3x3 stride 2),
//! `bn1` + SiLU, blocks `blocks.I.J`: stage 0 depthwise-separable (`conv_dw`, `bn1` + SiLU,
//! `se.conv_reduce` / `se.conv_expand`, `conv_pw`, `bn2`), the others inverted residual
//! (`conv_pw` expansion x6, `bn1` + SiLU, `conv_dw` k x k, `bn2` + SiLU, `se`, `conv_pwl`, `bn3`),
//! with the input added when the stride is 1 and the width unchanged; then `conv_head` 1x1,
//! `bn2` + SiLU, global average pool, `classifier`. Squeeze-excitation: spatial mean,
//! `conv_reduce` (to a quarter of the block's INPUT width, as both timm and torchvision size it),
//! SiLU, `conv_expand`, sigmoid gate. B0's stage table (expansion, kernel, stride, width,
//! repeats: 1,3,1,16,1 / 6,3,2,24,2 / 6,5,2,40,2 / 6,3,2,80,3 / 6,5,1,112,3 / 6,5,2,192,4 /
//! 6,3,1,320,1; stem 32, head 1280); B2 scales widths by 1.1 (rounded to multiples of 8, never
//! below 90%: stem 32, head 1408) and repeats by 1.2 (rounded up). With weights, every block's
//! widths and kernel come from the checkpoint (the strides are the table's), so other multipliers
//! load too (sizes that differ from the published ones are logged at info level); every tensor
//! must then be used, with its shape.
//!
//! timm vs torchvision: for `efficientnet_b0` / `efficientnet_b2` the two libraries compute the
//! same function (BatchNorm eps 1e-5, symmetric padding `(k - 1) / 2`, the same SE width,
//! stochastic depth and dropout off at inference); `scripts/fixtures/backbone3_fixture.py` checks
//! it on the same weights. A file with `features.0.0.weight` is read as torchvision's layout
//! (`features.0.{0,1}`, `features.S.J.block.K...`, `features.8.{0,1}`, `classifier.1`) and
//! renamed with [`torchvision_to_timm`]. The classifier in a file is ignored.
//!
//! Input: 224 px for B0 and 260 px for B2 (the paper's B2 resolution, and HSEmotion's
//! `enet_b2` input; torchvision's B2 weights were evaluated at 288 px and timm's
//! `efficientnet_b2` at 256 / 288: set `input_size` for those), ImageNet mean/std.
//! Output `pooled`: the global average pool of `bn2` + SiLU, the classifier's input (1280 for
//! B0, 1408 for B2); `map`: that map as `[H*W, C]` tokens (`[49, 1280]` for B0 at 224 px,
//! `[81, 1408]` for B2 at 260 px).
//!
//! TensorFlow ports: `tf_efficientnet_b0` / `tf_efficientnet_b2` are timm's models of the same
//! names (the ones the HSEmotion models were fine-tuned from, `tf_efficientnet_b0_ns` /
//! `tf_efficientnet_b2_ns`): the same parameters, names and shapes, but TensorFlow's "SAME"
//! padding (stride-2 convolutions pad `max((ceil(s / stride) - 1) * stride + k - s, 0)` pixels,
//! the smaller half on the top / left, computed from the input side at run time; stride-1 ones
//! pad symmetrically) and BatchNorm eps 1e-3. A checkpoint cannot tell the two apart, so the
//! backbone NAME chooses: load TF-ported weights (HSEmotion's included) as `tf_efficientnet_b*`.
//! There is no torchvision equivalent of these; torchvision-named files still load.
//!
//! What it does not: EfficientNetV2, or B1 / B3-B7 (the code would run them; only B0 and B2
//! are published here).

use std::collections::BTreeMap;

use tch::nn::{self, BatchNorm, Conv2D, Module, ModuleT};
use tch::{Device, Tensor};

use super::mapped::load_mapped;
use super::weights::{init_vars, WeightsFile};
use super::{
    batch_norm, channels_last, convs_channels_last, halved_side, open_weights, positive, Backbone,
    BackboneConfig, BackboneMeta, LastMap,
};

/// BatchNorm epsilon of timm's and torchvision's `efficientnet_b*`.
const EPS: f64 = 1e-5;
/// BatchNorm epsilon of timm's `tf_efficientnet_b*` (TensorFlow's default).
const EPS_TF: f64 = 1e-3;
/// Native-name prefixes of checkpoint tensors the backbone ignores (the classifier).
const IGNORED: &[&str] = &["classifier."];
/// B0's stages: expansion ratio, kernel, stride of the first block, output width, repeats.
const B0_STAGES: [(i64, i64, i64, i64, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];
/// torchvision's index of the head convolution in `features` (after the stem and 7 stages).
const TV_HEAD: usize = B0_STAGES.len() + 1;

/// The two block types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// timm `DepthwiseSeparableConv` (torchvision MBConv with expansion 1): no `conv_pw`
    /// expansion; `conv_pw` is the projection.
    DepthwiseSeparable,
    /// timm `InvertedResidual` (torchvision MBConv with expansion > 1).
    InvertedResidual,
}

/// One block's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSpec {
    /// Block type.
    pub kind: BlockKind,
    /// Input width.
    pub c_in: i64,
    /// Width of the depthwise convolution (the input width for depthwise-separable blocks).
    pub c_mid: i64,
    /// Output width.
    pub c_out: i64,
    /// Depthwise kernel side (3 or 5).
    pub kernel: i64,
    /// Depthwise stride.
    pub stride: i64,
    /// Squeeze-excitation width (`se.conv_reduce` outputs); 0 for none.
    pub se: i64,
}

/// An EfficientNet's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfficientNetSpec {
    /// Stem width.
    pub stem: i64,
    /// Blocks, stage by stage.
    pub stages: Vec<Vec<BlockSpec>>,
    /// Head width: the pooled size and the map's token width.
    pub head: i64,
}

/// timm's `make_divisible(v, 8)` (torchvision's `_make_divisible` is the same): the nearest
/// multiple of 8, at least 8, raised by 8 if it falls below 90% of `v`.
fn make_divisible(v: f64) -> i64 {
    let mut n = (((v + 4.0) / 8.0).floor() as i64 * 8).max(8);
    if (n as f64) < 0.9 * v {
        n += 8;
    }
    n
}

/// The sizes B0's table gives with `width` and `depth` multipliers (B0: 1.0, 1.0; B2: 1.1, 1.2).
pub fn scaled(width: f64, depth: f64) -> EfficientNetSpec {
    let stem = make_divisible(32.0 * width);
    let mut c_in = stem;
    let stages = B0_STAGES
        .iter()
        .map(|&(expand, kernel, stride, c, repeats)| {
            let c_out = make_divisible(c as f64 * width);
            let n = (repeats as f64 * depth).ceil() as usize;
            (0..n)
                .map(|j| {
                    let block = BlockSpec {
                        kind: if expand == 1 {
                            BlockKind::DepthwiseSeparable
                        } else {
                            BlockKind::InvertedResidual
                        },
                        c_in,
                        c_mid: if expand == 1 {
                            c_in
                        } else {
                            make_divisible((c_in * expand) as f64)
                        },
                        c_out,
                        kernel,
                        stride: if j == 0 { stride } else { 1 },
                        se: (c_in / 4).max(1),
                    };
                    c_in = c_out;
                    block
                })
                .collect()
        })
        .collect();
    EfficientNetSpec {
        stem,
        stages,
        head: make_divisible(1280.0 * width),
    }
}

/// The published sizes of `name` (`efficientnet_b0|b2`, `tf_efficientnet_b0|b2`), its input
/// side, and whether it is a TensorFlow port ("SAME" padding, BatchNorm eps 1e-3).
pub fn published(name: &str) -> Option<(EfficientNetSpec, u32, bool)> {
    let tf = name.starts_with("tf_");
    match name.strip_prefix("tf_").unwrap_or(name) {
        "efficientnet_b0" => Some((scaled(1.0, 1.0), 224, tf)),
        "efficientnet_b2" => Some((scaled(1.1, 1.2), 260, tf)),
        _ => None,
    }
}

/// Which library's parameter names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// timm's (`conv_stem`, `blocks.0.0.conv_dw`, `conv_head`, `classifier`): the native names.
    Timm,
    /// torchvision's (`features.0.0`, `features.1.0.block.0.0`, `classifier.1`).
    Torchvision,
}

impl Layout {
    /// torchvision's if the file has `features.0.0.weight`, else timm's.
    pub fn detect(file: &WeightsFile) -> Layout {
        if file.contains("features.0.0.weight") {
            Layout::Torchvision
        } else {
            Layout::Timm
        }
    }
}

/// The timm name of a torchvision EfficientNet parameter, `None` if it has none.
/// `expanding(s, j)` says whether block `features.s.j` has an expansion convolution (its
/// `block` has four parts, not three); see [`torchvision_expanding_blocks`].
///
/// `features.0.{0,1}` -> `conv_stem`, `bn1`; `features.8.{0,1}` -> `conv_head`, `bn2`;
/// `classifier.1` -> `classifier`; `features.S.J.block` (S from 1) -> `blocks.(S-1).J`: with
/// expansion `0.0` `conv_pw`, `0.1` `bn1`, `1.0` `conv_dw`, `1.1` `bn2`, `2.fc1`
/// `se.conv_reduce`, `2.fc2` `se.conv_expand`, `3.0` `conv_pwl`, `3.1` `bn3`; without, `0.0`
/// `conv_dw`, `0.1` `bn1`, `1.fc1` / `1.fc2` the SE, `2.0` `conv_pw`, `2.1` `bn2`.
pub fn torchvision_to_timm(name: &str, expanding: &dyn Fn(usize, usize) -> bool) -> Option<String> {
    let (module, leaf) = name.rsplit_once('.')?;
    if module == "classifier.1" {
        return Some(format!("classifier.{leaf}"));
    }
    let rest = module.strip_prefix("features.")?;
    let (s, rest) = rest.split_once('.')?;
    let s: usize = s.parse().ok()?;
    let top = match (s, rest) {
        (0, "0") => Some("conv_stem"),
        (0, "1") => Some("bn1"),
        (TV_HEAD, "0") => Some("conv_head"),
        (TV_HEAD, "1") => Some("bn2"),
        (0, _) | (TV_HEAD, _) => return None,
        _ => None,
    };
    if let Some(t) = top {
        return Some(format!("{t}.{leaf}"));
    }
    if s > B0_STAGES.len() {
        return None;
    }
    let (j, part) = rest.split_once('.')?;
    let j: usize = j.parse().ok()?;
    let part = part.strip_prefix("block.")?;
    let timm = if expanding(s, j) {
        match part {
            "0.0" => "conv_pw",
            "0.1" => "bn1",
            "1.0" => "conv_dw",
            "1.1" => "bn2",
            "2.fc1" => "se.conv_reduce",
            "2.fc2" => "se.conv_expand",
            "3.0" => "conv_pwl",
            "3.1" => "bn3",
            _ => return None,
        }
    } else {
        match part {
            "0.0" => "conv_dw",
            "0.1" => "bn1",
            "1.fc1" => "se.conv_reduce",
            "1.fc2" => "se.conv_expand",
            "2.0" => "conv_pw",
            "2.1" => "bn2",
            _ => return None,
        }
    };
    Some(format!("blocks.{}.{j}.{timm}.{leaf}", s - 1))
}

/// The blocks `(s, j)` of a torchvision-named key list that have an expansion convolution
/// (a `features.s.j.block.3.*` tensor).
pub fn torchvision_expanding_blocks<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeSet<(usize, usize)> {
    names
        .into_iter()
        .filter_map(|n| {
            let rest = n.strip_prefix("features.")?;
            let mut it = rest.split('.');
            let s = it.next()?.parse().ok()?;
            let j = it.next()?.parse().ok()?;
            (it.next()? == "block" && it.next()? == "3").then_some((s, j))
        })
        .collect()
}

/// The file's tensor shapes under timm names (torchvision names renamed; unmappable ones
/// dropped).
fn native_shapes(file: &WeightsFile, layout: Layout) -> BTreeMap<String, Vec<i64>> {
    let expanding = torchvision_expanding_blocks(file.tensors().keys().map(String::as_str));
    file.tensors()
        .iter()
        .filter_map(|(name, meta)| {
            let native = match layout {
                Layout::Timm => Some(name.clone()),
                Layout::Torchvision => {
                    torchvision_to_timm(name, &|s, j| expanding.contains(&(s, j)))
                }
            };
            native.map(|n| (n, meta.shape.clone()))
        })
        .collect()
}

/// The sizes a checkpoint's tensors (by timm name) imply; `None` without a stem, a head, or
/// with other than B0's 7 stages.
pub fn spec_from_shapes(shapes: &BTreeMap<String, Vec<i64>>) -> Option<EfficientNetSpec> {
    let dim = |name: &str, i: usize| shapes.get(name).and_then(|s| s.get(i).copied());
    let stem = dim("conv_stem.weight", 0)?;
    let head = dim("conv_head.weight", 0)?;
    let mut stages = Vec::new();
    for (i, &(_, _, stride, _, _)) in B0_STAGES.iter().enumerate() {
        let mut blocks = Vec::new();
        for j in 0.. {
            let t = |part: &str| format!("blocks.{i}.{j}.{part}");
            let Some(kernel) = dim(&t("conv_dw.weight"), 2) else {
                break;
            };
            let se = dim(&t("se.conv_reduce.weight"), 0).unwrap_or(0);
            let stride = if j == 0 { stride } else { 1 };
            blocks.push(if shapes.contains_key(&t("conv_pwl.weight")) {
                BlockSpec {
                    kind: BlockKind::InvertedResidual,
                    c_in: dim(&t("conv_pw.weight"), 1)?,
                    c_mid: dim(&t("conv_pw.weight"), 0)?,
                    c_out: dim(&t("conv_pwl.weight"), 0)?,
                    kernel,
                    stride,
                    se,
                }
            } else {
                let c_in = dim(&t("conv_dw.weight"), 0)?;
                BlockSpec {
                    kind: BlockKind::DepthwiseSeparable,
                    c_in,
                    c_mid: c_in,
                    c_out: dim(&t("conv_pw.weight"), 0)?,
                    kernel,
                    stride,
                    se,
                }
            });
        }
        if blocks.is_empty() {
            return None;
        }
        stages.push(blocks);
    }
    if shapes.contains_key(&format!("blocks.{}.0.conv_dw.weight", B0_STAGES.len())) {
        return None;
    }
    Some(EfficientNetSpec { stem, stages, head })
}

/// A convolution with symmetric padding `(k - 1) / 2`, or with none when `same_pad` (the
/// caller pads; see [`Padded`]).
#[allow(clippy::too_many_arguments)]
fn conv2d(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    groups: i64,
    bias: bool,
    same_pad: bool,
) -> Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        kernel,
        nn::ConvConfig {
            stride,
            padding: if same_pad { 0 } else { (kernel - 1) / 2 },
            groups,
            bias,
            ..Default::default()
        },
    )
}

/// The total TensorFlow "SAME" padding of one side `size` for a `kernel` / `stride`
/// convolution: `max((ceil(size / stride) - 1) * stride + kernel - size, 0)`.
pub fn same_padding(size: i64, kernel: i64, stride: i64) -> i64 {
    (((size + stride - 1) / stride - 1) * stride + kernel - size).max(0)
}

/// A strided convolution that pads like TensorFlow ("SAME", the extra pixel at the bottom /
/// right) when `same` is set, else symmetrically inside the convolution.
#[derive(Debug)]
struct Padded {
    conv: Conv2D,
    kernel: i64,
    stride: i64,
    same: bool,
}

impl Padded {
    #[allow(clippy::too_many_arguments)]
    fn new(
        p: &nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        groups: i64,
        tf: bool,
    ) -> Self {
        // Stride 1 with an odd kernel: "SAME" is the symmetric padding (timm pads statically).
        let same = tf && stride > 1;
        Self {
            conv: conv2d(p, c_in, c_out, kernel, stride, groups, false, same),
            kernel,
            stride,
            same,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.same {
            return self.conv.forward(x);
        }
        let (_, _, h, w) = x.size4().expect("a feature map is [N, C, H, W]");
        let ph = same_padding(h, self.kernel, self.stride);
        let pw = same_padding(w, self.kernel, self.stride);
        let padded = x.constant_pad_nd([pw / 2, pw - pw / 2, ph / 2, ph - ph / 2]);
        self.conv.forward(&channels_last(&padded))
    }
}

#[derive(Debug)]
struct Block {
    spec: BlockSpec,
    /// Inverted residual only: the expansion `conv_pw`, `bn1`.
    expand: Option<(Conv2D, BatchNorm)>,
    conv_dw: Padded,
    bn_dw: BatchNorm,
    se: Option<(Conv2D, Conv2D)>,
    /// `conv_pwl`, `bn3` (inverted residual) or `conv_pw`, `bn2` (depthwise-separable).
    project: (Conv2D, BatchNorm),
}

impl Block {
    fn new(p: &nn::Path, s: &BlockSpec, tf: bool) -> Self {
        let eps = if tf { EPS_TF } else { EPS };
        let ir = s.kind == BlockKind::InvertedResidual;
        let (dw_bn, proj_conv, proj_bn) = if ir {
            ("bn2", "conv_pwl", "bn3")
        } else {
            ("bn1", "conv_pw", "bn2")
        };
        Self {
            spec: s.clone(),
            expand: ir.then(|| {
                (
                    conv2d(&(p / "conv_pw"), s.c_in, s.c_mid, 1, 1, 1, false, false),
                    batch_norm(&(p / "bn1"), s.c_mid, eps, 2),
                )
            }),
            conv_dw: Padded::new(
                &(p / "conv_dw"),
                s.c_mid,
                s.c_mid,
                s.kernel,
                s.stride,
                s.c_mid,
                tf,
            ),
            bn_dw: batch_norm(&(p / dw_bn), s.c_mid, eps, 2),
            se: (s.se > 0).then(|| {
                let q = p / "se";
                (
                    conv2d(&(&q / "conv_reduce"), s.c_mid, s.se, 1, 1, 1, true, false),
                    conv2d(&(&q / "conv_expand"), s.se, s.c_mid, 1, 1, 1, true, false),
                )
            }),
            project: (
                conv2d(&(p / proj_conv), s.c_mid, s.c_out, 1, 1, 1, false, false),
                batch_norm(&(p / proj_bn), s.c_out, eps, 2),
            ),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = match &self.expand {
            Some((conv, bn)) => bn.forward_t(&conv.forward(x), false).silu_(),
            None => x.shallow_clone(),
        };
        h = self
            .bn_dw
            .forward_t(&self.conv_dw.forward(&h), false)
            .silu_();
        if let Some((reduce, expand)) = &self.se {
            let g = h.adaptive_avg_pool2d([1, 1]);
            let g = expand.forward(&reduce.forward(&g).silu_()).sigmoid_();
            h *= g;
        }
        let out = self.project.1.forward_t(&self.project.0.forward(&h), false);
        if self.spec.stride == 1 && self.spec.c_in == self.spec.c_out {
            out + x
        } else {
            out
        }
    }
}

#[derive(Debug)]
struct Net {
    conv_stem: Padded,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    conv_head: Conv2D,
    bn2: BatchNorm,
}

impl Net {
    fn new(p: &nn::Path, spec: &EfficientNetSpec, tf: bool) -> anyhow::Result<Self> {
        let eps = if tf { EPS_TF } else { EPS };
        let mut c = spec.stem;
        let mut blocks = Vec::new();
        for (i, stage) in spec.stages.iter().enumerate() {
            for (j, s) in stage.iter().enumerate() {
                if s.c_in != c {
                    anyhow::bail!(
                        "EfficientNet block blocks.{i}.{j}: input width {} does not follow the \
                         previous width {c}; check the weights file's shapes",
                        s.c_in
                    );
                }
                blocks.push(Block::new(&(p / "blocks" / i / j), s, tf));
                c = s.c_out;
            }
        }
        Ok(Self {
            conv_stem: Padded::new(&(p / "conv_stem"), 3, spec.stem, 3, 2, 1, tf),
            bn1: batch_norm(&(p / "bn1"), spec.stem, eps, 2),
            blocks,
            conv_head: conv2d(&(p / "conv_head"), c, spec.head, 1, 1, 1, false, false),
            bn2: batch_norm(&(p / "bn2"), spec.head, eps, 2),
        })
    }

    /// `bn2` + SiLU after `conv_head`, `[N, C, H, W]`.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self
            .bn1
            .forward_t(&self.conv_stem.forward(x), false)
            .silu_();
        for b in &self.blocks {
            x = b.forward(&x);
        }
        self.bn2
            .forward_t(&self.conv_head.forward(&x), false)
            .silu_()
    }
}

/// An EfficientNet-B0 / B2 ready to embed face crops.
#[derive(Debug)]
pub struct EfficientNet {
    vs: nn::VarStore,
    net: Net,
    last: LastMap,
    spec: EfficientNetSpec,
    layout: Option<Layout>,
}

impl EfficientNet {
    /// Builds `cfg` (`efficientnet_b0`, `efficientnet_b2`) on `device`, loading `cfg.weights`
    /// if set (either layout; sizes from the file).
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let (published, default_size, tf) = published(&cfg.name).ok_or_else(|| {
            anyhow::anyhow!(
                "backbone `{}` is not an EfficientNet: use efficientnet_b0, efficientnet_b2, \
                 tf_efficientnet_b0 or tf_efficientnet_b2",
                cfg.name
            )
        })?;
        let input_size = cfg.input_size.unwrap_or(default_size);
        positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        let layout = weights.as_ref().map(Layout::detect);
        let spec = match (&weights, layout) {
            (Some(w), Some(l)) => {
                let spec = spec_from_shapes(&native_shapes(w, l)).unwrap_or(published.clone());
                if spec != published {
                    let blocks =
                        |s: &EfficientNetSpec| s.stages.iter().map(Vec::len).sum::<usize>();
                    tracing::info!(
                        "backbone {}: sizes from {} ({l:?} names: {} blocks, head {}) differ from \
                         the published ones ({} blocks, head {}); using the file's",
                        cfg.name,
                        w.path().display(),
                        blocks(&spec),
                        spec.head,
                        blocks(&published),
                        published.head
                    );
                }
                spec
            }
            _ => published,
        };
        let (mut vs, net) = init_vars(cfg.seed, None, &cfg.name, &[], Device::Cpu, |p| {
            Net::new(p, &spec, tf)
        })?;
        match (&weights, layout) {
            (Some(w), Some(Layout::Torchvision)) => {
                let expanding =
                    torchvision_expanding_blocks(w.tensors().keys().map(String::as_str));
                load_mapped(
                    w,
                    &vs,
                    &format!("{} (torchvision names, mapped to timm's)", cfg.name),
                    IGNORED,
                    &|n| torchvision_to_timm(n, &|s, j| expanding.contains(&(s, j))),
                )?
            }
            (Some(w), _) => w.load_into(&vs, &cfg.name, IGNORED)?,
            _ => {}
        }
        if device != Device::Cpu {
            vs.set_device(device);
        }
        let last = LastMap::new(
            cfg,
            input_size,
            (spec.head, halved_side(input_size as i64, 5)),
            "bn2 + SiLU",
            weights.as_ref(),
            device,
        )?;
        convs_channels_last(&vs);
        Ok(Self {
            vs,
            net,
            last,
            spec,
            layout,
        })
    }

    /// The last feature map (`bn2` + SiLU) of `images` (`[N,3,S,S]` RGB in [0,1]) as
    /// `[N, H*W, C]` tokens, row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        self.last.tokens(images, |x| self.net.map(x))
    }

    /// The globally average-pooled last feature map, `[N, C]` (the classifier's input),
    /// whatever the configured output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        self.last.pooled(images, |x| self.net.map(x))
    }

    /// The sizes the model was built with (published, or read from the weights).
    pub fn spec(&self) -> &EfficientNetSpec {
        &self.spec
    }

    /// The layout of the weights file, if one was loaded.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// The parameters and buffers, by their timm names (convolution weights stored
    /// channels-last: save with [`super::weights::save_safetensors`]).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for EfficientNet {
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
    fn b2_widths_round_to_multiples_of_eight_and_repeats_round_up() {
        let b2 = scaled(1.1, 1.2);
        assert_eq!((b2.stem, b2.head), (32, 1408));
        let widths: Vec<i64> = b2.stages.iter().map(|s| s[0].c_out).collect();
        assert_eq!(widths, [16, 24, 48, 88, 120, 208, 352]);
        let repeats: Vec<usize> = b2.stages.iter().map(Vec::len).collect();
        assert_eq!(repeats, [2, 3, 3, 4, 4, 5, 2]);
        let b0 = scaled(1.0, 1.0);
        assert_eq!(b0.stages.iter().map(Vec::len).sum::<usize>(), 16);
        assert_eq!(b0.head, 1280);
    }

    #[test]
    fn same_padding_is_tensorflow_s_and_puts_the_odd_pixel_last() {
        // 64 -> 32 with a 3x3 stride 2: one pixel, at the bottom / right.
        assert_eq!(same_padding(64, 3, 2), 1);
        // 16 -> 8 with 5x5 stride 2: three pixels (1 before, 2 after).
        assert_eq!(same_padding(16, 5, 2), 3);
        // Odd sides: 65 -> 33 with 3x3 stride 2 pads 2 (1 and 1), as symmetric padding.
        assert_eq!(same_padding(65, 3, 2), 2);
        // Stride 1: k - 1.
        assert_eq!(same_padding(7, 5, 1), 4);
        let x = Tensor::ones([1, 1, 4, 4], (tch::Kind::Float, Device::Cpu));
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = Padded::new(&vs.root(), 1, 1, 3, 2, 1, true);
        tch::no_grad(|| {
            let mut w = conv.conv.ws.shallow_clone();
            let _ = w.fill_(1.0);
        });
        // Top-left output sees a full 3x3 window (no padding before), the bottom-right one a
        // 2x2 window (one padded row and column after).
        let y = conv.forward(&x).view([2, 2]);
        assert_eq!(
            Vec::<f32>::try_from(y.reshape([-1])).unwrap(),
            [9.0, 6.0, 6.0, 4.0]
        );
    }

    #[test]
    fn torchvision_names_map_to_timm_names_by_block_type() {
        let expanding = |s: usize, _j: usize| s > 1;
        let cases = [
            ("features.0.0.weight", Some("conv_stem.weight")),
            ("features.0.1.running_mean", Some("bn1.running_mean")),
            ("features.8.0.weight", Some("conv_head.weight")),
            ("features.8.1.bias", Some("bn2.bias")),
            ("classifier.1.weight", Some("classifier.weight")),
            (
                "features.1.0.block.0.0.weight",
                Some("blocks.0.0.conv_dw.weight"),
            ),
            (
                "features.1.1.block.1.fc2.bias",
                Some("blocks.0.1.se.conv_expand.bias"),
            ),
            (
                "features.1.0.block.2.1.weight",
                Some("blocks.0.0.bn2.weight"),
            ),
            (
                "features.2.0.block.0.0.weight",
                Some("blocks.1.0.conv_pw.weight"),
            ),
            (
                "features.6.3.block.1.0.weight",
                Some("blocks.5.3.conv_dw.weight"),
            ),
            (
                "features.7.0.block.2.fc1.weight",
                Some("blocks.6.0.se.conv_reduce.weight"),
            ),
            (
                "features.7.0.block.3.1.running_var",
                Some("blocks.6.0.bn3.running_var"),
            ),
            ("features.1.0.block.3.0.weight", None),
            ("features.9.0.block.0.0.weight", None),
            ("features.0.2.weight", None),
            ("classifier.0.weight", None),
        ];
        for (tv, timm) in cases {
            assert_eq!(torchvision_to_timm(tv, &expanding).as_deref(), timm, "{tv}");
        }
    }
}
