//! The ANFL AU head of ME-GraphAU (Luo et al., IJCAI 2022): one feature per AU, a graph of the
//! AUs that each frame's features draw, one graph layer, and a similarity score per AU.
//!
//! What it does: [`Anfl`] creates, under its path, exactly the state-dict names of ME-GraphAU's
//! `Head` (`model/ANFL.py`): `sc [12, C]`, `class_linears.{i}.fc.{weight,bias}`,
//! `class_linears.{i}.bn.{weight,bias,running_mean,running_var,num_batches_tracked}`,
//! `gnn.U.*`, `gnn.V.*`, `gnn.bnv.*`, and maps frame features `[N, C]` to AU probabilities
//! `[N, 12]`:
//! - per AU i: `v_i = ReLU(BN(Linear(dropout(x))))` (the AFG blocks; dropout 0 in ME-GraphAU's
//!   `LinearBlock`, 0.5 in MTL-ABAW4's `Dense`);
//! - a k-nearest-neighbour graph of the detached nodes by dot product: an edge `i -> j` wherever
//!   `<v_i, v_j>` is at least the k-th largest similarity of row i (ties add edges), normalised
//!   `D^-1/2 A D^-1/2` with D the row degrees;
//! - one GNN layer `v = ReLU(v + BN_nodes(A V(v) + U(v)))`, `bnv` normalising each of the 12
//!   nodes as a channel;
//! - `p_i = <normalize(v_i), normalize(ReLU(sc_i))>` in [0, 1], the AU probability (no sigmoid).
//!
//! ME-GraphAU's `Head` reads tokens `[N, T, C]` and averages the AU features over T; on one
//! vector per frame (T = 1) that average is the identity, which is what this module computes.
//! BatchNorm layers keep running statistics (saved, used in evaluation); in training their batch
//! statistics come from the `valid` rows only ([`super::layers::BatchNorm1d`]).
//!
//! What it does not: the loss (ME-GraphAU's weighted asymmetric loss is `crate::loss::wal`),
//! the other metrics ME-GraphAU offers for the graph (cosine, L1), or its MEFL edge stage.

use super::kernels::dropout::dropout;
use super::layers::{l2_normalize, torch_linear, uniform, BatchNorm1d};
use tch::{nn, Kind, Tensor};

/// ANFL sizes and options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnflConfig {
    /// Feature width C (input and node width).
    pub channels: i64,
    /// Number of nodes (AUs).
    pub nodes: i64,
    /// k of the k-nearest-neighbour graph (ME-GraphAU's default 4).
    pub neighbors: i64,
    /// Dropout before each AU block's Linear.
    pub dropout: f64,
}

/// One per-AU block: `ReLU(BN(Linear(dropout(x))))`, names `fc.*` and `bn.*`.
#[derive(Debug)]
struct AuBlock {
    fc: nn::Linear,
    bn: BatchNorm1d,
}

/// The graph layer: `gnn.U`, `gnn.V`, `gnn.bnv`.
#[derive(Debug)]
struct Gnn {
    u: nn::Linear,
    v: nn::Linear,
    bnv: BatchNorm1d,
    neighbors: i64,
}

/// The AU nodes and the graph layer: `class_linears.*` and `gnn.*` under its path, shared by the
/// ANFL head and the LRP-ARL-FF model's relation learning ([`super::lrp_arl_ff`]).
#[derive(Debug)]
pub struct AuGraph {
    class_linears: Vec<AuBlock>,
    gnn: Gnn,
    dropout: f64,
}

/// `nn.Linear(c, c)` with ME-GraphAU's weight initialisation, normal with std sqrt(2 / c)
/// (the bias as PyTorch initialises it).
fn graph_linear(p: nn::Path, c: i64) -> nn::Linear {
    let mut l = torch_linear(p, c, c);
    tch::no_grad(|| {
        let _ = l.ws.normal_(0.0, (2.0 / c as f64).sqrt());
    });
    l
}

impl AuGraph {
    /// Creates `class_linears.{i}.{fc,bn}` and `gnn.{U,V,bnv}` under `p`.
    pub fn new(p: &nn::Path, cfg: AnflConfig) -> Self {
        let c = cfg.channels;
        let blocks = p / "class_linears";
        let class_linears = (0..cfg.nodes)
            .map(|i| AuBlock {
                fc: graph_linear(&blocks / i / "fc", c),
                bn: BatchNorm1d::new(&blocks / i / "bn", c),
            })
            .collect();
        let g = p / "gnn";
        let gnn = Gnn {
            u: graph_linear(&g / "U", c),
            v: graph_linear(&g / "V", c),
            bnv: BatchNorm1d::new(&g / "bnv", cfg.nodes),
            neighbors: cfg.neighbors,
        };
        AuGraph {
            class_linears,
            gnn,
            dropout: cfg.dropout,
        }
    }

    /// The node features after the graph layer `[N, nodes, C]` from frame features `x [N, C]`
    /// or tokens `x [N, T, C]` (each AU block runs on every token, BatchNorm statistics over
    /// rows and tokens, then the mean over the tokens, as ME-GraphAU's `Head`). In training,
    /// dropout is applied and the batch statistics come from the `valid` rows (`[N]` bool;
    /// `None` = every row).
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let tokens = x.dim() == 3;
        let nodes: Vec<Tensor> = self
            .class_linears
            .iter()
            .map(|b| {
                let h = dropout(x, self.dropout, train).apply(&b.fc);
                if tokens {
                    // BatchNorm over channels: [N, T, C] -> [N, C, T] and back.
                    let h = b.bn.forward_t(&h.transpose(1, 2), valid, train).relu();
                    h.mean_dim(-1, false, h.kind())
                } else {
                    b.bn.forward_t(&h, valid, train).relu()
                }
            })
            .collect();
        self.gnn.forward_t(&Tensor::stack(&nodes, 1), valid, train)
    }
}

/// The ANFL head (see the module documentation).
#[derive(Debug)]
pub struct Anfl {
    cfg: AnflConfig,
    graph: AuGraph,
    sc: Tensor,
}

impl Anfl {
    /// Creates the head under `p` with ME-GraphAU's names and initialisation.
    pub fn new(p: nn::Path, cfg: AnflConfig) -> Self {
        let graph = AuGraph::new(&p, cfg);
        // Xavier uniform, as `nn.init.xavier_uniform_(self.sc)`.
        let bound = (6.0 / (cfg.nodes + cfg.channels) as f64).sqrt();
        let sc = p.var("sc", &[cfg.nodes, cfg.channels], uniform(bound));
        Anfl { cfg, graph, sc }
    }

    /// The configuration the head was built with.
    pub fn config(&self) -> AnflConfig {
        self.cfg
    }

    /// AU probabilities `[N, nodes]` from frame features `x [N, C]` (or tokens `[N, T, C]`):
    /// the similarity of each node after the graph layer ([`AuGraph::forward_t`]) with its
    /// class centre `sc`.
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let v = self.graph.forward_t(x, valid, train);
        let sc = l2_normalize(&self.sc.relu());
        (l2_normalize(&v) * sc.unsqueeze(0)).sum_dim_intlist(-1, false, Kind::Float)
    }
}

impl Gnn {
    fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let adj = knn_graph(&x.detach(), self.neighbors);
        let a = normalize_digraph(&adj);
        let aggregate = a.matmul(&x.apply(&self.v)) + x.apply(&self.u);
        (x + self.bnv.forward_t(&aggregate, valid, train)).relu()
    }
}

/// The k-nearest-neighbour graph `[N, n, n]` of node features `[N, n, C]` by dot product: 1
/// where the similarity is at least the row's k-th largest (so ties add edges), else 0.
pub fn knn_graph(x: &Tensor, k: i64) -> Tensor {
    let si = x.matmul(&x.transpose(1, 2));
    let k = k.min(si.size()[2]);
    let (top, _) = si.topk(k, -1, true, true);
    let threshold = top.narrow(-1, k - 1, 1);
    si.ge_tensor(&threshold).to_kind(x.kind())
}

/// `D^-1/2 A D^-1/2` with D the row sums of A (ME-GraphAU's `normalize_digraph`).
pub fn normalize_digraph(a: &Tensor) -> Tensor {
    let d = a
        .sum_dim_intlist(-1, false, a.kind())
        .pow_tensor_scalar(-0.5);
    d.unsqueeze(-1) * a * d.unsqueeze(-2)
}
