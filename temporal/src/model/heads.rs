//! The output heads, one kind per task group ([`HeadKinds`]): the reference's MLP head, and the
//! heads of the AU-graph systems.
//!
//! What it does: [`Heads::new`] creates, under the heads' root (`heads.` after an encoder, the
//! model's root without one, so that `arch = "none"` with the MTL-ABAW4 heads has exactly the
//! state-dict names of its `AMTL`):
//! - [`MlpHead`] per task, the reference's `Head`:
//!   `Linear(d, 512) - ReLU - Dropout - Linear(512, 256) - ReLU - Dropout - Linear(256, out)`
//!   (`<task>.net.{0,3,6}`), giving valence, arousal, expression logits or AU logits;
//! - `va = "tanh-bn"`: `tanh(BN(Linear(d, 2)))` (`va.fc.*`, `va.bn.*`) for valence and arousal;
//! - `va = "polarity"`: ABAW5's polarity classifiers and regressors ([`super::polarity`],
//!   `polarity.*`, `regressor.*`), `hidden` units wide; besides `valence` and `arousal` (the
//!   gated values) it outputs `<task>_polarity` `[B, L, 3]` and `<task>_regressor` `[B, L, 1]`;
//! - `expr = "linear"`: logits `Linear(d, 8)` (`ex.fc.*`); `expr = "au-attention"` re-weights
//!   them by additive attention with the AU probabilities as the query, as MTL-ABAW4:
//!   `q = W_q au`, `k_j = W_k l_j`, `a = softmax_j(w_v tanh(q + k_j))`, output `a * l`
//!   (`attention.{W_q,W_k,w_v}.weight`, no biases, hidden width 64);
//! - `au = "anfl"`: ME-GraphAU's ANFL ([`super::anfl`], `au.*`), AU probabilities;
//! - `au = "lrp-arl-ff"`: the ABAW5 detector over token features ([`super::lrp_arl_ff`],
//!   `au.*`), AU logits; the features of each frame `[tokens * C]` are read as `[tokens, C]`.
//!
//! - `all = "task-queries"`: the ABAW7 task queries with the AU-assisted GCN
//!   ([`super::task_queries`], names at the root), every task from one module on token
//!   features, read as `[tokens, C]` per frame like LRP-ARL-FF's; it replaces the three above.
//!
//! [`Heads::forward_t`] maps per-task features `[B, L, d]` to the raw outputs by head name
//! (`valence`, `arousal` `[B, L, 1]`, `expr` `[B, L, 8]`, `au` `[B, L, 12]`). The heads other
//! than the MLP read frames one by one (`[B * L, d]`); their BatchNorm statistics in training
//! come from the real frames only (`valid`).
//!
//! What it does not: apply softmax, or sigmoid to AU logits (the loss and the predictor do; an
//! ANFL's outputs are already probabilities, which [`Heads::au_probabilities`] says).

use super::anfl::{Anfl, AnflConfig};
use super::config::{AuHead, Config, ExprHead, FusionKind, HeadTask, JointHead, VaHead};
use super::kernels::dropout::dropout;
use super::layers::{torch_linear, uniform, BatchNorm1d};
use super::lrp_arl_ff::{Fusion, LrpArlFf, LrpArlFfConfig};
use super::polarity::PolarityVa;
use super::task_queries::TaskQueries;
use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

pub use super::config::HeadKinds;

/// Widths of the two hidden layers of the MLP head, fixed by the reference.
pub const HEAD_HIDDEN: [i64; 2] = [512, 256];

/// Width of the hidden layer of the AU-to-expression attention (MTL-ABAW4).
pub const ATTENTION_DIM: i64 = 64;

/// The reference's MLP head of one task.
#[derive(Debug)]
pub struct MlpHead {
    l0: nn::Linear,
    l3: nn::Linear,
    l6: nn::Linear,
    dropout: f64,
}

impl MlpHead {
    /// Creates `p / "net" / {0,3,6}` for input width `d_in` and output width `d_out`.
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, dropout: f64) -> Self {
        let net = &p / "net";
        let [h1, h2] = HEAD_HIDDEN;
        MlpHead {
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

/// `nn.Linear(d_in, d_out)` as MTL-ABAW4's `Dense` initialises it: weight normal with std
/// sqrt(1 / d_out), bias as PyTorch does.
fn dense_linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let mut l = torch_linear(p, d_in, d_out);
    tch::no_grad(|| {
        let _ = l.ws.normal_(0.0, (1.0 / d_out as f64).sqrt());
    });
    l
}

/// MTL-ABAW4's additive attention `attention.{W_q,W_k,w_v}` (no biases).
#[derive(Debug)]
struct AdditiveAttention {
    w_q: Tensor,
    w_k: Tensor,
    w_v: Tensor,
}

impl AdditiveAttention {
    fn new(p: nn::Path, query: i64, key: i64, hidden: i64) -> Self {
        let init = |fan_in: i64| uniform(1.0 / (fan_in as f64).sqrt());
        AdditiveAttention {
            w_q: (&p / "W_q").var("weight", &[hidden, query], init(query)),
            w_k: (&p / "W_k").var("weight", &[hidden, key], init(key)),
            w_v: (&p / "w_v").var("weight", &[1, hidden], init(hidden)),
        }
    }

    /// `softmax_j(w_v tanh(W_q q + W_k v_j)) * v_j` for queries `q [N, query]` and values
    /// `v [N, K]`, each value its own one-dimensional key.
    fn forward(&self, q: &Tensor, v: &Tensor) -> Tensor {
        let q = q.matmul(&self.w_q.tr()).unsqueeze(1); // [N, 1, h]
        let k = v.unsqueeze(-1).matmul(&self.w_k.tr()); // [N, K, h]
        let scores = (q + k).tanh().matmul(&self.w_v.tr()).squeeze_dim(-1); // [N, K]
        scores.softmax(-1, scores.kind()) * v
    }
}

/// The AU heads other than the MLP.
#[derive(Debug)]
enum AuModule {
    /// ANFL on one vector per frame: probabilities.
    Anfl(Anfl),
    /// LRP-ARL-FF on `tokens` tokens per frame: logits.
    LrpArlFf { model: LrpArlFf, tokens: i64 },
}

/// The LRP-ARL-FF sizes of `cfg` for tokens `d` wide.
fn lrp_config(cfg: &Config, d: i64) -> LrpArlFfConfig {
    let l = cfg.lrp;
    LrpArlFfConfig {
        channels: d,
        num_lanets: l.lanets,
        reduction: l.reduction,
        neighbors: cfg.anfl_neighbors,
        fusion: match l.fusion {
            FusionKind::Fixed => Fusion::Fixed(l.fusion_weight),
            FusionKind::Attention => Fusion::Attention {
                heads: l.fusion_heads,
                ff_dim: if l.fusion_ff > 0 { l.fusion_ff } else { 2 * d },
                layers: l.fusion_layers,
                dropout: l.fusion_dropout,
            },
        },
    }
}

/// Every head of a model (see the module documentation).
#[derive(Debug)]
pub struct Heads {
    mlp: BTreeMap<HeadTask, MlpHead>,
    va: Option<(nn::Linear, BatchNorm1d)>,
    polarity: Option<PolarityVa>,
    ex: Option<nn::Linear>,
    attention: Option<AdditiveAttention>,
    au: Option<AuModule>,
    joint: Option<(TaskQueries, Vec<HeadTask>)>,
}

impl Heads {
    /// Creates the heads of `cfg.tasks` under `root` for features of width `d`.
    pub fn new(root: &nn::Path, cfg: &Config, d: i64) -> Self {
        let kinds = cfg.heads;
        if kinds.all == JointHead::TaskQueries {
            return Heads {
                mlp: BTreeMap::new(),
                va: None,
                polarity: None,
                ex: None,
                attention: None,
                au: None,
                joint: Some((
                    TaskQueries::new(root, cfg.task_queries, cfg.tokens, d),
                    cfg.tasks.clone(),
                )),
            };
        }
        let uses_mlp = |t: HeadTask| match t {
            HeadTask::Valence | HeadTask::Arousal => kinds.va == VaHead::Mlp,
            HeadTask::Expr => kinds.expr == ExprHead::Mlp,
            HeadTask::Au => kinds.au == AuHead::Mlp,
        };
        let has = |t: HeadTask| cfg.tasks.contains(&t);
        let mlp = cfg
            .tasks
            .iter()
            .filter(|&&t| uses_mlp(t))
            .map(|&t| {
                (
                    t,
                    MlpHead::new(root / t.name(), d, t.out_dim(), cfg.dropout),
                )
            })
            .collect();
        let va = (kinds.va == VaHead::TanhBn && has(HeadTask::Valence)).then(|| {
            (
                dense_linear(root / "va" / "fc", d, 2),
                BatchNorm1d::new(root / "va" / "bn", 2),
            )
        });
        let polarity = (kinds.va == VaHead::Polarity && has(HeadTask::Valence))
            .then(|| PolarityVa::new(root, d, cfg.hidden, cfg.dropout));
        let ex = (kinds.expr != ExprHead::Mlp && has(HeadTask::Expr))
            .then(|| dense_linear(root / "ex" / "fc", d, shared::N_EXPR as i64));
        let attention = (kinds.expr == ExprHead::AuAttention && has(HeadTask::Expr)).then(|| {
            AdditiveAttention::new(root / "attention", shared::N_AU as i64, 1, ATTENTION_DIM)
        });
        let au = match kinds.au {
            _ if !has(HeadTask::Au) => None,
            AuHead::Mlp => None,
            AuHead::Anfl => Some(AuModule::Anfl(Anfl::new(
                root / "au",
                AnflConfig {
                    channels: d,
                    nodes: shared::N_AU as i64,
                    neighbors: cfg.anfl_neighbors,
                    dropout: cfg.anfl_dropout,
                },
            ))),
            AuHead::LrpArlFf => Some(AuModule::LrpArlFf {
                model: LrpArlFf::new(&(root / "au"), lrp_config(cfg, d)),
                tokens: cfg.tokens,
            }),
        };
        Heads {
            mlp,
            va,
            polarity,
            ex,
            attention,
            au,
            joint: None,
        }
    }

    /// True when the `au` output holds probabilities (ANFL) rather than logits.
    pub fn au_probabilities(&self) -> bool {
        matches!(self.au, Some(AuModule::Anfl(_)))
    }

    /// The raw outputs by head name from per-task features `[B, L, d]`; `valid [B, L]` (true =
    /// a real frame) chooses the frames of the BatchNorm statistics in training.
    pub fn forward_t(
        &self,
        feats: &BTreeMap<HeadTask, Tensor>,
        valid: Option<&Tensor>,
        train: bool,
    ) -> BTreeMap<String, Tensor> {
        if let Some((model, tasks)) = &self.joint {
            return joint_outputs(model, tasks, feats, valid, train);
        }
        let mut out: BTreeMap<String, Tensor> = self
            .mlp
            .iter()
            .map(|(t, head)| (t.name().to_string(), head.forward_t(&feats[t], train)))
            .collect();
        // The other heads read frames one by one: [B, L, d] -> [B * L, d] and back.
        let frames = |t: HeadTask| {
            let f = &feats[&t];
            let (b, l) = (f.size()[0], f.size()[1]);
            (f.reshape([b * l, -1]), b, l)
        };
        let rows = valid.map(|v| v.reshape([-1]));
        let rows = rows.as_ref();
        let mut au_probs = None;
        match &self.au {
            Some(AuModule::Anfl(anfl)) => {
                let (x, b, l) = frames(HeadTask::Au);
                let p = anfl.forward_t(&x, rows, train);
                out.insert("au".into(), p.view([b, l, -1]));
                au_probs = Some(p);
            }
            Some(AuModule::LrpArlFf { model, tokens }) => {
                let (x, b, l) = frames(HeadTask::Au);
                let x = x.view([b * l, *tokens, -1]);
                out.insert(
                    "au".into(),
                    model.forward_t(&x, rows, train).view([b, l, -1]),
                );
            }
            None => {}
        }
        if let Some((fc, bn)) = &self.va {
            let (x, b, l) = frames(HeadTask::Valence);
            let va = bn
                .forward_t(&x.apply(fc), rows, train)
                .tanh()
                .view([b, l, 2]);
            out.insert("valence".into(), va.narrow(-1, 0, 1));
            out.insert("arousal".into(), va.narrow(-1, 1, 1));
        }
        if let Some(head) = &self.polarity {
            out.extend(head.forward_t(
                &feats[&HeadTask::Valence],
                &feats[&HeadTask::Arousal],
                train,
            ));
        }
        if let Some(fc) = &self.ex {
            let (x, b, l) = frames(HeadTask::Expr);
            let mut logits = x.apply(fc);
            if let Some(attention) = &self.attention {
                let au = au_probs
                    .as_ref()
                    .map(|p| p.shallow_clone())
                    .unwrap_or_else(|| out["au"].reshape([-1, shared::N_AU as i64]).sigmoid());
                logits = attention.forward(&au, &logits);
            }
            out.insert("expr".into(), logits.view([b, l, -1]));
        }
        out
    }
}

/// The outputs of the configured `tasks` from the task-queries model on token features
/// `[B, L, tokens * C]` (any task's: they are the same features without an encoder).
fn joint_outputs(
    model: &TaskQueries,
    tasks: &[HeadTask],
    feats: &BTreeMap<HeadTask, Tensor>,
    valid: Option<&Tensor>,
    train: bool,
) -> BTreeMap<String, Tensor> {
    let f = feats
        .values()
        .next()
        .expect("features for at least one task");
    let (b, l) = (f.size()[0], f.size()[1]);
    let x = f.reshape([b * l, model.tokens(), -1]);
    let rows = valid.map(|v| v.reshape([-1]));
    let o = model.forward_t(&x, rows.as_ref(), train);
    tasks
        .iter()
        .map(|&t| {
            let y = match t {
                HeadTask::Valence => o.va.narrow(1, 0, 1),
                HeadTask::Arousal => o.va.narrow(1, 1, 1),
                HeadTask::Expr => o.expr.shallow_clone(),
                HeadTask::Au => o.au.shallow_clone(),
            };
            (t.name().to_string(), y.reshape([b, l, -1]))
        })
        .collect()
}
