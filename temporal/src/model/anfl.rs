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
use tch::{nn, Tensor};

/// `F.normalize`'s floor of the norm.
const L2_EPS: f64 = 1e-12;

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
        // ReLU in place: BatchNorm's backward reads its input, not its output.
        let nodes: Vec<Tensor> = self
            .class_linears
            .iter()
            .map(|b| {
                let h = dropout(x, self.dropout, train).apply(&b.fc);
                if tokens {
                    // BatchNorm over channels: [N, T, C] -> [N, C, T] and back.
                    let h = b.bn.forward_t(&h.transpose(1, 2), valid, train).relu_();
                    h.mean_dim(-1, false, h.kind())
                } else {
                    b.bn.forward_t(&h, valid, train).relu_()
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
    ///
    /// `<v_i / max(|v_i|, eps), s_i> = <v_i, s_i> / max(|v_i|, eps)`: the dot products come from
    /// one product `v s^T` (`[N, n, n]`, its diagonal; `n` times the work of the dot products,
    /// which is still small beside the graph layer) and the norms from one reduction, without
    /// the normalised copy of `v` and the elementwise product that `F.normalize(v) * s` makes.
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let v = self.graph.forward_t(x, valid, train);
        let sc = l2_normalize(&self.sc.relu());
        let dots = v.matmul(&sc.tr()).diagonal(0, -2, -1);
        let norms = v
            .norm_scalaropt_dim(2, [-1i64].as_slice(), false)
            .clamp_min(L2_EPS);
        dots / norms
    }
}

impl Gnn {
    fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let adj = knn_graph(&x.detach(), self.neighbors);
        let a = normalize_digraph(&adj);
        // U(x) + A V(x) in one batched product accumulating onto U(x).
        let aggregate = x.apply(&self.u).baddbmm(&a, &x.apply(&self.v), 1.0, 1.0);
        // The residual and the ReLU in place on BatchNorm's fresh output (its backward reads
        // its input; the sum's backward reads nothing).
        self.bnv
            .forward_t(&aggregate, valid, train)
            .g_add_(x)
            .relu_()
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The head written out plainly (ME-GraphAU's operations one by one, out of place): what
    /// the fused forward must equal.
    fn plain(head: &Anfl, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        let g = &head.graph;
        let tokens = x.dim() == 3;
        let nodes: Vec<Tensor> = g
            .class_linears
            .iter()
            .map(|b| {
                let h = x.apply(&b.fc);
                if tokens {
                    let h = b.bn.forward_t(&h.transpose(1, 2), valid, train).relu();
                    h.mean_dim(-1, false, h.kind())
                } else {
                    b.bn.forward_t(&h, valid, train).relu()
                }
            })
            .collect();
        let x = Tensor::stack(&nodes, 1);
        let a = normalize_digraph(&knn_graph(&x.detach(), g.gnn.neighbors));
        let aggregate = a.matmul(&x.apply(&g.gnn.v)) + x.apply(&g.gnn.u);
        let v = (&x + g.gnn.bnv.forward_t(&aggregate, valid, train)).relu();
        let sc = l2_normalize(&head.sc.relu());
        (l2_normalize(&v) * sc.unsqueeze(0)).sum_dim_intlist(-1, false, Kind::Float)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Outputs, every parameter's gradient and the running statistics equal the plain
    /// formulation's, in evaluation and in training (all rows and some rows valid), on frames and
    /// on tokens.
    #[test]
    fn the_fused_forward_equals_the_plain_one_with_its_gradients() {
        tch::set_num_threads(1);
        for (shape, valid) in [
            (vec![9, 16], None),
            (
                vec![9, 16],
                Some([true, true, false, true, true, true, false, true, true]),
            ),
            (vec![5, 3, 16], None),
        ] {
            // One head and one input for both formulations (other tests draw from libtorch's
            // generator concurrently), its variables restored in between.
            let vs = nn::VarStore::new(Device::Cpu);
            let head = Anfl::new(
                vs.root(),
                AnflConfig {
                    channels: 16,
                    nodes: 12,
                    neighbors: 4,
                    dropout: 0.0,
                },
            );
            let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
            let valid = valid.map(|v| Tensor::from_slice(&v));
            let mut names: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            let initial: Vec<Tensor> = names.iter().map(|(_, t)| t.copy()).collect();
            let run = |fused: bool, train: bool| {
                tch::no_grad(|| {
                    for ((_, t), init) in names.iter().zip(&initial) {
                        t.shallow_clone().copy_(init);
                    }
                });
                for (_, t) in &names {
                    if t.requires_grad() {
                        let mut g = t.grad();
                        if g.defined() {
                            let _ = g.zero_();
                        }
                    }
                }
                let mut outs = Vec::new();
                // two steps, so that the second sees the running statistics the first updated
                for _ in 0..2 {
                    let p = if fused {
                        head.forward_t(&x, valid.as_ref(), train)
                    } else {
                        plain(&head, &x, valid.as_ref(), train)
                    };
                    if train {
                        (&p * Tensor::arange(12, (Kind::Float, Device::Cpu)))
                            .sum(Kind::Float)
                            .backward();
                    }
                    outs.push(p.detach());
                }
                let vars: Vec<(String, Tensor)> =
                    names.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
                let grads: Vec<(String, Tensor)> = names
                    .iter()
                    .filter(|(_, t)| t.requires_grad())
                    .map(|(n, t)| {
                        let g = t.grad();
                        (n.clone(), if g.defined() { g.copy() } else { g })
                    })
                    .collect();
                (outs, vars, grads)
            };
            for train in [false, true] {
                let (out_f, vars_f, grads_f) = run(true, train);
                let (out_p, vars_p, grads_p) = run(false, train);
                for (a, b) in out_f.iter().zip(&out_p) {
                    let d = max_abs_diff(a, b);
                    assert!(d < 1e-5, "{shape:?} train {train}: outputs differ by {d}");
                }
                for ((n, a), (_, b)) in vars_f.iter().zip(&vars_p) {
                    if a.kind() == Kind::Float {
                        assert!(max_abs_diff(a, b) < 1e-5, "{shape:?} {n}");
                    } else {
                        assert!(a.equal(b), "{shape:?} {n}");
                    }
                }
                // relative to the largest gradient: the Linear biases before a BatchNorm have
                // gradients of about 0 (rounding noise)
                let largest = grads_p
                    .iter()
                    .filter(|(_, g)| g.defined())
                    .map(|(_, g)| g.abs().max().double_value(&[]))
                    .fold(0.0, f64::max);
                for ((n, a), (_, b)) in grads_f.iter().zip(&grads_p) {
                    assert_eq!(a.defined(), b.defined(), "{n}");
                    assert_eq!(a.defined(), train, "{n}: a gradient only after training");
                    if train {
                        let tol = 1e-5 * largest + 1e-4 * b.abs().max().double_value(&[]);
                        let d = max_abs_diff(a, b);
                        assert!(d < tol, "{shape:?}: gradient of {n} differs by {d} > {tol}");
                    }
                }
            }
        }
    }
}
