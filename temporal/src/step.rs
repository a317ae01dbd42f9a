//! One step of a pass over a split: the training step (gather, carry the state, forward, masked
//! multi-task loss, backward, gradient clipping, the optimizer's update, twice forward and
//! backward with sharpness-aware minimisation) and the inference step (gather, carry,
//! forward without gradients, probabilities written to their rows).
//!
//! What it does: the per-step work shared by `temporal train` (each training step), validation
//! and `temporal predict` (via [`crate::infer::infer_rows`]) and `temporal bench`, so that the
//! benchmark times exactly the code path that training runs.
//!
//! [`gather`] / [`gather_features`] take a step's rows out of the split tensors and
//! [`to_probabilities`] turns the model's outputs into the `PRED_COLS` columns of a prediction.
//! Every step also reports the wall-clock time of its phases ([`Phases`]: gather, forward, loss,
//! backward, update; inference: gather, forward, outputs), which `temporal bench` averages so
//! that a speed ratio can be explained phase by phase. On the CPU, libtorch runs each operation
//! before returning, so a phase's time is its own; on CUDA a phase may also wait for kernels
//! queued by the previous one.
//!
//! What it does not: plan the streams ([`crate::data::streams::StreamPlan`]), loop over steps or
//! epochs, log, checkpoint, or decide what to do with a non-finite loss (the caller names the
//! epoch and step and stops).

use crate::data::streams::Step;
use crate::data::SplitData;
use crate::loss::{mtl_loss, LabelTensors, LossConfig};
use crate::model::{Outputs, States, TemporalMtl};
use crate::optim::{Optimizer, Pass};
use shared::{N_AU, N_EXPR};
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Kind, Tensor};

/// Wall-clock seconds one step spent in each of its phases, in the order they first ran
/// (a phase that runs twice, as forward and backward with SAM, adds up).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases(Vec<(&'static str, f64)>);

impl Phases {
    /// Adds `seconds` to `phase`.
    pub fn add(&mut self, phase: &'static str, seconds: f64) {
        match self.0.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += seconds,
            None => self.0.push((phase, seconds)),
        }
    }

    /// Adds the seconds since `*since` to `phase` and moves `*since` to now.
    pub fn lap(&mut self, phase: &'static str, since: &mut Instant) {
        let now = Instant::now();
        self.add(phase, (now - *since).as_secs_f64());
        *since = now;
    }

    /// Each phase and its seconds, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.0.iter().copied()
    }

    /// Seconds of `phase` (0 if it did not run).
    pub fn get(&self, phase: &str) -> f64 {
        self.iter()
            .find(|(name, _)| *name == phase)
            .map_or(0.0, |(_, s)| s)
    }
}

/// Columns of a per-row prediction: valence, arousal, 8 expression and 12 AU probabilities.
pub const PRED_COLS: i64 = (2 + N_EXPR + N_AU) as i64;

/// The model input and labels of one step: features [B, L, D] (zero at padding) and labels with
/// invalid markers at padding.
pub fn gather(data: &SplitData, step: &Step) -> (Tensor, LabelTensors) {
    let (b, l) = (step.index.size()[0], step.index.size()[1]);
    let idx = step.index.view([-1]);
    let pad = step.valid.logical_not();
    let x = gather_features(data, step);
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

/// The model input of one step alone (inference needs no labels): features [B, L, D], zero at
/// padding.
///
/// The gathered rows are a fresh tensor, so padding is zeroed in place, and only when the step
/// has padding (counted on the host): a full step of 64 frames of 289 x 1536 tokens is one copy
/// of 113 MB, not two.
pub fn gather_features(data: &SplitData, step: &Step) -> Tensor {
    let (b, l) = (step.index.size()[0], step.index.size()[1]);
    let mut x = data
        .features
        .gather(&step.index.view([-1]))
        .view([b, l, -1]);
    if step_frames(step) < (b * l) as usize {
        let _ = x.masked_fill_(&step.valid.logical_not().unsqueeze(-1), 0.0);
    }
    x
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

/// What one training step did.
#[derive(Debug)]
pub struct TrainStep {
    /// The total (weighted) loss before the update.
    pub loss: f64,
    /// Each task's own loss by head name.
    pub parts: BTreeMap<String, f64>,
    /// Real (non-padding) frames in the step.
    pub frames: usize,
    /// The final recurrent states (still attached; [`States::carry`] detaches them next step).
    pub states: States,
    /// Seconds in `gather`, `forward`, `loss`, `backward` (each pass of SAM added up) and
    /// `update` (SAM's ascent, clipping and the optimizer's step).
    pub phases: Phases,
}

/// The loss was NaN or infinite: the weights were left as they were (no backward, no update).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("the loss became {value}; the weights were not updated")]
pub struct NonFiniteLoss {
    /// The loss value.
    pub value: f64,
}

/// Real (non-padding) frames of a step, counted on the host from its segments.
pub fn step_frames(step: &Step) -> usize {
    step.segments.iter().flatten().map(|s| s.len).sum()
}

/// One training step on `step` of a plan over `data`: the state of the previous step `prev`
/// (as returned by the previous call, `None` at the start of a pass) is zeroed where a stream
/// starts a new video and detached; then [`Optimizer::update`] with this closure: forward with
/// dropout, [`mtl_loss`], and, if the loss is finite, backward
/// ([`crate::model::Outputs::backward`]); the optimizer clips the gradient to `clip` and steps.
/// With SAM the closure runs a second time on the same batch and carried state at the perturbed
/// weights (new dropout masks); the step's loss, task losses and final states are those of the
/// first pass, at the weights themselves.
pub fn train_step(
    model: &TemporalMtl,
    opt: &mut Optimizer,
    data: &SplitData,
    step: &Step,
    prev: Option<&States>,
    loss_cfg: &LossConfig,
    clip: f64,
) -> Result<TrainStep, NonFiniteLoss> {
    let mut phases = Phases::default();
    let mut clock = Instant::now();
    let (x, labels) = gather(data, step);
    let carried = prev.map(|s| s.carry(&step.reset.logical_not()));
    let pad = step.valid.logical_not();
    phases.lap("gather", &mut clock);
    let mut first: Option<(BTreeMap<String, f64>, States)> = None;
    let mut in_passes = 0.0;
    let loss = opt.update(clip, |pass| {
        let mut t = Instant::now();
        let started = t;
        let (mut out, states) = model.forward_t(&x, Some(&pad), carried.as_ref(), true);
        phases.lap("forward", &mut t);
        let (loss, parts) = mtl_loss(&out, &labels, &step.valid, loss_cfg);
        let value = loss.double_value(&[]);
        phases.lap("loss", &mut t);
        if !value.is_finite() {
            return Err(NonFiniteLoss { value });
        }
        out.backward(&loss);
        phases.lap("backward", &mut t);
        in_passes += started.elapsed().as_secs_f64();
        if pass == Pass::Weights {
            first = Some((parts, states));
        }
        Ok(value)
    })?;
    phases.add("update", clock.elapsed().as_secs_f64() - in_passes);
    let (parts, states) = first.expect("the first pass ran");
    Ok(TrainStep {
        loss,
        parts,
        frames: step_frames(step),
        states,
        phases,
    })
}

/// One inference step (evaluation mode, no gradients): like [`train_step`] up to the forward,
/// then the per-frame outputs of [`to_probabilities`] of every real frame are written to its row
/// of `rows [N, PRED_COLS]` (padding rows are left alone). Returns the final states for the
/// next step.
pub fn infer_step(
    model: &TemporalMtl,
    data: &SplitData,
    step: &Step,
    prev: Option<&States>,
    rows: &mut Tensor,
) -> States {
    infer_step_phased(model, data, step, prev, rows).0
}

/// [`infer_step`], also returning the seconds of its phases: `gather` (features and the carried
/// state), `forward` and `outputs` (probabilities written to their rows).
pub fn infer_step_phased(
    model: &TemporalMtl,
    data: &SplitData,
    step: &Step,
    prev: Option<&States>,
    rows: &mut Tensor,
) -> (States, Phases) {
    tch::no_grad(|| {
        let mut phases = Phases::default();
        let mut clock = Instant::now();
        let x = gather_features(data, step);
        let carried = prev.map(|s| s.carry(&step.reset.logical_not()));
        let pad = step.valid.logical_not();
        phases.lap("gather", &mut clock);
        let (out, states) = model.forward_t(&x, Some(&pad), carried.as_ref(), false);
        phases.lap("forward", &mut clock);
        let probs = to_probabilities(&out).view([-1, PRED_COLS]);
        let keep = step.valid.view([-1]).nonzero().squeeze_dim(1);
        let targets = step.index.view([-1]).index_select(0, &keep);
        let _ = rows.index_copy_(0, &targets, &probs.index_select(0, &keep));
        phases.lap("outputs", &mut clock);
        (states, phases)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::join::label_tensors;
    use crate::data::streams::StreamPlan;
    use crate::data::{FeatureRows, VideoSpan};
    use crate::model::{Arch, Config, Topology};
    use shared::{FrameLabels, VideoId};
    use tch::nn::VarStore;
    use tch::{Device, Kind};

    /// Videos of the given lengths, features `randn`, every label valid (class = row % 8,
    /// valence = arousal = 0.5, AUs alternate).
    fn split(lengths: &[usize], dim: i64) -> SplitData {
        let n: usize = lengths.iter().sum();
        let labels: Vec<FrameLabels> = (0..n)
            .map(|r| FrameLabels {
                valence: Some(0.5),
                arousal: Some(0.5),
                expression: Some((r % 8) as u8),
                aus: Some(std::array::from_fn(|a| (a + r) % 2 == 0)),
            })
            .collect();
        let (va, expr, au) = label_tensors(&labels, Device::Cpu);
        let mut start = 0;
        let videos = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let span = VideoSpan {
                    video: VideoId::new(format!("v{i}")).unwrap(),
                    start,
                    frames: (1..=len as u32).collect(),
                    scored: Vec::new(),
                };
                start += len;
                span
            })
            .collect();
        SplitData {
            features: FeatureRows::Memory(Tensor::randn(
                [n as i64, dim],
                (Kind::Float, Device::Cpu),
            )),
            tokens: 1,
            va,
            expr,
            au,
            labels,
            videos,
            set_dims: vec![("test".to_string(), dim as usize)],
        }
    }

    fn small(arch: Arch) -> Config {
        Config {
            arch,
            topology: Topology::Basic,
            hidden: 8,
            d_model: 8,
            n_layers: 1,
            n_heads: 2,
            ff: 16,
            dropout: 0.0,
            feat_dim: 4,
            ..Config::default()
        }
    }

    fn spans(data: &SplitData) -> Vec<(usize, usize)> {
        data.videos.iter().map(|v| (v.start, v.len())).collect()
    }

    #[test]
    fn train_steps_count_real_frames_and_lower_the_loss() {
        tch::set_num_threads(1);
        tch::manual_seed(0);
        // videos of 5 and 3 frames, 2 streams of l = 4: step 0 has 4 + 3 real frames, step 1
        // has 1 (the last frame of the first video) + 0 (the second stream has run out).
        let data = split(&[5, 3], 4);
        let vs = VarStore::new(Device::Cpu);
        let model = TemporalMtl::new(&vs.root(), &small(Arch::Gru));
        let mut opt = Optimizer::adam(&vs, 1e-2);
        let plan = StreamPlan::new(&spans(&data), 2, 4, None);
        assert_eq!(step_frames(&plan.step(0, Device::Cpu)), 7);
        assert_eq!(step_frames(&plan.step(1, Device::Cpu)), 1);
        let cfg = LossConfig::default();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..30 {
            let mut prev: Option<States> = None;
            let mut frames = 0;
            let mut total = 0.0;
            for t in 0..plan.n_steps() {
                let s = train_step(
                    &model,
                    &mut opt,
                    &data,
                    &plan.step(t, Device::Cpu),
                    prev.as_ref(),
                    &cfg,
                    5.0,
                )
                .unwrap();
                frames += s.frames;
                total += s.loss;
                assert_eq!(s.states.len(), 1, "a GRU basic model carries one state");
                prev = Some(s.states);
            }
            assert_eq!(frames, 8);
            first.get_or_insert(total);
            last = total;
        }
        assert_eq!(opt.steps(), 60);
        let first = first.unwrap();
        assert!(last < 0.8 * first, "loss {first} -> {last}");
    }

    #[test]
    fn a_nan_loss_leaves_the_weights_alone() {
        tch::set_num_threads(1);
        let mut data = split(&[4], 4);
        data.features = FeatureRows::Memory(data.features.resident().unwrap().fill(f64::NAN));
        let vs = VarStore::new(Device::Cpu);
        let model = TemporalMtl::new(&vs.root(), &small(Arch::Lstm));
        let before: Vec<Tensor> = vs.trainable_variables().iter().map(|t| t.copy()).collect();
        let mut opt = Optimizer::adam(&vs, 1e-2);
        let plan = StreamPlan::new(&spans(&data), 1, 4, None);
        let err = train_step(
            &model,
            &mut opt,
            &data,
            &plan.step(0, Device::Cpu),
            None,
            &LossConfig::default(),
            5.0,
        )
        .unwrap_err();
        assert!(err.value.is_nan());
        assert_eq!(opt.steps(), 0);
        for (a, b) in before.iter().zip(vs.trainable_variables()) {
            assert!(a.equal(&b));
        }
    }

    /// The rows written by the inference steps are the probabilities of one forward pass over
    /// each whole video (the carried state makes the segments one sequence), and padding writes
    /// nothing.
    /// Videos of 8, 4 and 3 frames over 2 streams of 4: one step is full (no masking needed), the
    /// others have padding; the padding positions are zero, the real ones the split's rows.
    #[test]
    fn gathered_features_are_the_rows_with_zero_at_padding() {
        let data = split(&[8, 4, 3], 5);
        let spans: Vec<(usize, usize)> = data.videos.iter().map(|v| (v.start, v.len())).collect();
        let plan = StreamPlan::new(&spans, 2, 4, None);
        let mut full = Vec::new();
        for t in 0..plan.n_steps() {
            let step = plan.step(t, Device::Cpu);
            let x = gather_features(&data, &step);
            let index = Vec::<i64>::try_from(step.index.flatten(0, -1)).unwrap();
            let valid = Vec::<bool>::try_from(step.valid.flatten(0, -1)).unwrap();
            let x = x.view([-1, 5]);
            for (i, (&row, &real)) in index.iter().zip(&valid).enumerate() {
                let want = if real {
                    data.features.resident().unwrap().get(row)
                } else {
                    Tensor::zeros([5], (Kind::Float, Device::Cpu))
                };
                assert!(x.get(i as i64).equal(&want), "step {t} position {i}");
            }
            full.push(valid.iter().all(|v| *v));
        }
        assert!(full.contains(&true) && full.contains(&false), "{full:?}");
    }

    #[test]
    fn infer_steps_fill_each_row_with_its_frame_probabilities() {
        tch::set_num_threads(1);
        tch::manual_seed(1);
        let data = split(&[5, 3], 4);
        for arch in [Arch::Gru, Arch::Lstm, Arch::Transformer] {
            let vs = VarStore::new(Device::Cpu);
            let mut cfg = small(arch);
            if arch == Arch::Transformer {
                // attention is within a segment: use one segment per video
                cfg.n_layers = 1;
            }
            let model = TemporalMtl::new(&vs.root(), &cfg);
            let seg_len = if arch == Arch::Transformer { 5 } else { 2 };
            let plan = StreamPlan::new(&spans(&data), 2, seg_len, None);
            let mut rows = Tensor::full([8, PRED_COLS], -7.0, (Kind::Float, Device::Cpu));
            let mut prev: Option<States> = None;
            for t in 0..plan.n_steps() {
                prev = Some(infer_step(
                    &model,
                    &data,
                    &plan.step(t, Device::Cpu),
                    prev.as_ref(),
                    &mut rows,
                ));
            }
            for v in &data.videos {
                let x = data
                    .features
                    .resident()
                    .unwrap()
                    .narrow(0, v.start as i64, v.len() as i64)
                    .unsqueeze(0);
                let (out, _) = model.forward_t(&x, None, None, false);
                let want = to_probabilities(&out).squeeze_dim(0);
                let got = rows.narrow(0, v.start as i64, v.len() as i64);
                let diff = (&got - &want).abs().max().double_value(&[]);
                assert!(diff < 1e-5, "{arch} video {}: {diff}", v.video);
            }
        }
    }
}
