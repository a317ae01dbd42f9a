//! The ABAW7 multi-task model of Li, Du and Yang ("Affective Behavior Analysis using
//! Task-adaptive and AU-assisted Graph Network"): 22 task queries read a frame's patch tokens
//! (DINOv2, 289 x 1536) through four task-adaptive blocks, and an AU-assisted graph network
//! turns the query outputs into the AU, expression and valence-arousal outputs. No public code:
//! the reference is `scripts/fixtures/task_queries_refs.py` (`TaskQueries`), whose parameter
//! names this module creates.
//!
//! What it does: [`TaskQueries`] maps tokens `x [N, T, D]` to AU logits `[N, 12]`, expression
//! logits `[N, 8]` and valence-arousal `[N, 2]` in [-1, 1]:
//! - compression (`compress.{0,2}.{weight,bias}`): 1-D convolutions of kernel 1 over the tokens,
//!   `D -> compress_hidden -> channels` with a ReLU between (the paper: "several 1D
//!   convolutional layers", 1536 -> 128; the hidden width 512 and the single ReLU are our
//!   choice; `compress_hidden = 0` gives one convolution `D -> channels`). The weights keep
//!   `nn.Conv1d`'s shape `[out, in, 1]`;
//! - token positions: learnable `token_pos [T, channels]` (normal, std 0.02, as ViT/DINOv2's
//!   position embeddings), or fixed 2-D sine-cosine positions on the `sqrt(T) x sqrt(T)` patch
//!   grid (`positions = "sincos"`, no parameter; see [`sincos_2d`]);
//! - queries (`queries [22, channels]`, zero-initialised as the paper says, learnable) with
//!   learnable query positions (`query_pos [22, channels]`, normal std 1 as DETR's
//!   `nn.Embedding`): rows 0-11 the AUs, 12-19 the expressions, 20-21 valence and arousal;
//! - `blocks` task-adaptive blocks (`blocks.{i}.*`), each a post-norm Transformer decoder layer
//!   (`nn.TransformerDecoderLayer`'s names and order, ReLU, LayerNorm eps 1e-5):
//!   `q = norm1(q + drop(self_attn(q + qp, q + qp, q)))` (not in block 0, where the queries are
//!   still the same zero vector: no `blocks.0.self_attn`, no `blocks.0.norm1`),
//!   `q = norm2(q + drop(multihead_attn(q + qp, m + tp, m)))` (positions on queries and keys,
//!   not on values), `q = norm3(q + drop(linear2(drop(relu(linear1(q))))))`;
//! - the AU-assisted GCN: one graph layer over the 12 AU query outputs on the fully connected
//!   graph (`gcn.0`), then the 10 expression and VA query outputs plus the learnable mask
//!   vectors (`masks [10, channels]`), then two graph layers over the 22 nodes (`gcn.1`,
//!   `gcn.2`) on ME-GraphAU's kNN dot-product graph (`graph = "knn"`, k = `neighbors`;
//!   `graph = "full"` keeps the fully connected graph). A graph layer is ME-GraphAU's:
//!   `v = ReLU(v + BN_nodes(A V(v) + U(v)))` with `A = D^-1/2 A D^-1/2` (`U`, `V`, `bnv`);
//! - outputs: per node i a logit `<w_i, v_i> + b_i` (`au_fc`, `expr_fc`, `va_fc`: `weight
//!   [n, channels]`, `bias [n]`), tanh for valence and arousal.
//!
//! Choices where the paper is silent:
//! - The masks: the paper's "learnable mask vectors M (10 x 128) to mask two nodes, making it
//!   easier to fuse with the EXPR- and VA-specific features" is read as learnable node-type
//!   embeddings added to the 10 expression/VA nodes before they join the 12 AU nodes (as a
//!   masked-token embedding is added); the graph layers share their weights across nodes, so
//!   the embedding is what tells a fused node from an AU node. Initialised normal, std 0.02.
//! - The adjacency of the 22-node layers: ME-GraphAU's kNN dot-product graph of the detached
//!   nodes, because the paper says it builds the adjacency "following [16]" (ME-GraphAU), and a
//!   label co-occurrence graph has no natural entry for the continuous valence and arousal.
//!   k = 4, ME-GraphAU's value. The first layer's graph is fully connected, as the paper says.
//! - Feed-forward width 512 (4 x channels), 8 heads, dropout 0.1 (DETR's decoder values).
//! - The outputs are per-node linear read-outs (the issue: one logit per AU node, the 8
//!   expression nodes as the 8 logits, the 2 VA nodes through tanh).
//! - BatchNorm statistics in training come from the `valid` rows only
//!   ([`super::layers::BatchNorm1d`]), as the other frame-level heads do.
//!
//! In a temporal model it is the whole head set `[model.heads] all = "task-queries"` with
//! `arch = "none"` ([`super::heads`]): its names at the state dict's root, fed by token
//! features (`[B, L, tokens * D]`, read as `[B * L, tokens, D]`). Only the configured tasks'
//! outputs are returned; the graph always runs over all 22 nodes.
//!
//! Parity: `temporal/tests/task_queries_parity.rs` loads the reference's state dict strictly
//! and compares outputs, the multi-task loss and every gradient (eval mode, 1e-5); regenerate
//! its fixtures with `$(bash scripts/fixtures/venv.sh) scripts/fixtures/task_queries_fixture.py`.
//!
//! What it does not: read pooled vectors (one token per frame: the config check says so), the
//! paper's EMMA pseudo-labels, folds or submission strategies (the trainer and `post/` do those),
//! or fine-tune the DINOv2 backbone (the paper does not either).

use super::anfl::{knn_graph, normalize_digraph};
use super::kernels::dropout::dropout;
use super::layers::{uniform, BatchNorm1d};
use super::transformer::MultiheadAttention;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Queries per task: AU, expression, valence-arousal.
pub const QUERIES: [i64; 3] = [12, 8, 2];

/// The token positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// Learnable `token_pos [tokens, channels]`.
    #[default]
    Learned,
    /// Fixed 2-D sine-cosine positions on the square patch grid ([`sincos_2d`]).
    Sincos,
}

/// The adjacency of the two graph layers over the 22 nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Graph {
    /// ME-GraphAU's kNN dot-product graph of the detached nodes.
    #[default]
    Knn,
    /// The fully connected graph (every node averages all).
    Full,
}

/// `[model.task_queries]`: the sizes of [`TaskQueries`] (paper values where it gives them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskQueriesConfig {
    /// Width after compression (the paper's 128).
    pub channels: i64,
    /// Hidden width of the compression (0 = one convolution).
    pub compress_hidden: i64,
    /// Attention heads (must divide `channels`).
    pub heads: i64,
    /// Task-adaptive blocks (the paper's 4).
    pub blocks: i64,
    /// Feed-forward width of a block.
    pub ff: i64,
    /// Dropout in the blocks (attention weights, residual branches, feed-forward).
    pub dropout: f64,
    /// Token positions.
    pub positions: Positions,
    /// Adjacency of the 22-node graph layers.
    pub graph: Graph,
    /// k of the kNN graph.
    pub neighbors: i64,
}

impl Default for TaskQueriesConfig {
    fn default() -> Self {
        TaskQueriesConfig {
            channels: 128,
            compress_hidden: 512,
            heads: 8,
            blocks: 4,
            ff: 512,
            dropout: 0.1,
            positions: Positions::Learned,
            graph: Graph::Knn,
            neighbors: 4,
        }
    }
}

/// The fixed 2-D sine-cosine positions `[side * side, c]` of a `side x side` grid (token
/// `t` at column `t % side`, row `t / side`): with `q = c / 4` and `w_i = 10000^(-i / q)`,
/// channels `[sin(col w), cos(col w), sin(row w), cos(row w)]`, each block `q` wide. Computed
/// in f64, returned as f32.
pub fn sincos_2d(side: i64, c: i64, device: tch::Device) -> Tensor {
    let q = c / 4;
    let opts = (Kind::Double, device);
    let omega = (Tensor::arange(q, opts) * (-(10000f64.ln()) / q as f64)).exp();
    let t = Tensor::arange(side * side, (Kind::Int64, device));
    let col = t.remainder(side).to_kind(Kind::Double);
    let row = t.divide_scalar_mode(side, "floor").to_kind(Kind::Double);
    let a = col.unsqueeze(1) * omega.unsqueeze(0);
    let b = row.unsqueeze(1) * omega.unsqueeze(0);
    Tensor::cat(&[a.sin(), a.cos(), b.sin(), b.cos()], 1).to_kind(Kind::Float)
}

/// One task-adaptive block (see the module documentation).
#[derive(Debug)]
struct Block {
    self_attn: Option<(MultiheadAttention, nn::LayerNorm)>,
    cross_attn: MultiheadAttention,
    norm2: nn::LayerNorm,
    linear1: nn::Linear,
    linear2: nn::Linear,
    norm3: nn::LayerNorm,
    dropout: f64,
}

fn layer_norm(p: nn::Path, c: i64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![c],
        nn::LayerNormConfig {
            eps: 1e-5,
            ..Default::default()
        },
    )
}

/// `nn.Linear(d_in, d_out)` initialised as PyTorch does.
fn linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    super::layers::torch_linear(p, d_in, d_out)
}

impl Block {
    fn new(p: &nn::Path, cfg: &TaskQueriesConfig, first: bool) -> Self {
        let c = cfg.channels;
        let self_attn = (!first).then(|| {
            (
                MultiheadAttention::new(p / "self_attn", c, cfg.heads, cfg.dropout),
                layer_norm(p / "norm1", c),
            )
        });
        Block {
            self_attn,
            cross_attn: MultiheadAttention::new(p / "multihead_attn", c, cfg.heads, cfg.dropout),
            norm2: layer_norm(p / "norm2", c),
            linear1: linear(p / "linear1", c, cfg.ff),
            linear2: linear(p / "linear2", cfg.ff, c),
            norm3: layer_norm(p / "norm3", c),
            dropout: cfg.dropout,
        }
    }

    /// Queries `q [N, 22, c]` with positions `qp [1, 22, c]`; memory `m [N, T, c]` and its keys
    /// `mk = m + positions`.
    fn forward_t(&self, q: &Tensor, qp: &Tensor, m: &Tensor, mk: &Tensor, train: bool) -> Tensor {
        let drop = |t: &Tensor| dropout(t, self.dropout, train);
        let mut q = q.shallow_clone();
        if let Some((attn, norm1)) = &self.self_attn {
            let qk = &q + qp;
            let sa = attn.attend(&qk, &qk, &q, train);
            q = norm1.forward(&(&q + drop(&sa)));
        }
        let ca = self.cross_attn.attend(&(&q + qp), mk, m, train);
        let q = self.norm2.forward(&(&q + drop(&ca)));
        let ff = drop(&q.apply(&self.linear1).relu()).apply(&self.linear2);
        self.norm3.forward(&(&q + drop(&ff)))
    }
}

/// ME-GraphAU's graph layer `ReLU(v + BN_nodes(A V(v) + U(v)))` (`U`, `V`, `bnv`).
#[derive(Debug)]
struct GcnLayer {
    u: nn::Linear,
    v: nn::Linear,
    bnv: BatchNorm1d,
}

impl GcnLayer {
    fn new(p: &nn::Path, c: i64, nodes: i64) -> Self {
        GcnLayer {
            u: linear(p / "U", c, c),
            v: linear(p / "V", c, c),
            bnv: BatchNorm1d::new(p / "bnv", nodes),
        }
    }

    /// Nodes `x [N, n, c]`; `knn = Some(k)` draws the kNN graph, `None` the full one.
    fn forward_t(
        &self,
        x: &Tensor,
        knn: Option<i64>,
        valid: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let n = x.size()[1];
        let adj = match knn {
            Some(k) => knn_graph(&x.detach(), k),
            None => Tensor::ones([1, n, n], (x.kind(), x.device())),
        };
        let a = normalize_digraph(&adj);
        let aggregate = a.matmul(&x.apply(&self.v)) + x.apply(&self.u);
        (x + self.bnv.forward_t(&aggregate, valid, train)).relu()
    }
}

/// A logit per node: `<w_i, v_i> + b_i` (`weight [n, c]`, `bias [n]`).
#[derive(Debug)]
struct NodeReadout {
    weight: Tensor,
    bias: Tensor,
}

impl NodeReadout {
    fn new(p: &nn::Path, nodes: i64, c: i64) -> Self {
        let bound = 1.0 / (c as f64).sqrt();
        NodeReadout {
            weight: p.var("weight", &[nodes, c], uniform(bound)),
            bias: p.var("bias", &[nodes], uniform(bound)),
        }
    }

    /// `[N, n, c]` -> `[N, n]`.
    fn forward(&self, v: &Tensor) -> Tensor {
        (v * &self.weight).sum_dim_intlist(-1, false, v.kind()) + &self.bias
    }
}

/// The outputs of [`TaskQueries`] for `N` frames.
#[derive(Debug)]
pub struct TaskOutputs {
    /// AU logits `[N, 12]`.
    pub au: Tensor,
    /// Expression logits `[N, 8]`.
    pub expr: Tensor,
    /// Valence and arousal `[N, 2]` in [-1, 1].
    pub va: Tensor,
}

/// The model (see the module documentation).
#[derive(Debug)]
pub struct TaskQueries {
    cfg: TaskQueriesConfig,
    tokens: i64,
    compress: Vec<(Tensor, Tensor)>,
    queries: Tensor,
    query_pos: Tensor,
    token_pos: Tensor,
    blocks: Vec<Block>,
    gcn: Vec<GcnLayer>,
    masks: Tensor,
    au_fc: NodeReadout,
    expr_fc: NodeReadout,
    va_fc: NodeReadout,
}

impl TaskQueries {
    /// Creates the model under `p` with the reference's names, for `tokens` tokens of `dim`.
    ///
    /// # Panics
    /// With `positions = "sincos"` when `tokens` is not a square or `channels` not a multiple
    /// of 4 ([`super::Config::validate`] says so first).
    pub fn new(p: &nn::Path, cfg: TaskQueriesConfig, tokens: i64, dim: i64) -> Self {
        let c = cfg.channels;
        let widths = if cfg.compress_hidden > 0 {
            vec![dim, cfg.compress_hidden, c]
        } else {
            vec![dim, c]
        };
        let compress = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                // `nn.Conv1d(w0, w1, 1)`: weight and bias uniform in ±1/sqrt(w0).
                let q = p / "compress" / (2 * i);
                let bound = 1.0 / (w[0] as f64).sqrt();
                (
                    q.var("weight", &[w[1], w[0], 1], uniform(bound)),
                    q.var("bias", &[w[1]], uniform(bound)),
                )
            })
            .collect();
        let n_q: i64 = QUERIES.iter().sum();
        let token_pos = match cfg.positions {
            Positions::Learned => p.var(
                "token_pos",
                &[tokens, c],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            Positions::Sincos => {
                let side = (tokens as f64).sqrt().round() as i64;
                assert!(
                    side * side == tokens && c % 4 == 0,
                    "sincos positions need a square number of tokens ({tokens}) and channels a multiple of 4 ({c})"
                );
                sincos_2d(side, c, p.device())
            }
        };
        let blocks = (0..cfg.blocks)
            .map(|i| Block::new(&(p / "blocks" / i), &cfg, i == 0))
            .collect();
        let g = p / "gcn";
        let [n_au, n_expr, n_va] = QUERIES;
        TaskQueries {
            cfg,
            tokens,
            compress,
            queries: p.var("queries", &[n_q, c], nn::Init::Const(0.0)),
            query_pos: p.var(
                "query_pos",
                &[n_q, c],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            ),
            token_pos,
            blocks,
            gcn: vec![
                GcnLayer::new(&(&g / 0), c, n_au),
                GcnLayer::new(&(&g / 1), c, n_q),
                GcnLayer::new(&(&g / 2), c, n_q),
            ],
            masks: p.var(
                "masks",
                &[n_expr + n_va, c],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            au_fc: NodeReadout::new(&(p / "au_fc"), n_au, c),
            expr_fc: NodeReadout::new(&(p / "expr_fc"), n_expr, c),
            va_fc: NodeReadout::new(&(p / "va_fc"), n_va, c),
        }
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> TaskQueriesConfig {
        self.cfg
    }

    /// Tokens per frame the model reads.
    pub fn tokens(&self) -> i64 {
        self.tokens
    }

    /// The outputs of tokens `x [N, T, D]`; in training, dropout and BatchNorm statistics from
    /// the `valid` rows (`[N]` bool, `None` = all).
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> TaskOutputs {
        let n = x.size()[0];
        let last = self.compress.len() - 1;
        let mut m = x.shallow_clone();
        for (i, (w, b)) in self.compress.iter().enumerate() {
            m = m.linear(&w.squeeze_dim(-1), Some(b));
            if i < last {
                m = m.relu();
            }
        }
        let mk = &m + self.token_pos.unsqueeze(0);
        let qp = self.query_pos.unsqueeze(0);
        let mut q = self.queries.unsqueeze(0).expand([n, -1, -1], false);
        for block in &self.blocks {
            q = block.forward_t(&q, &qp, &m, &mk, train);
        }
        let [n_au, n_expr, n_va] = QUERIES;
        let au = self.gcn[0].forward_t(&q.narrow(1, 0, n_au), None, valid, train);
        let fused = q.narrow(1, n_au, n_expr + n_va) + self.masks.unsqueeze(0);
        let knn = match self.cfg.graph {
            Graph::Knn => Some(self.cfg.neighbors),
            Graph::Full => None,
        };
        let mut v = Tensor::cat(&[au, fused], 1);
        for layer in &self.gcn[1..] {
            v = layer.forward_t(&v, knn, valid, train);
        }
        TaskOutputs {
            au: self.au_fc.forward(&v.narrow(1, 0, n_au)),
            expr: self.expr_fc.forward(&v.narrow(1, n_au, n_expr)),
            va: self.va_fc.forward(&v.narrow(1, n_au + n_expr, n_va)).tanh(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn small() -> TaskQueriesConfig {
        TaskQueriesConfig {
            channels: 16,
            compress_hidden: 24,
            heads: 2,
            blocks: 2,
            ff: 32,
            dropout: 0.0,
            ..TaskQueriesConfig::default()
        }
    }

    #[test]
    fn the_first_block_has_no_self_attention_and_the_outputs_have_the_task_shapes() {
        tch::set_num_threads(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = TaskQueries::new(&vs.root(), small(), 9, 8);
        let names = vs.variables();
        assert!(!names.contains_key("blocks.0.self_attn.in_proj_weight"));
        assert!(!names.contains_key("blocks.0.norm1.weight"));
        for name in [
            "blocks.1.self_attn.in_proj_weight",
            "blocks.0.multihead_attn.out_proj.weight",
            "compress.0.weight",
            "compress.2.bias",
            "queries",
            "query_pos",
            "token_pos",
            "gcn.0.bnv.running_mean",
            "gcn.2.U.weight",
            "masks",
            "va_fc.bias",
        ] {
            assert!(names.contains_key(name), "{name} in {:?}", names.keys());
        }
        assert_eq!(names["compress.0.weight"].size(), [24, 8, 1]);
        let x = Tensor::randn([5, 9, 8], (Kind::Float, Device::Cpu));
        let out = model.forward_t(&x, None, false);
        assert_eq!(out.au.size(), [5, 12]);
        assert_eq!(out.expr.size(), [5, 8]);
        assert_eq!(out.va.size(), [5, 2]);
        assert!(out.va.abs().max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn sincos_positions_follow_the_formula_on_the_grid() {
        let (side, c) = (3, 8);
        let pe = sincos_2d(side, c, Device::Cpu);
        assert_eq!(pe.size(), [9, 8]);
        let q = c / 4;
        for t in 0..side * side {
            let (col, row) = ((t % side) as f64, (t / side) as f64);
            for i in 0..q {
                let w = 10000f64.powf(-(i as f64) / q as f64);
                let want = [
                    (col * w).sin(),
                    (col * w).cos(),
                    (row * w).sin(),
                    (row * w).cos(),
                ];
                for (j, v) in want.iter().enumerate() {
                    let got = pe.double_value(&[t, j as i64 * q + i]);
                    assert!((got - v).abs() < 1e-6, "t {t} block {j} i {i}");
                }
            }
        }
    }
}
