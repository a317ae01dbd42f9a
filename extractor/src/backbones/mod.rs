//! Backbones: batches of face images to per-frame embeddings.
//!
//! What it does: defines the [`Backbone`] trait the extractor drives, and [`build`], which turns a
//! [`BackboneConfig`] into one: native tch re-implementations of IResNet ([`iresnet`], insightface
//! arcface_torch names), DenseNet ([`densenet`], torchvision names), ResNet ([`resnet`],
//! torchvision / timm names), MobileNetV2 ([`mobilenet`], torchvision or timm names), RegNetX/Y
//! ([`regnet`], torchvision names, timm's through a name map), EfficientNet-B0/B2
//! ([`efficientnet`], timm names, torchvision's through a name map) and the ViT family ([`vit`]:
//! MAE ViT-B/16 and DINOv2 ViT/14 with timm names), a TorchScript module ([`torchscript`]), or
//! HOG ([`hog`]). Weights are safetensors files or PyTorch checkpoints with the public parameter
//! names ([`weights`]) or those of a known public layout, mapped at load ([`layouts`], and
//! [`regnet`] / [`efficientnet`]'s own maps), possibly fetched from the Hugging Face hub as
//! `hf:ORG/REPO[@REV][:FILE]` ([`hub`]); without one, a backbone is a fixed-seed random
//! initialisation. Each backbone applies its own
//! normalisation and runs in eval mode (BatchNorm with running statistics). The CNN backbones
//! return either their pooled vector or, with `output = "map"` ([`Output`]), their last spatial
//! feature map as `[H*W, C]` tokens ([`map_tokens`]); the map is recorded in the preprocessing
//! text (`spatial map HxW tokens`).
//!
//! What it does not: decode or resize frames (the caller hands over `[N,3,S,S]` RGB in [0,1] at
//! [`Backbone::input_size`]), batch videos, write the cache, or choose cache folders (that is
//! [`crate::extract`]).

pub mod config;
pub mod densenet;
pub mod efficientnet;
pub mod hog;
pub mod hub;
pub mod iresnet;
pub mod layouts;
mod mapped;
pub mod mobilenet;
pub mod pth;
pub mod regnet;
pub mod resnet;
pub mod torchscript;
pub mod vit;
pub mod weights;

pub use config::{BackboneConfig, Family, Ffn, Output, Pooling, BUILTIN_NAMES};
pub use densenet::DenseNet;
pub use iresnet::IResNet;
pub use mobilenet::MobileNetV2;
pub use resnet::ResNet;
pub use torchscript::TorchScript;
pub use vit::Vit;
pub use weights::{WeightsError, WeightsFile};

use tch::{Device, Kind, Tensor};

/// What a backbone records about itself in the feature cache.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneMeta {
    /// Name as in the cache attrs, e.g. "iresnet50".
    pub name: String,
    /// Square input side in pixels the frames are resized to.
    pub input_size: u32,
    /// Output feature shape per frame: [dim] or [tokens, dim].
    pub output_shape: Vec<usize>,
    /// Preprocessing description recorded in the cache.
    pub preprocessing: String,
    /// "sha256:<hex>", "seed:N" or "none".
    pub weights_id: String,
}

/// A frame embedder the extractor runs in batches.
///
/// Implementors provide [`Backbone::meta`] (computed once at construction) and
/// [`Backbone::forward`]; the metadata accessors read from `meta()`.
pub trait Backbone: Send {
    /// What this backbone records about itself in the cache (name, input size, output shape,
    /// preprocessing, weights id).
    fn meta(&self) -> &BackboneMeta;
    /// images: [N,3,S,S] float32 RGB in [0,1] on the backbone's device; returns [N,dim] or [N,T,dim] float32.
    /// Applies its own normalisation. Called inside no_grad.
    fn forward(&self, images: &tch::Tensor) -> tch::Tensor;

    /// Name as in the cache attrs, e.g. "iresnet50".
    fn name(&self) -> &str {
        &self.meta().name
    }
    /// Square input side in pixels the frames are resized to (112, 224, ...).
    fn input_size(&self) -> u32 {
        self.meta().input_size
    }
    /// Output feature shape per frame: [dim] or [tokens, dim].
    fn output_shape(&self) -> Vec<usize> {
        self.meta().output_shape.clone()
    }
    /// Human-readable preprocessing description recorded in the cache (resize, mean/std, colour order).
    fn preprocessing(&self) -> String {
        self.meta().preprocessing.clone()
    }
    /// "sha256:<hex>" of the weights file, or "seed:N" for a fixed-seed initialisation.
    fn weights_id(&self) -> String {
        self.meta().weights_id.clone()
    }
}

/// Builds the backbone `cfg` names on `device` (weights loaded, eval mode, ready to run).
///
/// Errors name the config field, the weights file or the TorchScript file at fault.
pub fn build(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Box<dyn Backbone>> {
    cfg.check_fields()?;
    Ok(match cfg.family()? {
        Family::IResNet => Box::new(iresnet::IResNet::new(cfg, device)?),
        Family::DenseNet => Box::new(densenet::DenseNet::new(cfg, device)?),
        Family::ResNet => Box::new(resnet::ResNet::new(cfg, device)?),
        Family::MobileNetV2 => Box::new(mobilenet::MobileNetV2::new(cfg, device)?),
        Family::MaeVit | Family::Dinov2 => Box::new(vit::Vit::new(cfg, device)?),
        Family::RegNet => Box::new(regnet::RegNet::new(cfg, device)?),
        Family::EfficientNet => Box::new(efficientnet::EfficientNet::new(cfg, device)?),
        Family::TorchScript => Box::new(torchscript::TorchScript::new(cfg, device)?),
        Family::Hog => Box::new(hog::Hog::new(cfg)?),
    })
}

/// Whether `name` is a built-in backbone ([`BUILTIN_NAMES`]) or `torchscript:<file>`.
pub fn is_builtin(name: &str) -> bool {
    BackboneConfig::named(name).family().is_ok()
}

/// ImageNet RGB mean (torchvision, timm, MAE, DINOv2).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet RGB standard deviation.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Per-channel `(x - mean) / std` of `[N,3,H,W]` RGB in [0,1], on a given device.
#[derive(Debug)]
pub struct Normalise {
    mean: [f64; 3],
    std: [f64; 3],
    mean_t: Tensor,
    std_t: Tensor,
}

impl Normalise {
    /// Normalisation with these RGB means and standard deviations; an error if a std is not > 0.
    pub fn new(mean: [f64; 3], std: [f64; 3], device: Device) -> anyhow::Result<Self> {
        if std.iter().any(|s| *s <= 0.0 || !s.is_finite()) || mean.iter().any(|m| !m.is_finite()) {
            anyhow::bail!(
                "normalisation mean {mean:?} / std {std:?}: std must be finite and > 0; fix `mean` / `std` in the backbone config"
            );
        }
        let t = |v: [f64; 3]| {
            Tensor::from_slice(&v.map(|x| x as f32))
                .view([1, 3, 1, 1])
                .to_device(device)
        };
        Ok(Self {
            mean,
            std,
            mean_t: t(mean),
            std_t: t(std),
        })
    }

    /// `(images - mean) / std` as float32.
    pub fn apply(&self, images: &Tensor) -> Tensor {
        (images.to_kind(Kind::Float) - &self.mean_t) / &self.std_t
    }

    /// The text recorded in the cache: input size, colour order, scaling, mean and std.
    pub fn describe(&self, input_size: u32) -> String {
        format!(
            "RGB {input_size}x{input_size}, pixels/255, (x - mean) / std, mean [{}], std [{}]",
            fmt3(self.mean),
            fmt3(self.std)
        )
    }
}

fn fmt3(v: [f64; 3]) -> String {
    v.map(|x| format!("{x}")).join(", ")
}

/// `Ok(())` if a backbone's actual output size equals the `out_dim` the config declares (if any).
pub(crate) fn check_out_dim(cfg: &BackboneConfig, actual: i64) -> anyhow::Result<()> {
    match cfg.out_dim {
        Some(d) if d != actual => anyhow::bail!(
            "backbone `{}`: config says out_dim = {d} but the model{} gives {actual}; fix or remove `out_dim`",
            cfg.name,
            cfg.weights
                .as_ref()
                .map(|w| format!(" with weights {}", w.display()))
                .unwrap_or_default()
        ),
        _ => Ok(()),
    }
}

/// The normalisation and cache metadata of a native tch backbone built from `cfg`: `cfg.mean` /
/// `cfg.std` (else `mean` / `std`), preprocessing described at `input_size`, and the weights id
/// of `weights` (else `seed:<cfg.seed>`). An error if a std is not > 0.
pub(crate) fn normalised_meta(
    cfg: &BackboneConfig,
    (mean, std): ([f64; 3], [f64; 3]),
    input_size: u32,
    output_shape: Vec<usize>,
    weights: Option<&WeightsFile>,
    device: Device,
) -> anyhow::Result<(Normalise, BackboneMeta)> {
    let norm = Normalise::new(cfg.mean.unwrap_or(mean), cfg.std.unwrap_or(std), device)?;
    let meta = BackboneMeta {
        name: cfg.name.clone(),
        input_size,
        output_shape,
        preprocessing: norm.describe(input_size),
        weights_id: weights::weights_id(weights, cfg.seed),
    };
    Ok((norm, meta))
}

/// Reads the header and hash of `cfg.weights`, if set (an `hf:ORG/REPO[@REV][:FILE]` spec is
/// first resolved to its file in the hub cache, downloading it once: [`hub`]).
pub(crate) fn open_weights(cfg: &BackboneConfig) -> anyhow::Result<Option<WeightsFile>> {
    Ok(match &cfg.weights {
        Some(p) => Some(WeightsFile::open(&hub::resolve_weights(p)?)?),
        None => None,
    })
}

/// A positive size from an override or a default, or an error naming the field.
pub(crate) fn positive(cfg: &BackboneConfig, field: &str, value: i64) -> anyhow::Result<i64> {
    if value <= 0 {
        anyhow::bail!(
            "backbone `{}`: `{field}` must be > 0, got {value}",
            cfg.name
        );
    }
    Ok(value)
}

/// An eval-mode BatchNorm with PyTorch's names and initialisation (weight 1, bias 0, running mean
/// 0, running variance 1).
pub(crate) fn batch_norm(
    p: &tch::nn::Path,
    channels: i64,
    eps: f64,
    nd: usize,
) -> tch::nn::BatchNorm {
    let c = tch::nn::BatchNormConfig {
        eps,
        ws_init: tch::nn::Init::Const(1.0),
        bs_init: tch::nn::Init::Const(0.0),
        ..Default::default()
    };
    if nd == 1 {
        tch::nn::batch_norm1d(p, channels, c)
    } else {
        tch::nn::batch_norm2d(p, channels, c)
    }
}

/// `x` [N,C,H,W] with channels-last strides (NHWC in memory), same values and shape.
///
/// oneDNN (CPU) and cuDNN run convolutions on channels-last tensors without reordering them to
/// and from their own layout at every call; on 2 CPU threads this makes IResNet-50 about 1.4x and
/// DenseNet-121 about 1.5x faster than contiguous NCHW (`make bench-extract`). Elementwise ops,
/// BatchNorm, pooling and `cat` keep the layout, so a convolutional network converts its input
/// once and its convolution weights once ([`convs_channels_last`]).
pub(crate) fn channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Re-lays every 4-d variable of `vs` (the convolution weights) channels-last in place (see
/// [`channels_last`]): names, shapes and values are unchanged, and every module holding the
/// variable sees the new layout. Such a store is saved with [`weights::save_safetensors`].
pub(crate) fn convs_channels_last(vs: &tch::nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            if t.dim() == 4 {
                let cl = channels_last(&t);
                t.set_data(&cl);
            }
        }
    });
}

/// A `[N,C,H,W]` feature map as `[N,H*W,C]` tokens, row-major over (h, w): token `h * W + w`
/// is the channel vector at row `h`, column `w`.
pub fn map_tokens(x: &Tensor) -> Tensor {
    let (n, c, h, w) = x.size4().expect("a feature map is [N, C, H, W]");
    x.permute([0, 2, 3, 1]).reshape([n, h * w, c])
}

/// The text a spatial-map backbone appends to its preprocessing in the cache: the map's side
/// and which layer it is, e.g. `spatial map 7x7 tokens (bn2 output, row-major over h, w)`.
pub(crate) fn map_description(h: i64, w: i64, layer: &str) -> String {
    format!("spatial map {h}x{w} tokens ({layer} output, row-major over h, w)")
}

/// Side of a CNN's last feature map for an `input` side after `halvings` layers of stride 2
/// (3x3 or 1x1 kernels, padding `(k - 1) / 2`, or a 3x3 max pool with padding 1): each gives
/// `(s - 1) / 2 + 1`.
pub(crate) fn halved_side(input: i64, halvings: usize) -> i64 {
    (0..halvings).fold(input, |s, _| if s > 0 { (s - 1) / 2 + 1 } else { 0 })
}

/// What a CNN backbone whose pooled vector is the global average of its last feature map
/// (ResNet, MobileNetV2, RegNet, EfficientNet) writes, and how: the ImageNet normalisation, the
/// cache metadata (with the map's description when the output is the map) and the two outputs
/// of that map. The network itself stays in its own module; it hands over its map.
#[derive(Debug)]
pub(crate) struct LastMap {
    pub(crate) meta: BackboneMeta,
    norm: Normalise,
    output: Output,
}

impl LastMap {
    /// The output of `cfg` for a last map of `channels` x `side` x `side` at `input_size` px,
    /// the map named `layer` in the preprocessing text (e.g. `layer4`).
    pub(crate) fn new(
        cfg: &BackboneConfig,
        input_size: u32,
        (channels, side): (i64, i64),
        layer: &str,
        weights: Option<&WeightsFile>,
        device: Device,
    ) -> anyhow::Result<Self> {
        check_out_dim(cfg, channels)?;
        let output = cfg.output();
        let output_shape = match output {
            Output::Pooled => vec![channels as usize],
            Output::Map | Output::Tokens => vec![(side * side) as usize, channels as usize],
        };
        let (norm, mut meta) = normalised_meta(
            cfg,
            (IMAGENET_MEAN, IMAGENET_STD),
            input_size,
            output_shape,
            weights,
            device,
        )?;
        if output != Output::Pooled {
            meta.preprocessing = format!(
                "{}; {}",
                meta.preprocessing,
                map_description(side, side, layer)
            );
        }
        Ok(Self { meta, norm, output })
    }

    /// `net`'s last map of `images` (`[N,3,S,S]` RGB in [0,1], normalised and laid out
    /// channels-last here), without gradients.
    fn feature_map(&self, images: &Tensor, net: impl Fn(&Tensor) -> Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        net(&channels_last(&self.norm.apply(images)))
    }

    /// The last map as `[N, H*W, C]` tokens, row-major over (h, w).
    pub(crate) fn tokens(&self, images: &Tensor, net: impl Fn(&Tensor) -> Tensor) -> Tensor {
        map_tokens(&self.feature_map(images, net))
    }

    /// The globally average-pooled last map, `[N, C]` (a classifier's input).
    pub(crate) fn pooled(&self, images: &Tensor, net: impl Fn(&Tensor) -> Tensor) -> Tensor {
        self.feature_map(images, net)
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
    }

    /// What the configured output writes: [`Self::pooled`] or [`Self::tokens`].
    pub(crate) fn forward(&self, images: &Tensor, net: impl Fn(&Tensor) -> Tensor) -> Tensor {
        match self.output {
            Output::Pooled => self.pooled(images, net),
            Output::Map | Output::Tokens => self.tokens(images, net),
        }
    }
}

/// A bias-free 2-d convolution with PyTorch's names and default (Kaiming uniform) init.
pub(crate) fn conv(
    p: &tch::nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
) -> tch::nn::Conv2D {
    tch::nn::conv2d(
        p,
        c_in,
        c_out,
        kernel,
        tch::nn::ConvConfig {
            stride,
            padding,
            bias: false,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_tokens_are_row_major_over_height_then_width() {
        // [1, 2, 2, 3]: channel 0 holds 0..6, channel 1 holds 100..106.
        let x = Tensor::cat(
            &[
                Tensor::arange(6, (Kind::Float, Device::Cpu)),
                Tensor::arange(6, (Kind::Float, Device::Cpu)) + 100.0,
            ],
            0,
        )
        .view([1, 2, 2, 3]);
        let t = map_tokens(&channels_last(&x));
        assert_eq!(t.size(), [1, 6, 2]);
        let got = Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap();
        let want: Vec<f32> = (0..6).flat_map(|i| [i as f32, 100.0 + i as f32]).collect();
        assert_eq!(got, want);
        assert!(map_tokens(&x).equal(&map_tokens(&channels_last(&x))));
    }

    #[test]
    fn a_map_side_is_the_input_halved_rounding_up() {
        assert_eq!(halved_side(224, 5), 7);
        assert_eq!(halved_side(260, 5), 9);
        assert_eq!(halved_side(64, 5), 2);
        assert_eq!(halved_side(65, 5), 3);
        assert_eq!(halved_side(1, 5), 1);
        assert_eq!(halved_side(224, 0), 224);
    }

    #[test]
    fn normalised_meta_takes_config_overrides_else_defaults() {
        let mut cfg = BackboneConfig::named("vit_b16");
        cfg.seed = 7;
        let (_, meta) = normalised_meta(
            &cfg,
            (IMAGENET_MEAN, IMAGENET_STD),
            224,
            vec![768],
            None,
            Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            meta,
            BackboneMeta {
                name: "vit_b16".into(),
                input_size: 224,
                output_shape: vec![768],
                preprocessing: "RGB 224x224, pixels/255, (x - mean) / std, \
                                mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]"
                    .into(),
                weights_id: "seed:7".into(),
            }
        );
        cfg.mean = Some([0.5; 3]);
        cfg.std = Some([0.0, 1.0, 1.0]);
        let err = normalised_meta(&cfg, ([0.0; 3], [1.0; 3]), 8, vec![1], None, Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("std"), "{err}");
    }
}
