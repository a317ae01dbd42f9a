//! The shared bottom encoder and the one-layer recurrent block that the tops reuse.
//!
//! What it does: [`RnnBlock`] is the reference's `RNNBlock` (one `nn.GRU` or `nn.LSTM` layer,
//! batch first, parameters `rnn.weight_ih_l0`, `rnn.weight_hh_l0`, `rnn.bias_ih_l0`,
//! `rnn.bias_hh_l0`, initialised uniform in ±1/sqrt(hidden) as PyTorch does) with an explicit
//! carried state. [`Encoder`] is the bottom: `bottom.rnn.*` for GRU/LSTM, or `in_proj.*` +
//! sinusoidal positions + `bottom.layers.N.*` for the Transformer, or `bottom.fc.*` for the
//! frame-level `mlp` baseline.
//!
//! What it does not: decide which state a stream keeps (that is [`super::States::carry`]) or
//! pack padded sequences: as in the reference, a recurrent layer runs over padded frames too.

use super::config::{Arch, Config};
use super::state::RnnState;
use super::transformer::{torch_linear, EncoderLayer, SinusoidalPositions};
use tch::nn::{self, RNN};
use tch::Tensor;

/// One GRU or LSTM layer with its carried state.
#[derive(Debug)]
pub enum RnnBlock {
    /// `nn.GRU(d_in, hidden, batch_first=True)`.
    Gru(nn::GRU),
    /// `nn.LSTM(d_in, hidden, batch_first=True)`.
    Lstm(nn::LSTM),
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
        let cfg = nn::RNNConfig {
            batch_first: true,
            w_ih_init: init,
            w_hh_init: init,
            b_ih_init: Some(init),
            b_hh_init: Some(init),
            ..Default::default()
        };
        let p = &p / "rnn";
        match arch {
            Arch::Gru => RnnBlock::Gru(nn::gru(&p, d_in, hidden, cfg)),
            Arch::Lstm => RnnBlock::Lstm(nn::lstm(&p, d_in, hidden, cfg)),
            Arch::Transformer | Arch::Mlp => {
                panic!("RnnBlock::new needs a recurrent arch, got {arch}")
            }
        }
    }

    /// Runs `x [B, L, d_in]` from `state` (zeros when `None`, as PyTorch does) and returns the
    /// outputs `[B, L, hidden]` and the final state.
    ///
    /// # Panics
    /// If `state` is of the other kind (an LSTM state for a GRU or the reverse).
    pub fn forward(&self, x: &Tensor, state: Option<&RnnState>) -> (Tensor, RnnState) {
        let b = x.size()[0];
        match (self, state) {
            (RnnBlock::Gru(rnn), None) => {
                let (y, s) = rnn.seq_init(x, &rnn.zero_state(b));
                (y, RnnState::Gru(s.0))
            }
            (RnnBlock::Gru(rnn), Some(RnnState::Gru(h))) => {
                let (y, s) = rnn.seq_init(x, &nn::GRUState(h.shallow_clone()));
                (y, RnnState::Gru(s.0))
            }
            (RnnBlock::Lstm(rnn), None) => {
                let (y, nn::LSTMState((h, c))) = rnn.seq_init(x, &rnn.zero_state(b));
                (y, RnnState::Lstm { h, c })
            }
            (RnnBlock::Lstm(rnn), Some(RnnState::Lstm { h, c })) => {
                let state = nn::LSTMState((h.shallow_clone(), c.shallow_clone()));
                let (y, nn::LSTMState((h, c))) = rnn.seq_init(x, &state);
                (y, RnnState::Lstm { h, c })
            }
            (RnnBlock::Gru(_), Some(_)) => panic!("a GRU layer was given an LSTM state"),
            (RnnBlock::Lstm(_), Some(_)) => panic!("an LSTM layer was given a GRU state"),
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
    pub fn forward_t(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        state: Option<&RnnState>,
        train: bool,
    ) -> (Tensor, Option<RnnState>) {
        match self {
            Encoder::Recurrent(rnn) => {
                let (y, s) = rnn.forward(x, state);
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
        }
    }
}
