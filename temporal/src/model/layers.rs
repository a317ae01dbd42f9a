//! Layer constructors every part of the model shares, initialised as PyTorch initialises them so
//! that a fresh model has the reference's parameter distributions.
//!
//! What it does not: define architectures (see [`super::encoder`], [`super::topology`],
//! [`super::heads`]) or run anything.

use tch::nn;

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
