//! The configuration of one backbone: which architecture, which weights, which overrides.
//!
//! What it does: defines [`BackboneConfig`] (serde, as written in `configs/features.toml` or
//! built from the command line), the [`Output`] choice of the CNN backbones (pooled vector or
//! spatial map as tokens), the pooling and feed-forward choices of the ViT family, and
//! [`BackboneConfig::check_fields`], which rejects overrides that do not apply to the named
//! architecture (so a typo'd config is an error, not a silently different model), including
//! `output = "map"` on a backbone without a spatial feature map.
//!
//! What it does not: build models or read weights (see [`super::build`] and [`super::weights`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which tokens a ViT-family backbone returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the patch tokens (cls and register tokens excluded): `[dim]` per frame.
    Mean,
    /// The class token: `[dim]` per frame.
    Cls,
    /// Every patch token (cls and register tokens dropped): `[patches, dim]` per frame.
    Tokens,
}

/// What a backbone writes per frame: its vector, a CNN's last spatial map (IResNet, DenseNet,
/// ResNet, MobileNetV2, RegNet, EfficientNet), or a ViT's patch tokens.
///
/// HOG and TorchScript have only `pooled` (they return what they compute); for the ViT family
/// `tokens` is `pooling = "tokens"` and `pooled` keeps the set's [`Pooling`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// The backbone's vector per frame: the IResNet embedding, the DenseNet classifier output or
    /// pooled features: `[dim]`.
    #[default]
    Pooled,
    /// The last spatial feature map as tokens, row-major over (h, w): `[H*W, C]` per frame
    /// (IResNet: the `bn2` output, `[49, 512]` at 112 px; DenseNet-121: `features.norm5` + ReLU,
    /// `[49, 1024]` at 224 px; ResNet: the `layer4` output, `[49, 512]` or `[49, 2048]`;
    /// MobileNetV2: the head's output, `[49, 1280]`; DenseNet-201: `[49, 1920]`).
    Map,
    /// The ViT family: every patch token (class and register tokens dropped), `[patches, dim]`
    /// per frame, as `pooling = "tokens"` (DINOv2 ViT-g/14 at 238 px: `[289, 1536]`).
    Tokens,
}

impl Output {
    /// The name used in configs, on the command line and in cache folder suffixes.
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Pooled => "pooled",
            Output::Map => "map",
            Output::Tokens => "tokens",
        }
    }
}

/// The feed-forward block of a ViT-family backbone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ffn {
    /// `mlp.fc1` (dim -> hidden), exact GELU, `mlp.fc2` (hidden -> dim).
    Gelu,
    /// timm `SwiGLUPacked` (DINOv2 ViT-g/14): `mlp.fc1` (dim -> hidden), `silu(first half) *
    /// second half`, `mlp.fc2` (hidden / 2 -> dim).
    Swiglu,
}

/// One backbone: a built-in architecture name plus optional weights and overrides.
///
/// Built-in names: `iresnet18|34|50|100`, `densenet121|201`, `resnet18|34|50|101|152`,
/// `mobilenet_v2`, `vit_b16` (MAE), `dinov2_vits14|vitb14|vitl14|vitg14`,
/// `regnet_x_400mf|regnet_x_800mf|regnet_y_400mf|regnet_y_800mf`, `efficientnet_b0|b2`,
/// `tf_efficientnet_b0|b2`, `hog`, and `torchscript:<file>`. Every override is optional; unset
/// ones take the architecture's published value. The overrides exist so that small variants run
/// through the very same code in tests and demos. With `weights`, sizes the checkpoint determines
/// (e.g. the DenseNet classifier, the IResNet embedding size, ViT register tokens, every RegNet
/// and EfficientNet stage size) come from the file.
/// Unknown keys are an error (a misspelt `weights` must not silently mean a random init).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    /// Architecture name (see the type docs), recorded as the cache's `backbone` attribute.
    pub name: String,
    /// Weights file (safetensors or a PyTorch checkpoint) with the public parameter names or a
    /// known public layout, or `hf:ORG/REPO[@REVISION][:FILE]` from the Hugging Face hub (see
    /// [`super::hub`]); without it, a seeded random init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Seed of the random initialisation used when there are no weights (`weights = "seed:N"`).
    #[serde(default)]
    pub seed: u64,
    /// Square input side in pixels (112 for IResNet, 224 for the others, declared for TorchScript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<u32>,
    /// IResNet, ResNet: residual blocks per stage, e.g. `[3, 4, 14, 3]` for iresnet50, `[3, 4,
    /// 6, 3]` for resnet50; MobileNetV2: the 7 stage repeat counts (`[1, 2, 3, 4, 3, 3, 1]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// IResNet, ResNet: channels of the first stage (64; stages use 1x, 2x, 4x, 8x);
    /// MobileNetV2: stem channels (32), i.e. torchvision's `width_mult = width / 32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// DenseNet: growth rate (32 for DenseNet-121).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<i64>,
    /// DenseNet: layers per dense block (`[6, 12, 24, 16]` for DenseNet-121).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_config: Option<Vec<usize>>,
    /// DenseNet: channels of the stem convolution (64 for DenseNet-121).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_features: Option<i64>,
    /// DenseNet: outputs of the `classifier` Linear (densenet121: 342 by default, as the ABAW
    /// reference; densenet201: 0 by default); 0 means no classifier: the output is the pooled
    /// features (1024 for DenseNet-121, 1920 for DenseNet-201).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<i64>,
    /// ViT: token width (768 for ViT-B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<i64>,
    /// ViT: number of transformer blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// ViT: attention heads (must divide `embed_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_heads: Option<i64>,
    /// ViT: hidden width of the feed-forward block over `embed_dim`, as timm (4.0; 5.33334 for
    /// DINOv2 ViT-g/14, whose packed SwiGLU halves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_ratio: Option<f64>,
    /// ViT: patch side in pixels (16 for MAE, 14 for DINOv2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<i64>,
    /// ViT: register tokens (`reg_token`, DINOv2 "with registers"); 0 for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registers: Option<i64>,
    /// ViT: whether blocks have layer scale (`ls1.gamma`, `ls2.gamma`); DINOv2 yes, MAE no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_scale: Option<bool>,
    /// ViT: which tokens to return (MAE default `mean`, DINOv2 default `cls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// ViT: feed-forward kind (`gelu`; `swiglu` for DINOv2 ViT-g/14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ffn: Option<Ffn>,
    /// IResNet, DenseNet, ResNet, MobileNetV2: `pooled` (default) or `map`, the last spatial feature map as
    /// `[H*W, C]` tokens (see [`Output`]). `extractor extract --output` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    /// Per-channel RGB mean subtracted from the [0,1] pixels (required for TorchScript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f64; 3]>,
    /// Per-channel RGB standard deviation dividing the centred pixels (required for TorchScript).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f64; 3]>,
    /// Output size: the IResNet embedding size (512), the declared TorchScript output size
    /// (required there); for the other backbones a check against the built model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_dim: Option<i64>,
    /// HOG: cell side in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hog_cell: Option<u32>,
    /// HOG: number of orientation bins per cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hog_bins: Option<u32>,
}

/// The architecture family a backbone name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iresnet18|34|50|100`.
    IResNet,
    /// `densenet121`, `densenet201`.
    DenseNet,
    /// `resnet18|34|50|101|152` (torchvision).
    ResNet,
    /// `mobilenet_v2` (torchvision).
    MobileNetV2,
    /// `vit_b16` (MAE).
    MaeVit,
    /// `dinov2_vits14|vitb14|vitl14|vitg14`.
    Dinov2,
    /// `regnet_x_400mf|regnet_x_800mf|regnet_y_400mf|regnet_y_800mf`.
    RegNet,
    /// `efficientnet_b0|efficientnet_b2`, and the TensorFlow ports `tf_efficientnet_b0|b2`.
    EfficientNet,
    /// `hog`.
    Hog,
    /// `torchscript:<file>`.
    TorchScript,
}

/// Every built-in backbone name (TorchScript is `torchscript:<file>`).
pub const BUILTIN_NAMES: &[&str] = &[
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "densenet121",
    "densenet201",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "mobilenet_v2",
    "vit_b16",
    "dinov2_vits14",
    "dinov2_vitb14",
    "dinov2_vitl14",
    "dinov2_vitg14",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "efficientnet_b0",
    "efficientnet_b2",
    "tf_efficientnet_b0",
    "tf_efficientnet_b2",
    "hog",
];

impl BackboneConfig {
    /// A config with only the name set (random init with seed 0, published sizes).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// The architecture family of `name`, or an error listing the built-in names.
    pub fn family(&self) -> anyhow::Result<Family> {
        let n = self.name.as_str();
        Ok(match n {
            "iresnet18" | "iresnet34" | "iresnet50" | "iresnet100" => Family::IResNet,
            "densenet121" | "densenet201" => Family::DenseNet,
            "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152" => Family::ResNet,
            "mobilenet_v2" => Family::MobileNetV2,
            "vit_b16" => Family::MaeVit,
            "dinov2_vits14" | "dinov2_vitb14" | "dinov2_vitl14" | "dinov2_vitg14" => Family::Dinov2,
            "regnet_x_400mf" | "regnet_x_800mf" | "regnet_y_400mf" | "regnet_y_800mf" => {
                Family::RegNet
            }
            "efficientnet_b0" | "efficientnet_b2" | "tf_efficientnet_b0" | "tf_efficientnet_b2" => {
                Family::EfficientNet
            }
            "hog" => Family::Hog,
            _ if n.starts_with("torchscript:") && n.len() > "torchscript:".len() => {
                Family::TorchScript
            }
            _ => anyhow::bail!(
                "unknown backbone `{n}`: use one of {} or `torchscript:<file>`",
                BUILTIN_NAMES.join(", ")
            ),
        })
    }

    /// What the backbone writes per frame: `output`, else `tokens` for a ViT set with
    /// `pooling = "tokens"`, else pooled.
    pub fn output(&self) -> Output {
        match (self.output, self.pooling) {
            (Some(o), _) => o,
            (None, Some(Pooling::Tokens)) => Output::Tokens,
            (None, _) => Output::Pooled,
        }
    }

    /// Rejects overrides that the named architecture does not have, naming each one, and
    /// `output = "map"` on a backbone without a spatial feature map (saying what to use instead).
    pub fn check_fields(&self) -> anyhow::Result<()> {
        let family = self.family()?;
        if self.output() == Output::Tokens && !matches!(family, Family::MaeVit | Family::Dinov2) {
            let instead = match family {
                Family::Hog | Family::TorchScript => "keep the output pooled",
                _ => "a CNN writes its last spatial map as tokens with `--output map`",
            };
            anyhow::bail!(
                "backbone `{}` has no patch tokens, so it cannot write `output = tokens` (only \
                 the ViT family vit_b16 and dinov2_* can); {instead}",
                self.name
            );
        }
        if self.output() == Output::Map {
            let instead = match family {
                Family::IResNet
                | Family::DenseNet
                | Family::ResNet
                | Family::MobileNetV2
                | Family::RegNet
                | Family::EfficientNet => None,
                Family::MaeVit | Family::Dinov2 => Some(
                    "a ViT has patch tokens instead of a spatial map: use `--output tokens` (or \
                     `output = \"tokens\"` in its feature set; [patches, dim] per frame)",
                ),
                Family::Hog => Some(
                    "HOG computes one histogram vector per frame: drop `--output map` / \
                     `output = \"map\"`, or choose one of those CNN backbones",
                ),
                Family::TorchScript => Some(
                    "a TorchScript module returns what its forward returns: export it to return \
                     [tokens, dim] per frame and keep the output pooled",
                ),
            };
            if let Some(instead) = instead {
                anyhow::bail!(
                    "backbone `{}` has no spatial feature map, so it cannot write `output = map` \
                     (only the CNN backbones iresnet*, densenet*, resnet*, mobilenet_v2, \
                     regnet_x|y_400|800mf and [tf_]efficientnet_b0|b2 can); {instead}",
                    self.name
                );
            }
        }
        let set: Vec<(&str, bool)> = vec![
            ("layers", self.layers.is_some()),
            ("width", self.width.is_some()),
            ("growth", self.growth.is_some()),
            ("block_config", self.block_config.is_some()),
            ("init_features", self.init_features.is_some()),
            ("num_classes", self.num_classes.is_some()),
            ("embed_dim", self.embed_dim.is_some()),
            ("depth", self.depth.is_some()),
            ("num_heads", self.num_heads.is_some()),
            ("mlp_ratio", self.mlp_ratio.is_some()),
            ("patch_size", self.patch_size.is_some()),
            ("registers", self.registers.is_some()),
            ("layer_scale", self.layer_scale.is_some()),
            ("pooling", self.pooling.is_some()),
            ("ffn", self.ffn.is_some()),
            ("hog_cell", self.hog_cell.is_some()),
            ("hog_bins", self.hog_bins.is_some()),
            ("weights", self.weights.is_some()),
        ];
        let allowed: &[&str] = match family {
            Family::IResNet | Family::ResNet | Family::MobileNetV2 => {
                &["layers", "width", "weights"]
            }
            Family::DenseNet => &[
                "growth",
                "block_config",
                "init_features",
                "num_classes",
                "weights",
            ],
            Family::MaeVit | Family::Dinov2 => &[
                "embed_dim",
                "depth",
                "num_heads",
                "mlp_ratio",
                "patch_size",
                "registers",
                "layer_scale",
                "pooling",
                "ffn",
                "weights",
            ],
            // Sizes come from the published configuration or the weights file.
            Family::RegNet | Family::EfficientNet => &["weights"],
            Family::Hog => &["hog_cell", "hog_bins"],
            Family::TorchScript => &[],
        };
        let wrong: Vec<&str> = set
            .iter()
            .filter(|(field, is_set)| *is_set && !allowed.contains(field))
            .map(|(field, _)| *field)
            .collect();
        if !wrong.is_empty() {
            anyhow::bail!(
                "backbone `{}`: field(s) {} do not apply to this architecture; remove them{}",
                self.name,
                wrong.join(", "),
                if family == Family::TorchScript && wrong.contains(&"weights") {
                    " (a TorchScript file carries its own weights)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }
}
