//! Adam (as `torch.optim.Adam`, no weight decay) and gradient-norm clipping over a `VarStore`,
//! with state that can be saved and restored, so that `--resume` continues exactly.
//!
//! tch's built-in optimizer cannot export its moments; this one keeps them as tensors named after
//! the parameters (`m.<name>`, `v.<name>`) plus the step count, in one safetensors file.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Adam with bias correction.
#[derive(Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Term added to the denominator.
    pub eps: f64,
    step: i64,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// libtorch's optimizer base over the same parameters, used only for its `zero_grad`, which
    /// drops the gradients (set to none, as PyTorch's default) instead of zeroing them: the next
    /// backward then writes fresh gradients instead of adding to zeros, one pass less over
    /// every gradient per step.
    grad_dropper: tch::COptimizer,
}

impl Adam {
    /// Adam over every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore, lr: f64) -> Adam {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let mut grad_dropper =
            tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false).expect("libtorch SGD with lr 0");
        for (_, p) in &params {
            grad_dropper
                .add_parameters(p, 0)
                .expect("adding a parameter to libtorch's optimizer");
        }
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            params,
            m,
            v,
            grad_dropper,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// Clear the gradients (drop them: until the next backward, `grad()` is undefined).
    pub fn zero_grad(&mut self) {
        self.grad_dropper
            .zero_grad()
            .expect("libtorch optimizer zero_grad");
    }

    /// Scale the gradients so that their global L2 norm is at most `max_norm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .map(|(_, p)| p.grad())
                .filter(|g| g.defined())
                .collect();
            if grads.is_empty() {
                return 0.0;
            }
            let norms: Vec<Tensor> = grads
                .iter()
                .map(|g| g.norm().to_kind(Kind::Double))
                .collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let scale = max_norm / (total + 1e-6);
            if scale < 1.0 {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
            total
        })
    }

    /// One update with the current gradients (parameters without a gradient are left alone).
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let hp = AdamStep {
            b1: self.beta1,
            b2: self.beta2,
            step_size: self.lr / (1.0 - self.beta1.powi(t)),
            bias2_sqrt: (1.0 - self.beta2.powi(t)).sqrt(),
            eps: self.eps,
        };
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if !hp.fused(p, &mut g, m, v) {
                    hp.aten(p, &g, m, v);
                }
            }
        });
    }

    /// Save the moments and the step count (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let step = Tensor::from_slice(&[self.step]);
        let mut named: Vec<(String, &Tensor)> = vec![("step".to_string(), &step)];
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            named.push((format!("m.{name}"), m));
            named.push((format!("v.{name}"), v));
        }
        let tmp = shared::atomic::temp_path_for(path);
        Tensor::write_safetensors(&named, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Restore a state written by [`Adam::save`] for the same parameters.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let tensors = Tensor::read_safetensors(path)
            .with_context(|| format!("reading the optimizer state {}", path.display()))?;
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let get = |name: &str| {
            map.get(name).with_context(|| {
                format!(
                    "{}: no tensor {name:?} (a state of another model?)",
                    path.display()
                )
            })
        };
        self.step = get("step")?.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter_mut().zip(&mut self.v)) {
                for (slot, key) in [(m, format!("m.{name}")), (v, format!("v.{name}"))] {
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
            }
            Ok(())
        })
    }
}

/// The scalars of one Adam update (torch.optim.Adam's single-tensor step):
/// `m = lerp(m, g, 1 − b1)`, `v = b2 v + (1 − b2) g²`,
/// `p −= step_size · m / (sqrt(v) / bias2_sqrt + eps)`.
#[derive(Debug, Clone, Copy)]
struct AdamStep {
    b1: f64,
    b2: f64,
    step_size: f64,
    bias2_sqrt: f64,
    eps: f64,
}

/// Elements per rayon task of the fused update.
const FUSED_CHUNK: usize = 1 << 15;

impl AdamStep {
    /// The update as ATen operations in place, for any device and kind: about fifteen passes
    /// over the parameter's size, with two temporaries.
    fn aten(&self, p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
        let _ = m.lerp_(g, 1.0 - self.b1);
        let _ = v.g_mul_scalar_(self.b2).addcmul_(&(g * (1.0 - self.b2)), g);
        let mut denom = v.sqrt();
        let _ = denom
            .g_div_scalar_(self.bias2_sqrt)
            .g_add_scalar_(self.eps)
            .g_div_scalar_(-self.step_size);
        let _ = p.addcdiv_(m, &denom);
    }

    /// The update in one pass over `p`, `g`, `m`, `v` (in parallel chunks), as
    /// `torch.optim.Adam(fused=True)` does, when all four are contiguous float tensors on the
    /// CPU; returns false (and changes nothing) otherwise. Adam is memory-bound: this reads
    /// four arrays and writes three, where [`AdamStep::aten`] makes about fifteen passes.
    fn fused(&self, p: &mut Tensor, g: &mut Tensor, m: &mut Tensor, v: &mut Tensor) -> bool {
        let ok = |t: &Tensor| {
            t.device() == tch::Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
        };
        let n = p.numel();
        if ![&*p, &*g, &*m, &*v].iter().all(|t| ok(t) && t.numel() == n) {
            return false;
        }
        // SAFETY: the four tensors are contiguous CPU float tensors of n elements, each with its
        // own storage (the parameter, its gradient and the two moments this optimizer
        // allocated), and we hold them mutably for the duration of the slices.
        let (p, g, m, v) = unsafe {
            (
                std::slice::from_raw_parts_mut(p.data_ptr() as *mut f32, n),
                std::slice::from_raw_parts(g.data_ptr() as *const f32, n),
                std::slice::from_raw_parts_mut(m.data_ptr() as *mut f32, n),
                std::slice::from_raw_parts_mut(v.data_ptr() as *mut f32, n),
            )
        };
        // the scalars in f64 first, as ATen computes them, then rounded once
        let (w1, b2, w2) = (
            (1.0 - self.b1) as f32,
            self.b2 as f32,
            (1.0 - self.b2) as f32,
        );
        let (bias2_sqrt, eps) = (self.bias2_sqrt as f32, self.eps as f32);
        let neg_step = (-self.step_size) as f32;
        use rayon::prelude::*;
        p.par_chunks_mut(FUSED_CHUNK)
            .zip(g.par_chunks(FUSED_CHUNK))
            .zip(m.par_chunks_mut(FUSED_CHUNK))
            .zip(v.par_chunks_mut(FUSED_CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let gi = g[i];
                    m[i] += w1 * (gi - m[i]);
                    v[i] = v[i] * b2 + w2 * gi * gi;
                    p[i] += neg_step * (m[i] / (v[i].sqrt() / bias2_sqrt + eps));
                }
            });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// The fused pass and the ATen operations give the same parameters and moments, over
    /// several chunks and a few steps.
    #[test]
    fn fused_update_equals_the_aten_update() {
        tch::set_num_threads(1);
        tch::manual_seed(2);
        let n = 3 * FUSED_CHUNK as i64 + 5;
        let f = (Kind::Float, Device::Cpu);
        let start = Tensor::randn([n], f);
        let (mut p1, mut m1, mut v1) = (start.copy(), Tensor::zeros([n], f), Tensor::zeros([n], f));
        let (mut p2, mut m2, mut v2) = (start.copy(), Tensor::zeros([n], f), Tensor::zeros([n], f));
        for t in 1..=3 {
            let mut g = Tensor::randn([n], f);
            let hp = AdamStep {
                b1: 0.9,
                b2: 0.999,
                step_size: 0.1 / (1.0 - 0.9f64.powi(t)),
                bias2_sqrt: (1.0 - 0.999f64.powi(t)).sqrt(),
                eps: 1e-8,
            };
            assert!(hp.fused(&mut p1, &mut g, &mut m1, &mut v1));
            hp.aten(&mut p2, &g, &mut m2, &mut v2);
        }
        for (name, a, b) in [("p", &p1, &p2), ("m", &m1, &m2), ("v", &v1, &v2)] {
            let scale = b.abs().max().double_value(&[]);
            let err = (a - b).abs().max().double_value(&[]);
            assert!(err < 1e-6 * scale, "{name}: {err} of {scale}");
        }
        assert!((&p1 - &start).abs().min().double_value(&[]) > 0.0);
    }

    #[test]
    fn the_fused_update_declines_what_it_cannot_address() {
        let f = (Kind::Float, Device::Cpu);
        let hp = AdamStep {
            b1: 0.9,
            b2: 0.999,
            step_size: 0.1,
            bias2_sqrt: 1.0,
            eps: 1e-8,
        };
        let mut p = Tensor::ones([4, 3], f).tr();
        let before = p.copy();
        let (mut g, mut m, mut v) = (p.ones_like(), p.zeros_like(), p.zeros_like());
        assert!(!hp.fused(&mut p, &mut g, &mut m, &mut v));
        assert!(p.equal(&before));
        let mut d = Tensor::ones([3], (Kind::Double, Device::Cpu));
        let (mut g, mut m, mut v) = (d.ones_like(), d.zeros_like(), d.zeros_like());
        assert!(!hp.fused(&mut d, &mut g, &mut m, &mut v));
    }

    /// Two hand-computed Adam steps on f(w) = w^2 from w = 1 (lr 0.1): the first update is
    /// lr * sign(g) = 0.1 whatever the gradient, the second uses the bias-corrected moments.
    #[test]
    fn matches_hand_computed_adam() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[1], nn::Init::Const(1.0));
        let mut opt = Adam::new(&vs, 0.1);
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
        let mut opt = Adam::new(&vs, 0.1);
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
        let mut a = Adam::new(&vs, 0.01);
        (&w * &w).sum(Kind::Float).backward();
        a.step();
        a.save(&dir.path().join("opt.safetensors")).unwrap();
        let mut b = Adam::new(&vs, 0.01);
        b.load(&dir.path().join("opt.safetensors")).unwrap();
        assert_eq!(b.steps(), 1);
        assert!(b.m[0].allclose(&a.m[0], 0.0, 0.0, false));
        assert!(b.v[0].allclose(&a.v[0], 0.0, 0.0, false));
    }
}
