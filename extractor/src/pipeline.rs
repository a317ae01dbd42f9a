//! How many threads decode frames, and how far ahead they may run, from the rates measured
//! while `extractor extract` runs.
//!
//! What it does: the decoder (frame folders: JPEG decode + resize, one frame per task) and the
//! backbone share the machine's cores. Decoding with every core in bursts stalls the backbone's
//! parallel loops (an OpenMP team waits at its barrier for the thread a decoder took), which is
//! how a pipeline fell to 0.76 of its forward-only rate on a 2-core AMD EPYC. [`Rates`] keeps
//! two measured costs, updated on every batch (an exponential average, weight 1/2 on the new
//! batch): the decode CPU time per frame of one thread, and the backbone's wall time per frame.
//! From them:
//! - [`Rates::decode_threads`]: the fewest threads that decode as fast as the backbone consumes,
//!   with a 25 % margin: `ceil(1.25 * decode_cost / forward_cost)`, between 1 and the cores.
//!   Before the first forward pass is measured nothing else runs, so every core decodes.
//! - [`Rates::queue_depth`]: decoded batches allowed to wait: one more than the number of
//!   forward passes that one batch's decode spans (`1 + ceil(decode_batch / forward_batch)`),
//!   between 2 and [`MAX_QUEUE`]: a slow decoder gets more slack, a fast one holds little memory.
//!
//! [`Gate`] enforces the depth between the decoder thread and the backbone.
//!
//! What it does not: decode (that is [`crate::sources`]) or run the backbone; a video file
//! (ffmpeg) decodes in its own process and is not sized here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The most decoded batches that may wait for the backbone (bounds memory: 8 x 64 frames of
/// 224 px is 77 MB).
pub const MAX_QUEUE: usize = 8;

/// Measured costs of decoding and of the forward pass (nanoseconds per frame, 0 = not yet).
#[derive(Debug)]
pub struct Rates {
    cores: usize,
    decode_ns: AtomicU64,
    forward_ns: AtomicU64,
}

impl Rates {
    /// No measurement yet, `cores` threads at most.
    pub fn new(cores: usize) -> Rates {
        Rates {
            cores: cores.max(1),
            decode_ns: AtomicU64::new(0),
            forward_ns: AtomicU64::new(0),
        }
    }

    /// Records a batch of `frames` decoded by `threads` threads in `wall` time.
    pub fn record_decode(&self, frames: usize, threads: usize, wall: Duration) {
        if frames > 0 {
            let per_frame = wall.as_nanos() as f64 * threads.max(1) as f64 / frames as f64;
            average_into(&self.decode_ns, per_frame);
        }
    }

    /// Records a forward pass over `frames` frames that took `wall`.
    pub fn record_forward(&self, frames: usize, wall: Duration) {
        if frames > 0 {
            average_into(&self.forward_ns, wall.as_nanos() as f64 / frames as f64);
        }
    }

    fn costs(&self) -> Option<(f64, f64)> {
        let d = self.decode_ns.load(Ordering::Relaxed) as f64;
        let f = self.forward_ns.load(Ordering::Relaxed) as f64;
        (d > 0.0 && f > 0.0).then_some((d, f))
    }

    /// Threads that should decode the next batch (see the module documentation).
    pub fn decode_threads(&self) -> usize {
        match self.costs() {
            None => self.cores,
            Some((decode, forward)) => {
                ((1.25 * decode / forward).ceil() as usize).clamp(1, self.cores)
            }
        }
    }

    /// Decoded batches that may wait (see the module documentation).
    pub fn queue_depth(&self) -> usize {
        match self.costs() {
            None => 2,
            Some((decode, forward)) => {
                let per_batch = decode / self.decode_threads() as f64 / forward;
                (1 + per_batch.ceil() as usize).clamp(2, MAX_QUEUE)
            }
        }
    }
}

/// `slot = (slot + new) / 2`, or `new` for the first value.
fn average_into(slot: &AtomicU64, new: f64) {
    let old = slot.load(Ordering::Relaxed) as f64;
    let v = if old == 0.0 { new } else { (old + new) / 2.0 };
    slot.store(v.max(1.0) as u64, Ordering::Relaxed);
}

/// Counts decoded batches in the queue; the decoder waits while the count is at the depth.
#[derive(Debug, Default)]
pub struct Gate {
    waiting: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    /// Blocks until fewer than `depth` batches wait, then counts one more.
    pub fn enter(&self, depth: usize) {
        let mut n = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= depth {
            n = self.freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
    }

    /// One batch left the queue.
    pub fn leave(&self) {
        let mut n = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn every_core_decodes_until_the_forward_pass_is_measured() {
        let r = Rates::new(4);
        assert_eq!(r.decode_threads(), 4);
        r.record_decode(64, 4, ms(64));
        assert_eq!(r.decode_threads(), 4, "no forward rate yet");
        assert_eq!(r.queue_depth(), 2);
    }

    #[test]
    fn a_cheap_decoder_gets_one_thread_and_a_short_queue() {
        let r = Rates::new(2);
        // 2 ms of one thread per frame against a 40 ms forward per frame (a CNN on 2 cores)
        r.record_decode(64, 2, ms(64));
        r.record_forward(64, ms(64 * 40));
        assert_eq!(r.decode_threads(), 1);
        assert_eq!(r.queue_depth(), 2);
    }

    #[test]
    fn a_decoder_slower_than_the_backbone_gets_more_threads_and_a_longer_queue() {
        let r = Rates::new(8);
        // 10 ms per frame to decode, 4 ms per frame of forward: 1.25 * 10 / 4 = 3.1 -> 4 threads
        r.record_decode(64, 1, ms(640));
        r.record_forward(64, ms(256));
        assert_eq!(r.decode_threads(), 4);
        // a batch decodes in 640 / 4 = 160 ms, a forward pass takes 256 ms: 1 + 1
        assert_eq!(r.queue_depth(), 2);
        // the backbone gets faster (a GPU): more threads, capped at the cores, longer queue
        for _ in 0..8 {
            r.record_forward(64, ms(16));
        }
        assert_eq!(r.decode_threads(), 8);
        assert!(r.queue_depth() > 2 && r.queue_depth() <= MAX_QUEUE);
    }

    #[test]
    fn the_gate_holds_the_decoder_at_the_depth() {
        let gate = std::sync::Arc::new(Gate::default());
        gate.enter(2);
        gate.enter(2);
        let g = gate.clone();
        let t = std::thread::spawn(move || g.enter(2));
        std::thread::sleep(ms(50));
        assert!(!t.is_finished(), "a third batch waits at depth 2");
        gate.leave();
        t.join().unwrap();
    }
}
