//! The latent simulation of one synthetic video: what the person feels and does, frame by frame.
//!
//! What it does: turn `(seed, video index, number of frames)` into one [`FrameState`] per frame,
//! deterministically (per-video ChaCha streams, see [`video_rng`]):
//! - valence, arousal and a third affect dimension ("dominance") follow smoothed
//!   Ornstein-Uhlenbeck processes around a per-video mood (correlation times of 3.5-5 s at
//!   30 frames/s, no frame-to-frame roughness);
//! - the expression is the prototype nearest to the affect state, with hysteresis (a new
//!   expression must be clearly nearer before the label switches), so expressions last seconds;
//! - the 12 AUs have intensities that rise (onset) and decay (offset) towards targets set by the
//!   expression's AU profile and by spontaneous events (talking, smirks); an AU is labelled on
//!   with hysteresis on its intensity;
//! - nuisance: blinks, gaze, head pose jitter, lighting drift, blur episodes, occlusions.
//!
//! What it does not: draw pixels ([`super::face`]), decide which frames are annotated or have no
//! image ([`super::layout`]), or write files.

use crate::tasks::{FrameLabels, N_AU, N_EXPR};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// What a random stream of a video is used for; each purpose draws from its own stream so that
/// changing one aspect of the simulation leaves the others' numbers unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The per-video appearance ([`super::face::Identity`]).
    Identity = 1,
    /// Valence, arousal, dominance and the expression.
    Affect = 2,
    /// Spontaneous AU events.
    Aus = 3,
    /// Head pose, gaze and blinks.
    Pose = 4,
    /// Lighting, blur and occlusion.
    Nuisance = 5,
    /// Per-frame sensor-noise seeds.
    Pixels = 6,
    /// Video length, annotated blocks, frames without image, invalid labels.
    Layout = 7,
    /// Per-video offset and per-frame noise of the synthetic features.
    Features = 8,
    /// The fixed random projection of the synthetic features (shared by all videos).
    Projection = 9,
    /// Per-video offsets and per-frame noise of the synthetic tokens.
    TokenFeatures = 10,
    /// The fixed random projection of the synthetic tokens (shared by all videos and tokens).
    TokenProjection = 11,
}

/// The random stream `purpose` of video `index` under `seed`: a ChaCha8 generator keyed by all
/// three, so videos can be simulated in any order or in parallel and give the same numbers.
pub fn video_rng(seed: u64, index: u64, purpose: Stream) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&index.to_le_bytes());
    key[16..24].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[24..].copy_from_slice(b"affsynth");
    ChaCha8Rng::from_seed(key)
}

/// Head pose and framing of one frame (small: the frames are cropped and aligned).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pose {
    /// Yaw in radians (positive: the face turns to the image's right).
    pub yaw: f32,
    /// Pitch in radians (positive: the face tilts down).
    pub pitch: f32,
    /// Roll (in-plane rotation) in radians.
    pub roll: f32,
    /// Horizontal offset of the face, as a fraction of the image width.
    pub dx: f32,
    /// Vertical offset of the face, as a fraction of the image height.
    pub dy: f32,
    /// Scale of the face (1 = nominal).
    pub scale: f32,
    /// Horizontal gaze offset of the irises, as a fraction of the eye width.
    pub gaze: f32,
}

/// Lighting of one frame, applied to the rendered pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lighting {
    /// Overall brightness factor (1 = nominal).
    pub gain: f32,
    /// Left-to-right brightness slope: brightness is multiplied by `1 + gradient * (2x - 1)`.
    pub gradient: f32,
}

/// What covers part of the face in this frame (a hand or an object).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occlusion {
    /// Centre, in face coordinates (image width = 1, origin at the image centre, y down).
    pub x: f32,
    /// Centre y, in face coordinates.
    pub y: f32,
    /// Half-width, in face coordinates.
    pub rx: f32,
    /// Half-height, in face coordinates.
    pub ry: f32,
    /// Rotation in radians.
    pub angle: f32,
    /// A hand (skin-coloured, with fingers) rather than an object.
    pub hand: bool,
    /// Colour of an object (ignored for a hand), RGB in 0..1.
    pub color: [f32; 3],
}

/// Everything about one frame: its labels and the hidden state that decides its pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameState {
    /// Frame number as in the file names, 1-based.
    pub frame: u32,
    /// Valence in [-1, 1] (rounded to 4 decimals, as written to the annotation files).
    pub valence: f32,
    /// Arousal in [-1, 1] (rounded to 4 decimals).
    pub arousal: f32,
    /// Expression class id in 0..8 (index into [`crate::EXPRESSIONS`]).
    pub expression: u8,
    /// AU labels (on/off) in [`crate::AUS`] order.
    pub aus: [bool; N_AU],
    /// AU intensities in [0, 1] that the face shows (the labels threshold these with hysteresis).
    pub au_intensity: [f32; N_AU],
    /// Eye closure from blinking, 0 (open) to 1 (closed); not a label.
    pub eye_closure: f32,
    /// Head pose and framing.
    pub pose: Pose,
    /// Lighting.
    pub light: Lighting,
    /// Gaussian blur sigma in pixels at 112 px (scaled with the image size).
    pub blur: f32,
    /// What covers part of the face, if anything.
    pub occlusion: Option<Occlusion>,
    /// Seed of this frame's sensor noise.
    pub noise_seed: u64,
}

impl FrameState {
    /// The frame's labels, all valid (the layout decides which are written as invalid).
    pub fn labels(&self) -> FrameLabels {
        FrameLabels {
            valence: Some(self.valence),
            arousal: Some(self.arousal),
            expression: Some(self.expression),
            aus: Some(self.aus),
        }
    }
}

/// Frames per second the time constants assume.
pub const FPS: f32 = 30.0;

/// Expression prototypes in (valence, arousal, dominance) space, in [`crate::EXPRESSIONS`] order.
const PROTOTYPES: [[f32; 3]; N_EXPR] = [
    [0.0, 0.0, 0.0],      // Neutral
    [-0.55, 0.55, 0.7],   // Anger
    [-0.6, 0.05, 0.35],   // Disgust
    [-0.45, 0.6, -0.7],   // Fear
    [0.6, 0.25, 0.2],     // Happiness
    [-0.55, -0.45, -0.4], // Sadness
    [0.25, 0.65, -0.35],  // Surprise
    [0.15, -0.45, 0.6],   // Other
];

/// Weight of dominance in the distance to a prototype.
const DOMINANCE_WEIGHT: f32 = 0.5;

/// Scale of the distance to Neutral (below 1: Neutral covers more of the affect space, as in
/// Aff-Wild2 where it is the most frequent expression).
const NEUTRAL_WEIGHT: f32 = 0.6;

/// How much nearer (in squared distance) a new expression must be before the label switches.
const EXPRESSION_HYSTERESIS: f32 = 0.06;

/// AU intensity each expression drives at full strength (FACS-style profiles), in AU order
/// AU1, AU2, AU4, AU6, AU7, AU10, AU12, AU15, AU23, AU24, AU25, AU26.
const AU_PROFILES: [[f32; N_AU]; N_EXPR] = [
    [0.0; N_AU],                                                    // Neutral
    [0.0, 0.0, 1.0, 0.0, 0.85, 0.3, 0.0, 0.0, 0.8, 0.6, 0.0, 0.0],  // Anger
    [0.0, 0.0, 0.7, 0.2, 0.3, 1.0, 0.0, 0.6, 0.0, 0.0, 0.4, 0.0],   // Disgust
    [1.0, 0.85, 0.7, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.4],  // Fear
    [0.0, 0.0, 0.0, 0.95, 0.2, 0.0, 1.0, 0.0, 0.0, 0.0, 0.6, 0.2],  // Happiness
    [0.95, 0.0, 0.75, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.3, 0.0, 0.0], // Sadness
    [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.95, 0.9],  // Surprise
    [0.0, 0.0, 0.3, 0.0, 0.6, 0.0, 0.35, 0.0, 0.65, 0.7, 0.0, 0.0], // Other
];

/// Base rate (events per frame) of spontaneous AU activity, in AU order (AU25/AU26: talking).
const AU_EVENT_RATES: [f32; N_AU] = [
    1.0 / 700.0,
    1.0 / 800.0,
    1.0 / 700.0,
    1.0 / 900.0,
    1.0 / 600.0,
    1.0 / 900.0,
    1.0 / 500.0,
    1.0 / 800.0,
    1.0 / 700.0,
    1.0 / 700.0,
    1.0 / 250.0,
    1.0 / 500.0,
];

/// AU intensity moves this fraction of the way to its target per frame when rising (onset).
const AU_ONSET_RATE: f32 = 0.3;
/// ... and this fraction when falling (offset).
const AU_OFFSET_RATE: f32 = 0.1;
/// An AU label switches on above this intensity ...
const AU_ON: f32 = 0.45;
/// ... and off below this one.
const AU_OFF: f32 = 0.3;

/// A discrete Ornstein-Uhlenbeck process with stationary standard deviation `sd` and
/// correlation time `tau` frames, started from its stationary distribution.
struct Ou {
    x: f32,
    phi: f32,
    innovation: f32,
}

impl Ou {
    fn new(rng: &mut ChaCha8Rng, sd: f32, tau: f32) -> Self {
        let phi = (-1.0 / tau).exp();
        Self {
            x: sd * normal(rng),
            phi,
            innovation: sd * (1.0 - phi * phi).sqrt(),
        }
    }

    fn step(&mut self, rng: &mut ChaCha8Rng) -> f32 {
        self.x = self.phi * self.x + self.innovation * normal(rng);
        self.x
    }
}

/// An Ornstein-Uhlenbeck process seen through two exponential smoothers with time constant
/// `smooth` frames each: the same slow wandering without the frame-to-frame roughness of a
/// plain OU process, like a continuous annotation made with a joystick.
struct SmoothOu {
    ou: Ou,
    y1: f32,
    y2: f32,
    alpha: f32,
}

impl SmoothOu {
    fn new(rng: &mut ChaCha8Rng, sd: f32, tau: f32, smooth: f32) -> Self {
        let ou = Ou::new(rng, sd, tau);
        Self {
            y1: ou.x,
            y2: ou.x,
            ou,
            alpha: 1.0 / smooth,
        }
    }

    fn step(&mut self, rng: &mut ChaCha8Rng) -> f32 {
        let x = self.ou.step(rng);
        self.y1 += (x - self.y1) * self.alpha;
        self.y2 += (self.y1 - self.y2) * self.alpha;
        self.y2
    }
}

/// One standard normal sample as f32.
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

/// Episodes (start, length) of a Poisson process with `rate` onsets per frame, lengths uniform
/// in `min..=max`, non-overlapping, within `n` frames.
fn episodes(
    rng: &mut ChaCha8Rng,
    n: usize,
    rate: f32,
    min: usize,
    max: usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut t = 0;
    while t < n {
        if rng.gen::<f32>() < rate {
            let len = rng.gen_range(min..=max);
            out.push((t, len.min(n - t)));
            t += len;
        } else {
            t += 1;
        }
    }
    out
}

/// Round to 4 decimals, as the annotation files print labels.
fn round4(x: f32) -> f32 {
    (x * 1e4).round() / 1e4
}

/// Squared distance of `(v, a, d)` to the prototype of expression `k`.
fn distance(k: usize, v: f32, a: f32, d: f32) -> f32 {
    let p = PROTOTYPES[k];
    let d2 = (v - p[0]).powi(2) + (a - p[1]).powi(2) + DOMINANCE_WEIGHT * (d - p[2]).powi(2);
    if k == 0 {
        NEUTRAL_WEIGHT * d2
    } else {
        d2
    }
}

/// The expression whose prototype is nearest to `(v, a, d)`, without hysteresis.
fn nearest_expression(v: f32, a: f32, d: f32) -> usize {
    (0..N_EXPR)
        .min_by(|&i, &j| distance(i, v, a, d).total_cmp(&distance(j, v, a, d)))
        .unwrap_or(0)
}

/// The nearest expression, keeping `current` unless the nearest is nearer by more than
/// [`EXPRESSION_HYSTERESIS`].
fn next_expression(current: usize, v: f32, a: f32, d: f32) -> usize {
    let best = nearest_expression(v, a, d);
    if distance(best, v, a, d) + EXPRESSION_HYSTERESIS < distance(current, v, a, d) {
        best
    } else {
        current
    }
}

/// Simulate video `index` (0-based) of the data set made with `seed`: one state per frame,
/// frames numbered 1..=n_frames. A pure function of its arguments.
pub fn simulate_video(seed: u64, index: usize, n_frames: usize) -> Vec<FrameState> {
    let index = index as u64;
    let affect = simulate_affect(seed, index, n_frames);
    let aus = simulate_aus(seed, index, &affect);
    let pose = simulate_pose(seed, index, n_frames);
    let nuisance = simulate_nuisance(seed, index, n_frames);
    let mut pixels = video_rng(seed, index, Stream::Pixels);
    (0..n_frames)
        .map(|t| {
            let (valence, arousal, _, expression) = affect[t];
            let (au_intensity, aus) = aus[t];
            let (pose, eye_closure) = pose[t];
            let (light, blur, occlusion) = nuisance[t];
            FrameState {
                frame: t as u32 + 1,
                valence: round4(valence),
                arousal: round4(arousal),
                expression: expression as u8,
                aus,
                au_intensity,
                eye_closure,
                pose,
                light,
                blur,
                occlusion,
                noise_seed: pixels.gen(),
            }
        })
        .collect()
}

/// Per frame: valence, arousal, dominance (all in [-1, 1]) and the expression.
fn simulate_affect(seed: u64, index: u64, n: usize) -> Vec<(f32, f32, f32, usize)> {
    let mut rng = video_rng(seed, index, Stream::Affect);
    let mood_v = 0.3 * normal(&mut rng);
    let mood_a = 0.25 * normal(&mut rng);
    let mood_d = 0.3 * normal(&mut rng);
    let mut ou_v = SmoothOu::new(&mut rng, 0.95, 5.0 * FPS, 20.0);
    let mut ou_a = SmoothOu::new(&mut rng, 0.9, 4.0 * FPS, 20.0);
    let mut ou_d = SmoothOu::new(&mut rng, 1.0, 3.5 * FPS, 20.0);
    let mut expression = None;
    (0..n)
        .map(|_| {
            let v = (mood_v + ou_v.step(&mut rng)).tanh();
            let a = (mood_a + ou_a.step(&mut rng)).tanh();
            let d = (mood_d + ou_d.step(&mut rng)).tanh();
            let e = match expression {
                None => nearest_expression(v, a, d),
                Some(current) => next_expression(current, v, a, d),
            };
            expression = Some(e);
            (v, a, d, e)
        })
        .collect()
}

/// Per frame: AU intensities and labels. Targets come from the expression's profile (ramped in
/// after each change of expression, scaled by arousal) and from spontaneous events.
fn simulate_aus(
    seed: u64,
    index: u64,
    affect: &[(f32, f32, f32, usize)],
) -> Vec<([f32; N_AU], [bool; N_AU])> {
    let n = affect.len();
    let mut rng = video_rng(seed, index, Stream::Aus);
    // Spontaneous events: per-video propensity times the base rate; (start, length, amplitude).
    let mut events = vec![0.0f32; n * N_AU];
    for (j, base) in AU_EVENT_RATES.iter().enumerate() {
        let propensity = rng.gen_range(0.3f32..2.0);
        for (start, len) in episodes(&mut rng, n, base * propensity, 12, 60) {
            let amplitude = rng.gen_range(0.6f32..1.0);
            for t in start..start + len {
                events[t * N_AU + j] = amplitude;
            }
        }
    }
    let mut intensity = [0.0f32; N_AU];
    let mut on = [false; N_AU];
    let mut strength = 0.0f32;
    let mut previous = usize::MAX;
    let mut out = Vec::with_capacity(n);
    for (t, &(_, a, _, e)) in affect.iter().enumerate() {
        if e != previous {
            // A new expression builds up over a few frames.
            strength = if previous == usize::MAX { 1.0 } else { 0.0 };
            previous = e;
        }
        strength += (1.0 - strength) * 0.15;
        let drive = strength * (0.8 + 0.2 * a);
        for j in 0..N_AU {
            let target = (AU_PROFILES[e][j] * drive).max(events[t * N_AU + j]);
            let rate = if target > intensity[j] {
                AU_ONSET_RATE
            } else {
                AU_OFFSET_RATE
            };
            intensity[j] += (target - intensity[j]) * rate;
            if t == 0 {
                intensity[j] = target;
            }
            on[j] = if on[j] {
                intensity[j] >= AU_OFF
            } else {
                intensity[j] > AU_ON
            };
        }
        out.push((intensity, on));
    }
    out
}

/// Per frame: head pose (with gaze) and eye closure from blinks.
fn simulate_pose(seed: u64, index: u64, n: usize) -> Vec<(Pose, f32)> {
    let mut rng = video_rng(seed, index, Stream::Pose);
    let yaw_bias = 0.08 * normal(&mut rng);
    let mut yaw = Ou::new(&mut rng, 0.12, 1.5 * FPS);
    let mut pitch = Ou::new(&mut rng, 0.07, 1.5 * FPS);
    let mut roll = Ou::new(&mut rng, 0.05, 2.0 * FPS);
    let mut dx = Ou::new(&mut rng, 0.012, 1.0 * FPS);
    let mut dy = Ou::new(&mut rng, 0.012, 1.0 * FPS);
    let mut scale = Ou::new(&mut rng, 0.025, 2.0 * FPS);
    let mut gaze = Ou::new(&mut rng, 0.25, 0.7 * FPS);
    let blink_rate = rng.gen_range(1.0f32 / 150.0..1.0 / 70.0);
    let mut closure = vec![0.0f32; n];
    for (start, _) in episodes(&mut rng, n, blink_rate, 5, 5) {
        for (k, c) in [0.5f32, 1.0, 0.9, 0.4].iter().enumerate() {
            if start + k < n {
                closure[start + k] = *c;
            }
        }
    }
    let jitter = |rng: &mut ChaCha8Rng, sd: f32| sd * normal(rng);
    (0..n)
        .map(|t| {
            let pose = Pose {
                yaw: yaw_bias + yaw.step(&mut rng) + jitter(&mut rng, 0.01),
                pitch: pitch.step(&mut rng) + jitter(&mut rng, 0.008),
                roll: roll.step(&mut rng) + jitter(&mut rng, 0.006),
                dx: dx.step(&mut rng) + jitter(&mut rng, 0.002),
                dy: dy.step(&mut rng) + jitter(&mut rng, 0.002),
                scale: 1.0 + scale.step(&mut rng),
                gaze: gaze.step(&mut rng).clamp(-0.5, 0.5),
            };
            (pose, closure[t])
        })
        .collect()
}

/// Per frame: lighting, blur sigma and occlusion.
fn simulate_nuisance(seed: u64, index: u64, n: usize) -> Vec<(Lighting, f32, Option<Occlusion>)> {
    let mut rng = video_rng(seed, index, Stream::Nuisance);
    let base_gain = rng.gen_range(0.8f32..1.15);
    let base_gradient = rng.gen_range(-0.2f32..0.2);
    let base_blur = rng.gen_range(0.0f32..0.6);
    let mut gain = Ou::new(&mut rng, 0.08, 3.0 * FPS);
    let mut gradient = Ou::new(&mut rng, 0.05, 3.0 * FPS);
    let mut blur = vec![base_blur; n];
    for (start, len) in episodes(&mut rng, n, 1.0 / 180.0, 4, 12) {
        let extra = rng.gen_range(0.8f32..1.8);
        for b in &mut blur[start..start + len] {
            *b += extra;
        }
    }
    let mut occlusion = vec![None; n];
    for (start, len) in episodes(&mut rng, n, 1.0 / 300.0, 8, 40) {
        let hand = rng.gen_bool(0.65);
        // Where: over the mouth (most often), over an eye, or across the lower face.
        let (x, y) = match rng.gen_range(0..4) {
            0 | 1 => (rng.gen_range(-0.06f32..0.06), rng.gen_range(0.14f32..0.22)),
            2 => (rng.gen_range(-0.16f32..0.16), rng.gen_range(-0.07f32..0.0)),
            _ => (rng.gen_range(-0.2f32..0.2), rng.gen_range(0.05f32..0.3)),
        };
        let (vx, vy) = (0.002 * normal(&mut rng), 0.002 * normal(&mut rng));
        let shape = Occlusion {
            x,
            y,
            rx: rng.gen_range(0.08f32..0.14),
            ry: rng.gen_range(0.06f32..0.1),
            angle: rng.gen_range(-0.6f32..0.6),
            hand,
            color: [rng.gen(), rng.gen(), rng.gen()],
        };
        for (k, o) in occlusion[start..start + len].iter_mut().enumerate() {
            let k = k as f32;
            *o = Some(Occlusion {
                x: shape.x + vx * k,
                y: shape.y + vy * k,
                ..shape
            });
        }
    }
    (0..n)
        .map(|t| {
            let light = Lighting {
                gain: base_gain * gain.step(&mut rng).exp(),
                gradient: base_gradient + gradient.step(&mut rng),
            };
            (light, blur[t], occlusion[t])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_arguments_same_states_and_videos_differ() {
        let a = simulate_video(7, 3, 200);
        assert_eq!(a, simulate_video(7, 3, 200));
        assert_ne!(a, simulate_video(7, 4, 200));
        assert_ne!(a, simulate_video(8, 3, 200));
        assert_eq!(a.len(), 200);
        assert_eq!((a[0].frame, a[199].frame), (1, 200));
    }

    #[test]
    fn labels_are_in_range() {
        for s in simulate_video(1, 0, 500) {
            assert!((-1.0..=1.0).contains(&s.valence) && (-1.0..=1.0).contains(&s.arousal));
            assert!((s.expression as usize) < N_EXPR);
            assert!(s.au_intensity.iter().all(|i| (0.0..=1.0).contains(i)));
            assert_eq!(s.labels().aus, Some(s.aus));
        }
    }

    #[test]
    fn hysteresis_keeps_the_current_expression_near_a_tie() {
        // On the segment from Neutral (0,0,0) to Happiness (0.6,0.25,0.2), where the two are
        // equally near (Neutral's distance is scaled by 0.6): s = 1 / (1 + sqrt(0.6)).
        let s = 1.0 / (1.0 + 0.6f32.sqrt());
        let (v, a, d) = (0.6 * s, 0.25 * s, 0.2 * s);
        assert!((distance(0, v, a, d) - distance(4, v, a, d)).abs() < 1e-6);
        assert_eq!(next_expression(0, v, a, d), 0);
        assert_eq!(next_expression(4, v, a, d), 4);
        // Right on the Happiness prototype, Neutral gives way.
        assert_eq!(next_expression(0, 0.6, 0.25, 0.2), 4);
    }
}
