//! The temporal multi-task model: the Rust twin of `TemporalMTL` in
//! `../shared/peers/torch_temporal_ref.py` (ABAW4 MTL, Zhang et al. 2022).
//!
//! What it does: [`TemporalMtl`] maps per-frame features `[B, L, feat_dim]` to per-task outputs
//! (valence `[B, L, 1]`, arousal `[B, L, 1]`, expression logits `[B, L, 8]`, AU logits
//! `[B, L, 12]`) through a bottom [`encoder`] (GRU | LSTM | Transformer), a [`topology`]
//! (basic | share-bottom | feedback) and [`heads`]. Recurrent layers carry their state from one
//! segment to the next ([`States`], [`States::carry`]). Parameters are created under the PyTorch
//! names (`bottom.rnn.weight_ih_l0`, `in_proj.weight`, `bottom.layers.0.self_attn.in_proj_weight`,
//! `tops.expr.rnn.weight_hh_l0`, `fuse.weight`, `heads.au.net.6.bias`, ...), so a var store
//! saved with [`checkpoint::save`] is the reference's `state_dict` for the same [`Config`], and
//! a PyTorch `state_dict` saved as safetensors loads with [`checkpoint::load_strict`].
//!
//! Two ABAW5 systems (Wang et al.) plug into this frame: the encoder `arch = "multirate"`
//! ([`multirate`]), whose three pipelines end in the AU logits themselves (no heads), and the
//! VA head `va = "polarity"` ([`polarity`]), whose polarity classifiers gate its regressors.
//! One ABAW7 system replaces the heads altogether: `[model.heads] all = "task-queries"`
//! ([`task_queries`]), 22 task queries over a frame's patch tokens and an AU-assisted graph
//! network giving every task's outputs from one module (`arch = "none"`, names at the root).
//!
//! The architecture reads top-down: [`config`], [`encoder`], [`topology`], [`heads`], with the
//! shared [`layers`] and the Transformer layer in [`transformer`]; the hand-written CPU kernels
//! that make it fast (GRU training, packed recurrent inference, dropout) are in [`kernels`].
//!
//! What it does not: batch videos into streams, train, or compute losses (see [`crate::loss`]).
//! Dropout masks in training mode are drawn by [`kernels::dropout::dropout`] (seeded from libtorch's
//! generator), so training runs are not bit-identical to PyTorch's; evaluation mode is (within
//! float rounding).
//!
//! # Parity fixtures
//! `temporal/tests/parity.rs` compares this model and [`crate::loss::mtl_loss`] with the PyTorch
//! reference on every arch x topology, using the files in `temporal/tests/fixtures/`.
//! Regenerate them (needs the full PyTorch, installed once into `fixture-venv/`) with:
//! ```text
//! PY=$(bash scripts/fixtures/venv.sh)
//! $PY scripts/fixtures/temporal_fixture.py [--ref ../shared/peers/torch_temporal_ref.py] \
//!     [--out temporal/tests/fixtures]
//! cargo test -p temporal --test parity
//! ```
//! The reference's heads are fixed at 512 and 256 units, so a state dict is ~2 MB even with small
//! encoder sizes. The fixtures therefore store the state dict's names, shapes and a digest of every
//! tensor, and both sides fill the weights with the same documented integer generator
//! (splitmix64 of the tensor name's FNV-1a hash, see the script); the test regenerates the tensors,
//! checks each digest, writes them as a safetensors state dict and loads it with
//! [`checkpoint::load_strict`].

pub mod anfl;
pub mod checkpoint;
pub mod config;
pub mod encoder;
pub mod heads;
pub mod kernels;
pub mod layers;
pub mod lrp_arl_ff;
pub mod multirate;
pub mod polarity;
pub mod state;
pub mod task_queries;
pub mod topology;
pub mod transformer;

use kernels::{dropout, gru};

pub use config::{Arch, AuHead, Config, ConfigError, HeadTask, Topology};
pub use state::{RnnState, States};

use std::collections::BTreeMap;
use tch::nn;
use tch::Tensor;

/// The model's outputs for one segment.
#[derive(Debug)]
pub struct Outputs {
    /// Raw outputs per head name (`valence`, `arousal`: `[B, L, 1]`; `expr`: `[B, L, 8]` logits;
    /// `au`: `[B, L, 12]` logits). Only the configured tasks are present.
    pub by_task: BTreeMap<String, Tensor>,
    /// The recurrent weight gradients the GRU training path left for [`Outputs::backward`].
    pub deferred: gru::DeferredGrads,
    /// True when `au` holds probabilities (the ANFL head) rather than logits.
    pub au_probabilities: bool,
}

impl Outputs {
    /// The backward pass of a loss computed from these outputs: `loss.backward()`, then the
    /// deferred GRU weight gradients ([`gru::DeferredGrads::backward`]). Train with this, not
    /// with `loss.backward()` alone, which would leave a training GRU's `weight_hh_l0` and
    /// `bias_hh_l0` without their gradient.
    pub fn backward(&mut self, loss: &Tensor) {
        self.deferred.backward(loss);
    }

    /// The output of one head, if the model has it.
    pub fn get(&self, task: HeadTask) -> Option<&Tensor> {
        self.by_task.get(task.name())
    }
}

/// The temporal multi-task model (see the module documentation).
#[derive(Debug)]
pub struct TemporalMtl {
    cfg: Config,
    encoder: encoder::Encoder,
    tops: topology::Tops,
    heads: heads::Heads,
}

impl TemporalMtl {
    /// Builds the model under `p` (normally `vs.root()`) with the reference's parameter names.
    ///
    /// # Panics
    /// If `cfg` is invalid; use [`TemporalMtl::try_new`] to get the error instead.
    pub fn new(p: &nn::Path, cfg: &Config) -> Self {
        Self::try_new(p, cfg).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds the model after checking `cfg` ([`Config::validate`]).
    pub fn try_new(p: &nn::Path, cfg: &Config) -> Result<Self, ConfigError> {
        cfg.validate()?;
        // Heads live under `heads.` after an encoder, at the root without one (AMTL's layout).
        let head_root = if cfg.arch == Arch::None {
            p.clone()
        } else {
            p / "heads"
        };
        // The multi-rate encoder ends in the AU logits itself: no heads.
        let head_cfg = if cfg.arch == Arch::Multirate {
            Config {
                tasks: Vec::new(),
                ..cfg.clone()
            }
        } else {
            cfg.clone()
        };
        let heads = heads::Heads::new(&head_root, &head_cfg, cfg.encoder_dim());
        Ok(TemporalMtl {
            cfg: cfg.clone(),
            encoder: encoder::Encoder::new(p, cfg),
            tops: topology::Tops::new(p, cfg),
            heads,
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// True for GRU/LSTM (states are carried between segments).
    pub fn is_recurrent(&self) -> bool {
        self.cfg.arch.is_recurrent()
    }

    /// Names of the carried states, as the reference's `state_names()`: `bottom`, then
    /// `top_<task>` in task order; empty for the Transformer.
    pub fn state_names(&self) -> Vec<String> {
        if !self.is_recurrent() {
            return Vec::new();
        }
        let mut names = vec!["bottom".to_string()];
        names.extend(self.tops.state_names());
        names
    }

    /// One segment: `x [B, L, feat_dim]` (float); `pad [B, L]` bool, true = padding (used by the
    /// Transformer only; recurrent layers run over padded frames as in the reference);
    /// `states` from the previous segment after [`States::carry`] (`None` = zeros).
    /// `train` enables dropout.
    ///
    /// Returns the outputs and the final state of every recurrent layer (empty for the
    /// Transformer), still attached to the graph: pass them through [`States::carry`] before
    /// the next segment.
    pub fn forward_t(
        &self,
        x: &Tensor,
        pad: Option<&Tensor>,
        states: Option<&States>,
        train: bool,
    ) -> (Outputs, States) {
        let mut new_states = States::empty();
        let mut deferred = gru::DeferredGrads::default();
        let bias = match pad {
            Some(pad) if matches!(self.cfg.arch, Arch::Transformer | Arch::Multirate) => {
                Some(transformer::key_padding_bias(pad, x.kind()))
            }
            _ => None,
        };
        let (h, bottom_state) = self.encoder.forward_t(
            x,
            bias.as_ref(),
            states.and_then(|s| s.get("bottom")),
            train,
            &mut deferred,
        );
        if let Some(s) = bottom_state {
            new_states.insert("bottom", s);
        }
        if self.cfg.arch == Arch::Multirate {
            let outputs = Outputs {
                by_task: BTreeMap::from([(HeadTask::Au.name().to_string(), h)]),
                deferred,
                au_probabilities: false,
            };
            return (outputs, new_states);
        }
        let feats = self.tops.forward_t(
            &h,
            bias.as_ref(),
            states,
            &mut new_states,
            train,
            &mut deferred,
        );
        // The reference drops out the encoder output before the heads; there is none to drop
        // without an encoder.
        let feats = if self.cfg.arch == Arch::None {
            feats
        } else {
            feats
                .into_iter()
                .map(|(t, f)| (t, dropout::dropout(&f, self.cfg.dropout, train)))
                .collect()
        };
        let valid = pad.map(|p| p.to_kind(tch::Kind::Bool).logical_not());
        let by_task = self.heads.forward_t(&feats, valid.as_ref(), train);
        let outputs = Outputs {
            by_task,
            deferred,
            au_probabilities: self.heads.au_probabilities(),
        };
        (outputs, new_states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{mtl_loss, LabelTensors, LossConfig};
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    const ARCHS: [Arch; 4] = [Arch::Gru, Arch::Lstm, Arch::Transformer, Arch::Mlp];
    const TOPOLOGIES: [Topology; 3] = [Topology::Basic, Topology::ShareBottom, Topology::Feedback];

    fn small(arch: Arch, topology: Topology) -> Config {
        Config {
            arch,
            topology,
            hidden: 8,
            d_model: 8,
            n_layers: 1,
            n_heads: 2,
            ff: 16,
            dropout: 0.1,
            feat_dim: 5,
            ..Config::default()
        }
    }

    /// Tiny tensors: one libtorch thread (OpenMP workers spin-wait on a busy 2-core machine).
    fn one_thread() {
        tch::set_num_threads(1);
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn outputs_have_the_task_shapes_and_states_the_reference_names() {
        one_thread();
        for arch in ARCHS {
            for topology in TOPOLOGIES {
                let vs = nn::VarStore::new(Device::Cpu);
                let cfg = small(arch, topology);
                let model = TemporalMtl::new(&vs.root(), &cfg);
                let x = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
                let (out, states) = model.forward_t(&x, None, None, false);
                let shapes: Vec<(String, Vec<i64>)> = out
                    .by_task
                    .iter()
                    .map(|(k, v)| (k.clone(), v.size()))
                    .collect();
                let expected: Vec<(String, Vec<i64>)> =
                    [("arousal", 1), ("au", 12), ("expr", 8), ("valence", 1)]
                        .iter()
                        .map(|(k, n)| (k.to_string(), vec![2, 3, *n]))
                        .collect();
                assert_eq!(shapes, expected, "{arch} {topology}");
                let mut names: Vec<String> = states.iter().map(|(n, _)| n.to_string()).collect();
                names.sort();
                let mut want = model.state_names();
                want.sort();
                assert_eq!(names, want, "{arch} {topology}");
                let n_states = match (arch, topology) {
                    (Arch::Transformer | Arch::Mlp, _) => 0,
                    (_, Topology::Basic) => 1,
                    _ => 5,
                };
                assert_eq!(states.len(), n_states, "{arch} {topology}");
            }
        }
    }

    /// Two segments of one stream: change only the first segment's input and look at the
    /// second segment's output.
    #[test]
    fn carried_state_links_segments_for_rnns_only() {
        one_thread();
        for arch in ARCHS {
            for topology in TOPOLOGIES {
                tch::manual_seed(1);
                let vs = nn::VarStore::new(Device::Cpu);
                let model = TemporalMtl::new(&vs.root(), &small(arch, topology));
                let seg1a = Tensor::randn([2, 4, 5], (Kind::Float, Device::Cpu));
                let seg1b = Tensor::randn([2, 4, 5], (Kind::Float, Device::Cpu));
                let seg2 = Tensor::randn([2, 4, 5], (Kind::Float, Device::Cpu));
                let keep = Tensor::from_slice(&[true, false]);
                let second = |seg1: &Tensor| {
                    let (_, s) = model.forward_t(seg1, None, None, false);
                    let (out, _) = model.forward_t(&seg2, None, Some(&s.carry(&keep)), false);
                    out
                };
                let (a, b) = (second(&seg1a), second(&seg1b));
                for (task, ya) in &a.by_task {
                    let yb = &b.by_task[task];
                    let kept = max_abs_diff(&ya.get(0), &yb.get(0));
                    let reset = max_abs_diff(&ya.get(1), &yb.get(1));
                    assert_eq!(
                        reset, 0.0,
                        "{arch} {topology} {task}: a reset stream saw the past"
                    );
                    if arch.is_recurrent() {
                        assert!(kept > 1e-5, "{arch} {topology} {task}: state not carried");
                    } else {
                        assert_eq!(
                            kept, 0.0,
                            "{arch} {topology} {task}: a model without state saw the past"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn feedback_target_does_not_train_the_source_through_its_input() {
        one_thread();
        // The target's top reads the source's top output detached: the expr loss must give no
        // gradient to the source (au) top layer, but does reach the shared bottom.
        for arch in ARCHS {
            let vs = nn::VarStore::new(Device::Cpu);
            let model = TemporalMtl::new(&vs.root(), &small(arch, Topology::Feedback));
            let x = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
            let (out, _) = model.forward_t(&x, None, None, false);
            out.get(HeadTask::Expr).unwrap().sum(Kind::Float).backward();
            let vars = vs.variables();
            let grad_norm = |prefix: &str| -> f64 {
                vars.iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(_, t)| {
                        let g = t.grad();
                        if g.defined() {
                            g.abs().sum(Kind::Double).double_value(&[])
                        } else {
                            0.0
                        }
                    })
                    .sum()
            };
            assert_eq!(grad_norm("tops.au."), 0.0, "{arch}");
            assert!(grad_norm("tops.expr.") > 0.0, "{arch}");
            let bottom = if arch == Arch::Transformer {
                "in_proj."
            } else {
                "bottom."
            };
            assert!(grad_norm(bottom) > 0.0, "{arch}");
        }
    }

    /// A tiny learnable problem: every label is a fixed function of the current frame's
    /// features. A few Adam steps must lower the multi-task loss for every arch x topology.
    #[test]
    fn loss_falls_with_adam_for_every_arch_and_topology() {
        one_thread();
        for arch in ARCHS {
            for topology in TOPOLOGIES {
                tch::manual_seed(7);
                let vs = nn::VarStore::new(Device::Cpu);
                let model = TemporalMtl::new(&vs.root(), &small(arch, topology));
                let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
                let (b, l) = (4, 6);
                let x = Tensor::randn([b, l, 5], (Kind::Float, Device::Cpu));
                let f0 = x.select(2, 0);
                let f1 = x.select(2, 1);
                let va = Tensor::stack(&[f0.tanh(), (-&f1).tanh()], -1);
                let expr = (f0.gt(0.0).to_kind(Kind::Int64) * 4) + f1.gt(0.0).to_kind(Kind::Int64);
                let au = x
                    .narrow(2, 0, 3)
                    .gt(0.0)
                    .to_kind(Kind::Float)
                    .repeat([1, 1, 4]);
                let labels = LabelTensors { va, expr, au };
                let valid = Tensor::ones([b, l], (Kind::Bool, Device::Cpu));
                let cfg = LossConfig::default();
                let eval = || {
                    let (out, _) = model.forward_t(&x, None, None, false);
                    mtl_loss(&out, &labels, &valid, &cfg).0.double_value(&[])
                };
                let before = eval();
                for _ in 0..40 {
                    let (mut out, _) = model.forward_t(&x, None, None, true);
                    let (loss, _) = mtl_loss(&out, &labels, &valid, &cfg);
                    opt.zero_grad();
                    out.backward(&loss);
                    opt.step();
                }
                let after = eval();
                assert!(
                    after < 0.8 * before,
                    "{arch} {topology}: loss {before} -> {after}"
                );
            }
        }
    }

    #[test]
    fn invalid_config_is_an_error_not_a_model() {
        one_thread();
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = Config {
            n_heads: 3,
            ..small(Arch::Transformer, Topology::Basic)
        };
        assert!(matches!(
            TemporalMtl::try_new(&vs.root(), &cfg),
            Err(ConfigError::Heads { .. })
        ));
    }

    /// The task-queries model reads each frame's features as tokens, creates its names at the
    /// root, gives every task's output and learns labels that live in single tokens.
    #[test]
    fn task_queries_model_gives_every_task_from_tokens_and_learns_local_labels() {
        one_thread();
        tch::manual_seed(5);
        let cfg = Config {
            arch: Arch::None,
            heads: config::HeadKinds {
                all: config::JointHead::TaskQueries,
                ..config::HeadKinds::default()
            },
            feat_dim: 8,
            tokens: 4,
            task_queries: config::TaskQueriesConfig {
                channels: 16,
                compress_hidden: 16,
                heads: 2,
                blocks: 2,
                ff: 32,
                ..config::TaskQueriesConfig::default()
            },
            ..Config::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = TemporalMtl::new(&vs.root(), &cfg);
        let names = vs.variables();
        for name in [
            "compress.0.weight",
            "queries",
            "blocks.1.self_attn.in_proj_weight",
            "gcn.2.bnv.running_var",
            "expr_fc.weight",
        ] {
            assert!(names.contains_key(name), "{name} in {:?}", names.keys());
        }
        assert!(!names
            .keys()
            .any(|n| n.starts_with("heads.") || n.starts_with("au.")));
        let (b, t, c) = (48, 4, 8);
        let x = Tensor::randn([b, 1, t * c], (Kind::Float, Device::Cpu));
        let tokens = x.view([b, t, c]);
        // AUs on where channel 0 of token 1 is positive, the expression from token 2's sign,
        // valence and arousal from token 3.
        let on = tokens.select(1, 1).select(1, 0).gt(0.0);
        let au = on.to_kind(Kind::Float).view([b, 1, 1]).repeat([1, 1, 12]);
        let expr = tokens
            .select(1, 2)
            .select(1, 0)
            .gt(0.0)
            .to_kind(Kind::Int64)
            * 3;
        let va = tokens.select(1, 3).narrow(1, 0, 2).tanh().view([b, 1, 2]);
        let labels = LabelTensors {
            va,
            expr: expr.view([b, 1]),
            au,
        };
        let valid = Tensor::ones([b, 1], (Kind::Bool, Device::Cpu));
        let loss_cfg = LossConfig {
            va_loss: crate::loss::VaLoss::Ccc,
            ..LossConfig::default()
        };
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        let batch = (&x, &labels, &valid, &loss_cfg);
        loss_halves(&model, &mut opt, batch, 80, |out| {
            for (task, n) in [("valence", 1), ("arousal", 1), ("expr", 8), ("au", 12)] {
                assert_eq!(out.by_task[task].size(), [b, 1, n], "{task}");
            }
            assert!(!out.au_probabilities, "the task queries give AU logits");
        });
    }

    /// Trains `model` on one batch (features, labels, valid frames, loss) for `steps` steps of
    /// `opt` and asserts that the loss in evaluation mode at least halves; `check` looks at the
    /// outputs of each evaluation.
    fn loss_halves(
        model: &TemporalMtl,
        opt: &mut nn::Optimizer,
        (x, labels, valid, loss_cfg): (&Tensor, &LabelTensors, &Tensor, &LossConfig),
        steps: usize,
        check: impl Fn(&Outputs),
    ) {
        let eval = || {
            let (out, _) = model.forward_t(x, None, None, false);
            check(&out);
            mtl_loss(&out, labels, valid, loss_cfg).0.double_value(&[])
        };
        let before = eval();
        for _ in 0..steps {
            let (mut out, _) = model.forward_t(x, None, None, true);
            let (loss, _) = mtl_loss(&out, labels, valid, loss_cfg);
            opt.zero_grad();
            out.backward(&loss);
            opt.step();
        }
        let after = eval();
        assert!(after < 0.5 * before, "loss {before} -> {after}");
    }

    /// The LRP-ARL-FF head reads each frame's features as tokens, creates its names under `au.`,
    /// and learns a label that lives in one token only.
    #[test]
    fn token_head_reads_tokens_under_au_names_and_learns_a_local_label() {
        one_thread();
        tch::manual_seed(3);
        let cfg = Config {
            arch: Arch::None,
            tasks: vec![HeadTask::Au],
            heads: config::HeadKinds {
                au: AuHead::LrpArlFf,
                ..config::HeadKinds::default()
            },
            feat_dim: 8,
            tokens: 4,
            lrp: config::LrpConfig {
                fusion_heads: 2,
                ..config::LrpConfig::default()
            },
            ..Config::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let model = TemporalMtl::new(&vs.root(), &cfg);
        let names = vs.variables();
        for name in [
            "au.lrp.lanets.0.conv1.weight",
            "au.arl.gnn.U.weight",
            "au.backbone_fc.bias",
        ] {
            assert!(names.contains_key(name), "{name} in {:?}", names.keys());
        }
        let (b, t, c) = (32, 4, 8);
        let x = Tensor::randn([b, 1, t * c], (Kind::Float, Device::Cpu));
        // every AU is on where channel 0 of token 2 is positive
        let on = x.view([b, t, c]).select(1, 2).select(1, 0).gt(0.0);
        let au = on.to_kind(Kind::Float).view([b, 1, 1]).repeat([1, 1, 12]);
        let labels = LabelTensors {
            va: Tensor::full([b, 1, 2], -5.0, (Kind::Float, Device::Cpu)),
            expr: Tensor::full([b, 1], -1, (Kind::Int64, Device::Cpu)),
            au,
        };
        let valid = Tensor::ones([b, 1], (Kind::Bool, Device::Cpu));
        let loss_cfg = LossConfig::default();
        let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
        loss_halves(
            &model,
            &mut opt,
            (&x, &labels, &valid, &loss_cfg),
            60,
            |out| {
                assert_eq!(out.get(HeadTask::Au).unwrap().size(), [b, 1, 12]);
                assert!(!out.au_probabilities, "the token head gives logits");
            },
        );
    }
}
