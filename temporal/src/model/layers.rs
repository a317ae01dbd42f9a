//! Layers every part of the model shares, with PyTorch's parameter names and initialisation, so
//! that a fresh model has the reference's parameter distributions: [`torch_linear`] and
//! [`BatchNorm1d`] (with running statistics, and batch statistics from chosen rows only).
//!
//! What it does not: define architectures (see [`super::encoder`], [`super::topology`],
//! [`super::heads`], [`super::anfl`]).

use tch::nn;
use tch::Tensor;

/// PyTorch's uniform initialisation in ±`bound`.
pub fn uniform(bound: f64) -> nn::Init {
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A `nn.Linear(d_in, d_out)` initialised as PyTorch does (weight and bias uniform in
/// ±1/sqrt(d_in)), under `p` with the names `weight` and `bias`.
pub fn torch_linear(p: nn::Path, d_in: i64, d_out: i64) -> nn::Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    nn::linear(
        p,
        d_in,
        d_out,
        nn::LinearConfig {
            ws_init: uniform(bound),
            bs_init: Some(uniform(bound)),
            bias: true,
        },
    )
}

/// Rows scaled to unit L2 norm along the last dimension, as `F.normalize(x, dim=-1)`
/// (norms below 1e-12 count as 1e-12).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x
        .norm_scalaropt_dim(2, [-1i64].as_slice(), true)
        .clamp_min(1e-12)
}

/// PyTorch's `nn.BatchNorm1d(channels)` with the same parameter and buffer names (`weight`,
/// `bias`, `running_mean`, `running_var`, `num_batches_tracked`), for inputs `[N, channels]` or
/// `[N, channels, L]` (statistics over every dimension but 1).
///
/// In training, the batch statistics may come from some rows only (`valid [N]`, true = counts):
/// padded or unlabelled frames are then normalised with the statistics of the others and never
/// enter the running averages. The running averages are updated as PyTorch does (momentum 0.1,
/// the unbiased variance), and `num_batches_tracked` counts the training batches.
#[derive(Debug)]
pub struct BatchNorm1d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: Tensor,
}

impl BatchNorm1d {
    /// PyTorch's default momentum of the running averages.
    pub const MOMENTUM: f64 = 0.1;
    /// PyTorch's default epsilon added to the variance.
    pub const EPS: f64 = 1e-5;

    /// Creates the parameters (weight 1, bias 0) and buffers (mean 0, variance 1, count 0)
    /// under `p`.
    pub fn new(p: nn::Path, channels: i64) -> Self {
        BatchNorm1d {
            weight: p.var("weight", &[channels], nn::Init::Const(1.0)),
            bias: p.var("bias", &[channels], nn::Init::Const(0.0)),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            num_batches_tracked: p.add(
                "num_batches_tracked",
                Tensor::zeros([], (tch::Kind::Int64, p.device())),
                false,
            ),
        }
    }

    /// Normalise `x`; in training with the statistics of the `valid` rows (all when `None`).
    pub fn forward_t(&self, x: &Tensor, valid: Option<&Tensor>, train: bool) -> Tensor {
        if !train {
            return x.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                false,
                Self::MOMENTUM,
                Self::EPS,
                false,
            );
        }
        let _ = tch::no_grad(|| self.num_batches_tracked.shallow_clone().g_add_scalar_(1));
        // Every row valid (a full batch of frames): ATen's fused batch norm, the same statistics.
        let valid = valid.filter(|v| v.all().int64_value(&[]) == 0);
        let Some(valid) = valid else {
            // ATen's training batch norm updates the running averages in place.
            return x.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                true,
                Self::MOMENTUM,
                Self::EPS,
                false,
            );
        };
        let rows = valid.nonzero().squeeze_dim(1);
        let counted = x.index_select(0, &rows);
        let dims: Vec<i64> = (0..x.dim() as i64).filter(|&d| d != 1).collect();
        let (var, mean) = counted.var_mean_correction(dims.as_slice(), 0, true);
        let n = (counted.numel() as i64 / x.size()[1]).max(1);
        tch::no_grad(|| {
            let m = Self::MOMENTUM;
            let unbiased = &var.flatten(0, -1) * (n as f64 / (n - 1).max(1) as f64);
            let _ = self
                .running_mean
                .shallow_clone()
                .g_mul_scalar_(1.0 - m)
                .g_add_(&(mean.flatten(0, -1) * m));
            let _ = self
                .running_var
                .shallow_clone()
                .g_mul_scalar_(1.0 - m)
                .g_add_(&(unbiased * m));
        });
        let mut shape = vec![1i64; x.dim()];
        shape[1] = x.size()[1];
        (x - mean) * (var + Self::EPS).rsqrt() * self.weight.view(shape.as_slice())
            + self.bias.view(shape.as_slice())
    }
}
