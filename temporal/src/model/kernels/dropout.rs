//! Dropout in training with the mask drawn on the host, in parallel.
//!
//! What it does: [`dropout`] is `torch.nn.functional.dropout(x, p, training)` for CPU tensors:
//! each element is kept with probability `1 − p` and scaled by `1 / (1 − p)`. ATen draws its
//! CPU mask with `bernoulli_`, one element at a time from one Mersenne twister, and a training
//! step of the reference model drops tens of millions of elements. This draws one 64-bit seed from libtorch's
//! generator, so `tch::manual_seed` still fixes every mask (resume replays them), then fills a
//! boolean mask from ChaCha8 streams over chunks in parallel (rayon). The boolean mask is what
//! the graph keeps for the backward pass (1 byte per element; ATen's CPU dropout keeps a float
//! mask).
//!
//! What it does not: draw the same masks as PyTorch (training runs were not bit-identical
//! before either), or run on CUDA, where ATen's fused dropout kernel is used as is.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Elements per ChaCha8 stream.
const CHUNK: usize = 1 << 16;

/// `x` with each element zeroed with probability `p` and the rest scaled by `1 / (1 − p)` when
/// `train`; `x` itself otherwise (see the module documentation).
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu {
        return x.dropout(p, train);
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]);
    let mask =
        Tensor::from_slice(&keep_mask(x.numel(), 1.0 - p, seed as u64)).view(x.size().as_slice());
    x * mask * (1.0 / (1.0 - p))
}

/// `n` booleans, each true with probability `keep`: element `i` from ChaCha8 seeded with
/// `seed` on stream `i / CHUNK`.
fn keep_mask(n: usize, keep: f64, seed: u64) -> Vec<bool> {
    let threshold = (keep * 4_294_967_296.0) as u64;
    let mut mask = vec![false; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, chunk)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(i as u64);
            for m in chunk {
                *m = u64::from(rng.gen::<u32>()) < threshold;
            }
        });
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_one_minus_p_and_scales_the_kept_elements() {
        tch::set_num_threads(1);
        let x = Tensor::rand([4, 50, 1000], (Kind::Float, Device::Cpu)) + 1.0;
        let y = dropout(&x, 0.3, true);
        let kept = y.ne(0.0);
        // 200 000 Bernoulli(0.7) draws: sd 205; allow 5 sd.
        let n_kept = kept.sum(Kind::Int64).int64_value(&[]);
        assert!((n_kept - 140_000).abs() < 1_025, "{n_kept} kept");
        let err = (y.masked_select(&kept) - x.masked_select(&kept) / 0.7)
            .abs()
            .max()
            .double_value(&[]);
        assert!(err < 1e-6, "{err}");
        // evaluation, or p = 0: the input itself
        assert!(dropout(&x, 0.3, false).equal(&x));
        assert!(dropout(&x, 0.0, true).equal(&x));
    }

    #[test]
    fn the_gradient_is_the_mask_over_keep() {
        tch::set_num_threads(1);
        let x = Tensor::randn([3, 7, 11], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let y = dropout(&x, 0.5, true);
        y.sum(Kind::Float).backward();
        let want = y.ne(0.0).to_kind(Kind::Float) * 2.0;
        assert!(x.grad().equal(&want));
    }

    #[test]
    fn masks_are_fixed_by_the_seed_and_differ_between_seeds_and_chunks() {
        let n = 3 * CHUNK + 17;
        let a = keep_mask(n, 0.7, 42);
        assert_eq!(a, keep_mask(n, 0.7, 42));
        assert_ne!(a, keep_mask(n, 0.7, 43));
        // streams differ: the chunks are not copies of each other
        assert_ne!(a[..CHUNK], a[CHUNK..2 * CHUNK]);
        let frac = a.iter().filter(|&&k| k).count() as f64 / n as f64;
        assert!((frac - 0.7).abs() < 0.01, "{frac}");
    }
}
