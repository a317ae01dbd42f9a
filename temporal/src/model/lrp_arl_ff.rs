//! The AU detector of the ABAW5 entry of Yu et al. (local region perception, AU relationship
//! learning, feature fusion) over a backbone's last spatial map cached as tokens. No public
//! code: the reference is `scripts/fixtures/affect_refs.py` (`LrpArlFf`), whose parameter names
//! this module creates, and whose docstring lists every choice the paper leaves open.
//!
//! What it does: [`LrpArlFf`] maps tokens `x [N, T, C]` (IResNet: 7 x 7 x 512, T = 49) to 12
//! fused AU logits:
//! - LRP (`lrp.lanets.{i}.conv{1,2}.*`): `att = sigmoid(max_i LaNet_i(x))` per token, LaNet =
//!   two 1x1 convolutions `C -> C/r -> 1` with a ReLU between (Linear layers over channels,
//!   the same mathematics), and the attended map `xa = x * att`;
//! - ARL (`arl.class_linears.*`, `arl.gnn.*`, `arl.classifier.*`): per-AU blocks on every
//!   token of `xa` and the mean over tokens -> 12 nodes -> the ANFL graph layer
//!   ([`super::anfl::AuGraph`]) -> the 12 node features concatenated -> `Linear(12C, 12)`;
//! - the backbone branch (`backbone_fc.*`): `Linear(C, 12)` of the mean of the un-attended map;
//! - FF: `w * arl + (1 - w) * backbone` with `w` a fixed `fusion_weight`, or, with attention
//!   fusion (`fusion.*`), `w = sigmoid(weight_fc(h_0))` where `h` is a 2-layer post-norm
//!   Transformer encoder over [a learnable weight token, `backbone_proj(pooled)`, the 12 nodes]
//!   (no positions).
//!
//! Probabilities are the sigmoid of the logits; the paper trains with BCE + the circle loss
//! (`crate::loss::circle_loss`).
//!
//! In a temporal model it is the AU head `au = "lrp-arl-ff"` ([`super::heads`]), its names under
//! `au.`, fed by the token features of `arch = "none"`.
//!
//! What it does not: read pooled vectors (it needs token features; the config check says so),
//! or resample the training frames (the trainer's `resample_*` options do).

use super::anfl::{AnflConfig, AuGraph};
use super::layers::torch_linear;
use super::transformer::EncoderLayer;
use tch::{nn, Tensor};

/// How the two branches are fused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// `w * arl + (1 - w) * backbone` with this `w`.
    Fixed(f64),
    /// `w` from the attention fusion module.
    Attention {
        /// Attention heads (must divide C).
        heads: i64,
        /// Feed-forward width.
        ff_dim: i64,
        /// Encoder layers.
        layers: i64,
        /// Dropout inside the encoder layers.
        dropout: f64,
    },
}

/// Sizes and options of [`LrpArlFf`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrpArlFfConfig {
    /// Channels C of the map.
    pub channels: i64,
    /// Number of LANets (the reference's default 4).
    pub num_lanets: i64,
    /// LANet reduction r: the hidden width is C / r (default 8).
    pub reduction: i64,
    /// k of the AU graph (default 4).
    pub neighbors: i64,
    /// The fusion.
    pub fusion: Fusion,
}

/// The attention fusion (`fusion.*`).
#[derive(Debug)]
struct AttentionFusion {
    weight_token: Tensor,
    backbone_proj: nn::Linear,
    layers: Vec<EncoderLayer>,
    weight_fc: nn::Linear,
}

/// The model (see the module documentation).
#[derive(Debug)]
pub struct LrpArlFf {
    lanets: Vec<(nn::Linear, nn::Linear)>,
    arl: AuGraph,
    classifier: nn::Linear,
    backbone_fc: nn::Linear,
    fusion: Option<AttentionFusion>,
    fusion_weight: f64,
}

impl LrpArlFf {
    /// Creates the model under `p` with the reference's names.
    pub fn new(p: &nn::Path, cfg: LrpArlFfConfig) -> Self {
        let c = cfg.channels;
        let n_au = shared::N_AU as i64;
        let hidden = c / cfg.reduction;
        let lanets = (0..cfg.num_lanets)
            .map(|i| {
                let q = p / "lrp" / "lanets" / i;
                (
                    torch_linear(&q / "conv1", c, hidden),
                    torch_linear(&q / "conv2", hidden, 1),
                )
            })
            .collect();
        let arl_path = p / "arl";
        let arl = AuGraph::new(
            &arl_path,
            AnflConfig {
                channels: c,
                nodes: n_au,
                neighbors: cfg.neighbors,
                dropout: 0.0,
            },
        );
        let classifier = torch_linear(&arl_path / "classifier", n_au * c, n_au);
        let backbone_fc = torch_linear(p / "backbone_fc", c, n_au);
        let (fusion, fusion_weight) = match cfg.fusion {
            Fusion::Fixed(w) => (None, w),
            Fusion::Attention {
                heads,
                ff_dim,
                layers,
                dropout,
            } => {
                let f = p / "fusion";
                let enc = &f / "encoder" / "layers";
                (
                    Some(AttentionFusion {
                        weight_token: f.var("weight_token", &[c], nn::Init::Const(0.0)),
                        backbone_proj: torch_linear(&f / "backbone_proj", c, c),
                        layers: (0..layers)
                            .map(|l| EncoderLayer::new(&enc / l, c, heads, ff_dim, dropout))
                            .collect(),
                        weight_fc: torch_linear(&f / "weight_fc", c, 1),
                    }),
                    f64::NAN,
                )
            }
        };
        LrpArlFf {
            lanets,
            arl,
            classifier,
            backbone_fc,
            fusion,
            fusion_weight,
        }
    }

    /// The fused AU logits `[N, 12]` of tokens `x [N, T, C]`; in training, dropout in the fusion
    /// encoder and BatchNorm statistics from the `valid` rows (`None` = all).
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let scores: Vec<Tensor> = self
            .lanets
            .iter()
            .map(|(c1, c2)| x.apply(c1).relu().apply(c2).squeeze_dim(-1))
            .collect();
        let (att, _) = Tensor::stack(&scores, -1).max_dim(-1, false);
        let xa = x * att.sigmoid().unsqueeze(-1);
        let v = self.arl.forward_t(&xa, valid, train);
        let arl = v.flatten(1, -1).apply(&self.classifier);
        let pooled = x.mean_dim(1, false, x.kind());
        let backbone = pooled.apply(&self.backbone_fc);
        match &self.fusion {
            None => arl * self.fusion_weight + backbone * (1.0 - self.fusion_weight),
            Some(f) => {
                let n = x.size()[0];
                let token = f.weight_token.view([1, 1, -1]).expand([n, 1, -1], false);
                let mut h =
                    Tensor::cat(&[token, pooled.apply(&f.backbone_proj).unsqueeze(1), v], 1);
                for layer in &f.layers {
                    h = layer.forward_t(&h, None, train);
                }
                let w = h.select(1, 0).apply(&f.weight_fc).sigmoid();
                &w * arl + (w.neg() + 1.0) * backbone
            }
        }
    }
}
