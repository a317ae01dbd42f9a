//! Hand-written kernels under the architecture: the same mathematics as ATen's operators, laid
//! out for speed on the CPU. A reader of the model can skip this folder; each kernel has a test
//! that it equals the ATen operation it replaces.
//!
//! What it does:
//! - [`gru`]: a GRU layer's training path, with the recurrent weight gradient as one GEMM per
//!   segment ([`gru::DeferredGrads`] completes it after `loss.backward()`);
//! - [`rnn_eval`]: GRU and LSTM layers when no gradient is recorded, with the recurrent product
//!   on a weight [`packed`] once per segment for MKL's packed GEMM, or on ATen's `addmm`;
//! - [`choice`]: which of those (or ATen's fused `gru` / `lstm`) runs a layer shape, measured on
//!   the machine (`--kernel`);
//! - [`dropout`]: dropout with the mask drawn on the host, in parallel.
//!
//! What it does not: define parameters or their names (the architecture modules do), or run the
//! layers (`model::encoder::RnnBlock` asks [`choice`] and calls the kernel).

pub mod choice;
pub mod dropout;
pub mod gru;
pub mod packed;
pub mod rnn_eval;
