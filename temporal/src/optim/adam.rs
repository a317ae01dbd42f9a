//! Adam's update of one parameter (torch.optim.Adam's single-tensor step after any weight
//! decay): in one fused pass over parameter, gradient and moments for contiguous CPU float
//! tensors, with ATen operations otherwise.

use tch::{Kind, Tensor};

/// The scalars of one Adam update (torch.optim.Adam's single-tensor step):
/// `m = lerp(m, g, 1 − b1)`, `v = b2 v + (1 − b2) g²`,
/// `p −= step_size · m / (sqrt(v) / bias2_sqrt + eps)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct AdamStep {
    pub(super) b1: f64,
    pub(super) b2: f64,
    pub(super) step_size: f64,
    pub(super) bias2_sqrt: f64,
    pub(super) eps: f64,
}

/// Elements per rayon task of the fused update.
const FUSED_CHUNK: usize = 1 << 15;

impl AdamStep {
    /// The update as ATen operations in place, for any device and kind: about fifteen passes
    /// over the parameter's size, with two temporaries.
    pub(super) fn aten(&self, p: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
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
    pub(super) fn fused(
        &self,
        p: &mut Tensor,
        g: &mut Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
    ) -> bool {
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
    use tch::Device;

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
}
