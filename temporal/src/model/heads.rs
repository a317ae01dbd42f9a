//! The per-task output head: the reference's `Head`,
//! `Linear(d, 512) - ReLU - Dropout - Linear(512, 256) - ReLU - Dropout - Linear(256, out)`.
//!
//! What it does: creates `net.0`, `net.3`, `net.6` (the `nn.Sequential` indices) under its path and
//! maps encoder features `[B, L, d]` to raw outputs `[B, L, out]` (VA values, expression logits,
//! AU logits).
//!
//! What it does not: apply softmax / sigmoid (the loss and the predictor do that).

use super::kernels::dropout::dropout;
use super::layers::torch_linear;
use tch::nn;
use tch::Tensor;

/// Widths of the two hidden layers, fixed by the reference.
pub const HEAD_HIDDEN: [i64; 2] = [512, 256];

/// One task head.
#[derive(Debug)]
pub struct Head {
    l0: nn::Linear,
    l3: nn::Linear,
    l6: nn::Linear,
    dropout: f64,
}

impl Head {
    /// Creates `p / "net" / {0,3,6}` for input width `d_in` and output width `d_out`.
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, dropout: f64) -> Self {
        let net = &p / "net";
        let [h1, h2] = HEAD_HIDDEN;
        Head {
            l0: torch_linear(&net / 0, d_in, h1),
            l3: torch_linear(&net / 3, h1, h2),
            l6: torch_linear(&net / 6, h2, d_out),
            dropout,
        }
    }

    /// `[B, L, d_in]` -> `[B, L, d_out]`; dropout only when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = dropout(&x.apply(&self.l0).relu(), self.dropout, train);
        dropout(&h.apply(&self.l3).relu(), self.dropout, train).apply(&self.l6)
    }
}
