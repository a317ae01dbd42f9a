//! DenseNet (torchvision names), the DenseNet-121 feature set of the ABAW reference.
//!
//! What it does: torchvision's DenseNet in tch with its parameter names (`features.conv0`,
//! `features.norm0`, `features.denseblockK.denselayerN.{norm1,conv1,norm2,conv2}`,
//! `features.transitionK.{norm,conv}`, `features.norm5`, `classifier`), so torchvision-style
//! checkpoints converted to safetensors load as they are. 224x224 RGB with ImageNet mean/std ->
//! ReLU -> global average pool -> the `classifier` Linear (342 outputs by default, as the
//! reference's fine-tuned model), or the pooled features (1024 for DenseNet-121) when there is
//! no classifier (`num_classes = 0`, or a checkpoint without `classifier.*`). With weights, the
//! classifier size comes from the checkpoint. Overrides `growth`, `block_config`,
//! `init_features` and `input_size` give small variants. With `output = "map"` it returns
//! instead the last spatial feature map, `features.norm5` + ReLU (the input of the global average
//! pool), as `[H*W, C]` tokens per frame (`[49, 1024]` for DenseNet-121 at 224 px); the
//! classifier is still built and loaded but not applied, and `out_dim` still checks the pooled
//! output.
//!
//! `densenet201` is the same code with torchvision's DenseNet-201 block config `[6, 12, 48, 32]`
//! (growth 32, 64 stem channels) and, unlike `densenet121`, no classifier by default: the pooled
//! 1920-d features (a choice of this project: DenseNet-201 serves as a generic feature extractor,
//! not as the ABAW reference's fine-tuned classifier). Its `classifier.*` in a checkpoint (e.g.
//! torchvision's ImageNet head) is ignored unless `num_classes` is set to the checkpoint's size.
//!
//! What it does not: memory-efficient checkpointing or dropout (inference only).

use tch::nn::{self, BatchNorm, Conv2D, Linear, Module, ModuleT};
use tch::{Device, Tensor};

use super::weights::init_vars;
use super::{
    batch_norm, channels_last, check_out_dim, conv, convs_channels_last, map_description,
    map_tokens, normalised_meta, open_weights, positive, Backbone, BackboneConfig, BackboneMeta,
    Normalise, Output, IMAGENET_MEAN, IMAGENET_STD,
};

/// BatchNorm epsilon of torchvision.
const EPS: f64 = 1e-5;
/// Bottleneck width factor of torchvision's DenseNet (1x1 conv to `BN_SIZE * growth`).
const BN_SIZE: i64 = 4;
/// Classifier outputs of `densenet121` when neither the config nor a checkpoint says otherwise.
pub const DEFAULT_NUM_CLASSES: i64 = 342;

/// Published dense block config of `name` (`densenet121` or `densenet201`).
pub fn default_blocks(name: &str) -> Vec<usize> {
    match name {
        "densenet201" => vec![6, 12, 48, 32],
        _ => vec![6, 12, 24, 16],
    }
}

#[derive(Debug)]
struct DenseLayer {
    norm1: BatchNorm,
    conv1: Conv2D,
    norm2: BatchNorm,
    conv2: Conv2D,
}

impl DenseLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.conv1.forward(&self.norm1.forward_t(x, false).relu_());
        self.conv2.forward(&self.norm2.forward_t(&x, false).relu_())
    }
}

#[derive(Debug)]
struct Transition {
    norm: BatchNorm,
    conv: Conv2D,
}

#[derive(Debug)]
struct Net {
    conv0: Conv2D,
    norm0: BatchNorm,
    blocks: Vec<(Vec<DenseLayer>, Option<Transition>)>,
    norm5: BatchNorm,
    classifier: Option<Linear>,
    /// Channels of the last feature map (the input of `norm5`).
    channels: i64,
}

impl Net {
    fn new(
        p: &nn::Path,
        blocks: &[usize],
        growth: i64,
        init: i64,
        num_classes: i64,
    ) -> (Self, i64) {
        let f = p / "features";
        let mut c = init;
        let mut stages = Vec::with_capacity(blocks.len());
        for (k, &n) in blocks.iter().enumerate() {
            let bp = &f / format!("denseblock{}", k + 1);
            let layers = (0..n)
                .map(|i| {
                    let lp = &bp / format!("denselayer{}", i + 1);
                    let c_in = c + i as i64 * growth;
                    DenseLayer {
                        norm1: batch_norm(&(&lp / "norm1"), c_in, EPS, 2),
                        conv1: conv(&(&lp / "conv1"), c_in, BN_SIZE * growth, 1, 1, 0),
                        norm2: batch_norm(&(&lp / "norm2"), BN_SIZE * growth, EPS, 2),
                        conv2: conv(&(&lp / "conv2"), BN_SIZE * growth, growth, 3, 1, 1),
                    }
                })
                .collect();
            c += n as i64 * growth;
            let transition = (k + 1 != blocks.len()).then(|| {
                let tp = &f / format!("transition{}", k + 1);
                let t = Transition {
                    norm: batch_norm(&(&tp / "norm"), c, EPS, 2),
                    conv: conv(&(&tp / "conv"), c, c / 2, 1, 1, 0),
                };
                c /= 2;
                t
            });
            stages.push((layers, transition));
        }
        let net = Self {
            conv0: conv(&(&f / "conv0"), 3, init, 7, 2, 3),
            norm0: batch_norm(&(&f / "norm0"), init, EPS, 2),
            blocks: stages,
            norm5: batch_norm(&(&f / "norm5"), c, EPS, 2),
            classifier: (num_classes > 0)
                .then(|| nn::linear(p / "classifier", c, num_classes, Default::default())),
            channels: c,
        };
        let out = if num_classes > 0 { num_classes } else { c };
        (net, out)
    }

    /// The last feature map, `[N, C, H, W]`: `features.norm5` + ReLU.
    fn map(&self, x: &Tensor) -> Tensor {
        let mut x = self
            .norm0
            .forward_t(&self.conv0.forward(x), false)
            .relu_()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for (layers, transition) in &self.blocks {
            let mut feats = vec![x];
            for layer in layers {
                let input = Tensor::cat(&feats, 1);
                feats.push(layer.forward(&input));
            }
            x = Tensor::cat(&feats, 1);
            if let Some(t) = transition {
                x = t
                    .conv
                    .forward(&t.norm.forward_t(&x, false).relu_())
                    .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        self.norm5.forward_t(&x, false).relu_()
    }

    /// The pooled output from a [`Net::map`] output: global average pool, then the classifier
    /// if any.
    fn pool(&self, map: &Tensor) -> Tensor {
        let x = map.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        match &self.classifier {
            Some(c) => c.forward(&x),
            None => x,
        }
    }
}

/// A torchvision-style DenseNet ready to embed face crops.
#[derive(Debug)]
pub struct DenseNet {
    meta: BackboneMeta,
    norm: Normalise,
    vs: nn::VarStore,
    net: Net,
    output: Output,
}

impl DenseNet {
    /// Builds `cfg` (`densenet121` or `densenet201` plus overrides) on `device`, loading
    /// `cfg.weights` if set.
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let blocks = cfg
            .block_config
            .clone()
            .unwrap_or_else(|| default_blocks(&cfg.name));
        if blocks.is_empty() || blocks.contains(&0) {
            anyhow::bail!(
                "backbone `{}`: `block_config` must be positive layer counts, got {blocks:?}",
                cfg.name
            );
        }
        let growth = positive(cfg, "growth", cfg.growth.unwrap_or(32))?;
        let init = positive(cfg, "init_features", cfg.init_features.unwrap_or(64))?;
        let input_size = cfg.input_size.unwrap_or(224);
        positive(cfg, "input_size", input_size as i64)?;
        let weights = open_weights(cfg)?;
        // densenet201 is a pooled-feature extractor: its classifier only where the config asks.
        let pooled_by_default = cfg.name == "densenet201";
        let from_file = weights
            .as_ref()
            .filter(|_| !pooled_by_default)
            .map(|w| w.shape("classifier.weight").map_or(0, |s| s[0]));
        let default = if pooled_by_default {
            0
        } else {
            DEFAULT_NUM_CLASSES
        };
        let num_classes = cfg.num_classes.or(from_file).unwrap_or(default);
        let ignored: &[&str] = if num_classes == 0 && pooled_by_default {
            &["classifier."]
        } else {
            &[]
        };
        if num_classes < 0 {
            anyhow::bail!(
                "backbone `{}`: `num_classes` must be >= 0 (0: no classifier), got {num_classes}",
                cfg.name
            );
        }
        let (vs, (net, out_dim)) = init_vars(
            cfg.seed,
            weights.as_ref(),
            &cfg.name,
            ignored,
            device,
            |p| Ok(Net::new(p, &blocks, growth, init, num_classes)),
        )?;
        check_out_dim(cfg, out_dim)?;
        let output = cfg.output();
        let side = map_side(input_size as i64, blocks.len());
        let output_shape = match output {
            Output::Pooled => vec![out_dim as usize],
            Output::Map if side > 0 => vec![(side * side) as usize, net.channels as usize],
            Output::Map | Output::Tokens => anyhow::bail!(
                "backbone `{}`: input_size {input_size} leaves no spatial map after the stem and \
                 {} transitions (each halves the side); use a larger `input_size`",
                cfg.name,
                blocks.len() - 1
            ),
        };
        let (norm, mut meta) = normalised_meta(
            cfg,
            (IMAGENET_MEAN, IMAGENET_STD),
            input_size,
            output_shape,
            weights.as_ref(),
            device,
        )?;
        if output == Output::Map {
            meta.preprocessing = format!(
                "{}; {}",
                meta.preprocessing,
                map_description(side, side, "features.norm5 + ReLU")
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

    /// The last spatial feature map (`features.norm5` + ReLU) of `images` (`[N,3,S,S]` RGB in
    /// [0,1]) as `[N, H*W, C]` tokens, row-major over (h, w), whatever the configured output.
    pub fn forward_map(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        map_tokens(&self.net.map(&channels_last(&self.norm.apply(images))))
    }

    /// The pooled output of `images` (the classifier's, or the pooled features without one),
    /// whatever the configured output.
    pub fn forward_pooled(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.net
            .pool(&self.net.map(&channels_last(&self.norm.apply(images))))
    }

    /// The parameters and buffers, by their torchvision names. The convolution weights are
    /// stored channels-last: save with [`super::weights::save_safetensors`].
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for DenseNet {
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

/// Side of the last feature map for an `input` side and `blocks` dense blocks: the stem
/// convolution (7x7, stride 2, padding 3) and max pool (3x3, stride 2, padding 1) each give
/// `(s - 1) / 2 + 1`, and each of the `blocks - 1` transitions (2x2 average pool) `s / 2`.
fn map_side(input: i64, blocks: usize) -> i64 {
    let stem = |s: i64| if s > 0 { (s - 1) / 2 + 1 } else { 0 };
    (1..blocks).fold(stem(stem(input)), |s, _| s / 2)
}
