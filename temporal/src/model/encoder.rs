//! The shared bottom encoder and the one-layer recurrent block that the tops reuse.
//!
//! What it does: [`RnnBlock`] is the reference's `RNNBlock` (one `nn.GRU` or `nn.LSTM` layer,
//! batch first, parameters `rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`,
//! `rnn.bias_hh_l0`, initialised uniform in ±1/sqrt(hidden) as PyTorch does) with an explicit
//! carried state. [`Encoder`] is the bottom: `bottom.rnn.*` for GRU/LSTM, or `in_proj.*` +
//! sinusoidal positions + `bottom.layers.N.*` for the Transformer, or `bottom.fc.*` for the
//! frame-level `mlp` baseline, or nothing at all for `none`, or the multi-rate AU encoder
//! ([`super::multirate`], `in_proj.*`, `pipe_{a,b,c}.*`) for `multirate`.
//!
//! What it does not: decide which state a stream keeps (that is [`super::States::carry`]) or
//! pack padded sequences: as in the reference, a recurrent layer runs over padded frames too.

use super::config::{Arch, Config};
use super::kernels::choice::{self, LayerShape, RnnKernel};
use super::kernels::gru::{self, DeferredGrads};
use super::kernels::rnn_eval;
use super::layers::torch_linear;
use super::multirate::{Multirate, MultirateConfig};
use super::state::RnnState;
use super::transformer::{EncoderLayer, SinusoidalPositions};
use tch::nn;
use tch::Tensor;

/// One GRU or LSTM layer with its carried state.
///
/// Which kernels run: without gradients (validation, prediction) the one [`choice`] picks for
/// the layer's shape on this machine ([`rnn_eval`]'s loops on a packed weight or on `addmm`, or
/// ATen's operator); a GRU that trains [`gru::train_forward`]; otherwise ATen's `gru` / `lstm`,
/// called directly (as `nn.GRU` / `nn.LSTM` do) rather than through tch's `nn::RNN`, whose
/// `train` flag is fixed at construction.
#[derive(Debug)]
pub struct RnnBlock {
    arch: Arch,
    hidden: i64,
    /// `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, in ATen's order.
    weights: [Tensor; 4],
}

impl RnnBlock {
    /// Creates `p / "rnn"` with the PyTorch parameter names and initialisation.
    ///
    /// # Panics
    /// If `arch` is not recurrent.
    pub fn new(p: nn::Path, arch: Arch, d_in: i64, hidden: i64) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let gates = match arch {
            Arch::Gru => 3 * hidden,
            Arch::Lstm => 4 * hidden,
            Arch::Transformer | Arch::Mlp | Arch::None | Arch::Multirate => {
                panic!("RnnBlock::new needs a recurrent arch, got {arch}")
            }
        };
        let p = &p / "rnn";
        let weights = [
            p.var("weight_ih_l0", &[gates, d_in], init),
            p.var("weight_hh_l0", &[gates, hidden], init),
            p.var("bias_ih_l0", &[gates], init),
            p.var("bias_hh_l0", &[gates], init),
        ];
        RnnBlock {
            arch,
            hidden,
            weights,
        }
    }

    /// Runs `x [B, L, d_in]` from `state` (zeros when `None`, as PyTorch does) and returns the
    /// outputs `[B, L, hidden]` and the final state. Without gradients (`tch::no_grad`) the
    /// layer runs the kernel [`choice`] picks (see [`RnnBlock::forward_eval`]); otherwise
    /// `train` selects ATen's training or inference kernels (there is no dropout in a one-layer
    /// RNN), and a GRU in training runs [`gru::train_forward`] and records its deferred
    /// recurrent weight gradient in `deferred` (complete the backward pass with
    /// [`DeferredGrads::backward`]).
    ///
    /// # Panics
    /// If `state` is of the other kind (an LSTM state for a GRU or the reverse).
    pub fn forward_t(
        &self,
        x: &Tensor,
        state: Option<&RnnState>,
        train: bool,
        deferred: &mut DeferredGrads,
    ) -> (Tensor, RnnState) {
        let zeros = || Tensor::zeros([1, x.size()[0], self.hidden], (x.kind(), x.device()));
        match (self.arch, state) {
            (Arch::Gru, None | Some(RnnState::Gru(_))) => {
                let h0 = match state {
                    Some(RnnState::Gru(h)) => h.shallow_clone(),
                    _ => zeros(),
                };
                if !rnn_eval::records_gradients() {
                    return self.forward_eval(x, RnnState::Gru(h0));
                }
                if train {
                    let (y, h, d) = gru::train_forward(x, &h0, &self.weights);
                    if y.requires_grad() {
                        deferred.push(d);
                    }
                    return (y, RnnState::Gru(h));
                }
                let (y, h) = x.gru(&h0, &self.weights, true, 1, 0.0, train, false, true);
                (y, RnnState::Gru(h))
            }
            (Arch::Lstm, None | Some(RnnState::Lstm { .. })) => {
                let (h0, c0) = match state {
                    Some(RnnState::Lstm { h, c }) => (h.shallow_clone(), c.shallow_clone()),
                    _ => (zeros(), zeros()),
                };
                if !rnn_eval::records_gradients() {
                    return self.forward_eval(x, RnnState::Lstm { h: h0, c: c0 });
                }
                let (y, h, c) = x.lstm(&[h0, c0], &self.weights, true, 1, 0.0, train, false, true);
                (y, RnnState::Lstm { h, c })
            }
            (Arch::Gru, Some(_)) => panic!("a GRU layer was given an LSTM state"),
            (Arch::Lstm, Some(_)) => panic!("an LSTM layer was given a GRU state"),
            (Arch::Transformer | Arch::Mlp | Arch::None | Arch::Multirate, _) => {
                unreachable!("RnnBlock::new checks the arch")
            }
        }
    }
}

/// Frames of the first segment of a shape on which `--kernel auto` times the candidates.
const PROBE_FRAMES: i64 = 64;

impl RnnBlock {
    /// The layer without gradients from `state` (already of the layer's kind), on the kernel
    /// [`choice::choose`] keeps for this shape: on the first segment of a new shape under
    /// `--kernel auto` every candidate is timed on its first [`PROBE_FRAMES`] frames.
    fn forward_eval(&self, x: &Tensor, state: RnnState) -> (Tensor, RnnState) {
        let (rows, frames, d_in) = x.size3().expect("a recurrent layer reads [B, L, d]");
        let shape = LayerShape {
            arch: if self.arch == Arch::Gru {
                "gru"
            } else {
                "lstm"
            },
            rows,
            d_in,
            hidden: self.hidden,
            device: format!("{:?}", x.device()).to_lowercase(),
        };
        let available = rnn_eval::candidates(&self.weights[1]);
        // time on the segment's first frames: the cost per frame does not depend on the length
        let probe = x.narrow(1, 0, frames.min(PROBE_FRAMES));
        let kernel = choice::choose(&shape, &available, rows * probe.size()[1], |k| {
            choice::time_call(|| {
                let _ = self.run_eval(k, &probe, &state);
            })
        });
        self.run_eval(kernel, x, &state)
    }

    /// One kernel over the segment; ATen's operator where `kernel`'s product is unavailable.
    fn run_eval(&self, kernel: RnnKernel, x: &Tensor, state: &RnnState) -> (Tensor, RnnState) {
        match state {
            RnnState::Gru(h0) => {
                if let Some((y, h)) = rnn_eval::gru(x, h0, &self.weights, kernel) {
                    return (y, RnnState::Gru(h));
                }
                let (y, h) = x.gru(h0, &self.weights, true, 1, 0.0, false, false, true);
                (y, RnnState::Gru(h))
            }
            RnnState::Lstm { h: h0, c: c0 } => {
                if let Some((y, h, c)) = rnn_eval::lstm(x, h0, c0, &self.weights, kernel) {
                    return (y, RnnState::Lstm { h, c });
                }
                let (y, h, c) = x.lstm(
                    &[h0.shallow_clone(), c0.shallow_clone()],
                    &self.weights,
                    true,
                    1,
                    0.0,
                    false,
                    false,
                    true,
                );
                (y, RnnState::Lstm { h, c })
            }
        }
    }
}

/// The shared bottom encoder.
#[derive(Debug)]
pub enum Encoder {
    /// `bottom = RNNBlock(arch, feat_dim, hidden)`.
    Recurrent(RnnBlock),
    /// `in_proj = Linear(feat_dim, d_model)`, positions, `bottom.layers.0..n_layers`.
    Transformer {
        /// `in_proj`.
        in_proj: nn::Linear,
        /// The non-persistent position table.
        pos: SinusoidalPositions,
        /// `bottom.layers.N`.
        layers: Vec<EncoderLayer>,
    },
    /// `bottom.fc = Linear(feat_dim, hidden)` + ReLU, frame by frame (the `mlp` baseline).
    Frame(nn::Linear),
    /// No encoder (`none`): the features themselves.
    Identity,
    /// The multi-rate encoder (`multirate`), whose output is already the 12 AU logits.
    Multirate(Box<Multirate>),
}

impl Encoder {
    /// Creates the bottom under the model's root path `root`.
    pub fn new(root: &nn::Path, cfg: &Config) -> Self {
        if cfg.arch.is_recurrent() {
            return Encoder::Recurrent(RnnBlock::new(
                root / "bottom",
                cfg.arch,
                cfg.feat_dim,
                cfg.hidden,
            ));
        }
        if cfg.arch == Arch::None {
            return Encoder::Identity;
        }
        if cfg.arch == Arch::Multirate {
            return Encoder::Multirate(Box::new(Multirate::new(
                root,
                MultirateConfig {
                    feat_dim: cfg.feat_dim,
                    d_model: cfg.d_model,
                    n_heads: cfg.n_heads,
                    ff: cfg.ff,
                    n_layers: cfg.n_layers,
                    dropout: cfg.dropout,
                },
            )));
        }
        if cfg.arch == Arch::Mlp {
            return Encoder::Frame(torch_linear(
                root / "bottom" / "fc",
                cfg.feat_dim,
                cfg.hidden,
            ));
        }
        let layers = root / "bottom" / "layers";
        Encoder::Transformer {
            in_proj: torch_linear(root / "in_proj", cfg.feat_dim, cfg.d_model),
            pos: SinusoidalPositions::new(cfg.d_model, root.device()),
            layers: (0..cfg.n_layers)
                .map(|i| {
                    EncoderLayer::new(&layers / i, cfg.d_model, cfg.n_heads, cfg.ff, cfg.dropout)
                })
                .collect(),
        }
    }

    /// `x [B, L, feat_dim]` -> `[B, L, d]`. Recurrent: from `state`, returning the new state.
    /// Transformer: attends within the segment with the additive padding `bias`; no state.
    /// A GRU in training records its deferred weight gradient in `deferred`.
    pub fn forward_t(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        state: Option<&RnnState>,
        train: bool,
        deferred: &mut DeferredGrads,
    ) -> (Tensor, Option<RnnState>) {
        match self {
            Encoder::Recurrent(rnn) => {
                let (y, s) = rnn.forward_t(x, state, train, deferred);
                (y, Some(s))
            }
            Encoder::Transformer {
                in_proj,
                pos,
                layers,
            } => {
                let mut h = pos.forward(&x.apply(in_proj));
                for layer in layers {
                    h = layer.forward_t(&h, bias, train);
                }
                (h, None)
            }
            Encoder::Frame(fc) => (x.apply(fc).relu(), None),
            Encoder::Identity => (x.shallow_clone(), None),
            Encoder::Multirate(m) => (m.forward_t(x, bias, train), None),
        }
    }
}
