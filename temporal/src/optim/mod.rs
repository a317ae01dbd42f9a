//! The optimizers of `temporal train` (Adam, AdamW, SGD, each optionally wrapped in
//! sharpness-aware minimisation), gradient-norm clipping and frozen parts, over a `VarStore`,
//! with state that can be saved and restored so that `--resume` continues exactly.
//!
//! What it does: [`Optimizer`] updates every variable of a var store that requires a gradient,
//! in name order, as PyTorch's optimizers do:
//! - `adam`: `torch.optim.Adam` (weight decay, if any, added to the gradient as an L2 term,
//!   `g + wd w`); the update is one fused pass per parameter on contiguous CPU float tensors
//!   ([`adam`]);
//! - `adamw`: `torch.optim.AdamW` (decoupled decay `w *= 1 - lr wd` before the Adam update);
//! - `sgd`: `torch.optim.SGD` with momentum (no dampening), optional Nesterov and L2 weight decay
//!   ([`sgd`]).
//!
//! [`Optimizer::update`] is one training step: the caller's closure computes the loss and its
//! gradient; with `sam_rho > 0` it is sharpness-aware minimisation (Foret et al., ICLR 2021, as
//! the SAM that MTL-ABAW4 uses): the gradient g at the weights w, the ascent
//! `e = rho g / (||g|| + 1e-12)` (the global L2 norm over every parameter with a gradient), the
//! closure again at `w + e` on the same batch (dropout masks are drawn afresh, as the reference
//! implementations do by calling the model again), w restored exactly from a copy, and the base
//! optimizer's step with the second gradient (clipped first, if clipping is on). BatchNorm
//! running statistics are left as the first pass made them: the second pass's updates are undone
//! (the reference SAM's `disable_running_stats` advice), so they see each batch once, at w.
//! Frozen parts ([`freeze`]) are left out of the optimizer and their running statistics are
//! restored after every step.
//!
//! State: tch's built-in optimizer cannot export its moments; this one keeps them as tensors named
//! after the parameters (`m.<name>`, `v.<name>` for Adam and AdamW, `momentum_buffer.<name>` for
//! SGD with momentum) plus the step count, in one safetensors file. The learning rate is not
//! state: the trainer sets [`Optimizer::lr`] before every step from the schedule.
//!
//! What it does not: choose the learning rate (see `crate::schedule`), or compute a loss.

mod adam;
pub mod freeze;
mod sgd;

use adam::AdamStep;
use anyhow::{bail, Context, Result};
use freeze::{Frozen, Held};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// The base optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (`torch.optim.Adam`; weight decay as L2 on the gradient).
    #[default]
    Adam,
    /// AdamW (`torch.optim.AdamW`; decoupled weight decay).
    #[value(name = "adamw")]
    AdamW,
    /// SGD with momentum (`torch.optim.SGD`).
    Sgd,
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

/// Everything an [`Optimizer`] is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimConfig {
    /// The base optimizer.
    pub kind: OptimizerKind,
    /// Learning rate (the trainer changes [`Optimizer::lr`] per step after the schedule).
    pub lr: f64,
    /// Weight decay (L2 on the gradient for adam and sgd, decoupled for adamw).
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    pub nesterov: bool,
    /// Sharpness-aware minimisation radius (0 = off).
    pub sam_rho: f64,
    /// Parts of the model left as they are ([`freeze`]).
    pub freeze: Vec<String>,
}

impl OptimConfig {
    /// Adam with learning rate `lr` and nothing else (today's default).
    pub fn adam(lr: f64) -> OptimConfig {
        OptimConfig {
            kind: OptimizerKind::Adam,
            lr,
            weight_decay: 0.0,
            momentum: 0.9,
            nesterov: false,
            sam_rho: 0.0,
            freeze: Vec::new(),
        }
    }

    /// Check the values (the messages name the configuration keys).
    pub fn validate(&self) -> Result<()> {
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_nonneg(self.lr) {
            bail!(
                "lr = {}: the learning rate must be finite and >= 0",
                self.lr
            );
        }
        if !finite_nonneg(self.weight_decay) {
            bail!(
                "weight_decay = {}: must be finite and >= 0",
                self.weight_decay
            );
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("momentum = {}: must be in [0, 1)", self.momentum);
        }
        if self.nesterov && (self.kind != OptimizerKind::Sgd || self.momentum == 0.0) {
            bail!("nesterov = true needs optimizer = \"sgd\" with momentum > 0");
        }
        if !finite_nonneg(self.sam_rho) {
            bail!(
                "sam_rho = {}: must be finite and >= 0 (0 = off)",
                self.sam_rho
            );
        }
        Ok(())
    }
}

/// Which forward/backward pass of a step a closure given to [`Optimizer::update`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// At the current weights (the only pass without SAM): its loss is the step's loss.
    Weights,
    /// SAM's second pass, at the perturbed weights `w + e`.
    Perturbed,
}

/// An optimizer over a var store (see the module documentation).
#[derive(Debug)]
pub struct Optimizer {
    kind: OptimizerKind,
    /// Learning rate of the next step.
    pub lr: f64,
    /// Adam: exponential decay of the first moment.
    pub beta1: f64,
    /// Adam: exponential decay of the second moment.
    pub beta2: f64,
    /// Adam: term added to the denominator.
    pub eps: f64,
    weight_decay: f64,
    momentum: f64,
    nesterov: bool,
    sam_rho: f64,
    step: i64,
    params: Vec<(String, Tensor)>,
    /// Adam's first moments, or SGD's momentum buffers (empty without momentum).
    m: Vec<Tensor>,
    /// Adam's second moments (empty for SGD).
    v: Vec<Tensor>,
    /// The variables without gradient outside the frozen parts (BatchNorm running statistics).
    buffers: Vec<Tensor>,
    frozen: Frozen,
    /// libtorch's optimizer base over the same parameters, used only for its `zero_grad`, which
    /// drops the gradients (set to none, as PyTorch's default) instead of zeroing them: the next
    /// backward then writes fresh gradients instead of adding to zeros, one pass less over
    /// every gradient per step.
    grad_dropper: tch::COptimizer,
}

impl Optimizer {
    /// Adam with learning rate `lr` over every trainable variable of `vs`.
    pub fn adam(vs: &VarStore, lr: f64) -> Optimizer {
        Optimizer::new(vs, &OptimConfig::adam(lr)).expect("plain Adam is a valid configuration")
    }

    /// The optimizer `cfg` describes over `vs`: its frozen parts stop requiring a gradient, and
    /// every other variable that requires one is optimised, in name order. Errors on an invalid
    /// configuration or a frozen part the model lacks.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Result<Optimizer> {
        cfg.validate()?;
        let frozen = Frozen::resolve(vs, &cfg.freeze)?;
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let (params, others): (Vec<_>, Vec<_>) =
            vars.into_iter().partition(|(_, t)| t.requires_grad());
        let buffers = others
            .into_iter()
            .filter(|(n, _)| !frozen.contains(n))
            .map(|(_, t)| t)
            .collect();
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect();
        let (m, v) = match cfg.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => (zeros(), zeros()),
            OptimizerKind::Sgd if cfg.momentum != 0.0 => (zeros(), Vec::new()),
            OptimizerKind::Sgd => (Vec::new(), Vec::new()),
        };
        let mut grad_dropper =
            tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false).expect("libtorch SGD with lr 0");
        for (_, p) in &params {
            grad_dropper
                .add_parameters(p, 0)
                .expect("adding a parameter to libtorch's optimizer");
        }
        Ok(Optimizer {
            kind: cfg.kind,
            lr: cfg.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: cfg.weight_decay,
            momentum: cfg.momentum,
            nesterov: cfg.nesterov,
            sam_rho: cfg.sam_rho,
            step: 0,
            params,
            m,
            v,
            buffers,
            frozen,
            grad_dropper,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The base optimizer.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Names of the optimised parameters, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// Number of frozen parameters and frozen buffers.
    pub fn frozen_counts(&self) -> (usize, usize) {
        self.frozen.counts()
    }

    /// Clear the gradients (drop them: until the next backward, `grad()` is undefined).
    pub fn zero_grad(&mut self) {
        self.grad_dropper
            .zero_grad()
            .expect("libtorch optimizer zero_grad");
    }

    /// The global L2 norm of the optimised parameters' gradients (0 when none has one), and
    /// those gradients.
    fn grads_and_norm(&self) -> (Vec<Tensor>, f64) {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return (grads, 0.0);
        }
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.norm().to_kind(Kind::Double))
            .collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        (grads, total)
    }

    /// Scale the gradients so that their global L2 norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let (grads, total) = self.grads_and_norm();
            let scale = max_norm / (total + 1e-6);
            if scale < 1.0 {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
            total
        })
    }

    /// One training step. `loss_and_backward(pass)` runs the forward pass, computes the loss and,
    /// if it is finite, its backward pass (the gradients have been dropped before each call), and
    /// returns the loss value; an error (a non-finite loss, say) ends the step with the weights
    /// as they were. Without SAM it is called once ([`Pass::Weights`]); with SAM a second time at
    /// `w + e` ([`Pass::Perturbed`]), as the module documentation describes. Then the gradient is
    /// clipped to `clip` and the base optimizer steps. Frozen running statistics are restored
    /// whatever happens. Returns the loss at the weights.
    pub fn update<E>(
        &mut self,
        clip: f64,
        mut loss_and_backward: impl FnMut(Pass) -> Result<f64, E>,
    ) -> Result<f64, E> {
        let frozen = self.frozen.hold();
        let result = self.update_unfrozen(clip, &mut loss_and_backward);
        frozen.restore();
        result
    }

    fn update_unfrozen<E>(
        &mut self,
        clip: f64,
        loss_and_backward: &mut impl FnMut(Pass) -> Result<f64, E>,
    ) -> Result<f64, E> {
        self.zero_grad();
        let loss = loss_and_backward(Pass::Weights)?;
        if self.sam_rho > 0.0 {
            let origin = self.sam_ascend();
            let stats = Held::of(&self.buffers);
            self.zero_grad();
            let second = loss_and_backward(Pass::Perturbed);
            stats.restore();
            origin.restore();
            second?;
        }
        self.clip_grad_norm(clip);
        self.step();
        Ok(loss)
    }

    /// SAM's ascent: `w += rho g / (||g|| + 1e-12)` for every parameter with a gradient; returns
    /// copies of those parameters before the move.
    fn sam_ascend(&mut self) -> Held {
        tch::no_grad(|| {
            let (_, norm) = self.grads_and_norm();
            let scale = self.sam_rho / (norm + 1e-12);
            let moved: Vec<&Tensor> = self
                .params
                .iter()
                .map(|(_, p)| p)
                .filter(|p| p.grad().defined())
                .collect();
            let origin = Held::of(moved.iter().copied());
            for p in moved {
                let _ = p.shallow_clone().g_add_(&(p.grad() * scale));
            }
            origin
        })
    }

    /// One update of the base optimizer with the current gradients (parameters without a
    /// gradient are left alone).
    pub fn step(&mut self) {
        self.step += 1;
        match self.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => self.adam_step(),
            OptimizerKind::Sgd => self.sgd_step(),
        }
    }

    fn adam_step(&mut self) {
        let t = self.step as i32;
        let hp = AdamStep {
            b1: self.beta1,
            b2: self.beta2,
            step_size: self.lr / (1.0 - self.beta1.powi(t)),
            bias2_sqrt: (1.0 - self.beta2.powi(t)).sqrt(),
            eps: self.eps,
        };
        let (kind, lr, wd) = (self.kind, self.lr, self.weight_decay);
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if wd != 0.0 {
                    match kind {
                        // torch.optim.AdamW: param.mul_(1 - lr * weight_decay)
                        OptimizerKind::AdamW => {
                            let _ = p.g_mul_scalar_(1.0 - lr * wd);
                        }
                        // torch.optim.Adam: grad = grad.add(param, alpha=weight_decay)
                        _ => g = &g + &*p * wd,
                    }
                }
                if !hp.fused(p, &mut g, m, v) {
                    hp.aten(p, &g, m, v);
                }
            }
        });
    }

    fn sgd_step(&mut self) {
        let hp = sgd::SgdStep {
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
        };
        tch::no_grad(|| {
            for (i, (_, p)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                hp.apply(p, &g, self.m.get_mut(i));
            }
        });
    }

    /// The state tensors (handles sharing their storage) and their file names: `m.`/`v.` (Adam,
    /// AdamW) or `momentum_buffer.` (SGD) before each parameter name.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            match self.kind {
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    out.push((format!("m.{name}"), self.m[i].shallow_clone()));
                    out.push((format!("v.{name}"), self.v[i].shallow_clone()));
                }
                OptimizerKind::Sgd => {
                    if let Some(b) = self.m.get(i) {
                        out.push((format!("momentum_buffer.{name}"), b.shallow_clone()));
                    }
                }
            }
        }
        out
    }

    /// Save the moments (or momentum buffers) and the step count (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let step = Tensor::from_slice(&[self.step]);
        let state = self.state();
        let mut named: Vec<(String, &Tensor)> = vec![("step".to_string(), &step)];
        named.extend(state.iter().map(|(n, t)| (n.clone(), t)));
        let tmp = shared::atomic::temp_path_for(path);
        Tensor::write_safetensors(&named, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Restore a state written by [`Optimizer::save`] for the same parameters and optimizer.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("reading the optimizer state {}", path.display()))?;
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let kind = self.kind;
        let get = |name: &str| {
            map.get(name).with_context(|| {
                format!(
                    "{}: no tensor {name:?} (a state of another model, or of another optimizer \
                     than {kind}?)",
                    path.display()
                )
            })
        };
        let step = get("step")?.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for (key, mut slot) in self.state() {
                let t = get(&key)?;
                if t.size() != slot.size() {
                    bail!(
                        "{}: {key} has shape {:?}, the model {:?}",
                        path.display(),
                        t.size(),
                        slot.size()
                    );
                }
                slot.copy_(t);
            }
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// Two hand-computed Adam steps on f(w) = w^2 from w = 1 (lr 0.1): the first update is
    /// lr * sign(g) = 0.1 whatever the gradient, the second uses the bias-corrected moments.
    #[test]
    fn matches_hand_computed_adam() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1], nn::Init::Const(1.0));
        let mut opt = Optimizer::adam(&vs, 0.1);
        let mut expect = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for t in 1..=2 {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            opt.step();
            let g = 2.0 * expect;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let vh = v / (1.0 - 0.999f64.powi(t));
            expect -= 0.1 * mh / (vh.sqrt() + 1e-8);
            assert!((w.double_value(&[0]) - expect).abs() < 1e-6, "step {t}");
        }
        assert!(
            (1.0 - expect - 0.1).abs() > 1e-3,
            "second step differs from the first"
        );
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(0.0));
        let mut opt = Optimizer::adam(&vs, 0.1);
        (&w * Tensor::from_slice(&[3f32, 4.]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.clip_grad_norm(1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let g = Vec::<f32>::try_from(w.grad()).unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5,
            "{g:?}"
        );
    }

    #[test]
    fn save_load_restores_the_moments() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut a = Optimizer::adam(&vs, 0.01);
        (&w * &w).sum(Kind::Float).backward();
        a.step();
        a.save(&dir.path().join("opt.safetensors")).unwrap();
        let mut b = Optimizer::adam(&vs, 0.01);
        b.load(&dir.path().join("opt.safetensors")).unwrap();
        assert_eq!(b.steps(), 1);
        assert!(b.m[0].allclose(&a.m[0], 0.0, 0.0, false));
        assert!(b.v[0].allclose(&a.v[0], 0.0, 0.0, false));
    }

    fn cfg(kind: OptimizerKind, lr: f64) -> OptimConfig {
        OptimConfig {
            kind,
            ..OptimConfig::adam(lr)
        }
    }

    /// Three steps on f(w) = sum(c * w^2) against `torch.optim.SGD`'s formulas written out in
    /// f64: momentum 0.9 (buffer = gradient at the first step), L2 weight decay 0.1, with and
    /// without Nesterov.
    #[test]
    fn sgd_follows_torch_sgd_with_momentum_weight_decay_and_nesterov() {
        for nesterov in [false, true] {
            let vs = VarStore::new(Device::Cpu);
            let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
            let c = Tensor::from_slice(&[1.0f32, -0.5]);
            let mut opt = Optimizer::new(
                &vs,
                &OptimConfig {
                    weight_decay: 0.1,
                    nesterov,
                    ..cfg(OptimizerKind::Sgd, 0.05)
                },
            )
            .unwrap();
            let cs = [1.0f64, -0.5];
            let mut want = [1.0f64, 1.0];
            let mut buf: Option<[f64; 2]> = None;
            for _ in 0..3 {
                opt.zero_grad();
                (&c * &w * &w).sum(Kind::Float).backward();
                opt.step();
                let d: [f64; 2] = std::array::from_fn(|i| 2.0 * cs[i] * want[i] + 0.1 * want[i]);
                let b: [f64; 2] = match buf {
                    None => d,
                    Some(b) => std::array::from_fn(|i| 0.9 * b[i] + d[i]),
                };
                buf = Some(b);
                for i in 0..2 {
                    let step = if nesterov { d[i] + 0.9 * b[i] } else { b[i] };
                    want[i] -= 0.05 * step;
                }
                let got = Vec::<f32>::try_from(&w).unwrap();
                for i in 0..2 {
                    assert!(
                        (got[i] as f64 - want[i]).abs() < 1e-6,
                        "nesterov {nesterov}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    /// Adam's weight decay is L2 added to the gradient; AdamW's multiplies the weights by
    /// `1 - lr wd` before the Adam update (hand-computed, two steps on f(w) = w^2).
    #[test]
    fn adam_adds_l2_to_the_gradient_and_adamw_decays_the_weights() {
        for kind in [OptimizerKind::Adam, OptimizerKind::AdamW] {
            let vs = VarStore::new(Device::Cpu);
            let w = vs.root().var("w", &[1], nn::Init::Const(1.0));
            let (lr, wd) = (0.1, 0.5);
            let mut opt = Optimizer::new(
                &vs,
                &OptimConfig {
                    weight_decay: wd,
                    ..cfg(kind, lr)
                },
            )
            .unwrap();
            let (mut x, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
            for t in 1..=2 {
                opt.zero_grad();
                (&w * &w).sum(Kind::Float).backward();
                opt.step();
                let mut g = 2.0 * x;
                if kind == OptimizerKind::Adam {
                    g += wd * x;
                } else {
                    x *= 1.0 - lr * wd;
                }
                m = 0.9 * m + 0.1 * g;
                v = 0.999 * v + 0.001 * g * g;
                let mh = m / (1.0 - 0.9f64.powi(t));
                let vh = v / (1.0 - 0.999f64.powi(t));
                x -= lr * mh / (vh.sqrt() + 1e-8);
                assert!((w.double_value(&[0]) - x).abs() < 1e-6, "{kind} step {t}");
            }
        }
    }

    /// One SAM step (rho 0.05) over SGD (lr 0.1, momentum 0.9: the first step moves by the
    /// gradient) on one linear layer y = W x + b with the loss mean((y - t)^2) over fixed data,
    /// against the formula in f64: g at w, e = rho g / ||g||, g' at w + e, w' = w - lr g'.
    #[test]
    fn a_sam_step_equals_the_formula_on_a_linear_layer() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let w0 = [[0.3f64, -0.2, 0.5], [0.1, 0.4, -0.6]];
        let b0 = [0.05f64, -0.1];
        let w = root.var_copy(
            "weight",
            &Tensor::from_slice(&w0.concat())
                .view([2, 3])
                .to_kind(Kind::Float),
        );
        let b = root.var_copy("bias", &Tensor::from_slice(&b0).to_kind(Kind::Float));
        let xs = [
            [1.0f64, 2.0, -1.0],
            [0.5, -0.3, 0.8],
            [-1.2, 0.7, 0.1],
            [0.0, 1.5, -0.4],
        ];
        let ts = [[1.0f64, 0.0], [0.2, -0.5], [-0.3, 0.8], [0.6, 0.1]];
        let x = Tensor::from_slice(&xs.concat())
            .view([4, 3])
            .to_kind(Kind::Float);
        let t = Tensor::from_slice(&ts.concat())
            .view([4, 2])
            .to_kind(Kind::Float);
        let (lr, rho) = (0.1, 0.05);
        let mut opt = Optimizer::new(
            &vs,
            &OptimConfig {
                sam_rho: rho,
                ..cfg(OptimizerKind::Sgd, lr)
            },
        )
        .unwrap();
        let mut passes = Vec::new();
        let loss = opt
            .update(1e9, |pass| -> Result<f64, ()> {
                passes.push(pass);
                let y = x.matmul(&w.tr()) + &b;
                let loss = (y - &t).square().mean(Kind::Float);
                loss.backward();
                Ok(loss.double_value(&[]))
            })
            .unwrap();
        assert_eq!(passes, [Pass::Weights, Pass::Perturbed]);

        // The gradient of mean((W x + b - t)^2) over 4 x 2 outputs, flattened as [W, b].
        let grad = |p: &[f64; 8]| -> (f64, [f64; 8]) {
            let mut g = [0.0; 8];
            let mut l = 0.0;
            for (xi, ti) in xs.iter().zip(&ts) {
                for o in 0..2 {
                    let y: f64 = (0..3).map(|j| p[o * 3 + j] * xi[j]).sum::<f64>() + p[6 + o];
                    let r = y - ti[o];
                    l += r * r / 8.0;
                    for j in 0..3 {
                        g[o * 3 + j] += 2.0 * r * xi[j] / 8.0;
                    }
                    g[6 + o] += 2.0 * r / 8.0;
                }
            }
            (l, g)
        };
        let p0: [f64; 8] = [
            w0[0][0], w0[0][1], w0[0][2], w0[1][0], w0[1][1], w0[1][2], b0[0], b0[1],
        ];
        let (l0, g) = grad(&p0);
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        let perturbed: [f64; 8] = std::array::from_fn(|i| p0[i] + rho * g[i] / norm);
        let (_, g2) = grad(&perturbed);
        let want: [f64; 8] = std::array::from_fn(|i| p0[i] - lr * g2[i]);
        let got: Vec<f64> = Vec::<f32>::try_from(w.flatten(0, -1))
            .unwrap()
            .into_iter()
            .chain(Vec::<f32>::try_from(&b).unwrap())
            .map(f64::from)
            .collect();
        for i in 0..8 {
            assert!((got[i] - want[i]).abs() < 1e-6, "{i}: {got:?} vs {want:?}");
        }
        assert!((loss - l0).abs() < 1e-6, "the step's loss is the one at w");
        // and SAM's step is not plain SGD's
        let plain: [f64; 8] = std::array::from_fn(|i| p0[i] - lr * g[i]);
        assert!((0..8).any(|i| (plain[i] - want[i]).abs() > 1e-4));
    }

    /// The second pass of SAM leaves the running statistics as the first pass made them, a
    /// frozen part keeps its parameters and statistics, and a failed second pass leaves the
    /// weights as they were.
    #[test]
    fn sam_and_frozen_parts_keep_running_statistics_and_weights() {
        let vs = VarStore::new(Device::Cpu);
        let r = vs.root();
        let w = (&r / "top").var("w", &[2], nn::Init::Const(1.0));
        let stat = (&r / "top").zeros_no_train("running_mean", &[2]);
        let fw = (&r / "au").var("w", &[2], nn::Init::Const(2.0));
        let fstat = (&r / "au").zeros_no_train("running_mean", &[2]);
        let mut opt = Optimizer::new(
            &vs,
            &OptimConfig {
                sam_rho: 0.05,
                freeze: vec!["au".to_string()],
                ..cfg(OptimizerKind::Sgd, 0.1)
            },
        )
        .unwrap();
        assert_eq!(opt.param_names().collect::<Vec<_>>(), ["top.w"]);
        assert_eq!(opt.frozen_counts(), (1, 1));
        // each pass: "forward" updates both statistics by one, as BatchNorm in training does
        let forward = |fail_second: bool| {
            let (stat, fstat) = (stat.shallow_clone(), fstat.shallow_clone());
            let (w, fw) = (w.shallow_clone(), fw.shallow_clone());
            move |pass: Pass| -> Result<f64, f64> {
                tch::no_grad(|| {
                    let _ = stat.shallow_clone().g_add_scalar_(1.0);
                    let _ = fstat.shallow_clone().g_add_scalar_(1.0);
                });
                if fail_second && pass == Pass::Perturbed {
                    return Err(f64::NAN);
                }
                let loss = (&w * &w * &fw).sum(Kind::Float);
                loss.backward();
                Ok(loss.double_value(&[]))
            }
        };
        opt.update(5.0, forward(false)).unwrap();
        assert_eq!(Vec::<f32>::try_from(&stat).unwrap(), [1.0, 1.0]);
        assert_eq!(Vec::<f32>::try_from(&fstat).unwrap(), [0.0, 0.0]);
        assert_eq!(Vec::<f32>::try_from(&fw).unwrap(), [2.0, 2.0]);
        assert!(!fw.requires_grad());
        let moved = w.copy();
        assert!(moved.double_value(&[0]) < 1.0);
        assert!(opt.update(5.0, forward(true)).unwrap_err().is_nan());
        assert!(w.equal(&moved), "a failed second pass moved the weights");
        assert_eq!(opt.steps(), 1);
        assert_eq!(Vec::<f32>::try_from(&fstat).unwrap(), [0.0, 0.0]);
    }

    #[test]
    fn save_load_restores_sgd_momentum_and_refuses_another_optimizers_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut a = Optimizer::new(&vs, &cfg(OptimizerKind::Sgd, 0.01)).unwrap();
        (&w * &w).sum(Kind::Float).backward();
        a.step();
        a.save(&path).unwrap();
        let mut b = Optimizer::new(&vs, &cfg(OptimizerKind::Sgd, 0.01)).unwrap();
        b.load(&path).unwrap();
        assert_eq!(b.steps(), 1);
        assert!(b.m[0].equal(&a.m[0]));
        assert!(b.m[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let mut c = Optimizer::new(&vs, &cfg(OptimizerKind::AdamW, 0.01)).unwrap();
        let err = format!("{:#}", c.load(&path).unwrap_err());
        assert!(err.contains("m.w") && err.contains("adamw"), "{err}");
        assert_eq!(c.steps(), 0);
    }

    #[test]
    fn invalid_settings_are_refused_by_key() {
        let vs = VarStore::new(Device::Cpu);
        let _ = vs.root().var("w", &[1], nn::Init::Const(1.0));
        for (bad, key) in [
            (
                OptimConfig {
                    momentum: 1.0,
                    ..cfg(OptimizerKind::Sgd, 0.1)
                },
                "momentum",
            ),
            (
                OptimConfig {
                    sam_rho: -1.0,
                    ..cfg(OptimizerKind::Sgd, 0.1)
                },
                "sam_rho",
            ),
            (
                OptimConfig {
                    nesterov: true,
                    ..cfg(OptimizerKind::Adam, 0.1)
                },
                "nesterov",
            ),
            (
                OptimConfig {
                    weight_decay: f64::NAN,
                    ..cfg(OptimizerKind::Adam, 0.1)
                },
                "weight_decay",
            ),
            (
                OptimConfig {
                    freeze: vec!["x".into()],
                    ..cfg(OptimizerKind::Adam, 0.1)
                },
                "--freeze x",
            ),
        ] {
            let err = Optimizer::new(&vs, &bad).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
