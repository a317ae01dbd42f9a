//! GRU and LSTM layers when no gradient is recorded (validation, `temporal predict`): ATen's
//! cells in a frame loop, with the recurrent product on a weight packed once per segment or on
//! ATen's `addmm`.
//!
//! What it does: [`gru`] and [`lstm`] run one layer over a segment `x [B, L, d_in]` as ATen's
//! `gru` / `lstm` do: the input projection of every frame in one GEMM, then per frame the
//! recurrent product `h_{t−1} W_hhᵀ` and the cell (GRU: `r, z = σ(gi + gh)`,
//! `n = tanh(gi_n + r ⊙ gh_n)`, `h' = (h − n) ⊙ z + n`; LSTM: gates `i, f, g, o`,
//! `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`). The recurrent product reads the
//! whole 12–16 MB `W_hh` for only `B` rows at every frame; [`Product`] runs it either on
//! [`PackedWeight`] (MKL's packed GEMM, [`RnnKernel::Packed`]) or with ATen's `addmm`
//! ([`RnnKernel::Addmm`]); which is faster, and whether ATen's fused operator beats both, depends
//! on the CPU and is measured by [`super::choice`]. The LSTM adds each frame's recurrent
//! product straight into its slice of the input projection (biases folded), so a frame costs
//! one GEMM and the cell's element-wise operations.
//!
//! What it does not: record gradients (use only when [`records_gradients`] is false; a layer
//! that trains uses ATen's kernels or [`super::gru::train_forward`]), run ATen's fused operator
//! (the caller does, for [`RnnKernel::Aten`]), or pack where MKL's packed GEMM is missing or on
//! CUDA: [`Product::new`] then returns `None`.

use super::choice::RnnKernel;
use super::gru;
use super::packed::PackedWeight;
use tch::{Device, Kind, Tensor};

/// The recurrent product `out += h W_hhᵀ` of one segment, on the kernel chosen for it.
#[derive(Debug)]
pub enum Product {
    /// MKL's packed GEMM on a weight packed for `B` rows.
    Packed(PackedWeight),
    /// ATen's `addmm` on `W_hhᵀ` (a transposed view: the GEMM reads it in place).
    Addmm(Tensor),
}

impl Product {
    /// The product for `rows` rows on `kernel` (`Packed` or `Addmm`); `None` for
    /// [`RnnKernel::Aten`] or where the packed GEMM is unavailable.
    pub fn new(kernel: RnnKernel, w_hh: &Tensor, rows: i64) -> Option<Product> {
        match kernel {
            RnnKernel::Packed => PackedWeight::pack(w_hh, rows).map(Product::Packed),
            RnnKernel::Addmm => Some(Product::Addmm(w_hh.detach().tr())),
            RnnKernel::Aten => None,
        }
    }

    /// `out += h W_hhᵀ` in place (`out` may be a row-strided view such as `gates[:, t]`).
    pub fn addmm_(&self, out: &mut Tensor, h: &Tensor) {
        match self {
            Product::Packed(p) => p.addmm_(out, h),
            Product::Addmm(wt) => {
                let _ = out.addmm_(h, wt);
            }
        }
    }
}

/// The kernels that can run a layer with `w_hh` in evaluation here: the packed GEMM only on a
/// CPU with MKL, ATen's operator and the `addmm` loop everywhere, except that on CUDA only
/// ATen's operator (cuDNN) is offered.
pub fn candidates(w_hh: &Tensor) -> Vec<RnnKernel> {
    if w_hh.device() != Device::Cpu {
        return vec![RnnKernel::Aten];
    }
    RnnKernel::ALL
        .into_iter()
        .filter(|k| {
            *k != RnnKernel::Packed || (super::packed::available() && w_hh.kind() == Kind::Float)
        })
        .collect()
}

/// True when autograd records operations now (outside `tch::no_grad`).
pub fn records_gradients() -> bool {
    // SAFETY: sets the thread's grad mode and puts the previous value back at once.
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(0);
        torch_sys::at_grad_set_enabled(prev);
        prev != 0
    }
}

/// One GRU layer over `x [B, L, d_in]` from `h0 [1, B, H]`, `weights` in ATen's order
/// (`w_ih`, `w_hh`, `b_ih`, `b_hh`), with the recurrent product on `kernel`: the outputs
/// `[B, L, H]` and the final state `[1, B, H]`, or `None` where that product is unavailable.
pub fn gru(
    x: &Tensor,
    h0: &Tensor,
    weights: &[Tensor; 4],
    kernel: RnnKernel,
) -> Option<(Tensor, Tensor)> {
    let [w_ih, w_hh, b_ih, b_hh] = weights;
    let (b, l, _) = x.size3().ok()?;
    let packed = Product::new(kernel, w_hh, b)?;
    let gi = gru::input_projection(x, w_ih, b_ih);
    let bias = b_hh.expand([b, w_hh.size()[0]], false);
    let mut h = h0.squeeze_dim(0).contiguous();
    let y = Tensor::empty([b, l, h.size()[1]], (Kind::Float, x.device()));
    for t in 0..l {
        let mut gh = bias.contiguous();
        packed.addmm_(&mut gh, &h);
        h = gru::cell(&h, &gi.select(1, t), gh);
        y.select(1, t).copy_(&h);
    }
    Some((y, h.unsqueeze(0)))
}

/// One LSTM layer over `x [B, L, d_in]` from `h0`, `c0 [1, B, H]`, `weights` in ATen's order,
/// with the recurrent product on `kernel`: the outputs `[B, L, H]` and the final `h`, `c`
/// `[1, B, H]`, or `None` where that product is unavailable.
pub fn lstm(
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    weights: &[Tensor; 4],
    kernel: RnnKernel,
) -> Option<(Tensor, Tensor, Tensor)> {
    let [w_ih, w_hh, b_ih, b_hh] = weights;
    let (b, l, _) = x.size3().ok()?;
    let packed = Product::new(kernel, w_hh, b)?;
    let gates = gru::input_projection(x, w_ih, &(b_ih + b_hh));
    let mut h = h0.squeeze_dim(0).contiguous();
    let mut c = c0.squeeze_dim(0);
    let y = Tensor::empty([b, l, h.size()[1]], (Kind::Float, x.device()));
    for t in 0..l {
        let mut g = gates.select(1, t);
        packed.addmm_(&mut g, &h);
        let [mut i, mut f, mut cell, mut o]: [Tensor; 4] =
            g.unsafe_chunk(4, 1).try_into().expect("four LSTM gates");
        c = f
            .sigmoid_()
            .g_mul(&c)
            .g_add_(&i.sigmoid_().g_mul(&cell.tanh_()));
        h = o.sigmoid_().g_mul(&c.tanh());
        y.select(1, t).copy_(&h);
    }
    Some((y, h.unsqueeze(0), c.unsqueeze(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(gates: i64, d_in: i64, hidden: i64) -> [Tensor; 4] {
        let r = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu)) * 0.3;
        [
            r(&[gates, d_in]),
            r(&[gates, hidden]),
            r(&[gates]),
            r(&[gates]),
        ]
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Outputs and final states equal ATen's `gru` / `lstm` in evaluation, from a non-zero
    /// state, over a non-contiguous input, on every product kernel this machine has.
    #[test]
    fn gru_and_lstm_equal_atens_layers_on_every_product_kernel() {
        let kernels: Vec<RnnKernel> =
            candidates(&Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)))
                .into_iter()
                .filter(|k| *k != RnnKernel::Aten)
                .collect();
        assert!(kernels.contains(&RnnKernel::Addmm));
        for kernel in kernels {
            layers_equal_aten(kernel);
        }
    }

    fn layers_equal_aten(kernel: RnnKernel) {
        tch::set_num_threads(1);
        tch::manual_seed(5);
        let (b, l, d_in, hidden) = (3, 6, 5, 4);
        let _guard = tch::no_grad_guard();
        assert!(!records_gradients());
        let x = Tensor::randn([l, b, d_in], (Kind::Float, Device::Cpu)).transpose(0, 1);
        let h0 = Tensor::randn([1, b, hidden], (Kind::Float, Device::Cpu));
        let c0 = Tensor::randn([1, b, hidden], (Kind::Float, Device::Cpu));

        let w = weights(3 * hidden, d_in, hidden);
        let (want_y, want_h) = x.gru(&h0, &w, true, 1, 0.0, false, false, true);
        let (y, h) = gru(&x, &h0, &w, kernel).unwrap();
        assert!(max_diff(&y, &want_y) < 1e-5 && max_diff(&h, &want_h) < 1e-5);

        let w = weights(4 * hidden, d_in, hidden);
        let (want_y, want_h, want_c) = x.lstm(
            &[h0.copy(), c0.copy()],
            &w,
            true,
            1,
            0.0,
            false,
            false,
            true,
        );
        let (y, h, c) = lstm(&x, &h0, &c0, &w, kernel).unwrap();
        assert!(
            max_diff(&y, &want_y) < 1e-5,
            "{kernel}: {}",
            max_diff(&y, &want_y)
        );
        assert!(max_diff(&h, &want_h) < 1e-5 && max_diff(&c, &want_c) < 1e-5);
    }

    #[test]
    fn grad_mode_is_read_and_left_as_it_was() {
        assert!(records_gradients());
        tch::no_grad(|| assert!(!records_gradients()));
        assert!(records_gradients());
    }
}
