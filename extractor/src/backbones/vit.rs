//! Vision transformers with timm's names: MAE ViT-B/16 and DINOv2 ViT-S/B/L/g/14.
//!
//! What it does: one ViT in tch that covers
//! - `vit_b16`: the MAE encoder as MAE's fine-tuned `models_vit` (global pool): 224 px, patch
//!   16, 12 x (768, 12 heads, GELU MLP 3072), output `fc_norm(mean of patch tokens)` (768);
//! - `dinov2_vits14|vitb14|vitl14|vitg14`: timm's `vit_*_patch14_dinov2` (and `_reg4_`): patch
//!   14, layer scale (`ls1.gamma`, `ls2.gamma`), optional register tokens (`reg_token`), the
//!   packed SwiGLU MLP for ViT-g, output the final `norm` of the class token by default.
//!
//! Parameter names: `patch_embed.proj`, `cls_token`, `reg_token`, `pos_embed`,
//! `blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`, then
//! `fc_norm` (MAE) or `norm` (DINOv2). A classification `head.*` (MAE fine-tuned checkpoints)
//! and DINOv2's `mask_token` are ignored. `pooling` picks `mean` (of patch tokens), `cls`, or
//! `tokens` (all patch tokens, `[patches, dim]` per frame); MAE normalises after pooling (as its
//! `fc_norm`), DINOv2 before. `pos_embed` either covers the prefix tokens too (`1 + registers +
//! patches` rows, added after they are prepended: MAE, DINOv2 without registers) or only the
//! patches (timm's `no_embed_class`, DINOv2 with registers); with weights the layout, the register
//! count, layer scale and the MLP kind and width are read from the checkpoint. If the
//! checkpoint's patch grid differs from `input_size / patch_size` (DINOv2 checkpoints are 518 px),
//! `pos_embed` is resampled once at load exactly as timm's `resample_abs_pos_embed` (bicubic,
//! antialiased, align_corners false). A `vit_b16` checkpoint with a final `norm` and no
//! `fc_norm` (timm's `vit_base_patch16_224.mae`, MAE's pre-trained encoder) is run as timm runs
//! it: `norm` on every token, then the pooling (for `mean`: the mean of the normalised patch
//! tokens, as timm's `global_pool = "avg"` without `fc_norm`).
//!
//! What it does not: dynamic image sizes per batch, patch dropout, or classification heads.

use tch::nn::{self, Conv2D, LayerNorm, Linear, Module};
use tch::{Device, Kind, Tensor};

use super::weights::{init_vars, WeightsFile};
use super::{
    check_out_dim, normalised_meta, open_weights, positive, Backbone, BackboneConfig, BackboneMeta,
    Family, Ffn, Normalise, Output, Pooling, IMAGENET_MEAN, IMAGENET_STD,
};

/// LayerNorm epsilon of timm's ViTs.
const EPS: f64 = 1e-6;

/// Which published model family the weights and the head follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// MAE fine-tuned `models_vit`: `fc_norm` applied after pooling.
    Mae,
    /// DINOv2 (timm): `norm` applied to every token, then pooling.
    Dinov2,
}

/// The resolved architecture of one ViT (published values, overrides, checkpoint shapes).
#[derive(Debug, Clone, PartialEq)]
pub struct VitSpec {
    /// MAE or DINOv2 head and names.
    pub style: Style,
    /// Token width.
    pub embed_dim: i64,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: i64,
    /// Hidden width of `mlp.fc1` (its output size).
    pub mlp_hidden: i64,
    /// GELU or packed SwiGLU.
    pub ffn: Ffn,
    /// Patch side in pixels.
    pub patch_size: i64,
    /// Register tokens.
    pub registers: i64,
    /// Whether blocks have `ls1.gamma` / `ls2.gamma`.
    pub layer_scale: bool,
    /// Which tokens the backbone returns.
    pub pooling: Pooling,
    /// Input side in pixels (a multiple of `patch_size`).
    pub input_size: i64,
    /// Whether `pos_embed` has rows for the prefix (cls + register) tokens.
    pub pos_has_prefix: bool,
    /// Patch grid side `pos_embed` is stored at (the checkpoint's; else `input_size / patch`).
    pub pos_grid: i64,
    /// Whether the final LayerNorm is `norm`, applied to every token before pooling (DINOv2,
    /// and MAE checkpoints without `fc_norm`), rather than MAE's `fc_norm` after pooling.
    pub norm_tokens: bool,
}

/// Published sizes: (style, embed_dim, depth, heads, mlp_ratio, patch, ffn).
fn published(name: &str) -> Option<(Style, i64, usize, i64, f64, i64, Ffn)> {
    Some(match name {
        "vit_b16" => (Style::Mae, 768, 12, 12, 4.0, 16, Ffn::Gelu),
        "dinov2_vits14" => (Style::Dinov2, 384, 12, 6, 4.0, 14, Ffn::Gelu),
        "dinov2_vitb14" => (Style::Dinov2, 768, 12, 12, 4.0, 14, Ffn::Gelu),
        "dinov2_vitl14" => (Style::Dinov2, 1024, 24, 16, 4.0, 14, Ffn::Gelu),
        "dinov2_vitg14" => (Style::Dinov2, 1536, 40, 24, 2.66667 * 2.0, 14, Ffn::Swiglu),
        _ => return None,
    })
}

fn is_square(n: i64) -> Option<i64> {
    if n <= 0 {
        return None;
    }
    let r = (n as f64).sqrt().round() as i64;
    (r * r == n).then_some(r)
}

impl VitSpec {
    /// Resolves `cfg` (a ViT-family name plus overrides) against the checkpoint header, if any.
    pub fn resolve(cfg: &BackboneConfig, weights: Option<&WeightsFile>) -> anyhow::Result<Self> {
        let (style, dim, depth, heads, ratio, patch, ffn) = published(&cfg.name)
            .ok_or_else(|| anyhow::anyhow!("`{}` is not a ViT backbone name", cfg.name))?;
        let shape = |n: &str| weights.and_then(|w| w.shape(n)).map(|s| s.to_vec());
        let embed_dim = positive(cfg, "embed_dim", cfg.embed_dim.unwrap_or(dim))?;
        let depth = cfg.depth.unwrap_or(depth);
        let num_heads = positive(cfg, "num_heads", cfg.num_heads.unwrap_or(heads))?;
        if embed_dim % num_heads != 0 {
            anyhow::bail!(
                "backbone `{}`: num_heads {num_heads} must divide embed_dim {embed_dim}",
                cfg.name
            );
        }
        let patch_size = positive(cfg, "patch_size", cfg.patch_size.unwrap_or(patch))?;
        let input_size = positive(cfg, "input_size", i64::from(cfg.input_size.unwrap_or(224)))?;
        if input_size % patch_size != 0 {
            anyhow::bail!(
                "backbone `{}`: input_size {input_size} must be a multiple of patch_size {patch_size}",
                cfg.name
            );
        }
        let registers = cfg
            .registers
            .or_else(|| weights.map(|_| shape("reg_token").map_or(0, |s| s[1])))
            .unwrap_or(0);
        if registers < 0 {
            anyhow::bail!("backbone `{}`: `registers` must be >= 0", cfg.name);
        }
        let layer_scale = cfg
            .layer_scale
            .or_else(|| weights.map(|w| w.contains("blocks.0.ls1.gamma")))
            .unwrap_or(style == Style::Dinov2);
        let fc1 = shape("blocks.0.mlp.fc1.weight");
        let fc2 = shape("blocks.0.mlp.fc2.weight");
        let ffn = cfg
            .ffn
            .or(match (&fc1, &fc2) {
                (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 && b[1] * 2 == a[0] => {
                    Some(Ffn::Swiglu)
                }
                (Some(_), Some(_)) => Some(Ffn::Gelu),
                _ => None,
            })
            .unwrap_or(ffn);
        let mlp_hidden = match (cfg.mlp_ratio, &fc1) {
            (Some(r), _) => (embed_dim as f64 * r) as i64,
            (None, Some(a)) => a[0],
            (None, None) => (embed_dim as f64 * ratio) as i64,
        };
        positive(cfg, "mlp_ratio", mlp_hidden)?;
        if ffn == Ffn::Swiglu && mlp_hidden % 2 != 0 {
            anyhow::bail!(
                "backbone `{}`: the SwiGLU hidden width {mlp_hidden} must be even; fix `mlp_ratio`",
                cfg.name
            );
        }
        let grid = input_size / patch_size;
        let prefix = 1 + registers;
        let (pos_has_prefix, pos_grid) =
            match shape("pos_embed") {
                Some(s) if s.len() == 3 => {
                    let rows = s[1];
                    let with_prefix = is_square(rows - prefix);
                    let without = is_square(rows);
                    match (registers > 0, with_prefix, without) {
                        (true, _, Some(g)) => (false, g),
                        (_, Some(g), _) => (true, g),
                        (_, None, Some(g)) => (false, g),
                        _ => anyhow::bail!(
                        "{}: pos_embed has {rows} rows, neither a square patch grid nor one plus \
                         {prefix} prefix token(s); set `registers` to the checkpoint's",
                        weights.map(|w| w.path().display().to_string()).unwrap_or_default()
                    ),
                    }
                }
                _ => (registers == 0, grid),
            };
        Ok(Self {
            style,
            embed_dim,
            depth,
            num_heads,
            mlp_hidden,
            ffn,
            patch_size,
            registers,
            layer_scale,
            // `output = "tokens"` is `pooling = "tokens"`; `output = "pooled"` pools even a set
            // that says `pooling = "tokens"` (its own default: MAE mean, DINOv2 cls).
            pooling: match (cfg.output(), cfg.pooling) {
                (Output::Tokens, _) => Pooling::Tokens,
                (_, Some(p)) if p != Pooling::Tokens => p,
                _ => match style {
                    Style::Mae => Pooling::Mean,
                    Style::Dinov2 => Pooling::Cls,
                },
            },
            input_size,
            pos_has_prefix,
            pos_grid,
            norm_tokens: style == Style::Dinov2
                || weights
                    .is_some_and(|w| w.contains("norm.weight") && !w.contains("fc_norm.weight")),
        })
    }

    /// Patch tokens per image at `input_size`.
    pub fn patches(&self) -> i64 {
        let g = self.input_size / self.patch_size;
        g * g
    }
}

#[derive(Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: i64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("tokens are [batch, tokens, dim]");
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, c / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let y = Tensor::scaled_dot_product_attention(
            &qkv.get(0),
            &qkv.get(1),
            &qkv.get(2),
            None::<Tensor>,
            0.0,
            false,
            None::<f64>,
            false,
        );
        self.proj.forward(&y.transpose(1, 2).reshape([b, n, c]))
    }
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ffn: Ffn,
    ls2: Option<Tensor>,
}

impl Block {
    fn mlp(&self, x: &Tensor) -> Tensor {
        // In place where the input is a fresh temporary: the hidden activations are the largest
        // tensors of the network (tokens x 4 dim per frame), and a second copy is an allocation
        // and a pass over memory per block.
        let mut h = self.fc1.forward(x);
        let h = match self.ffn {
            Ffn::Gelu => h.gelu_("none"),
            Ffn::Swiglu => {
                let halves = h.chunk(2, -1);
                halves[0].silu() * &halves[1]
            }
        };
        self.fc2.forward(&h)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let scale = |y: Tensor, g: &Option<Tensor>| match g {
            Some(g) => y * g,
            None => y,
        };
        let mut x = x + scale(self.attn.forward(&self.norm1.forward(x)), &self.ls1);
        x += scale(self.mlp(&self.norm2.forward(&x)), &self.ls2);
        x
    }
}

#[derive(Debug)]
struct Net {
    spec: VitSpec,
    patch_embed: Conv2D,
    cls_token: Tensor,
    reg_token: Option<Tensor>,
    /// The stored `pos_embed` variable (checkpoint grid).
    pos_var: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Net {
    fn new(p: &nn::Path, s: &VitSpec) -> Self {
        let d = s.embed_dim;
        let layer_norm = |p: nn::Path| {
            nn::layer_norm(
                p,
                vec![d],
                nn::LayerNormConfig {
                    eps: EPS,
                    ..Default::default()
                },
            )
        };
        let token = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let pos_rows = s.pos_grid * s.pos_grid + if s.pos_has_prefix { 1 + s.registers } else { 0 };
        let blocks = (0..s.depth)
            .map(|i| {
                let bp = p / "blocks" / i;
                let ls = |name: &str| {
                    s.layer_scale
                        .then(|| (&bp / name).var("gamma", &[d], nn::Init::Const(1.0)))
                };
                let fc2_in = match s.ffn {
                    Ffn::Gelu => s.mlp_hidden,
                    Ffn::Swiglu => s.mlp_hidden / 2,
                };
                Block {
                    norm1: layer_norm(&bp / "norm1"),
                    attn: Attention {
                        qkv: nn::linear(&bp / "attn" / "qkv", d, 3 * d, Default::default()),
                        proj: nn::linear(&bp / "attn" / "proj", d, d, Default::default()),
                        heads: s.num_heads,
                    },
                    ls1: ls("ls1"),
                    norm2: layer_norm(&bp / "norm2"),
                    fc1: nn::linear(&bp / "mlp" / "fc1", d, s.mlp_hidden, Default::default()),
                    fc2: nn::linear(&bp / "mlp" / "fc2", fc2_in, d, Default::default()),
                    ffn: s.ffn,
                    ls2: ls("ls2"),
                }
            })
            .collect();
        Self {
            spec: s.clone(),
            patch_embed: nn::conv2d(
                p / "patch_embed" / "proj",
                3,
                d,
                s.patch_size,
                nn::ConvConfig {
                    stride: s.patch_size,
                    ..Default::default()
                },
            ),
            cls_token: p.var("cls_token", &[1, 1, d], token),
            reg_token: (s.registers > 0).then(|| p.var("reg_token", &[1, s.registers, d], token)),
            pos_var: p.var("pos_embed", &[1, pos_rows, d], token),
            blocks,
            norm: layer_norm(p / if s.norm_tokens { "norm" } else { "fc_norm" }),
        }
    }

    /// `pos_embed` at the model's grid: the stored one, or resampled as timm does at load.
    fn pos_embed(&self) -> Tensor {
        let s = &self.spec;
        let grid = s.input_size / s.patch_size;
        if grid == s.pos_grid {
            return self.pos_var.shallow_clone();
        }
        let prefix = if s.pos_has_prefix { 1 + s.registers } else { 0 };
        let d = s.embed_dim;
        let head = self.pos_var.narrow(1, 0, prefix);
        let old = self
            .pos_var
            .narrow(1, prefix, s.pos_grid * s.pos_grid)
            .reshape([1, s.pos_grid, s.pos_grid, d])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float);
        let new = old
            .internal_upsample_bicubic2d_aa([grid, grid], false, None::<f64>, None::<f64>)
            .permute([0, 2, 3, 1])
            .reshape([1, grid * grid, d]);
        Tensor::cat(&[head, new], 1)
    }

    fn forward(&self, x: &Tensor, pos: &Tensor) -> Tensor {
        let s = &self.spec;
        let b = x.size()[0];
        let mut x = self.patch_embed.forward(x).flatten(2, -1).transpose(1, 2);
        let mut prefix = vec![self.cls_token.expand([b, -1, -1], false)];
        if let Some(r) = &self.reg_token {
            prefix.push(r.expand([b, -1, -1], false));
        }
        if s.pos_has_prefix {
            prefix.push(x);
            x = Tensor::cat(&prefix, 1) + pos;
        } else {
            prefix.push(x + pos);
            x = Tensor::cat(&prefix, 1);
        }
        for block in &self.blocks {
            x = block.forward(&x);
        }
        let first = 1 + s.registers;
        let n = x.size()[1] - first;
        match (s.norm_tokens, s.pooling) {
            (false, Pooling::Mean) => {
                self.norm
                    .forward(&x.narrow(1, first, n).mean_dim(1, false, Kind::Float))
            }
            (true, Pooling::Mean) => {
                self.norm
                    .forward(&x)
                    .narrow(1, first, n)
                    .mean_dim(1, false, Kind::Float)
            }
            (_, Pooling::Cls) => self.norm.forward(&x.select(1, 0)),
            (_, Pooling::Tokens) => self.norm.forward(&x.narrow(1, first, n)),
        }
    }
}

/// A MAE or DINOv2 vision transformer ready to embed face crops.
#[derive(Debug)]
pub struct Vit {
    meta: BackboneMeta,
    norm: Normalise,
    vs: nn::VarStore,
    net: Net,
    /// `pos_embed` at the model's grid (resampled once if the checkpoint's grid differs).
    pos: Tensor,
}

impl Vit {
    /// Builds `cfg` (`vit_b16` or `dinov2_*` plus overrides) on `device`, loading `cfg.weights`.
    pub fn new(cfg: &BackboneConfig, device: Device) -> anyhow::Result<Self> {
        let weights = open_weights(cfg)?;
        let spec = VitSpec::resolve(cfg, weights.as_ref())?;
        let ignored: &[&str] = match cfg.family()? {
            Family::Dinov2 => &["head.", "mask_token"],
            _ => &["head."],
        };
        let (vs, net) = init_vars(
            cfg.seed,
            weights.as_ref(),
            &cfg.name,
            ignored,
            device,
            |p| Ok(Net::new(p, &spec)),
        )?;
        check_out_dim(cfg, spec.embed_dim)?;
        let pos = {
            let _guard = tch::no_grad_guard();
            net.pos_embed()
        };
        let output_shape = match spec.pooling {
            Pooling::Tokens => vec![spec.patches() as usize, spec.embed_dim as usize],
            _ => vec![spec.embed_dim as usize],
        };
        let (norm, meta) = normalised_meta(
            cfg,
            (IMAGENET_MEAN, IMAGENET_STD),
            spec.input_size as u32,
            output_shape,
            weights.as_ref(),
            device,
        )?;
        Ok(Self {
            meta,
            norm,
            vs,
            net,
            pos,
        })
    }

    /// The resolved architecture.
    pub fn spec(&self) -> &VitSpec {
        &self.net.spec
    }

    /// The parameters, by their timm names (e.g. to save as safetensors).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

impl Backbone for Vit {
    fn meta(&self) -> &BackboneMeta {
        &self.meta
    }
    fn forward(&self, images: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.net.forward(&self.norm.apply(images), &self.pos)
    }
}
