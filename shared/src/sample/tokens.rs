//! Synthetic tokens: a token feature cache (backbone `synthetic-tokens`) shaped like a backbone's
//! spatial map, computed from the latent state, so token systems (per-token attention, per-AU
//! features pooled over tokens, an AU graph) are tested on data whose AUs live in places.
//!
//! What it does: per frame with an image and per token `t`,
//! `x_t = W^T (g_t * (z + e)) + o_t + n` (`*` elementwise), with `z` the frame's latent vector
//! and `e` its latent-space noise ([`super::features::latent_vector`], noise as for the pooled
//! synthetic features, one draw per frame: a token sees its region of the noisy state),
//! `g_t` the token's gains (below), `W` one fixed random projection shared by all
//! tokens (a 1x1 convolution: a channel means the same at every position), `o_t` a per-video,
//! per-token offset (identity: a person's eyes and mouth differ) and `n` per-value noise. The
//! file holds `/features` of shape (frames with an image, tokens, dim).
//!
//! The layout ([`TokenLayout`]): tokens tile the aligned face crop row-major in a grid of
//! `ceil(sqrt(N))` rows (rows before columns: the upper/lower split matters most). Each AU (and
//! eye closure) has one or two sites in the face coordinates of [`super::face`] (AU1 inner
//! brows and mid forehead, AU2 outer brows, AU4 glabella, AU6 cheeks below the eyes, AU7 and eye
//! closure the eyes, AU10 above the upper lip, AU12 lip corners, AU15 below them, AU23/AU24/AU25
//! the lips, AU26 the chin); its region is the tokens nearest to its sites, `max(1,
//! round(N / 25))` per site (about 4% of the crop each, ties included, so symmetric sites give
//! symmetric regions). Gains: an AU (or eye closure) counts 1 in its region tokens and
//! [`OUTSIDE_GAIN`] (0.1) elsewhere; valence, arousal, the expression, pose, lighting and
//! occlusion count [`GLOBAL_GAIN`] (0.5) in every token. The layout depends on N only (not on
//! the seed): faces are aligned, so an AU is in the same place in every video. With 7 x 7 = 49
//! tokens (IResNet's map; row-major, token 0 top left) the regions are
//! ```text
//! AU1 10 17          AU2 15 16 18 19    AU4 17 24          AU6 22 23 25 26
//! AU7 16 18 23 25    AU10 24 31         AU12 30 31 32 37 39
//! AU15 30 32 37 39   AU23, AU24, AU25 31 38                AU26 38 45
//! eye closure 16 18 23 25
//! ```
//! so the upper-face AUs (1, 2, 4, 6, 7) lie in rows 1-3 and the lower-face AUs in rows 3-6
//! (AU10, at the nose, reaches row 3); neighbouring AUs share tokens, as on a face.
//!
//! What it does not: look at pixels, move regions with head pose, or decide file names (that is
//! [`crate::cache`]).

use super::features::{
    fill_latents, frames_with_image, random_projection, FEATURE_NOISE, LATENT_AU, LATENT_DIM,
    LATENT_EYE_CLOSURE, VIDEO_OFFSET,
};
use super::latent::{normal, video_rng, FrameState, Stream};
use super::layout::VideoPlan;
use crate::cache::{CacheAttrs, Dtype, VideoFeatures};
use crate::tasks::N_AU;
use ndarray::{s, Array2, Array3};
use std::fmt::Write as _;

/// Backbone (and cache folder) name of the synthetic tokens.
pub const BACKBONE: &str = "synthetic-tokens";

/// Token width when none is given (`--token-dim`).
pub const DEFAULT_TOKEN_DIM: usize = 32;

/// Gain of an AU (or eye closure) in the tokens outside its region.
pub const OUTSIDE_GAIN: f32 = 0.1;

/// Gain of the global parts (valence, arousal, expression, pose, lighting, occlusion) in every
/// token.
pub const GLOBAL_GAIN: f32 = 0.5;

/// Tokens per site: one per this many tokens (at least one).
const TOKENS_PER_SITE_DIVISOR: f32 = 25.0;

/// Where each local part of the latent vector shows: the 12 AUs in [`crate::AUS`] order, then eye
/// closure; points in face coordinates as [`super::face`] draws them (image width 1, origin at
/// the image centre, y down).
const SITES: [&[(f32, f32)]; N_AU + 1] = [
    &[(0.0, -0.17)],                  // AU1: inner brows, mid forehead
    &[(-0.17, -0.15), (0.17, -0.15)], // AU2: outer brows
    &[(0.0, -0.1)],                   // AU4: glabella
    &[(-0.16, 0.0), (0.16, 0.0)],     // AU6: cheeks below the eyes
    &[(-0.12, -0.05), (0.12, -0.05)], // AU7: eyes
    &[(0.0, 0.11)],                   // AU10: above the upper lip
    &[(-0.12, 0.15), (0.12, 0.15)],   // AU12: lip corners
    &[(-0.1, 0.22), (0.1, 0.22)],     // AU15: below the lip corners
    &[(0.0, 0.175)],                  // AU23: lips
    &[(0.0, 0.175)],                  // AU24: lips
    &[(0.0, 0.19)],                   // AU25: lips
    &[(0.0, 0.3)],                    // AU26: chin
    &[(-0.12, -0.05), (0.12, -0.05)], // eye closure: eyes
];

/// Which tokens carry which part of the latent state (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLayout {
    /// Rows of the token grid.
    pub rows: usize,
    /// Columns of the token grid (the last row may be short).
    pub cols: usize,
    /// Region of each AU ([`crate::AUS`] order), then of eye closure: token indices, ascending.
    pub regions: Vec<Vec<usize>>,
    /// Gain of each latent part in each token, (tokens, LATENT_DIM).
    pub gains: Array2<f32>,
}

impl TokenLayout {
    /// The layout of `tokens` tokens (at least 1).
    pub fn new(tokens: usize) -> Self {
        let tokens = tokens.max(1);
        let rows = (tokens as f64).sqrt().ceil() as usize;
        let cols = tokens.div_ceil(rows);
        let centre = |t: usize| {
            let (r, c) = (t / cols, t % cols);
            (
                (c as f32 + 0.5) / cols as f32 - 0.5,
                (r as f32 + 0.5) / rows as f32 - 0.5,
            )
        };
        let per_site = ((tokens as f32 / TOKENS_PER_SITE_DIVISOR).round() as usize).max(1);
        let regions: Vec<Vec<usize>> = SITES
            .iter()
            .map(|sites| {
                let distance: Vec<f32> = (0..tokens)
                    .map(|t| {
                        let (x, y) = centre(t);
                        sites
                            .iter()
                            .map(|&(sx, sy)| (x - sx).hypot(y - sy))
                            .fold(f32::INFINITY, f32::min)
                    })
                    .collect();
                let mut sorted = distance.clone();
                sorted.sort_by(f32::total_cmp);
                let k = (per_site * sites.len()).min(tokens);
                let limit = sorted[k - 1] + 1e-6;
                (0..tokens).filter(|&t| distance[t] <= limit).collect()
            })
            .collect();
        let mut gains = Array2::from_elem((tokens, LATENT_DIM), GLOBAL_GAIN);
        for (part, region) in regions.iter().enumerate() {
            let j = if part < N_AU {
                LATENT_AU + part
            } else {
                LATENT_EYE_CLOSURE
            };
            gains.column_mut(j).fill(OUTSIDE_GAIN);
            for &t in region {
                gains[[t, j]] = 1.0;
            }
        }
        Self {
            rows,
            cols,
            regions,
            gains,
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.gains.nrows()
    }

    /// Always false: a layout has at least one token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One line per AU: `AU12: tokens 30 31 32 37 39` (row-major indices), for the README.
    pub fn describe(&self) -> String {
        let mut t = String::new();
        let names = crate::AUS.iter().copied().chain(["eye closure"]);
        for (name, region) in names.zip(&self.regions) {
            let tokens: Vec<String> = region.iter().map(usize::to_string).collect();
            let _ = writeln!(t, "{name}: tokens {}", tokens.join(" "));
        }
        t
    }
}

/// What every video's tokens share: the layout and the projection `W` (LATENT_DIM x dim).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenModel {
    /// Which tokens carry which part of the latent state.
    pub layout: TokenLayout,
    /// The projection shared by all tokens, drawn from the seed alone.
    pub projection: Array2<f32>,
}

impl TokenModel {
    /// The model of the data set made with `seed`: `tokens` tokens of width `dim`.
    pub fn new(seed: u64, tokens: usize, dim: usize) -> Self {
        Self {
            layout: TokenLayout::new(tokens),
            projection: random_projection(seed, Stream::TokenProjection, dim),
        }
    }

    /// Token width.
    pub fn dim(&self) -> usize {
        self.projection.ncols()
    }
}

/// The cache attributes of the synthetic tokens (`tokens` x `dim`, stored as `dtype`) made with
/// `seed`.
pub fn cache_attrs(seed: u64, tokens: usize, dim: usize, dtype: Dtype) -> CacheAttrs {
    let layout = TokenLayout::new(tokens);
    CacheAttrs {
        backbone: BACKBONE.to_owned(),
        dim,
        input_size: 0,
        dtype,
        preprocessing: format!(
            "latent projection, {tokens} tokens ({} x {} face regions)",
            layout.rows, layout.cols
        ),
        weights: format!("seed:{seed}"),
        source: format!(
            "extractor sample-data --seed {seed} --synthetic-tokens {tokens} (latent state, no pixels)"
        ),
        tool_version: crate::TOOL_VERSION.to_owned(),
    }
}

/// The synthetic tokens of one video: shape (frames with an image, tokens, dim).
pub fn video_tokens(
    seed: u64,
    plan: &VideoPlan,
    states: &[FrameState],
    model: &TokenModel,
) -> VideoFeatures {
    let (tokens, dim) = (model.layout.len(), model.dim());
    let mut rng = video_rng(seed, plan.index as u64, Stream::TokenFeatures);
    let offset = Array2::from_shape_simple_fn((tokens, dim), || VIDEO_OFFSET * normal(&mut rng));
    let kept = frames_with_image(plan, states);
    let z = fill_latents(Array2::zeros((kept.len(), LATENT_DIM)), &kept, &mut rng);
    let mut x = Array3::zeros((kept.len(), tokens, dim));
    for (t, gains) in model.layout.gains.rows().into_iter().enumerate() {
        x.slice_mut(s![.., t, ..])
            .assign(&(&z * &gains).dot(&model.projection));
    }
    for mut frame in x.outer_iter_mut() {
        for (v, o) in frame.iter_mut().zip(&offset) {
            *v += o + FEATURE_NOISE * normal(&mut rng);
        }
    }
    VideoFeatures {
        frames: kept.iter().map(|s| s.frame as i32).collect(),
        features: x.into_dyn(),
        missing: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::latent::simulate_video;
    use crate::sample::{generate, plan_videos, SampleConfig};
    use ndarray::{ArrayView1, Axis};

    fn pearson(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len() as f32;
        let (mx, my) = (x.iter().sum::<f32>() / n, y.iter().sum::<f32>() / n);
        let cov: f32 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sx: f32 = x.iter().map(|a| (a - mx).powi(2)).sum::<f32>().sqrt();
        let sy: f32 = y.iter().map(|b| (b - my).powi(2)).sum::<f32>().sqrt();
        cov / (sx * sy)
    }

    #[test]
    fn the_grid_has_rows_first_and_upper_face_aus_sit_above_lower_face_aus() {
        for (n, rows, cols) in [(1, 1, 1), (2, 2, 1), (4, 2, 2), (5, 3, 2), (49, 7, 7)] {
            let layout = TokenLayout::new(n);
            assert_eq!((layout.rows, layout.cols, layout.len()), (rows, cols, n));
            assert_eq!(layout.gains.dim(), (n, LATENT_DIM));
            assert!(layout.regions.iter().all(|r| !r.is_empty()));
        }
        let layout = TokenLayout::new(49);
        // As the module docs list them.
        let documented: [&[usize]; N_AU + 1] = [
            &[10, 17],
            &[15, 16, 18, 19],
            &[17, 24],
            &[22, 23, 25, 26],
            &[16, 18, 23, 25],
            &[24, 31],
            &[30, 31, 32, 37, 39],
            &[30, 32, 37, 39],
            &[31, 38],
            &[31, 38],
            &[31, 38],
            &[38, 45],
            &[16, 18, 23, 25],
        ];
        assert_eq!(layout.regions, documented.map(<[usize]>::to_vec));
        let row = |t: &usize| t / 7;
        // AU1, AU2, AU4, AU6, AU7 in rows 1-3; AU10 ... AU26 in rows 3-6.
        for (j, region) in layout.regions[..N_AU].iter().enumerate() {
            let upper = j < 5;
            assert!(
                region.iter().all(|t| if upper {
                    (1..=3).contains(&row(t))
                } else {
                    (3..=6).contains(&row(t))
                }),
                "{}: {region:?}",
                crate::AUS[j]
            );
            assert!((2..=5).contains(&region.len()), "{region:?}");
        }
        // Bilateral sites give left-right symmetric regions.
        for region in &layout.regions {
            for t in region {
                assert!(region.contains(&(row(t) * 7 + 6 - t % 7)), "{region:?}");
            }
        }
        // Gains: 1 in the region, 0.1 elsewhere; the global parts 0.5 everywhere.
        let au12 = LATENT_AU + 6;
        for t in 0..49 {
            let want = if layout.regions[6].contains(&t) {
                1.0
            } else {
                OUTSIDE_GAIN
            };
            assert_eq!(layout.gains[[t, au12]], want);
            assert_eq!(layout.gains[[t, 0]], GLOBAL_GAIN);
            assert_eq!(layout.gains[[t, LATENT_DIM - 1]], GLOBAL_GAIN);
        }
        // With 4 tokens, the upper-face AUs are in the top row only.
        let four = TokenLayout::new(4);
        assert_eq!(four.regions[0], vec![0, 1]);
        assert_eq!(four.regions[11], vec![2, 3]);
    }

    /// The dual basis of the rows of `w` (LATENT_DIM x dim, full row rank):
    /// `(W W^T)^-1 W`, whose row `j` read against a token gives the token's latent coordinate
    /// `j` by least squares, without the cross-talk of the other coordinates.
    fn dual_basis(w: &Array2<f32>) -> Array2<f32> {
        let w = w.mapv(f64::from);
        let n = w.nrows();
        // Gauss-Jordan on [W W^T | W].
        let mut a = ndarray::concatenate(Axis(1), &[w.dot(&w.t()).view(), w.view()]).unwrap();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&p, &q| a[[p, col]].abs().total_cmp(&a[[q, col]].abs()))
                .unwrap();
            for k in 0..a.ncols() {
                a.swap([col, k], [pivot, k]);
            }
            let p = a[[col, col]];
            a.row_mut(col).mapv_inplace(|v| v / p);
            let pivot_row = a.row(col).to_owned();
            for r in (0..n).filter(|&r| r != col) {
                let f = a[[r, col]];
                a.row_mut(r).scaled_add(-f, &pivot_row);
            }
        }
        a.slice(s![.., n..]).mapv(|v| v as f32)
    }

    #[test]
    fn each_au_is_strongest_in_its_region_tokens() {
        // Over many frames of many videos, read each token's AU coordinate by least squares
        // (the dual basis of `W`: a plain projection onto the AU's row of `W` also picks up the
        // expression, which is in every token and goes with the AU) and correlate it with the
        // AU's intensity: every region token of the AU must correlate clearly more than every
        // other token.
        let cfg = SampleConfig {
            videos: 24,
            frames: 300,
            synthetic_tokens: Some(49),
            token_dim: 64,
            equal_lengths: true,
            ..SampleConfig::default()
        };
        let model = TokenModel::new(cfg.seed, 49, 64);
        let dual = dual_basis(&model.projection);
        assert!(dual
            .dot(&model.projection.t())
            .indexed_iter()
            .all(|((i, j), v)| (v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-3));
        // Per video: the tokens read in latent coordinates (frames, tokens, LATENT_DIM) and the
        // AU intensities of the same frames (frames, N_AU).
        let videos: Vec<(Array3<f32>, Array2<f32>)> = plan_videos(&cfg)
            .iter()
            .map(|plan| {
                let states = simulate_video(cfg.seed, plan.index, plan.n_frames);
                let x = video_tokens(cfg.seed, plan, &states, &model).features;
                let (n, tokens, dim) = (x.shape()[0], x.shape()[1], x.shape()[2]);
                let x = x.into_shape_with_order((n * tokens, dim)).unwrap();
                let z = x
                    .dot(&dual.t())
                    .into_shape_with_order((n, tokens, LATENT_DIM));
                let kept = frames_with_image(plan, &states);
                let a = Array2::from_shape_fn((n, N_AU), |(f, j)| kept[f].au_intensity[j]);
                (z.unwrap(), a)
            })
            .collect();
        // Centred within each video: the correlation is over frames, not between identities
        // (the per-video offsets would otherwise meet per-video moods by chance).
        let centred = |v: ArrayView1<f32>| -> Vec<f32> {
            let m = v.mean().unwrap();
            v.iter().map(|x| x - m).collect()
        };
        for j in 0..N_AU {
            let a: Vec<f32> = videos
                .iter()
                .flat_map(|(_, a)| centred(a.column(j)))
                .collect();
            let r: Vec<f32> = (0..49)
                .map(|t| {
                    let read: Vec<f32> = videos
                        .iter()
                        .flat_map(|(z, _)| centred(z.slice(s![.., t, LATENT_AU + j])))
                        .collect();
                    pearson(&read, &a)
                })
                .collect();
            let region = &model.layout.regions[j];
            let inside = region.iter().map(|&t| r[t]).fold(f32::INFINITY, f32::min);
            let outside = (0..49)
                .filter(|t| !region.contains(t))
                .map(|t| r[t])
                .fold(f32::NEG_INFINITY, f32::max);
            eprintln!(
                "{}: region {region:?} r >= {inside:.3}, elsewhere r <= {outside:.3}",
                crate::AUS[j]
            );
            assert!(inside > 0.35, "{}: {inside}", crate::AUS[j]);
            assert!(
                inside > outside + 0.15,
                "{}: {inside} vs {outside}",
                crate::AUS[j]
            );
        }
    }

    #[test]
    fn token_features_have_the_requested_shape_and_skip_frames_without_image() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SampleConfig {
            videos: 3,
            frames: 200,
            synthetic_tokens: Some(6),
            token_dim: 5,
            write_frames: false,
            equal_lengths: true,
            ..SampleConfig::default()
        };
        let summary = generate(dir.path(), &cfg).unwrap();
        assert_eq!((summary.token_files, summary.feature_files), (3, 0));
        assert!(!summary.paths.features.join("synthetic").exists());
        let model = TokenModel::new(cfg.seed, 6, 5);
        let mut skipped = 0;
        for plan in plan_videos(&cfg) {
            let path = crate::cache::video_path(&summary.paths.features, BACKBONE, &plan.id);
            let (attrs, got) = crate::cache::read_video(&path).unwrap();
            assert_eq!(attrs, cache_attrs(cfg.seed, 6, 5, cfg.token_dtype));
            assert_eq!(
                (attrs.backbone.as_str(), attrs.dim),
                ("synthetic-tokens", 5)
            );
            let with_image: Vec<i32> = (1..=200)
                .filter(|&f| plan.has_image[f as usize - 1])
                .collect();
            skipped += 200 - with_image.len();
            assert_eq!(got.frames, with_image);
            assert_eq!(got.features.shape(), &[with_image.len(), 6, 5]);
            let states = simulate_video(cfg.seed, plan.index, plan.n_frames);
            let want = video_tokens(cfg.seed, &plan, &states, &model);
            // stored as f16 (the default): the generated values rounded to float16
            let rounded = want.features.mapv(|x| f32::from(half::f16::from_f32(x)));
            assert_eq!(got.features, rounded);
        }
        assert!(skipped > 0, "no frame without image to skip");
        let readme = std::fs::read_to_string(&summary.paths.readme).unwrap();
        assert!(
            readme.contains("--synthetic-tokens 6 --token-dim 5"),
            "{readme}"
        );
        assert!(
            readme.contains("features/synthetic-tokens/<video>.h5"),
            "{readme}"
        );
        assert!(readme.contains("AU12: tokens"), "{readme}");
    }

    #[test]
    fn tokens_and_pooled_features_are_independent_of_each_other() {
        // Asking for tokens too leaves the pooled features unchanged, and the other way round.
        let both = SampleConfig {
            videos: 3,
            frames: 40,
            synthetic_features: Some(4),
            synthetic_tokens: Some(3),
            token_dim: 4,
            write_frames: false,
            ..SampleConfig::default()
        };
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let features_only = SampleConfig {
            synthetic_tokens: None,
            ..both.clone()
        };
        let tokens_only = SampleConfig {
            synthetic_features: None,
            ..both.clone()
        };
        let s_both = generate(dirs[0].path(), &both).unwrap();
        let s_features = generate(dirs[1].path(), &features_only).unwrap();
        let s_tokens = generate(dirs[2].path(), &tokens_only).unwrap();
        assert_eq!((s_both.feature_files, s_both.token_files), (3, 3));
        assert_eq!((s_features.feature_files, s_features.token_files), (3, 0));
        assert_eq!((s_tokens.feature_files, s_tokens.token_files), (0, 3));
        for id in &s_both.train {
            let read = |dir: &std::path::Path, backbone: &str| {
                let path = crate::cache::video_path(&dir.join("features"), backbone, id);
                std::fs::read(path).unwrap()
            };
            assert_eq!(
                read(dirs[0].path(), "synthetic"),
                read(dirs[1].path(), "synthetic")
            );
            assert_eq!(
                read(dirs[0].path(), BACKBONE),
                read(dirs[2].path(), BACKBONE)
            );
        }
    }

    #[test]
    fn same_arguments_give_identical_token_files_and_other_token_flags_make_them_stale() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let cfg = SampleConfig {
            videos: 3,
            frames: 30,
            synthetic_tokens: Some(4),
            token_dim: 3,
            write_frames: false,
            ..SampleConfig::default()
        };
        generate(a.path(), &cfg).unwrap();
        generate(b.path(), &cfg).unwrap();
        let files = |root: &std::path::Path| -> Vec<(String, Vec<u8>)> {
            let dir = root.join("features").join(BACKBONE);
            let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| {
                    let path = e.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&path).unwrap())
                })
                .collect();
            out.sort();
            out
        };
        let first = files(a.path());
        assert_eq!(first.len(), 3);
        assert_eq!(first, files(b.path()));
        // A rerun with the same arguments keeps other caches; another width or token count makes
        // the earlier caches stale.
        std::fs::create_dir_all(a.path().join("features/hog")).unwrap();
        assert!(generate(a.path(), &cfg).unwrap().removed_stale.is_empty());
        assert!(a.path().join("features/hog").is_dir());
        assert_eq!(first, files(a.path()));
        for other in [
            SampleConfig {
                token_dim: 5,
                ..cfg.clone()
            },
            SampleConfig {
                synthetic_tokens: Some(9),
                ..cfg.clone()
            },
        ] {
            std::fs::create_dir_all(a.path().join("features/hog")).unwrap();
            let summary = generate(a.path(), &other).unwrap();
            assert_eq!(summary.removed_stale, vec![a.path().join("features")]);
            assert!(!a.path().join("features/hog").exists());
            let (_, got) = crate::cache::read_video(&crate::cache::video_path(
                &a.path().join("features"),
                BACKBONE,
                &summary.train[0],
            ))
            .unwrap();
            let want = other.synthetic_tokens.unwrap();
            assert_eq!(&got.features.shape()[1..], &[want, other.token_dim]);
        }
    }

    #[test]
    fn zero_tokens_or_zero_width_are_errors_that_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        for (cfg, expected) in [
            (
                SampleConfig {
                    synthetic_tokens: Some(0),
                    ..SampleConfig::default()
                },
                "--synthetic-tokens 0",
            ),
            (
                SampleConfig {
                    synthetic_tokens: Some(4),
                    token_dim: 0,
                    ..SampleConfig::default()
                },
                "--token-dim 0",
            ),
        ] {
            let err = generate(dir.path(), &cfg).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("at least 1"), "{err}");
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
