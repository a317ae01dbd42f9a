//! The GRU layer's training path: the same cell as ATen's `gru`, with the gradient of the
//! recurrent weights computed once per segment instead of once per frame.
//!
//! What it does: [`train_forward`] runs one GRU layer over a segment as ATen does (the input
//! projection of every frame in one GEMM, then the time loop `r, z = σ(gi + gh)`,
//! `n = tanh(gi_n + r ⊙ gh_n)`, `h' = (h − n) ⊙ z + n`, ATen's operations in ATen's order), but
//! each frame's recurrent product `gh_t = b_hh + h_{t−1} W_hhᵀ` uses a detached copy of `W_hh`
//! and starts from a row of [`DeferredGru::probes`], a leaf that holds `b_hh`. Autograd then propagates through `h` as
//! usual while, instead of adding one rank-B outer product per frame into a 12 MB gradient (a
//! large part of ATen's GRU backward on CPU: 250 memory-bound updates per layer and step),
//! it leaves every frame's gate gradient in `probes.grad`. [`DeferredGrads::backward`] then
//! forms `dW_hh = Σ_t g_tᵀ h_{t−1}` as one GEMM over the segment, `db_hh = Σ_t g_t`, and adds
//! them to the parameters' gradients. The copy of `W_hhᵀ` is contiguous, so the per-frame
//! backward product `g_t W_hh` reads it in the GEMM's fast orientation (measured rates: the
//! README's speed section).
//!
//! What it does not: run without gradients ([`super::rnn_eval`] does that, see
//! `model::encoder::RnnBlock`), or handle LSTM (ATen runs oneDNN's fused LSTM, which is faster
//! than this loop would be).

use tch::{Kind, Tensor};

/// One GRU layer's recurrent weight gradient, waiting for the backward pass.
#[derive(Debug)]
pub struct DeferredGru {
    w_hh: Tensor,
    b_hh: Tensor,
    /// `[B, L, 3H]` leaf, `b_hh` expanded (no storage of its own); after backward its
    /// gradient is every frame's gradient with respect to `gh_t`.
    probes: Tensor,
    /// The initial state `[1, B, H]` and the outputs `[B, L, H]`, without a graph: frame `t`
    /// started from `h0` (t = 0) or `y[:, t - 1]`.
    h0: Tensor,
    y: Tensor,
}

impl DeferredGru {
    /// A scalar whose gradient with respect to `W_hh` and `b_hh` is what the segment's frames
    /// contribute to theirs, or `None` if no backward pass reached the probes.
    fn surrogate(&self) -> Option<Tensor> {
        let g = self.probes.grad();
        if !g.defined() {
            return None;
        }
        let (gates, hidden) = (self.w_hh.size()[0], self.w_hh.size()[1]);
        let (dw, db) = tch::no_grad(|| {
            let l = self.y.size()[1];
            let h_prev = Tensor::cat(&[self.h0.permute([1, 0, 2]), self.y.narrow(1, 0, l - 1)], 1);
            let g = g.view([-1, gates]);
            let dw = g.tr().mm(&h_prev.view([-1, hidden]));
            (dw, g.sum_dim_intlist(0, false, Kind::Float))
        });
        let terms: Vec<Tensor> = [(&self.w_hh, dw), (&self.b_hh, db)]
            .into_iter()
            .filter(|(p, _)| p.requires_grad())
            .map(|(p, d)| (p * d).sum(Kind::Float))
            .collect();
        (!terms.is_empty()).then(|| Tensor::stack(&terms, 0).sum(Kind::Float))
    }
}

/// The deferred recurrent gradients of one forward pass (empty unless a GRU layer ran in
/// training mode with gradients).
#[derive(Debug, Default)]
pub struct DeferredGrads(Vec<DeferredGru>);

impl DeferredGrads {
    /// Records one layer's deferred gradient.
    pub fn push(&mut self, d: DeferredGru) {
        self.0.push(d);
    }

    /// True when no layer deferred anything (`loss.backward()` alone is then complete).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Backward from `loss`, then the deferred recurrent weight gradients, one layer at a time
    /// (each layer's frame gradients are freed before the next): after this every parameter's
    /// gradient is what `loss.backward()` gives with ATen's GRU. Consumes the records.
    pub fn backward(&mut self, loss: &Tensor) {
        loss.backward();
        for layer in self.0.drain(..) {
            if let Some(s) = layer.surrogate() {
                drop(layer);
                s.backward();
            }
        }
    }
}

/// The input projection `x W_ihᵀ + bias` of every frame of `x [B, L, d_in]`, `[B, L, gates]`
/// (one GEMM; GRU and LSTM layers both start with it).
pub(super) fn input_projection(x: &Tensor, w_ih: &Tensor, bias: &Tensor) -> Tensor {
    let (b, l, d_in) = x.size3().expect("recurrent input [B, L, d_in]");
    bias.addmm(&x.reshape([-1, d_in]), &w_ih.tr())
        .view([b, l, -1])
}

/// ATen's GRU cell for one frame: the new state from `h [B, H]`, the frame's input projection
/// `gi [B, 3H]` and its recurrent product `gh = h W_hhᵀ + b_hh [B, 3H]`, in ATen's order.
/// `gh` must be fresh (it is overwritten in place: `unsafe_chunk`, no shared version counter,
/// which keeps the saved tensors of a training graph as small as ATen's).
pub(super) fn cell(h: &Tensor, gi: &Tensor, gh: Tensor) -> Tensor {
    let gi = gi.unsafe_chunk(3, 1);
    let mut gh = gh.unsafe_chunk(3, 1);
    let r = gh[0].g_add_(&gi[0]).sigmoid_();
    let z = gh[1].g_add_(&gi[1]).sigmoid_();
    let n = gi[2].g_add(&gh[2].g_mul_(&r)).tanh_();
    (h - &n).g_mul_(&z).g_add_(&n)
}

/// One GRU layer over `x [B, L, d_in]` from `h0 [1, B, H]` with `weights` in ATen's order
/// (`w_ih [3H, d_in]`, `w_hh [3H, H]`, `b_ih`, `b_hh`); returns `y [B, L, H]`, the final state
/// `[1, B, H]` and the deferred `W_hh`/`b_hh` gradient (see the module documentation).
pub fn train_forward(
    x: &Tensor,
    h0: &Tensor,
    weights: &[Tensor; 4],
) -> (Tensor, Tensor, DeferredGru) {
    let [w_ih, w_hh, b_ih, b_hh] = weights;
    let (b, l, _) = x.size3().expect("GRU input [B, L, d_in]");
    let gates = w_hh.size()[0];
    let gi = input_projection(x, w_ih, b_ih);
    let w_hh_t = w_hh.detach().tr().contiguous();
    let probes = b_hh
        .detach()
        .expand([b, l, gates], false)
        .set_requires_grad(true);
    let mut h = h0.squeeze_dim(0);
    let mut ys = Vec::with_capacity(l as usize);
    for (gi_t, p_t) in gi.unbind(1).iter().zip(probes.unbind(1).iter()) {
        h = cell(&h, gi_t, p_t.addmm(&h, &w_hh_t));
        ys.push(h.shallow_clone());
    }
    let y = Tensor::stack(&ys, 1);
    let deferred = DeferredGru {
        w_hh: w_hh.shallow_clone(),
        b_hh: b_hh.shallow_clone(),
        probes,
        h0: h0.detach(),
        y: y.detach(),
    };
    (y, h.unsqueeze(0), deferred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn leaf(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true)
    }

    /// Outputs, final state and every gradient (weights, input, initial state) of two
    /// consecutive segments, the second starting from the first's attached final state, equal
    /// those of ATen's GRU.
    #[test]
    fn outputs_and_gradients_equal_atens_gru_over_two_linked_segments() {
        tch::set_num_threads(1);
        tch::manual_seed(11);
        let (b, l, d_in, hidden) = (3, 5, 4, 6);
        let weights = [
            leaf(&[3 * hidden, d_in]),
            leaf(&[3 * hidden, hidden]),
            leaf(&[3 * hidden]),
            leaf(&[3 * hidden]),
        ];
        let (x1, x2, h0) = (
            leaf(&[b, l, d_in]),
            leaf(&[b, l, d_in]),
            leaf(&[1, b, hidden]),
        );
        let (wy, wh) = (
            Tensor::randn([b, l, hidden], (Kind::Float, Device::Cpu)),
            Tensor::randn([1, b, hidden], (Kind::Float, Device::Cpu)),
        );
        let loss = |y1: &Tensor, y2: &Tensor, h2: &Tensor| {
            (y1 * &wy).sum(Kind::Float)
                + (y2 * &wy).sum(Kind::Float) * 0.5
                + (h2 * &wh).sum(Kind::Float)
        };
        let leaves: Vec<&Tensor> = weights.iter().chain([&x1, &x2, &h0]).collect();
        let grads = || -> Vec<Tensor> {
            leaves
                .iter()
                .map(|t| {
                    let g = t.grad().copy();
                    let _ = t.grad().zero_();
                    g
                })
                .collect()
        };

        let (y1, h1) = x1.gru(&h0, &weights, true, 1, 0.0, true, false, true);
        let (y2, h2) = x2.gru(&h1, &weights, true, 1, 0.0, true, false, true);
        loss(&y1, &y2, &h2).backward();
        let (want_out, want) = ([y1, y2, h2], grads());

        let mut deferred = DeferredGrads::default();
        let (y1, h1, d1) = train_forward(&x1, &h0, &weights);
        let (y2, h2, d2) = train_forward(&x2, &h1, &weights);
        deferred.push(d1);
        deferred.push(d2);
        deferred.backward(&loss(&y1, &y2, &h2));
        let (got_out, got) = ([y1, y2, h2], grads());

        for (w, g) in want_out.iter().zip(&got_out) {
            let err = (w - g).abs().max().double_value(&[]);
            assert!(err < 1e-5, "outputs differ by {err}");
        }
        let names = ["w_ih", "w_hh", "b_ih", "b_hh", "x1", "x2", "h0"];
        for ((name, w), g) in names.iter().zip(&want).zip(&got) {
            let scale = w.abs().max().double_value(&[]);
            let err = (w - g).abs().max().double_value(&[]);
            assert!(
                scale > 0.0 && err < 1e-5 * scale,
                "{name}: {err} of {scale}"
            );
        }
    }

    /// Under `no_grad` nothing is deferred and the probes get no gradient.
    #[test]
    fn without_gradients_there_is_nothing_to_complete() {
        tch::set_num_threads(1);
        let w = [leaf(&[6, 3]), leaf(&[6, 2]), leaf(&[6]), leaf(&[6])];
        let x = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let h0 = Tensor::zeros([1, 2, 2], (Kind::Float, Device::Cpu));
        let (y, _, d) = tch::no_grad(|| train_forward(&x, &h0, &w));
        assert!(!y.requires_grad());
        assert!(d.surrogate().is_none());
    }
}
