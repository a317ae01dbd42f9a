//! RegNetX and RegNetY (torchvision names; timm checkpoints load through a name map).
//!
//! What it does: the RegNet of Radosavovic et al. (2020) as torchvision builds it, in tch with
//! torchvision's parameter names: the stem (`stem.0` 3x3 stride-2 convolution, `stem.1`
//! BatchNorm, ReLU), four stages `trunk_output.blockK` of residual bottleneck blocks
//! `trunk_output.blockK.blockK-J` (`proj.{0,1}`: 1x1 strided projection + BatchNorm on the first
//! block of a stage; `f.a` 1x1, `f.b` 3x3 grouped (stride 2 on a stage's first block), for
//! RegNetY `f.se.{fc1,fc2}` squeeze-excitation with ReLU and sigmoid, `f.c` 1x1 without
//! activation; ReLU after the residual sum), and `fc`. Built-in configurations, torchvision's
//! `regnet_{x,y}_{400,800}mf` (bottleneck ratio 1, SE ratio 0.25 of the block's input width for
//! Y, BatchNorm eps 1e-5), as the stage depths / widths / group widths that torchvision's
//! `BlockParams.from_init_params` computes:
//!
//! | name            | depths        | widths               | group width | pooled |
//! |-----------------|---------------|----------------------|-------------|--------|
//! | regnet_x_400mf  | 1, 2, 7, 12   | 32, 64, 160, 400     | 16          | 400    |
//! | regnet_x_800mf  | 1, 3, 7, 5    | 64, 128, 288, 672    | 16          | 672    |
//! | regnet_y_400mf  | 1, 3, 6, 6    | 48, 104, 208, 440    | 8           | 440    |
//! | regnet_y_800mf  | 1, 3, 8, 2    | 64, 144, 320, 784    | 16          | 784    |
//!
//! timm's `regnetx_004` / `regnetx_008` / `regnety_004` / `regnety_008` use the same generator
//! parameters but quantise the widths differently: `regnetx_004` ends at 384 channels and
//! `regnety_008` has widths 64, 128, 320, 768 (`extractor/tests/fixtures/backbones3/keys.json`
//! holds both libraries' key lists). So with weights, the stem width and every stage's depth,
//! width, bottleneck width and group width come from the checkpoint (the name still says
//! whether the blocks have squeeze-excitation; sizes that differ from the published ones are
//! logged at info level), and a checkpoint of either library loads
//! strictly: every tensor must then be used, with its shape. A file whose names start with
//! `stem.conv.` is read as timm's layout (`stem.{conv,bn}`, `sS.bB.{conv1,conv2,conv3}.{conv,bn}`,
//! `sS.bB.se.{fc1,fc2}`, `sS.bB.downsample.{conv,bn}`, `head.fc`) and renamed with
//! [`timm_to_torchvision`]; any other as torchvision's. The classifier (`fc`, timm `head.fc`) in
//! a file is ignored. Input: 224x224 RGB with ImageNet mean/std (`input_size` overrides).
//! Output `pooled`: the global average pool of the last stage (the classifier's input);
//! `map`: the last stage's output (after its ReLU) as `[H*W, C]` tokens, `[49, C]` at 224 px.
//!
//! What it does not: the other RegNet sizes, or timm's pre-activation / `linear_out` variants.

use std::collections::BTreeMap;

use tch::nn::{self, BatchNorm, Conv2D, Module, ModuleT};
use tch::{Device, Tensor};

use super::mapped::load_mapped;
use super::weights::{init_vars, WeightsFile};
use super::{
    batch_norm, convs_channels_last, halved_side, open_weights, positive, Backbone, BackboneConfig,
    BackboneMeta, LastMap,
};

/// BatchNorm epsilon of torchvision and timm.
const EPS: f64 = 1e-5;
/// Squeeze-excitation width over the block's input width (RegNetY).
const SE_RATIO: f64 = 0.25;
/// Native-name prefixes of checkpoint tensors the backbone ignores (the classifier).
const IGNORED: &[&str] = &["fc."];

/// One stage: `depth` blocks of output width `width`, bottleneck width `bottleneck` (the width
/// times the bottleneck ratio, 1 in the published models), grouped 3x3 convolutions of
/// `group_width` channels per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// Blocks in the stage.
    pub depth: usize,
    /// Output channels of every block.
    pub width: i64,
    /// Channels of `f.a` / `f.b`.
    pub bottleneck: i64,
    /// Channels per group of `f.b`.
    pub group_width: i64,
}

/// A RegNet's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegNetSpec {
    /// Channels of the stem.
    pub stem: i64,
    /// The stages, in order (each halves the side).
    pub stages: Vec<StageSpec>,
    /// Whether blocks have squeeze-excitation (RegNetY).
    pub se: bool,
}

impl RegNetSpec {
    /// Channels of the last stage: the pooled size and the map's token width.
    pub fn out_channels(&self) -> i64 {
        self.stages.last().map_or(self.stem, |s| s.width)
    }
}

/// The published torchvision sizes of `name` (`regnet_{x,y}_{400,800}mf`).
pub fn published(name: &str) -> Option<RegNetSpec> {
    let (se, depths, widths, group_width): (bool, [usize; 4], [i64; 4], i64) = match name {
        "regnet_x_400mf" => (false, [1, 2, 7, 12], [32, 64, 160, 400], 16),
        "regnet_x_800mf" => (false, [1, 3, 7, 5], [64, 128, 288, 672], 16),
        "regnet_y_400mf" => (true, [1, 3, 6, 6], [48, 104, 208, 440], 8),
        "regnet_y_800mf" => (true, [1, 3, 8, 2], [64, 144, 320, 784], 16),
        _ => return None,
    };
    Some(RegNetSpec {
        stem: 32,
        stages: depths
            .iter()
            .zip(widths)
            .map(|(&depth, width)| StageSpec {
                depth,
                width,
                bottleneck: width,
                group_width,
            })
            .collect(),
        se,
    })
}

/// Which library's parameter names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// torchvision's (`stem.0`, `trunk_output.block1.block1-0.f.a.0`, `fc`): the native names.
    Torchvision,
    /// timm's (`stem.conv`, `s1.b1.conv1.conv`, `head.fc`).
    Timm,
}

impl Layout {
    /// timm's if the file has `stem.conv.weight`, else torchvision's.
    pub fn detect(file: &WeightsFile) -> Layout {
        if file.contains("stem.conv.weight") {
            Layout::Timm
        } else {
            Layout::Torchvision
        }
    }
}

/// The torchvision name of a timm RegNet parameter, `None` if it has none:
/// `stem.conv` -> `stem.0`, `stem.bn` -> `stem.1`, `head.fc` -> `fc`, and in block `sS.bB`
/// (B from 1) -> `trunk_output.blockS.blockS-(B-1)`: `conv1.conv` -> `f.a.0`, `conv1.bn` ->
/// `f.a.1`, `conv2.{conv,bn}` -> `f.b.{0,1}`, `se.fc1` / `se.fc2` -> `f.se.fc1` / `f.se.fc2`,
/// `conv3.{conv,bn}` -> `f.c.{0,1}`, `downsample.{conv,bn}` -> `proj.{0,1}`.
pub fn timm_to_torchvision(name: &str) -> Option<String> {
    for (timm, tv) in [
        ("stem.conv.", "stem.0."),
        ("stem.bn.", "stem.1."),
        ("head.fc.", "fc."),
    ] {
        if let Some(leaf) = name.strip_prefix(timm) {
            return (!leaf.contains('.')).then(|| format!("{tv}{leaf}"));
        }
    }
    let rest = name.strip_prefix('s')?;
    let (stage, rest) = rest.split_once('.')?;
    let stage: usize = stage.parse().ok()?;
    let (block, rest) = rest.strip_prefix('b')?.split_once('.')?;
    let block: usize = block.parse().ok()?;
    let (part, leaf) = rest.rsplit_once('.')?;
    let tv_part = match part {
        "conv1.conv" => "f.a.0",
        "conv1.bn" => "f.a.1",
        "conv2.conv" => "f.b.0",
        "conv2.bn" => "f.b.1",
        "se.fc1" => "f.se.fc1",
        "se.fc2" => "f.se.fc2",
        "conv3.conv" => "f.c.0",
        "conv3.bn" => "f.c.1",
        "downsample.conv" => "proj.0",
        "downsample.bn" => "proj.1",
        _ => return None,
    };
    if stage == 0 || block == 0 {
        return None;
    }
    Some(format!(
        "trunk_output.block{stage}.block{stage}-{}.{tv_part}.{leaf}",
        block - 1
    ))
}

/// The file's tensor shapes under torchvision names (timm names renamed; unmappable ones
/// dropped).
fn native_shapes(file: &WeightsFile, layout: Layout) -> BTreeMap<String, Vec<i64>> {
    file.tensors()
        .iter()
        .filter_map(|(name, meta)| {
            let native = match layout {
                Layout::Torchvision => Some(name.clone()),
                Layout::Timm => timm_to_torchvision(name),
            };
            native.map(|n| (n, meta.shape.clone()))
        })
        .collect()
}

/// The sizes a checkpoint's tensors (by torchvision name) imply, `None` if it has no stem or
/// no first stage; `se` comes from the backbone name.
pub fn spec_from_shapes(shapes: &BTreeMap<String, Vec<i64>>, se: bool) -> Option<RegNetSpec> {
    let dim = |name: &str, i: usize| shapes.get(name).and_then(|s| s.get(i).copied());
    let stem = dim("stem.0.weight", 0)?;
    let mut stages = Vec::new();
    for k in 1.. {
        let block = |j: usize, part: &str| format!("trunk_output.block{k}.block{k}-{j}.{part}");
        let (Some(width), Some(bottleneck), Some(group_width)) = (
            dim(&block(0, "f.c.0.weight"), 0),
            dim(&block(0, "f.a.0.weight"), 0),
            dim(&block(0, "f.b.0.weight"), 1),
        ) else {
            break;
        };
        let depth = (0..)
            .take_while(|&j| shapes.contains_key(&block(j, "f.a.0.weight")))
            .count();
        stages.push(StageSpec {
            depth,
            width,
            bottleneck,
            group_width,
        });
    }
    (!stages.is_empty()).then_some(RegNetSpec { stem, stages, se })
}

/// A convolution with "same" padding for odd kernels (`(k - 1) / 2`), as both libraries pad.
fn conv2d(
    p: &nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    groups: i64,
    bias: bool,
) -> Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        kernel,
        nn::ConvConfig {
            stride,
            padding: (kernel - 1) / 2,
            groups,
            bias,
            ..Default::default()
        },
    )
}

/// Convolution then eval-mode BatchNorm (torchvision `Conv2dNormActivation` as `.0`, `.1`).
#[derive(Debug)]
struct ConvBn {
    conv: Conv2D,
    bn: BatchNorm,
}

impl ConvBn {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        Self {
            conv: conv2d(&(p / 0), c_in, c_out, kernel, stride, groups, false),
            bn: batch_norm(&(p / 1), c_out, EPS, 2),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.bn.forward_t(&self.conv.forward(x), false)
    }
}

#[derive(Debug)]
struct Block {
    proj: Option<ConvBn>,
    a: ConvBn,
    b: ConvBn,
    se: Option<(Conv2D, Conv2D)>,
    c: ConvBn,
}

impl Block {
    fn new(
        p: &nn::Path,
        w_in: i64,
        stage: &StageSpec,
        stride: i64,
        se: bool,
    ) -> anyhow::Result<Self> {
        let (w_out, w_b) = (stage.width, stage.bottleneck);
        if stage.group_width <= 0 || w_b % stage.group_width != 0 {
            anyhow::bail!(
                "RegNet stage of width {w_out}: bottleneck width {w_b} is not a multiple of the \
                 group width {}; check the weights file's `f.b.0` / `conv2.conv` shapes",
                stage.group_width
            );
        }
        let f = p / "f";
        let se = se.then(|| {
            let s = &f / "se";
            // torchvision int(round(0.25 * w_in)), timm the same: Python rounds ties to even.
            let c_se = (SE_RATIO * w_in as f64).round_ties_even() as i64;
            (
                conv2d(&(&s / "fc1"), w_b, c_se, 1, 1, 1, true),
                conv2d(&(&s / "fc2"), c_se, w_b, 1, 1, 1, true),
            )
        });
        Ok(Self {
            proj: (w_in != w_out || stride != 1)
                .then(|| ConvBn::new(&(p / "proj"), w_in, w_out, 1, stride, 1)),
            a: ConvBn::new(&(&f / "a"), w_in, w_b, 1, 1, 1),
            b: ConvBn::new(&(&f / "b"), w_b, w_b, 3, stride, w_b / stage.group_width),
            se,
            c: ConvBn::new(&(&f / "c"), w_b, w_out, 1, 1, 1),
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut f = self.b.forward(&self.a.forward(x).relu_()).relu_();
        if let Some((fc1, fc2)) = &self.se {
            let s = f.adaptive_avg_pool2d([1, 1]);
            let s = fc2.forward(&fc1.forward(&s).relu_()).sigmoid_();
            f *= s;
        }
        let f = self.c.forward(&f);
        let shortcut = match &self.proj {
            Some(p) => p.forward(x),
            None => x.shallow_clone(),
        };
        (f + shortcut).relu_()
    }
}

#[derive(Debug)]
struct Net {
    stem: ConvBn,
    stages: Vec<Vec<Block>>,
}

impl Net {
    fn new(p: &nn::Path, spec: &RegNetSpec) -> anyhow::Result<Self> {
        let t = p / "trunk_output";
        let mut w_in = spec.stem;
        let mut stages = Vec::with_capacity(spec.stages.len());
        for (k, stage) in spec.stages.iter().enumerate() {
            let sp = &t / format!("block{}", k + 1);
            let mut blocks = Vec::with_capacity(stage.depth);
            for j in 0..stage.depth {
                let bp = &sp / format!("block{}-{j}", k + 1);
                let stride = if j == 0 { 2 } else { 1 };
                blocks.push(Block::new(&bp, w_in, stage, stride, spec.se)?);
                w_in = stage.width;
            }
            stages.push(blocks);
        }
        Ok(Self {
            stem: ConvBn::new(&(p / "stem"), 3, spec.stem, 3, 2, 1),
            stages,
        })
    }

    /// The last stage's output, `[N, C, H, W]`.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self.stem.forward(x).relu_();
        for block in self.stages.iter().flatten() {
            x = block.forward(&x);
        }
        x
    }
}

/// A RegNetX / RegNetY ready to embed face crops.
#[derive(Debug)]
pub struct RegNet {
    vs: nn::VarStore,
    net: Net,
    last: LastMap,
    spec: RegNetSpec,
    layout: Option<Layout>,
}

impl RegNet {
    /// Builds `cfg` (`regnet_{x,y}_{400,800}mf`) on `device`, loading `cfg.weights` if set
    /// (either layout; sizes from the file).
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let published = published(&cfg.name).ok_or_else(|| {
            anyhow::anyhow!(
                "backbone `{}` is not a RegNet: use regnet_x_400mf, regnet_x_800mf, \
                 regnet_y_400mf or regnet_y_800mf",
                cfg.name
            )
        })?;
        let input_size = cfg.input_size.unwrap_or(224);
        positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        let layout = weights.as_ref().map(Layout::detect);
        let spec = match (&weights, layout) {
            (Some(w), Some(l)) => {
                let spec = spec_from_shapes(&native_shapes(w, l), published.se)
                    .unwrap_or(published.clone());
                if spec != published {
                    let sizes = |s: &RegNetSpec| {
                        s.stages
                            .iter()
                            .map(|s| format!("{}x{}/g{}", s.depth, s.width, s.group_width))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    tracing::info!(
                        "backbone {}: stage sizes (blocks x width / group width) {} from {} ({l:?} \
                         names) differ from torchvision's published {}; using the file's",
                        cfg.name,
                        sizes(&spec),
                        w.path().display(),
                        sizes(&published)
                    );
                }
                spec
            }
            _ => published,
        };
        let (mut vs, net) = init_vars(cfg.seed, None, &cfg.name, &[], Device::Cpu, |p| {
            Net::new(p, &spec)
        })?;
        match (&weights, layout) {
            (Some(w), Some(Layout::Timm)) => load_mapped(
                w,
                &vs,
                &format!("{} (timm names, mapped to torchvision's)", cfg.name),
                IGNORED,
                &timm_to_torchvision,
            )?,
            (Some(w), _) => w.load_into(&vs, &cfg.name, IGNORED)?,
            _ => {}
        }
        if device != Device::Cpu {
            vs.set_device(device);
        }
        let channels = spec.out_channels();
        let last = LastMap::new(
            cfg,
            input_size,
            (
                channels,
                halved_side(input_size as i64, 1 + spec.stages.len()),
            ),
            "trunk_output",
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

    /// The last stage's output of `images` (`[N,3,S,S]` RGB in [0,1]) as `[N, H*W, C]`
    /// tokens, row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        self.last.tokens(images, |x| self.net.map(x))
    }

    /// The globally average-pooled last stage of `images`, `[N, C]`, whatever the configured
    /// output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        self.last.pooled(images, |x| self.net.map(x))
    }

    /// The sizes the model was built with (published, or read from the weights).
    pub fn spec(&self) -> &RegNetSpec {
        &self.spec
    }

    /// The layout of the weights file, if one was loaded.
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// The parameters and buffers, by their torchvision names (convolution weights stored
    /// channels-last: save with [`super::weights::save_safetensors`]).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for RegNet {
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
    fn timm_regnet_names_map_to_torchvision_names() {
        let cases = [
            ("stem.conv.weight", Some("stem.0.weight")),
            ("stem.bn.running_var", Some("stem.1.running_var")),
            ("head.fc.bias", Some("fc.bias")),
            (
                "s1.b1.conv1.conv.weight",
                Some("trunk_output.block1.block1-0.f.a.0.weight"),
            ),
            (
                "s3.b7.se.fc2.bias",
                Some("trunk_output.block3.block3-6.f.se.fc2.bias"),
            ),
            (
                "s4.b1.downsample.bn.running_mean",
                Some("trunk_output.block4.block4-0.proj.1.running_mean"),
            ),
            ("s0.b1.conv1.conv.weight", None),
            ("s1.b0.conv1.conv.weight", None),
            ("s1.b1.conv4.conv.weight", None),
            ("stem.conv.extra.weight", None),
            ("final_conv.weight", None),
        ];
        for (timm, tv) in cases {
            assert_eq!(timm_to_torchvision(timm).as_deref(), tv, "{timm}");
        }
    }
}
