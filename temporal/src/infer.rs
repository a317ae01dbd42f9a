//! Streaming a split through a model: batches gathered from the split tensors, hidden state
//! carried from segment to segment, and per-row outputs turned into per-frame predictions.
//!
//! Shared by validation during training and by `temporal predict`. It does not compute losses
//! or update weights.

use crate::data::join::nearest as nearest_index;
use crate::data::streams::{Step, StreamPlan};
use crate::data::SplitData;
use crate::loss::LabelTensors;
use crate::model::{Outputs, States, TemporalMtl};
use shared::{Prediction, VideoId, N_AU, N_EXPR};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Columns of a per-row prediction: valence, arousal, 8 expression and 12 AU probabilities.
pub const PRED_COLS: i64 = (2 + N_EXPR + N_AU) as i64;

/// The model input and labels of one step: features [B, L, D] (zero at padding) and labels with
/// invalid markers at padding.
pub fn gather(data: &SplitData, step: &Step) -> (Tensor, LabelTensors) {
    let (b, l) = (step.index.size()[0], step.index.size()[1]);
    let idx = step.index.view([-1]);
    let pad = step.valid.logical_not();
    let x = data.feats.index_select(0, &idx).view([b, l, -1]) * step.valid.unsqueeze(-1);
    let va = data
        .va
        .index_select(0, &idx)
        .view([b, l, 2])
        .masked_fill(&pad.unsqueeze(-1), -5.0);
    let expr = data
        .expr
        .index_select(0, &idx)
        .view([b, l])
        .masked_fill(&pad, -1);
    let au = data
        .au
        .index_select(0, &idx)
        .view([b, l, N_AU as i64])
        .masked_fill(&pad.unsqueeze(-1), -1.0);
    (x, LabelTensors { va, expr, au })
}

/// Per-frame outputs [B, L, 22]: VA as regressed, expression softmax, AU sigmoid (AU outputs
/// that are already probabilities as they are). Heads the
/// model does not have give valence/arousal 0, uniform expression and AU probability 0.5.
pub fn to_probabilities(out: &Outputs) -> Tensor {
    let any = out
        .by_task
        .values()
        .next()
        .expect("a model has at least one head");
    let (b, l) = (any.size()[0], any.size()[1]);
    let opts = (Kind::Float, any.device());
    let va = |name: &str| {
        out.by_task
            .get(name)
            .map(|t| t.shallow_clone())
            .unwrap_or_else(|| Tensor::zeros([b, l, 1], opts))
    };
    let expr = out
        .by_task
        .get("expr")
        .map(|t| t.softmax(-1, Kind::Float))
        .unwrap_or_else(|| Tensor::full([b, l, N_EXPR as i64], 1.0 / N_EXPR as f64, opts));
    let au = out
        .by_task
        .get("au")
        .map(|t| {
            if out.au_probabilities {
                t.shallow_clone()
            } else {
                t.sigmoid()
            }
        })
        .unwrap_or_else(|| Tensor::full([b, l, N_AU as i64], 0.5, opts));
    Tensor::cat(&[va("valence"), va("arousal"), expr, au], -1)
}

/// Stream every video of the split through the model (eval mode, carried state) and return the
/// outputs of every row [N, 22] on the host.
pub fn infer_rows(model: &TemporalMtl, data: &SplitData, streams: usize, seg_len: usize) -> Tensor {
    let device = data.feats.device();
    let spans: Vec<(usize, usize)> = data.videos.iter().map(|v| (v.start, v.len())).collect();
    let plan = StreamPlan::new(&spans, streams, seg_len, None);
    let mut rows = Tensor::zeros([data.n_rows() as i64, PRED_COLS], (Kind::Float, device));
    tch::no_grad(|| {
        let mut states: Option<States> = None;
        for t in 0..plan.n_steps() {
            let step = plan.step(t, device);
            let (x, _) = gather(data, &step);
            let carried = states.as_ref().map(|s| s.carry(&step.reset.logical_not()));
            let pad = step.valid.logical_not();
            let (out, new_states) = model.forward_t(&x, Some(&pad), carried.as_ref(), false);
            states = Some(new_states);
            let probs = to_probabilities(&out).view([-1, PRED_COLS]);
            let keep = step.valid.view([-1]).nonzero().squeeze_dim(1);
            let targets = step.index.view([-1]).index_select(0, &keep);
            let _ = rows.index_copy_(0, &targets, &probs.index_select(0, &keep));
        }
    });
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
