//! Streaming a split through a model: batches gathered from the split tensors, hidden state
//! carried from segment to segment, and per-row outputs turned into per-frame predictions.
//!
//! Shared by validation during training and by `temporal predict`; the step itself is
//! [`crate::step::infer_step`]. It does not compute losses or update weights.

use crate::config::TrainConfig;
use crate::data::join::nearest as nearest_index;
use crate::data::streams::StreamPlan;
use crate::data::SplitData;
use crate::model::{States, TemporalMtl};
use crate::step::infer_step;
pub use crate::step::{to_probabilities, PRED_COLS};
use shared::{Prediction, VideoId, N_AU, N_EXPR};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// How a run scores a split: a sequence model streams each video in segments of `seg_len` over
/// `streams` streams, carrying its state; a frame-level model (`arch = "none"`) takes the rows
/// in order, `batch_size` frames a step, as it trains (a step of 8 x 250 frames of 289 x 1536
/// tokens would be 3.6 GB of features).
pub fn inference_plan(data: &SplitData, cfg: &TrainConfig) -> StreamPlan {
    let spans: Vec<(usize, usize)> = data.videos.iter().map(|v| (v.start, v.len())).collect();
    if cfg.model.arch.is_frame_level() {
        StreamPlan::in_order_frames(&spans, cfg.batch_size)
    } else {
        StreamPlan::new(&spans, cfg.streams, cfg.seg_len, None)
    }
}

/// Stream every video of the split through the model (eval mode, carried state) as `plan` says
/// ([`inference_plan`]) and return the outputs of every row [N, 22] on the host.
pub fn infer_rows(model: &TemporalMtl, data: &SplitData, plan: &StreamPlan) -> Tensor {
    let device = data.features.device();
    data.features.prefetch(plan.all_step_rows());
    let mut rows = Tensor::zeros([data.n_rows() as i64, PRED_COLS], (Kind::Float, device));
    let mut states: Option<States> = None;
    for t in 0..plan.n_steps() {
        let step = plan.step(t, device);
        states = Some(infer_step(model, data, &step, states.as_ref(), &mut rows));
    }
    rows.to_device(Device::Cpu)
}

/// Per-frame predictions of every frame to score: a frame without a row takes the nearest row's.
pub fn scored_predictions(
    data: &SplitData,
    rows: &Tensor,
) -> BTreeMap<VideoId, Vec<(u32, Prediction)>> {
    let flat = Vec::<f32>::try_from(rows.flatten(0, -1)).expect("float rows");
    let width = PRED_COLS as usize;
    let mut out = BTreeMap::new();
    for span in &data.videos {
        let frames: Vec<i32> = span.frames.iter().map(|&f| f as i32).collect();
        let preds = span
            .scored
            .iter()
            .filter(|_| !frames.is_empty())
            .map(|(f, _)| {
                let r = span.start + nearest_index(&frames, *f as i32);
                (*f, row_prediction(&flat[r * width..(r + 1) * width]))
            })
            .collect();
        out.insert(span.video.clone(), preds);
    }
    out
}

fn row_prediction(row: &[f32]) -> Prediction {
    let mut expression = [0f32; N_EXPR];
    expression.copy_from_slice(&row[2..2 + N_EXPR]);
    let mut aus = [0f32; N_AU];
    aus.copy_from_slice(&row[2 + N_EXPR..]);
    Prediction {
        valence: row[0],
        arousal: row[1],
        expression,
        aus,
    }
}
