//! The multi-task topology between the shared bottom and the heads.
//!
//! What it does: for `basic`, every task reads the bottom output. For `share-bottom`, each task
//! has one more encoder layer `tops.<task>` (a GRU/LSTM layer with its own carried state
//! `top_<task>`, or a Transformer encoder layer). For `feedback`, the source task runs first and
//! the target's top reads `concat(bottom, source_top.detach())` — directly for GRU/LSTM (input
//! width 2d), through `fuse = Linear(2d, d)` for the Transformer.
//!
//! What it does not: apply the encoder-output dropout or the heads (that is
//! [`super::TemporalMtl`]).

use super::config::{Arch, Config, HeadTask, Topology};
use super::encoder::RnnBlock;
use super::kernels::gru::DeferredGrads;
use super::layers::torch_linear;
use super::state::States;
use super::transformer::EncoderLayer;
use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

/// One task's top layer.
#[derive(Debug)]
pub enum Top {
    /// `tops.<task> = RNNBlock(arch, d_in, hidden)`.
    Recurrent(RnnBlock),
    /// `tops.<task> = TransformerEncoderLayer(d_model, n_heads, ff, dropout)`.
    Transformer(Box<EncoderLayer>),
    /// `tops.<task>.fc = Linear(d_in, hidden)` + ReLU (the `mlp` baseline).
    Frame(nn::Linear),
}

/// The per-task top layers (none for `basic`) and the feedback `fuse`.
#[derive(Debug)]
pub struct Tops {
    topology: Topology,
    tasks: Vec<HeadTask>,
    source: HeadTask,
    target: HeadTask,
    tops: BTreeMap<HeadTask, Top>,
    fuse: Option<nn::Linear>,
}

impl Tops {
    /// Creates `tops.<task>.*` (and `fuse.*`) under the model's root path, as the reference.
    pub fn new(root: &nn::Path, cfg: &Config) -> Self {
        let d = cfg.encoder_dim();
        let mut tops = BTreeMap::new();
        let mut fuse = None;
        if cfg.topology != Topology::Basic {
            let base = root / "tops";
            for &t in &cfg.tasks {
                let p = &base / t.name();
                let feedback_target = cfg.topology == Topology::Feedback && t == cfg.target;
                let d_in = if feedback_target { 2 * d } else { d };
                let top = if cfg.arch.is_recurrent() {
                    Top::Recurrent(RnnBlock::new(p, cfg.arch, d_in, cfg.hidden))
                } else if cfg.arch == Arch::Mlp {
                    Top::Frame(torch_linear(&p / "fc", d_in, cfg.hidden))
                } else {
                    Top::Transformer(Box::new(EncoderLayer::new(
                        p,
                        d,
                        cfg.n_heads,
                        cfg.ff,
                        cfg.dropout,
                    )))
                };
                tops.insert(t, top);
            }
            if cfg.topology == Topology::Feedback && cfg.arch == Arch::Transformer {
                fuse = Some(torch_linear(root / "fuse", 2 * d, d));
            }
        }
        Tops {
            topology: cfg.topology,
            tasks: cfg.tasks.clone(),
            source: cfg.source,
            target: cfg.target,
            tops,
            fuse,
        }
    }

    /// The state names of the top layers (`top_<task>`, in task order) when recurrent.
    pub fn state_names(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| matches!(self.tops.get(t), Some(Top::Recurrent(_))))
            .map(|t| format!("top_{}", t.name()))
            .collect()
    }

    /// The order the tops run in: task order, with the feedback source moved first.
    fn order(&self) -> Vec<HeadTask> {
        let mut order = self.tasks.clone();
        if self.topology == Topology::Feedback {
            order.retain(|t| *t != self.source);
            order.insert(0, self.source);
        }
        order
    }

    /// Per-task features from the bottom output `h [B, L, d]`. Recurrent tops start from
    /// `states["top_<task>"]` (zeros when absent) and record their final state in `new_states`;
    /// Transformer tops use the padding `bias`. GRU tops in training record their deferred
    /// weight gradients in `deferred`.
    pub fn forward_t(
        &self,
        h: &Tensor,
        bias: Option<&Tensor>,
        states: Option<&States>,
        new_states: &mut States,
        train: bool,
        deferred: &mut DeferredGrads,
    ) -> BTreeMap<HeadTask, Tensor> {
        let mut feats = BTreeMap::new();
        if self.topology == Topology::Basic {
            for &t in &self.tasks {
                feats.insert(t, h.shallow_clone());
            }
            return feats;
        }
        for t in self.order() {
            let mut input = h.shallow_clone();
            if self.topology == Topology::Feedback && t == self.target {
                let src: &Tensor = &feats[&self.source];
                input = Tensor::cat(&[h, &src.detach()], -1);
                if let Some(fuse) = &self.fuse {
                    input = input.apply(fuse);
                }
            }
            let out = match &self.tops[&t] {
                Top::Recurrent(rnn) => {
                    let name = format!("top_{}", t.name());
                    let state = states.and_then(|s| s.get(&name));
                    let (y, s) = rnn.forward_t(&input, state, train, deferred);
                    new_states.insert(name, s);
                    y
                }
                Top::Transformer(layer) => layer.forward_t(&input, bias, train),
                Top::Frame(fc) => input.apply(fc).relu(),
            };
            feats.insert(t, out);
        }
        feats
    }
}
