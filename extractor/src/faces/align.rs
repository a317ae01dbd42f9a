//! Five-point face alignment: a similarity transform onto the ArcFace template, and a bilinear warp.
//!
//! What it does: [`umeyama`] fits the least-squares similarity transform (rotation, uniform
//! scale, translation; no reflection, no shear) taking five detected landmarks onto
//! [`template`]: insightface's ArcFace 112 x 112 template ([`ARCFACE_112`], the alignment behind
//! the ABAW cropped-aligned frames) multiplied by `size / 112` for another output size (224,
//! ...). In 2-d, Umeyama's SVD solution equals the closed form used here (the complex
//! least-squares fit `a + ib = sum(conj(s) d) / sum(|s|^2)` of centred points); the unit tests
//! check a known transform is recovered. [`warp`] fills every output pixel `(u, v)` (integer
//! coordinates, the convention of the landmarks and of OpenCV's `warpAffine`) with the bilinear
//! sample of the frame at the inverse transform of `(u, v)`; pixels outside the frame count as
//! black (OpenCV's constant border 0).
//!
//! What it does not: detect landmarks ([`super::mtcnn`]), choose which face ([`super::track`]),
//! or add insightface's +8 px x offset of its 128 px variant (every size is the scaled 112 one).

/// insightface's ArcFace template for 112 x 112: left eye, right eye, nose, mouth left, mouth
/// right (`[x, y]` pixels).
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The template for a `size x size` output: [`ARCFACE_112`] times `size / 112`.
pub fn template(size: u32) -> [[f32; 2]; 5] {
    let k = size as f32 / 112.0;
    ARCFACE_112.map(|[x, y]| [x * k, y * k])
}

/// `x' = a x - b y + tx`, `y' = b x + a y + ty`: rotation by `atan2(b, a)`, scale `|(a, b)|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f64,
    /// `scale * sin(angle)`.
    pub b: f64,
    /// x translation.
    pub tx: f64,
    /// y translation.
    pub ty: f64,
}

impl Similarity {
    /// The image of point `p`.
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The inverse transform; `None` if the scale is 0.
    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if d <= f64::EPSILON || !d.is_finite() {
            return None;
        }
        let (a, b) = (self.a / d, -self.b / d);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// The least-squares similarity transform taking `src` onto `dst` (Umeyama, no reflection).
/// `None` when the source points all coincide.
pub fn umeyama(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
    assert_eq!(
        src.len(),
        dst.len(),
        "umeyama: as many source as target points"
    );
    let n = src.len() as f64;
    let mean = |p: &[[f32; 2]]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| {
            (x + f64::from(q[0]), y + f64::from(q[1]))
        });
        [sx / n, sy / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s[0]) - ms[0], f64::from(s[1]) - ms[1]);
        let (dx, dy) = (f64::from(d[0]) - md[0], f64::from(d[1]) - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    if var <= 1e-12 {
        return None;
    }
    let (a, b) = (dot / var, cross / var);
    Some(Similarity {
        a,
        b,
        tx: md[0] - (a * ms[0] - b * ms[1]),
        ty: md[1] - (b * ms[0] + a * ms[1]),
    })
}

/// The transform taking `landmarks` onto [`template`]`(size)`.
pub fn to_template(landmarks: &[[f32; 2]; 5], size: u32) -> Option<Similarity> {
    umeyama(landmarks, &template(size))
}

/// The `size x size` RGB image (interleaved bytes) that `m` (frame to output coordinates)
/// makes of the `w x h` RGB frame `rgb`, bilinear, black outside the frame. `None` if `m`
/// cannot be inverted.
pub fn warp(rgb: &[u8], w: usize, h: usize, m: &Similarity, size: u32) -> Option<Vec<u8>> {
    assert_eq!(rgb.len(), 3 * w * h, "warp: the frame is not {w}x{h} RGB");
    let inv = m.inverse()?;
    let s = size as usize;
    let mut out = vec![0u8; 3 * s * s];
    let px = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            0.0
        } else {
            f64::from(rgb[3 * (y as usize * w + x as usize) + c])
        }
    };
    for v in 0..s {
        for u in 0..s {
            let [x, y] = inv.apply([u as f64, v as f64]);
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            if x0 < -1 || y0 < -1 || x0 >= w as i64 || y0 >= h as i64 {
                continue;
            }
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
                let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
                let value = top * (1.0 - fy) + bottom * fy;
                out[3 * (v * s + u) + c] = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_similarity_transform_is_recovered_from_five_points() {
        let truth = Similarity {
            a: 1.7 * 0.3f64.cos(),
            b: 1.7 * 0.3f64.sin(),
            tx: 40.0,
            ty: -12.5,
        };
        let src = ARCFACE_112;
        let dst: Vec<[f32; 2]> = src
            .iter()
            .map(|p| {
                let q = truth.apply([f64::from(p[0]), f64::from(p[1])]);
                [q[0] as f32, q[1] as f32]
            })
            .collect();
        let got = umeyama(&src, &dst).unwrap();
        for (g, t) in [
            (got.a, truth.a),
            (got.b, truth.b),
            (got.tx, truth.tx),
            (got.ty, truth.ty),
        ] {
            assert!((g - t).abs() < 1e-4, "{got:?} vs {truth:?}");
        }
        let back = got.inverse().unwrap().apply(got.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn template_landmarks_map_to_themselves_at_every_size() {
        for size in [112, 224] {
            let m = to_template(&template(size), size).unwrap();
            assert!((m.a - 1.0).abs() < 1e-6 && m.b.abs() < 1e-6, "{m:?}");
            assert!(m.tx.abs() < 1e-4 && m.ty.abs() < 1e-4, "{m:?}");
        }
        // Landmarks at the 112 template go to the 224 one by a pure scale of 2.
        let m = to_template(&ARCFACE_112, 224).unwrap();
        assert!((m.a - 2.0).abs() < 1e-6 && m.b.abs() < 1e-6 && m.tx.abs() < 1e-4);
    }

    #[test]
    fn the_fit_is_least_squares_even_for_a_mirrored_point_set() {
        let src = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 2.0], [-1.0, 4.0]];
        let mirrored: Vec<[f32; 2]> = src.iter().map(|p| [-p[0] + 0.3, p[1] * 1.1]).collect();
        let m = umeyama(&src, &mirrored).unwrap();
        let err = |m: &Similarity| {
            src.iter()
                .zip(&mirrored)
                .map(|(s, d)| {
                    let q = m.apply([f64::from(s[0]), f64::from(s[1])]);
                    (q[0] - f64::from(d[0])).powi(2) + (q[1] - f64::from(d[1])).powi(2)
                })
                .sum::<f64>()
        };
        let best = err(&m);
        for k in 0..4 {
            for step in [-1e-3, 1e-3] {
                let mut p = m;
                match k {
                    0 => p.a += step,
                    1 => p.b += step,
                    2 => p.tx += step,
                    _ => p.ty += step,
                }
                assert!(
                    err(&p) > best,
                    "moving parameter {k} by {step} lowers the error"
                );
            }
        }
        assert!(
            umeyama(&[[1.0, 1.0]; 3], &src[..3]).is_none(),
            "coincident points"
        );
    }

    #[test]
    fn warping_with_the_identity_copies_the_frame_and_a_shift_moves_it() {
        let (w, h) = (6usize, 5usize);
        let rgb: Vec<u8> = (0..3 * w * h).map(|i| (i * 7 % 256) as u8).collect();
        let id = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        let out = warp(&rgb, w, h, &id, 5).unwrap();
        for v in 0..5 {
            for u in 0..5 {
                for c in 0..3 {
                    assert_eq!(out[3 * (v * 5 + u) + c], rgb[3 * (v * w + u) + c]);
                }
            }
        }
        // Output (u, v) shows frame (u + 1, v + 2); beyond the frame it is black.
        let shift = Similarity {
            tx: -1.0,
            ty: -2.0,
            ..id
        };
        let out = warp(&rgb, w, h, &shift, 5).unwrap();
        assert_eq!(out[0..3], rgb[3 * (2 * w + 1)..3 * (2 * w + 1) + 3]);
        assert_eq!(
            out[3 * (3 * 5)..3 * (3 * 5) + 3],
            [0, 0, 0],
            "row 3 shows frame row 5"
        );
        // A half-pixel shift averages neighbours.
        let half = Similarity { tx: -0.5, ..id };
        let out = warp(&rgb, w, h, &half, 2).unwrap();
        let mean = (f64::from(rgb[0]) + f64::from(rgb[3])) / 2.0;
        assert_eq!(out[0], mean.round() as u8);
    }
}
