//! SGD's update of one parameter, as `torch.optim.SGD`'s single-tensor step with dampening 0:
//! `d = g + wd w`; with momentum `b = momentum b + d` (the buffer starts at zero, which gives
//! PyTorch's `b = d` at the first step) and `d = b`, or `d = d + momentum b` with Nesterov;
//! `w -= lr d`. ATen operations in place.

use tch::Tensor;

/// The scalars of one SGD update.
#[derive(Debug, Clone, Copy)]
pub(super) struct SgdStep {
    pub(super) lr: f64,
    pub(super) momentum: f64,
    pub(super) nesterov: bool,
    pub(super) weight_decay: f64,
}

impl SgdStep {
    /// Update `p` with its gradient `g` and momentum buffer `buf` (`None` without momentum).
    pub(super) fn apply(&self, p: &mut Tensor, g: &Tensor, buf: Option<&mut Tensor>) {
        let mut d = if self.weight_decay != 0.0 {
            g + &*p * self.weight_decay
        } else {
            g.shallow_clone()
        };
        if let Some(buf) = buf {
            let _ = buf.g_mul_scalar_(self.momentum).g_add_(&d);
            d = if self.nesterov {
                &d + &*buf * self.momentum
            } else {
                buf.shallow_clone()
            };
        }
        let _ = p.g_sub_(&(d * self.lr));
    }
}
