//! The multi-rate temporal transformer of the ABAW5 AU entry of Wang et al.
//! (`../shared/papers/abaw5-va-expr-au.txt`, section 4.3): the encoder `arch = "multirate"`,
//! which maps a segment's features straight to the 12 AU logits. No public code: the reference
//! is `MultiRateAU` in `scripts/fixtures/abaw5_refs.py`, whose parameter names this module
//! creates (at the model's root: `in_proj.*`, `pipe_a.*`, `pipe_b.*`, `pipe_c.*`,
//! `pipeline_logits`).
//!
//! What it does: [`Multirate::forward_t`] takes `x [B, L, feat_dim]` (a segment, 256 frames in
//! the paper) to `h = in_proj(x) + positions` (`d_model` wide, the sinusoidal positions of the
//! temporal Transformer) and runs three pipelines over `h`:
//! - (a) `pipe_a`: a post-norm Transformer encoder (`pipe_a.encoder.layers.N.*`, PyTorch's
//!   `nn.TransformerEncoderLayer`, [`EncoderLayer`]) -> dropout -> `pipe_a.fc = Linear(d, 12)`;
//! - (b) `pipe_b`: up-sampling x2 in time (nearest neighbour: every frame twice) -> down-sampling
//!   by `pipe_b.down = Conv1d(d, d, kernel 3, stride 2, padding 1)` (back to L frames) -> ReLU
//!   -> dropout -> `pipe_b.fc = Linear(d, 12)`;
//! - (c) `pipe_c`: the same up / down (`pipe_c.down`, ReLU) -> a Transformer encoder
//!   (`pipe_c.encoder.layers.N.*`) -> dropout -> `pipe_c.fc = Linear(d, 12)`;
//!
//! and fuses the three `[B, L, 12]` logits with `softmax(pipeline_logits)` (a learned `[3]`
//! vector, zeros at initialisation: equal weights) -> 12 AU logits per frame.
//!
//! Choices the paper leaves open (all mine, also in `configs/systems/multirate-au.toml`): the
//! shared input projection and positions; the up-sampling kind (nearest, parameter-free) and the
//! down-sampling convolution's kernel 3 / stride 2 / padding 1 — with nearest up-sampling, output
//! frame t reads input frames t - 1 and t only, so padding at the end of a segment never reaches a
//! real frame; the ReLU after the convolution; `n_layers` Transformer layers per pipeline
//! (`d_model`, `n_heads`, `ff` and `dropout` of `[model]`, shared by both encoders); dropout before
//! each pipeline's Linear(12); the softmax fusion weights are one vector for the model (not per
//! frame or per AU). Padded frames are masked as keys in both encoders, as in the Transformer
//! encoder. There is no carried state: each segment stands alone.
//!
//! What it does not: apply the sigmoid (the loss and the predictor do), or serve other tasks than
//! the AUs (the config check says so).

use super::kernels::dropout::dropout;
use super::layers::{torch_linear, uniform};
use super::transformer::{EncoderLayer, SinusoidalPositions};
use tch::nn;
use tch::Tensor;

/// Sizes of [`Multirate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultirateConfig {
    /// Input feature width.
    pub feat_dim: i64,
    /// Model width d.
    pub d_model: i64,
    /// Attention heads (must divide d).
    pub n_heads: i64,
    /// Feed-forward width of the encoder layers.
    pub ff: i64,
    /// Encoder layers per Transformer pipeline.
    pub n_layers: i64,
    /// Dropout in the encoder layers and before each pipeline's Linear.
    pub dropout: f64,
}

/// PyTorch's `nn.Conv1d(d, d, 3, stride=2, padding=1)` with its names (`weight [d, d, 3]`,
/// `bias [d]`) and initialisation (uniform in ±1/sqrt(3 d)).
#[derive(Debug)]
struct Down {
    weight: Tensor,
    bias: Tensor,
}

impl Down {
    const KERNEL: i64 = 3;

    fn new(p: nn::Path, d: i64) -> Self {
        let bound = 1.0 / ((d * Self::KERNEL) as f64).sqrt();
        Down {
            weight: p.var("weight", &[d, d, Self::KERNEL], uniform(bound)),
            bias: p.var("bias", &[d], uniform(bound)),
        }
    }

    /// `h [B, L, d]` -> up-sampled x2 (nearest) -> strided convolution -> ReLU -> `[B, L, d]`.
    fn forward(&self, h: &Tensor) -> Tensor {
        let (b, l, d) = h.size3().expect("multirate input must be [B, L, d]");
        let up = h
            .unsqueeze(2)
            .expand([b, l, 2, d], false)
            .reshape([b, 2 * l, d]);
        up.transpose(1, 2)
            .conv1d(&self.weight, Some(&self.bias), [2], [1], [1], 1)
            .transpose(1, 2)
            .relu()
    }
}

/// The multi-rate encoder (see the module documentation).
#[derive(Debug)]
pub struct Multirate {
    in_proj: nn::Linear,
    pos: SinusoidalPositions,
    a_layers: Vec<EncoderLayer>,
    a_fc: nn::Linear,
    b_down: Down,
    b_fc: nn::Linear,
    c_down: Down,
    c_layers: Vec<EncoderLayer>,
    c_fc: nn::Linear,
    pipeline_logits: Tensor,
    dropout: f64,
}

impl Multirate {
    /// Creates the encoder under `p` (the model's root) with the reference's names.
    pub fn new(p: &nn::Path, cfg: MultirateConfig) -> Self {
        let d = cfg.d_model;
        let n_au = shared::N_AU as i64;
        let layers = |q: nn::Path| -> Vec<EncoderLayer> {
            let q = &q / "encoder" / "layers";
            (0..cfg.n_layers)
                .map(|i| EncoderLayer::new(&q / i, d, cfg.n_heads, cfg.ff, cfg.dropout))
                .collect()
        };
        Multirate {
            in_proj: torch_linear(p / "in_proj", cfg.feat_dim, d),
            pos: SinusoidalPositions::new(d, p.device()),
            a_layers: layers(p / "pipe_a"),
            a_fc: torch_linear(p / "pipe_a" / "fc", d, n_au),
            b_down: Down::new(p / "pipe_b" / "down", d),
            b_fc: torch_linear(p / "pipe_b" / "fc", d, n_au),
            c_down: Down::new(p / "pipe_c" / "down", d),
            c_layers: layers(p / "pipe_c"),
            c_fc: torch_linear(p / "pipe_c" / "fc", d, n_au),
            pipeline_logits: p.zeros("pipeline_logits", &[3]),
            dropout: cfg.dropout,
        }
    }

    /// The softmax weights of the three pipelines `[3]`.
    pub fn pipeline_weights(&self) -> Tensor {
        self.pipeline_logits.softmax(0, self.pipeline_logits.kind())
    }

    /// The logits `[B, L, 12]` of pipelines (a), (b) and (c) before the fusion; `bias` the
    /// additive key-padding bias of [`super::transformer::key_padding_bias`]; dropout only when
    /// `train`.
    pub fn pipelines(&self, x: &Tensor, bias: Option<&Tensor>, train: bool) -> [Tensor; 3] {
        let h = self.pos.forward(&x.apply(&self.in_proj));
        let encode = |layers: &[EncoderLayer], mut t: Tensor| {
            for layer in layers {
                t = layer.forward_t(&t, bias, train);
            }
            t
        };
        let head = |t: &Tensor, fc: &nn::Linear| dropout(t, self.dropout, train).apply(fc);
        [
            head(&encode(&self.a_layers, h.shallow_clone()), &self.a_fc),
            head(&self.b_down.forward(&h), &self.b_fc),
            head(&encode(&self.c_layers, self.c_down.forward(&h)), &self.c_fc),
        ]
    }

    /// `x [B, L, feat_dim]` -> `[B, L, 12]` AU logits: the pipelines fused by their softmax
    /// weights.
    pub fn forward_t(&self, x: &Tensor, bias: Option<&Tensor>, train: bool) -> Tensor {
        let [a, b, c] = self.pipelines(x, bias, train);
        let w = self.pipeline_weights();
        a * w.get(0) + b * w.get(1) + c * w.get(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn small() -> MultirateConfig {
        MultirateConfig {
            feat_dim: 5,
            d_model: 8,
            n_heads: 2,
            ff: 16,
            n_layers: 1,
            dropout: 0.0,
        }
    }

    #[test]
    fn the_pipelines_give_twelve_logits_per_frame_with_equal_weights_at_first() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Multirate::new(&vs.root(), small());
        let x = Tensor::randn([2, 7, 5], (Kind::Float, Device::Cpu));
        let y = m.forward_t(&x, None, false);
        assert_eq!(y.size(), [2, 7, 12]);
        let w = Vec::<f32>::try_from(m.pipeline_weights()).unwrap();
        assert!(w.iter().all(|v| (v - 1.0 / 3.0).abs() < 1e-7), "{w:?}");
    }

    /// Nearest up-sampling then kernel 3 / stride 2 / padding 1: frame t reads frames t - 1 and t.
    #[test]
    fn the_resampling_pipeline_reads_the_frame_and_the_one_before() {
        tch::set_num_threads(1);
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let down = Down::new(vs.root(), 4);
        let h = Tensor::randn([1, 6, 4], (Kind::Float, Device::Cpu));
        let y = down.forward(&h);
        assert_eq!(y.size(), [1, 6, 4]);
        let h2 = h.copy();
        let _ = h2.get(0).get(3).fill_(5.0);
        let y2 = down.forward(&h2);
        let moved: Vec<bool> = (0..6)
            .map(|t| {
                (y.get(0).get(t) - y2.get(0).get(t))
                    .abs()
                    .max()
                    .double_value(&[])
                    > 0.0
            })
            .collect();
        assert_eq!(moved, [false, false, false, true, true, false]);
        // By hand: out[t] = W0 h[t-1] + (W1 + W2) h[t] + b (then ReLU).
        let w = &down.weight;
        let t = 2;
        let by_hand = (h.get(0).get(t - 1).matmul(&w.select(2, 0).tr())
            + h.get(0)
                .get(t)
                .matmul(&(w.select(2, 1) + w.select(2, 2)).tr())
            + &down.bias)
            .relu();
        let d = (by_hand - y.get(0).get(t)).abs().max().double_value(&[]);
        assert!(d < 1e-5, "{d}");
    }
}
