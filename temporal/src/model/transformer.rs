//! PyTorch's `nn.TransformerEncoderLayer` (batch first, post-norm, ReLU) written out with the
//! same parameter names, plus the reference's sinusoidal positions and key-padding handling.
//!
//! What it does: [`EncoderLayer`] creates `self_attn.in_proj_weight`, `self_attn.in_proj_bias`,
//! `self_attn.out_proj.{weight,bias}`, `linear1.*`, `linear2.*`, `norm1.*`, `norm2.*` under its
//! path, initialised as PyTorch does, and computes
//! `x = norm1(x + drop(attn(x))); x = norm2(x + drop(linear2(drop(relu(linear1(x))))))`.
//! [`SinusoidalPositions`] is a non-persistent buffer: it is never in the var store or a checkpoint.
//! [`key_padding_bias`] turns a padding mask into the additive attention bias, leaving rows that are
//! all padding unmasked as the reference does (else the softmax would be NaN).
//!
//! What it does not: causal masks, pre-norm layers, or attention across segments.

use super::kernels::dropout::dropout;
use super::layers::{torch_linear, uniform};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Rows of positions computed once at construction (the reference's `max_len`); longer inputs
/// get their positions computed on the fly with the same formula.
pub const MAX_POSITIONS: i64 = 4096;

/// Additive attention bias `[B, 1, 1, L]` (0 = attend, -inf = padding) from a padding mask
/// `pad [B, L]` (true = padding).
///
/// A row that is padding everywhere (an exhausted stream) is left fully unmasked, as the
/// reference does with `pad & ~pad.all(1)`: its outputs are finite and ignored by the loss.
pub fn key_padding_bias(pad: &Tensor, kind: Kind) -> Tensor {
    let pad = pad.to_kind(Kind::Bool);
    let all = pad.all_dim(1, true);
    let pad = pad.logical_and(&all.logical_not());
    let (b, l) = pad.size2().expect("pad must be [B, L]");
    Tensor::zeros([b, l], (kind, pad.device()))
        .masked_fill(&pad, f64::NEG_INFINITY)
        .view([b, 1, 1, l])
}

/// `x + pe[:L]`: the reference's `SinusoidalPositions` (sin on even, cos on odd channels).
#[derive(Debug)]
pub struct SinusoidalPositions {
    pe: Tensor,
    d: i64,
}

impl SinusoidalPositions {
    /// Positions for width `d`, computed for [`MAX_POSITIONS`] rows on `device`.
    pub fn new(d: i64, device: tch::Device) -> Self {
        SinusoidalPositions {
            pe: Self::table(MAX_POSITIONS, d, device),
            d,
        }
    }

    /// The `[len, d]` table, computed in f32 with the reference's operations and order.
    pub fn table(len: i64, d: i64, device: tch::Device) -> Tensor {
        let pos = Tensor::arange(len, (Kind::Int64, device)).unsqueeze(1);
        let div = (Tensor::arange_start_step(0, d, 2, (Kind::Int64, device)).to_kind(Kind::Float)
            * (-(10000f64.ln()) / d as f64))
            .exp();
        let angles = pos.to_kind(Kind::Float) * div.unsqueeze(0);
        let pe = Tensor::zeros([len, d], (Kind::Float, device));
        let n_cos = d / 2;
        pe.slice(1, 0, None, 2).copy_(&angles.sin());
        pe.slice(1, 1, None, 2)
            .copy_(&angles.narrow(1, 0, n_cos).cos());
        pe
    }

    /// `x [B, L, d]` plus the positions of `0..L`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let l = x.size()[1];
        if l <= self.pe.size()[0] {
            x + self.pe.narrow(0, 0, l).to_kind(x.kind())
        } else {
            x + Self::table(l, self.d, x.device()).to_kind(x.kind())
        }
    }
}

/// PyTorch's `nn.MultiheadAttention` (batch first, same key/value width, no extra biases).
#[derive(Debug)]
pub struct MultiheadAttention {
    in_proj_weight: Tensor,
    in_proj_bias: Tensor,
    out_proj: nn::Linear,
    n_heads: i64,
    dropout: f64,
}

impl MultiheadAttention {
    /// Creates `in_proj_weight [3d, d]` (Xavier uniform), `in_proj_bias [3d]` (zeros),
    /// `out_proj.weight [d, d]` (uniform ±1/sqrt(d)) and `out_proj.bias [d]` (zeros) under `p`.
    pub fn new(p: nn::Path, d: i64, n_heads: i64, dropout: f64) -> Self {
        let xavier = (6.0 / (d + 3 * d) as f64).sqrt();
        let in_proj_weight = p.var("in_proj_weight", &[3 * d, d], uniform(xavier));
        let in_proj_bias = p.zeros("in_proj_bias", &[3 * d]);
        let out_proj = nn::linear(
            &p / "out_proj",
            d,
            d,
            nn::LinearConfig {
                ws_init: uniform(1.0 / (d as f64).sqrt()),
                bs_init: Some(nn::Init::Const(0.0)),
                bias: true,
            },
        );
        MultiheadAttention {
            in_proj_weight,
            in_proj_bias,
            out_proj,
            n_heads,
            dropout,
        }
    }

    /// Self-attention over `x [B, L, d]` with an additive `bias [B, 1, 1, L]`; dropout on the
    /// attention weights only when `train`.
    pub fn forward_t(&self, x: &Tensor, bias: Option<&Tensor>, train: bool) -> Tensor {
        let (b, l, d) = x.size3().expect("attention input must be [B, L, d]");
        let h = self.n_heads;
        let qkv = x.linear(&self.in_proj_weight, Some(&self.in_proj_bias));
        let split = |t: &Tensor| t.view([b, l, h, d / h]).transpose(1, 2);
        let parts = qkv.chunk(3, -1);
        let (q, k, v) = (split(&parts[0]), split(&parts[1]), split(&parts[2]));
        let p = if train { self.dropout } else { 0.0 };
        let attn = Tensor::scaled_dot_product_attention(&q, &k, &v, bias, p, false, None, false);
        attn.transpose(1, 2)
            .reshape([b, l, d])
            .apply(&self.out_proj)
    }
}

impl MultiheadAttention {
    /// `nn.MultiheadAttention(query, key, value)` with distinct inputs (cross-attention, or
    /// positions added to the queries and keys but not to the values): `query [B, Lq, d]`,
    /// `key` and `value [B, Lk, d]`, no mask; dropout on the attention weights only when `train`.
    pub fn attend(&self, query: &Tensor, key: &Tensor, value: &Tensor, train: bool) -> Tensor {
        let (b, lq, d) = query.size3().expect("attention query must be [B, L, d]");
        let lk = key.size()[1];
        let h = self.n_heads;
        let w = self.in_proj_weight.chunk(3, 0);
        let bias = self.in_proj_bias.chunk(3, 0);
        let split = |t: &Tensor, l: i64| t.view([b, l, h, d / h]).transpose(1, 2);
        let q = split(&query.linear(&w[0], Some(&bias[0])), lq);
        let k = split(&key.linear(&w[1], Some(&bias[1])), lk);
        let v = split(&value.linear(&w[2], Some(&bias[2])), lk);
        let p = if train { self.dropout } else { 0.0 };
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<&Tensor>,
            p,
            false,
            None,
            false,
        );
        attn.transpose(1, 2)
            .reshape([b, lq, d])
            .apply(&self.out_proj)
    }
}

/// PyTorch's `nn.TransformerEncoderLayer(d, n_heads, ff, dropout, batch_first=True)`:
/// post-norm, ReLU, layer-norm eps 1e-5.
#[derive(Debug)]
pub struct EncoderLayer {
    self_attn: MultiheadAttention,
    linear1: nn::Linear,
    linear2: nn::Linear,
    norm1: nn::LayerNorm,
    norm2: nn::LayerNorm,
    dropout: f64,
}

impl EncoderLayer {
    /// Creates the layer's parameters under `p` with the PyTorch names.
    pub fn new(p: nn::Path, d: i64, n_heads: i64, ff: i64, dropout: f64) -> Self {
        let ln = nn::LayerNormConfig {
            eps: 1e-5,
            ..Default::default()
        };
        EncoderLayer {
            self_attn: MultiheadAttention::new(&p / "self_attn", d, n_heads, dropout),
            linear1: torch_linear(&p / "linear1", d, ff),
            linear2: torch_linear(&p / "linear2", ff, d),
            norm1: nn::layer_norm(&p / "norm1", vec![d], ln),
            norm2: nn::layer_norm(&p / "norm2", vec![d], ln),
            dropout,
        }
    }

    /// `x [B, L, d]` -> `[B, L, d]`; `bias` from [`key_padding_bias`]; dropout only when `train`.
    pub fn forward_t(&self, x: &Tensor, bias: Option<&Tensor>, train: bool) -> Tensor {
        let sa = dropout(
            &self.self_attn.forward_t(x, bias, train),
            self.dropout,
            train,
        );
        let x = self.norm1.forward(&(x + sa));
        let ff = dropout(&x.apply(&self.linear1).relu(), self.dropout, train).apply(&self.linear2);
        let ff = dropout(&ff, self.dropout, train);
        self.norm2.forward(&(x + ff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_formula() {
        // pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(same), computed here in f64.
        let d = 6;
        let pe = SinusoidalPositions::table(5, d, tch::Device::Cpu);
        for p in 0..5i64 {
            for i in 0..(d / 2) {
                let angle = p as f64 / 10000f64.powf(2.0 * i as f64 / d as f64);
                let s = pe.double_value(&[p, 2 * i]);
                let c = pe.double_value(&[p, 2 * i + 1]);
                assert!((s - angle.sin()).abs() < 1e-5, "sin at p={p} i={i}");
                assert!((c - angle.cos()).abs() < 1e-5, "cos at p={p} i={i}");
            }
        }
    }

    #[test]
    fn padding_bias_masks_padding_but_not_all_padding_rows() {
        let pad = Tensor::from_slice(&[false, true, true, true, true, true]).view([2, 3]);
        let bias = key_padding_bias(&pad, Kind::Float).view([2, 3]);
        let row0: Vec<f32> = Vec::try_from(bias.get(0)).unwrap();
        let row1: Vec<f32> = Vec::try_from(bias.get(1)).unwrap();
        assert_eq!(row0, vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert_eq!(row1, vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn padded_keys_do_not_change_unpadded_outputs() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let layer = EncoderLayer::new(vs.root(), 8, 2, 16, 0.0);
        let x = Tensor::randn([1, 5, 8], (Kind::Float, tch::Device::Cpu));
        let pad = Tensor::from_slice(&[false, false, false, true, true]).view([1, 5]);
        let y = layer.forward_t(&x, Some(&key_padding_bias(&pad, Kind::Float)), false);
        // Replace the padded frames by other values: the first three outputs must not move.
        let x2 = x.copy();
        x2.narrow(1, 3, 2)
            .copy_(&Tensor::randn([1, 2, 8], (Kind::Float, tch::Device::Cpu)));
        let y2 = layer.forward_t(&x2, Some(&key_padding_bias(&pad, Kind::Float)), false);
        let diff = (y.narrow(1, 0, 3) - y2.narrow(1, 0, 3))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "padded frames leaked into valid ones: {diff}");
        // Without the mask they do move (the test would be vacuous otherwise).
        let y3 = layer.forward_t(&x2, None, false);
        assert!(
            (y.narrow(1, 0, 3) - y3.narrow(1, 0, 3))
                .abs()
                .max()
                .double_value(&[])
                > 1e-4
        );
    }
}
