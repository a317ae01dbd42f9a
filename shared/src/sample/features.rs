//! Synthetic features: a feature cache (backbone `synthetic`) computed from the latent state
//! instead of from pixels, for trainer tests and benchmarks at sizes where drawing is slow.
//!
//! What it does: per frame with an image, `x = W^T (z + e) + o + n`, where `z` is the frame's
//! latent vector ([`latent_vector`]: valence, arousal, expression one-hot, AU intensities, eye
//! closure, pose, lighting, occlusion), `W` a fixed random projection drawn from the seed alone
//! ([`projection`]), `e` per-frame noise in latent space (stronger on occluded frames: single
//! frames are ambiguous and only time can average it out), `o` a per-video offset (identity)
//! and `n` per-dimension noise. Frames without an image have no row, as an extractor would give.
//!
//! What it does not: look at pixels, or decide file names (that is [`crate::cache`]).

use super::latent::{normal, video_rng, FrameState, Stream};
use super::layout::VideoPlan;
use crate::cache::{CacheAttrs, Dtype, VideoFeatures};
use crate::tasks::{N_AU, N_EXPR};
use ndarray::Array2;
use rand_chacha::ChaCha8Rng;

/// Backbone (and cache folder) name of the synthetic features.
pub const BACKBONE: &str = "synthetic";

/// Length of the latent vector of one frame.
pub const LATENT_DIM: usize = 2 + N_EXPR + N_AU + 6;
/// Index of the first AU intensity (AU1) in the latent vector.
pub const LATENT_AU: usize = 2 + N_EXPR;
/// Index of eye closure in the latent vector.
pub const LATENT_EYE_CLOSURE: usize = LATENT_AU + N_AU;

/// Standard deviation of the per-frame noise added in latent space.
const LATENT_NOISE: f32 = 0.35;
/// ... on frames with an occluder.
const OCCLUDED_LATENT_NOISE: f32 = 1.0;
/// Standard deviation of the per-dimension noise of each frame.
pub(crate) const FEATURE_NOISE: f32 = 0.5;
/// Standard deviation of the per-video offset of each dimension.
pub(crate) const VIDEO_OFFSET: f32 = 0.5;
/// Scale of the projection entries.
const PROJECTION_SCALE: f32 = 0.6;

/// The latent vector of a frame: valence, arousal, the expression one-hot, the AU intensities,
/// eye closure, yaw, pitch, roll, lighting gain - 1 and 1 if occluded.
pub fn latent_vector(s: &FrameState) -> [f32; LATENT_DIM] {
    let mut z = [0.0f32; LATENT_DIM];
    z[0] = s.valence;
    z[1] = s.arousal;
    z[2 + s.expression as usize] = 1.0;
    z[LATENT_AU..LATENT_AU + N_AU].copy_from_slice(&s.au_intensity);
    let rest = [
        s.eye_closure,
        s.pose.yaw,
        s.pose.pitch,
        s.pose.roll,
        s.light.gain - 1.0,
        if s.occlusion.is_some() { 1.0 } else { 0.0 },
    ];
    z[LATENT_EYE_CLOSURE..].copy_from_slice(&rest);
    z
}

/// The fixed random projection `W` (LATENT_DIM x dim) of the data set made with `seed`.
pub fn projection(seed: u64, dim: usize) -> Array2<f32> {
    random_projection(seed, Stream::Projection, dim)
}

/// A random projection (LATENT_DIM x dim) drawn from stream `purpose` of `seed` alone (shared by
/// all videos), with entries of standard deviation 0.6.
pub(crate) fn random_projection(seed: u64, purpose: Stream, dim: usize) -> Array2<f32> {
    let mut rng = video_rng(seed, u64::MAX, purpose);
    Array2::from_shape_simple_fn((LATENT_DIM, dim), || PROJECTION_SCALE * normal(&mut rng))
}

/// The states of the frames of `plan` that have an image (the rows a cache file holds).
pub(crate) fn frames_with_image<'a>(
    plan: &VideoPlan,
    states: &'a [FrameState],
) -> Vec<&'a FrameState> {
    states
        .iter()
        .filter(|s| plan.has_image[s.frame as usize - 1])
        .collect()
}

/// The cache attributes of the synthetic features of dimension `dim` made with `seed`.
pub fn cache_attrs(seed: u64, dim: usize) -> CacheAttrs {
    CacheAttrs {
        backbone: BACKBONE.to_owned(),
        dim,
        input_size: 0,
        dtype: Dtype::F32,
        preprocessing: "latent projection".to_owned(),
        weights: format!("seed:{seed}"),
        source: format!("extractor sample-data --seed {seed} (latent state, no pixels)"),
        tool_version: crate::TOOL_VERSION.to_owned(),
    }
}

/// The synthetic features of one video: one row per frame that has an image.
pub fn video_features(
    seed: u64,
    plan: &VideoPlan,
    states: &[FrameState],
    w: &Array2<f32>,
) -> VideoFeatures {
    let dim = w.ncols();
    let mut rng = video_rng(seed, plan.index as u64, Stream::Features);
    let offset: Vec<f32> = (0..dim).map(|_| VIDEO_OFFSET * normal(&mut rng)).collect();
    let kept = frames_with_image(plan, states);
    let z = fill_latents(Array2::zeros((kept.len(), LATENT_DIM)), &kept, &mut rng);
    let mut x = z.dot(w);
    for mut row in x.rows_mut() {
        for (v, o) in row.iter_mut().zip(&offset) {
            *v += o + FEATURE_NOISE * normal(&mut rng);
        }
    }
    VideoFeatures {
        frames: kept.iter().map(|s| s.frame as i32).collect(),
        features: x.into_dyn(),
        missing: Vec::new(),
    }
}

/// Latent vectors plus latent-space noise, one row per kept frame.
pub(crate) fn fill_latents(
    mut z: Array2<f32>,
    kept: &[&FrameState],
    rng: &mut ChaCha8Rng,
) -> Array2<f32> {
    for (mut row, s) in z.rows_mut().into_iter().zip(kept) {
        let sd = if s.occlusion.is_some() {
            OCCLUDED_LATENT_NOISE
        } else {
            LATENT_NOISE
        };
        for (v, clean) in row.iter_mut().zip(latent_vector(s)) {
            *v = clean + sd * normal(rng);
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::latent::simulate_video;

    #[test]
    fn latent_vector_places_each_part() {
        let s = simulate_video(3, 0, 5)[4];
        let z = latent_vector(&s);
        assert_eq!((z[0], z[1]), (s.valence, s.arousal));
        let one_hot = &z[2..2 + N_EXPR];
        assert_eq!(one_hot.iter().sum::<f32>(), 1.0);
        assert_eq!(one_hot[s.expression as usize], 1.0);
        assert_eq!(&z[LATENT_AU..LATENT_AU + N_AU], &s.au_intensity);
        assert_eq!(z[LATENT_EYE_CLOSURE], s.eye_closure);
        assert_eq!(
            z[LATENT_DIM - 1],
            if s.occlusion.is_some() { 1.0 } else { 0.0 }
        );
    }

    #[test]
    fn projection_depends_on_the_seed_only() {
        assert_eq!(projection(5, 16), projection(5, 16));
        assert_ne!(projection(5, 16), projection(6, 16));
        assert_eq!(projection(5, 16).dim(), (LATENT_DIM, 16));
    }
}
