//! Drawing one synthetic face: a [`FrameState`] and a per-video [`Identity`] to an RGB image.
//!
//! What it does: draw with tiny-skia (anti-aliased paths) a frontal face whose geometry follows
//! the state: mouth curvature with valence; eye opening and brow height with arousal; each AU a
//! visible change (AU1/AU2 inner/outer brow raise with forehead wrinkles, AU4 brows lowered and
//! drawn together with glabella lines, AU6 cheeks raised and lower lids pushed up, AU7 lids
//! tightened, AU10 upper lip and nostrils raised, AU12 lip corners pulled up and out, AU15 lip
//! corners pulled down, AU23 lips narrowed and thinned, AU24 lips pressed, AU25 lips parted,
//! AU26 jaw dropped). Then the nuisance of a real camera: head pose, occluders, Gaussian blur,
//! lighting (gain, left-right slope, colour cast) and sensor noise.
//!
//! Coordinates: "face coordinates" have the image width as unit, the origin at the image centre
//! and y pointing down; the pose transform maps them to pixels, so every size draws the same face.
//!
//! What it does not: simulate anything over time ([`super::latent`]) or encode or write images.

use super::latent::{normal, video_rng, FrameState, Occlusion, Stream};
use image::{ImageBuffer, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiny_skia::{
    Color, FillRule, LineCap, Mask, Paint, Path, PathBuilder, Pixmap, Rect, Stroke, Transform,
};

/// RGB colour with channels in 0..1.
pub type Rgb3 = [f32; 3];

/// AU indices in [`crate::AUS`] order, for readability.
mod au {
    pub const AU1: usize = 0;
    pub const AU2: usize = 1;
    pub const AU4: usize = 2;
    pub const AU6: usize = 3;
    pub const AU7: usize = 4;
    pub const AU10: usize = 5;
    pub const AU12: usize = 6;
    pub const AU15: usize = 7;
    pub const AU23: usize = 8;
    pub const AU24: usize = 9;
    pub const AU25: usize = 10;
    pub const AU26: usize = 11;
}

/// Nominal vertical position of the mouth centre in face coordinates (before pose).
pub const MOUTH_Y: f32 = 0.175;
/// Nominal vertical position of the eye centres in face coordinates (before pose).
pub const EYE_Y: f32 = -0.05;
/// Nominal vertical position of the brows in face coordinates (before pose).
pub const BROW_Y: f32 = -0.115;

/// The appearance of the person in one video: fixed for the whole video.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// Half-width of the face.
    pub face_width: f32,
    /// Half-height of the face.
    pub face_height: f32,
    /// Width of the jaw relative to the cheekbones (1 = round, smaller = pointed chin).
    pub chin: f32,
    /// Skin colour.
    pub skin: Rgb3,
    /// Hair colour.
    pub hair: Rgb3,
    /// Hair style: 0 short, 1 long, 2 receding.
    pub hair_style: u8,
    /// How far the hair comes down the forehead.
    pub hair_volume: f32,
    /// Brow colour.
    pub brow: Rgb3,
    /// Brow stroke width.
    pub brow_thickness: f32,
    /// Horizontal distance of each eye centre from the face's midline.
    pub eye_spacing: f32,
    /// Half-width of an eye.
    pub eye_width: f32,
    /// Half-height of the open upper eye at neutral arousal.
    pub eye_height: f32,
    /// Iris colour.
    pub iris: Rgb3,
    /// Half-width of the mouth at rest.
    pub mouth_width: f32,
    /// Thickness of the upper lip at rest.
    pub upper_lip: f32,
    /// Thickness of the lower lip at rest.
    pub lower_lip: f32,
    /// Lip colour.
    pub lip: Rgb3,
    /// Background colour.
    pub background: Rgb3,
    /// Clothing colour.
    pub clothes: Rgb3,
    /// Colour cast of the light (multiplies the pixels).
    pub tint: Rgb3,
    /// Sensor noise standard deviation in 8-bit levels at nominal gain.
    pub noise: f32,
}

/// The identity of video `index` (0-based) of the data set made with `seed`.
pub fn identity(seed: u64, index: usize) -> Identity {
    let mut rng = video_rng(seed, index as u64, Stream::Identity);
    let light_skin = [0.96, 0.80, 0.69];
    let dark_skin = [0.36, 0.23, 0.16];
    let t = rng.gen_range(0.0f32..1.0);
    let mut skin = mix(light_skin, dark_skin, t);
    for c in &mut skin {
        *c = (*c * rng.gen_range(0.95f32..1.05)).clamp(0.0, 1.0);
    }
    const HAIR: [Rgb3; 5] = [
        [0.08, 0.06, 0.05],
        [0.33, 0.21, 0.12],
        [0.78, 0.64, 0.40],
        [0.55, 0.22, 0.10],
        [0.62, 0.62, 0.60],
    ];
    let hair = HAIR[rng.gen_range(0..HAIR.len())];
    let lip = mix(mul(skin, [0.75, 0.45, 0.45]), [0.55, 0.18, 0.2], 0.35);
    let random_color = |rng: &mut ChaCha8Rng, lo: f32, hi: f32| {
        [
            rng.gen_range(lo..hi),
            rng.gen_range(lo..hi),
            rng.gen_range(lo..hi),
        ]
    };
    let background = random_color(&mut rng, 0.15, 0.9);
    let clothes = random_color(&mut rng, 0.05, 0.85);
    let warmth = rng.gen_range(-0.08f32..0.08);
    Identity {
        face_width: rng.gen_range(0.29..0.33),
        face_height: rng.gen_range(0.38..0.42),
        chin: rng.gen_range(0.55..0.8),
        skin,
        hair,
        hair_style: rng.gen_range(0..3),
        hair_volume: rng.gen_range(0.0..0.05),
        // Brows are darker than the skin whatever the hair colour.
        brow: darker(mix(hair, [0.1, 0.08, 0.07], 0.5), scale(skin, 0.55)),
        brow_thickness: rng.gen_range(0.014..0.02),
        eye_spacing: rng.gen_range(0.115..0.135),
        eye_width: rng.gen_range(0.048..0.056),
        eye_height: rng.gen_range(0.02..0.026),
        iris: random_color(&mut rng, 0.1, 0.5),
        mouth_width: rng.gen_range(0.085..0.1),
        upper_lip: rng.gen_range(0.014..0.02),
        lower_lip: rng.gen_range(0.018..0.026),
        lip,
        background,
        clothes,
        tint: [1.0 + warmth, 1.0, 1.0 - warmth],
        noise: rng.gen_range(2.0..7.0),
    }
}

fn mix(a: Rgb3, b: Rgb3, t: f32) -> Rgb3 {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn darker(a: Rgb3, b: Rgb3) -> Rgb3 {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].min(b[2])]
}

fn mul(a: Rgb3, b: Rgb3) -> Rgb3 {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}

fn scale(a: Rgb3, k: f32) -> Rgb3 {
    [a[0] * k, a[1] * k, a[2] * k]
}

/// A pixmap with the pose transform: every drawing call takes face coordinates.
struct Canvas {
    pixmap: Pixmap,
    transform: Transform,
}

impl Canvas {
    fn paint(color: Rgb3, alpha: f32) -> Paint<'static> {
        let mut paint = Paint::default();
        let c = |x: f32| x.clamp(0.0, 1.0);
        if let Some(color) = Color::from_rgba(c(color[0]), c(color[1]), c(color[2]), c(alpha)) {
            paint.set_color(color);
        }
        paint.anti_alias = true;
        paint
    }

    fn fill(&mut self, path: Option<Path>, color: Rgb3, alpha: f32, mask: Option<&Mask>) {
        if let Some(path) = path {
            let paint = Self::paint(color, alpha);
            self.pixmap
                .fill_path(&path, &paint, FillRule::Winding, self.transform, mask);
        }
    }

    fn stroke(&mut self, path: Option<Path>, color: Rgb3, alpha: f32, width: f32) {
        if let Some(path) = path {
            let paint = Self::paint(color, alpha);
            let stroke = Stroke {
                width,
                line_cap: LineCap::Round,
                ..Stroke::default()
            };
            self.pixmap
                .stroke_path(&path, &paint, &stroke, self.transform, None);
        }
    }

    /// A mask (in pixels) of a path given in face coordinates.
    fn mask(&self, path: &Option<Path>) -> Option<Mask> {
        let mut mask = Mask::new(self.pixmap.width(), self.pixmap.height())?;
        mask.fill_path(path.as_ref()?, FillRule::Winding, true, self.transform);
        Some(mask)
    }
}

fn oval(cx: f32, cy: f32, rx: f32, ry: f32) -> Option<Path> {
    PathBuilder::from_oval(Rect::from_ltrb(cx - rx, cy - ry, cx + rx, cy + ry)?)
}

fn quad(x0: f32, y0: f32, cx: f32, cy: f32, x1: f32, y1: f32) -> Option<Path> {
    let mut pb = PathBuilder::new();
    pb.move_to(x0, y0);
    pb.quad_to(cx, cy, x1, y1);
    pb.finish()
}

/// The control point of a quadratic from `p0` to `p1` that passes through `mid` at t = 1/2.
fn through(p0: f32, mid: f32, p1: f32) -> f32 {
    2.0 * mid - 0.5 * (p0 + p1)
}

/// Draw frame `state` of a person with `identity` as a `size` x `size` RGB image, including the
/// frame's pose, occluder, blur, lighting and sensor noise. A pure function of its arguments.
pub fn render_face(identity: &Identity, state: &FrameState, size: u32) -> RgbImage {
    let size = size.max(1);
    let px = size as f32;
    let pose = &state.pose;
    let Some(mut pixmap) = Pixmap::new(size, size) else {
        return RgbImage::new(size, size);
    };
    let bg = identity.background;
    pixmap.fill(Color::from_rgba(bg[0], bg[1], bg[2], 1.0).unwrap_or(Color::BLACK));
    let transform = Transform::from_translate(px * (0.5 + pose.dx), px * (0.5 + pose.dy))
        .pre_scale(px * pose.scale, px * pose.scale)
        .pre_rotate(pose.roll.to_degrees());
    let mut canvas = Canvas { pixmap, transform };
    // Inner features shift with yaw and pitch more than the outline: a cheap 3-D turn.
    let fx = pose.yaw * 0.12;
    let fy = pose.pitch * 0.1;
    draw_head(&mut canvas, identity, state, fx * 0.3, fy * 0.3);
    draw_brows(&mut canvas, identity, state, fx, fy);
    draw_eyes(&mut canvas, identity, state, fx, fy);
    draw_nose_and_cheeks(&mut canvas, identity, state, fx, fy);
    draw_mouth(&mut canvas, identity, state, fx, fy);
    if let Some(o) = &state.occlusion {
        draw_occluder(&mut canvas, identity, o);
    }
    finish(canvas.pixmap, identity, state, size)
}

/// Clothes, hair behind the head, neck, ears, the face outline (with the jaw drop of AU26) and
/// the hair over the forehead.
fn draw_head(c: &mut Canvas, id: &Identity, s: &FrameState, ox: f32, oy: f32) {
    let (fw, fh) = (id.face_width, id.face_height);
    let cy = 0.02 + oy;
    let jaw = 0.04 * s.au_intensity[au::AU26];
    c.fill(oval(0.0, 0.66, 0.48, 0.2), id.clothes, 1.0, None);
    match id.hair_style {
        1 => {
            let mut pb = PathBuilder::new();
            if let Some(r) = Rect::from_ltrb(-fw * 1.2, cy - fh * 1.1, fw * 1.2, cy + fh * 0.6) {
                pb.push_oval(r);
            }
            if let Some(r) = Rect::from_ltrb(-fw * 1.2, cy - 0.05, fw * 1.2, 0.55) {
                pb.push_rect(r);
            }
            c.fill(pb.finish(), id.hair, 1.0, None);
        }
        0 => c.fill(
            oval(0.0, cy - fh * 0.35, fw * 1.12, fh * 0.78),
            id.hair,
            1.0,
            None,
        ),
        _ => c.fill(
            oval(0.0, cy - fh * 0.2, fw * 1.05, fh * 0.7),
            id.hair,
            0.6,
            None,
        ),
    }
    let neck = scale(id.skin, 0.85);
    c.fill(
        Rect::from_ltrb(-fw * 0.5, cy + fh * 0.4, fw * 0.5, 0.62).map(PathBuilder::from_rect),
        neck,
        1.0,
        None,
    );
    for side in [-1.0f32, 1.0] {
        c.fill(
            oval(side * (fw - 0.005) + ox, cy - 0.03, 0.035, 0.06),
            scale(id.skin, 0.93),
            1.0,
            None,
        );
    }
    // Outline: round above, narrowing to the chin; the chin drops with AU26.
    let top = cy - fh;
    let bottom = cy + fh + jaw;
    let k = 0.5523;
    let mut pb = PathBuilder::new();
    pb.move_to(ox, top);
    pb.cubic_to(ox + k * fw, top, ox + fw, cy - k * fh, ox + fw, cy);
    pb.cubic_to(
        ox + fw,
        cy + 0.6 * (bottom - cy),
        ox + id.chin * fw * 0.7,
        bottom,
        ox,
        bottom,
    );
    pb.cubic_to(
        ox - id.chin * fw * 0.7,
        bottom,
        ox - fw,
        cy + 0.6 * (bottom - cy),
        ox - fw,
        cy,
    );
    pb.cubic_to(ox - fw, cy - k * fh, ox - k * fw, top, ox, top);
    pb.close();
    c.fill(pb.finish(), id.skin, 1.0, None);
    // Hair over the forehead (style 2 leaves the forehead bare).
    if id.hair_style != 2 {
        let ry = 0.085 + id.hair_volume;
        c.fill(
            oval(ox * 0.5, top + 0.03, fw * 1.03, ry),
            id.hair,
            1.0,
            None,
        );
    }
}

/// Brows: height with arousal; inner ends raised by AU1, outer ends by AU2 (each with its own
/// forehead wrinkles); lowered, drawn together and tilted by AU4 (with glabella lines).
fn draw_brows(c: &mut Canvas, id: &Identity, s: &FrameState, ox: f32, oy: f32) {
    let i = &s.au_intensity;
    let (au1, au2, au4) = (i[au::AU1], i[au::AU2], i[au::AU4]);
    let base = BROW_Y - 0.022 * s.arousal + oy;
    let crease = scale(id.skin, 0.62);
    for side in [-1.0f32, 1.0] {
        let x_in = side * (0.042 - 0.014 * au4) + ox;
        let x_out = side * (id.eye_spacing + id.eye_width + 0.012) + ox;
        let y_in = base + 0.008 - 0.05 * au1 + 0.032 * au4;
        let y_out = base + 0.004 - 0.05 * au2 + 0.012 * au4;
        let x_mid = 0.5 * (x_in + x_out);
        let arch = y_in.min(y_out) - 0.022 + 0.012 * au4;
        c.stroke(
            quad(x_in, y_in, x_mid, arch, x_out, y_out),
            id.brow,
            1.0,
            id.brow_thickness,
        );
        // Lateral forehead wrinkles above the outer brow (AU2).
        if au2 > 0.05 {
            for k in 0..2 {
                let y = y_out - 0.04 - 0.018 * k as f32;
                let (x0, x1) = (side * 0.08 + ox, side * 0.17 + ox);
                c.stroke(
                    quad(x0, y, 0.5 * (x0 + x1), y - 0.012, x1, y + 0.006),
                    crease,
                    0.7 * au2,
                    0.008,
                );
            }
        }
    }
    // Central forehead wrinkles (AU1).
    if au1 > 0.05 {
        for k in 0..3 {
            let y = base - 0.075 - 0.018 * k as f32;
            c.stroke(
                quad(-0.075 + ox, y + 0.004, ox, y - 0.008, 0.075 + ox, y + 0.004),
                crease,
                0.75 * au1,
                0.008,
            );
        }
    }
    // Vertical glabella lines between the brows (AU4).
    if au4 > 0.05 {
        for side in [-1.0f32, 1.0] {
            let x = side * 0.013 + ox;
            let y = base + 0.01;
            c.stroke(
                quad(x, y, x + side * 0.003, y + 0.02, x, y + 0.04),
                crease,
                0.85 * au4,
                0.008,
            );
        }
    }
}

/// Eyes: opening grows with arousal and shrinks with blinks; AU7 lowers the upper lid and raises
/// the lower one (with a darker lid line); AU6 pushes the lower lid up (with an infra-orbital
/// furrow).
fn draw_eyes(c: &mut Canvas, id: &Identity, s: &FrameState, ox: f32, oy: f32) {
    let i = &s.au_intensity;
    let (au6, au7) = (i[au::AU6], i[au::AU7]);
    let open =
        (0.8 + 0.35 * s.arousal) * (1.0 - s.eye_closure) * (1.0 - 0.55 * au7) * (1.0 - 0.15 * au6);
    let upper = id.eye_height * open.max(0.0);
    let lower = id.eye_height
        * 0.6
        * (1.0 - 0.5 * au7 - 0.45 * au6).max(0.05)
        * (1.0 - 0.6 * s.eye_closure);
    let lid = [0.08, 0.06, 0.05];
    let white = mix([0.94, 0.93, 0.9], id.skin, 0.1);
    for side in [-1.0f32, 1.0] {
        let cx = side * id.eye_spacing + ox;
        let cy = EYE_Y + oy;
        let (x_in, x_out) = (cx - side * id.eye_width, cx + side * id.eye_width);
        let y_out = cy - 0.004;
        // Socket shading.
        c.fill(
            oval(cx, cy - 0.004, id.eye_width * 1.25, 0.034),
            scale(id.skin, 0.9),
            0.5,
            None,
        );
        let mut pb = PathBuilder::new();
        pb.move_to(x_in, cy);
        pb.quad_to(cx, through(cy, cy - upper, y_out), x_out, y_out);
        pb.quad_to(cx, through(y_out, cy + lower, cy), x_in, cy);
        pb.close();
        let almond = pb.finish();
        if upper + lower > 0.004 {
            c.fill(almond.clone(), white, 1.0, None);
            let mask = c.mask(&almond);
            let gx = cx + s.pose.gaze * id.eye_width * 0.5;
            let r = id.eye_height * 0.95;
            c.fill(oval(gx, cy - 0.001, r, r), id.iris, 1.0, mask.as_ref());
            c.fill(
                oval(gx, cy - 0.001, r * 0.45, r * 0.45),
                [0.02, 0.02, 0.02],
                1.0,
                mask.as_ref(),
            );
        }
        // Upper lid line (thicker when tightened), crease above it, lower lid line.
        c.stroke(
            quad(x_in, cy, cx, through(cy, cy - upper, y_out), x_out, y_out),
            lid,
            0.95,
            0.007 + 0.004 * au7,
        );
        let crease_y = cy - upper - 0.012 - 0.006 * (1.0 - au7);
        c.stroke(
            quad(
                x_in,
                cy - 0.006,
                cx,
                through(cy - 0.006, crease_y, y_out - 0.006),
                x_out,
                y_out - 0.006,
            ),
            scale(id.skin, 0.65),
            0.5,
            0.004,
        );
        c.stroke(
            quad(x_in, cy, cx, through(cy, cy + lower, y_out), x_out, y_out),
            scale(id.skin, 0.55),
            0.4 + 0.5 * au7,
            0.004 + 0.003 * au7,
        );
        if au6 > 0.05 {
            let y = cy + lower + 0.022;
            c.stroke(
                quad(x_in, y - 0.004, cx, y + 0.008, x_out, y - 0.008),
                scale(id.skin, 0.6),
                0.9 * au6,
                0.007,
            );
        }
    }
}

/// Nose, nostrils (raised by AU10), nasolabial folds (deepened by AU10, AU12, AU6) and cheeks
/// (raised and flushed by AU6).
fn draw_nose_and_cheeks(c: &mut Canvas, id: &Identity, s: &FrameState, ox: f32, oy: f32) {
    let i = &s.au_intensity;
    let (au6, au10, au12) = (i[au::AU6], i[au::AU10], i[au::AU12]);
    let shade = scale(id.skin, 0.7);
    for side in [-1.0f32, 1.0] {
        let cheek = mul(id.skin, [1.0, 0.8, 0.8]);
        c.fill(
            oval(
                side * 0.15 + ox,
                0.075 - 0.035 * au6 + oy,
                0.055,
                0.034 + 0.01 * au6,
            ),
            cheek,
            0.2 + 0.5 * au6,
            None,
        );
    }
    c.stroke(
        quad(
            0.015 + ox * 0.6,
            -0.04 + oy,
            0.02 + ox,
            0.02 + oy,
            0.012 + ox * 1.1,
            0.06 + oy,
        ),
        shade,
        0.45,
        0.007,
    );
    let nostril_y = 0.075 - 0.012 * au10 + oy;
    c.fill(
        oval(ox * 1.1, nostril_y - 0.008, 0.03, 0.02),
        scale(id.skin, 1.05),
        0.6,
        None,
    );
    for side in [-1.0f32, 1.0] {
        c.fill(
            oval(side * 0.019 + ox * 1.1, nostril_y, 0.011, 0.0065),
            [0.2, 0.1, 0.08],
            0.75,
            None,
        );
        let fold = (0.15 + 0.7 * au10.max(0.85 * au12).max(0.6 * au6)).min(1.0);
        let x0 = side * 0.04 + ox;
        let x1 = side * (id.mouth_width + 0.03 + 0.02 * au12) + ox;
        c.stroke(
            quad(
                x0,
                0.065 + oy,
                side * (0.075 + 0.01 * au12) + ox,
                0.12 + oy,
                x1,
                0.21 + oy,
            ),
            shade,
            fold,
            0.006,
        );
    }
}

/// Mouth: the corners follow valence, AU12 (up and out) and AU15 (down); AU10 lifts the upper
/// lip; AU23 narrows and thins the lips, AU24 presses them (thin, dark line); AU25 parts them
/// (teeth show) and AU26 drops the jaw.
fn draw_mouth(c: &mut Canvas, id: &Identity, s: &FrameState, ox: f32, oy: f32) {
    let i = &s.au_intensity;
    let (au10, au12, au15) = (i[au::AU10], i[au::AU12], i[au::AU15]);
    let (au23, au24, au25, au26) = (i[au::AU23], i[au::AU24], i[au::AU25], i[au::AU26]);
    let m = MOUTH_Y + oy;
    let w = id.mouth_width * (1.0 + 0.22 * au12 - 0.15 * au23 - 0.06 * au24);
    let yc = m - 0.03 * s.valence - 0.038 * au12 + 0.036 * au15 - 0.005 * au10;
    let gap = (0.016 * au25 + 0.05 * au26) * (1.0 - au24);
    let thin = (1.0 - 0.5 * au23 - 0.4 * au24).max(0.25);
    let y_ui = m - 0.25 * gap - 0.018 * au10;
    let y_li = m + 0.75 * gap;
    let y_uo = y_ui - id.upper_lip * thin;
    let y_lo = y_li + id.lower_lip * thin;
    let (xl, xr) = (ox - w, ox + w);
    let inner_upper = through(yc, y_ui, yc);
    let inner_lower = through(yc, y_li, yc);
    // Mouth interior and teeth.
    if gap > 0.003 {
        let mut pb = PathBuilder::new();
        pb.move_to(xl, yc);
        pb.quad_to(ox, inner_upper, xr, yc);
        pb.quad_to(ox, inner_lower, xl, yc);
        pb.close();
        let interior = pb.finish();
        c.fill(interior.clone(), [0.25, 0.07, 0.08], 1.0, None);
        let mask = c.mask(&interior);
        let teeth = [0.93, 0.91, 0.85];
        let upper_teeth = Rect::from_ltrb(xl, y_ui - 0.02, xr, y_ui + (0.6 * gap).min(0.014));
        c.fill(
            upper_teeth.map(PathBuilder::from_rect),
            teeth,
            1.0,
            mask.as_ref(),
        );
        if au26 > 0.3 {
            let lower_teeth = Rect::from_ltrb(xl, y_li - 0.008, xr, y_li + 0.02);
            c.fill(
                lower_teeth.map(PathBuilder::from_rect),
                teeth,
                0.8,
                mask.as_ref(),
            );
        }
    }
    // Upper lip with a cupid's bow, then the lower lip.
    let mut pb = PathBuilder::new();
    pb.move_to(xl, yc);
    pb.quad_to(
        ox - 0.7 * w,
        y_uo + 0.2 * (yc - y_uo),
        ox - 0.25 * w,
        y_uo - 0.003,
    );
    pb.quad_to(ox - 0.1 * w, y_uo - 0.003, ox, y_uo + 0.002);
    pb.quad_to(ox + 0.1 * w, y_uo - 0.003, ox + 0.25 * w, y_uo - 0.003);
    pb.quad_to(ox + 0.7 * w, y_uo + 0.2 * (yc - y_uo), xr, yc);
    pb.quad_to(ox, inner_upper, xl, yc);
    pb.close();
    c.fill(pb.finish(), scale(id.lip, 0.92), 1.0, None);
    let mut pb = PathBuilder::new();
    pb.move_to(xl, yc);
    pb.quad_to(ox, inner_lower, xr, yc);
    pb.quad_to(ox, through(yc, y_lo, yc), xl, yc);
    pb.close();
    c.fill(pb.finish(), id.lip, 1.0, None);
    // The line where the lips meet: darker and thicker when pressed (AU24) or tightened (AU23).
    let line = [0.22, 0.08, 0.07];
    c.stroke(
        quad(xl, yc, ox, inner_upper, xr, yc),
        line,
        0.85,
        0.009 + 0.008 * au24 + 0.003 * au23,
    );
    // Dimples at the corners (AU12, AU15) and the bulge below a pressed lower lip (AU24).
    let shade = scale(id.skin, 0.65);
    for side in [-1.0f32, 1.0] {
        let x = if side < 0.0 { xl } else { xr };
        if au12 > 0.05 {
            c.stroke(
                quad(
                    x + side * 0.008,
                    yc - 0.012,
                    x + side * 0.016,
                    yc,
                    x + side * 0.01,
                    yc + 0.012,
                ),
                shade,
                0.7 * au12,
                0.005,
            );
        }
        if au15 > 0.05 {
            c.stroke(
                quad(
                    x,
                    yc + 0.004,
                    x + side * 0.008,
                    yc + 0.018,
                    x + side * 0.004,
                    yc + 0.034,
                ),
                shade,
                0.7 * au15,
                0.005,
            );
        }
    }
    if au24 > 0.05 {
        c.stroke(
            quad(
                ox - 0.6 * w,
                y_lo + 0.012,
                ox,
                y_lo + 0.02,
                ox + 0.6 * w,
                y_lo + 0.012,
            ),
            shade,
            0.8 * au24,
            0.007,
        );
    }
}

/// A hand (skin-coloured, with finger gaps) or an object over part of the face.
fn draw_occluder(c: &mut Canvas, id: &Identity, o: &Occlusion) {
    let saved = c.transform;
    c.transform = saved
        .pre_translate(o.x, o.y)
        .pre_rotate(o.angle.to_degrees());
    if o.hand {
        let hand = scale(id.skin, 0.97);
        c.fill(oval(0.0, 0.0, o.rx, o.ry), hand, 1.0, None);
        for k in 0..3 {
            let y = -o.ry * 0.5 + o.ry * 0.5 * k as f32;
            c.stroke(
                quad(-o.rx * 0.9, y, 0.0, y - 0.006, o.rx * 0.2, y),
                scale(id.skin, 0.7),
                0.8,
                0.005,
            );
        }
    } else if let Some(r) = Rect::from_ltrb(-o.rx, -o.ry, o.rx, o.ry) {
        c.fill(Some(PathBuilder::from_rect(r)), o.color, 1.0, None);
    }
    c.transform = saved;
}

/// Standard deviation of the sensor noise of a frame in 8-bit levels: the identity's camera
/// noise, up to 80% more in dim light.
pub fn sensor_noise(identity: &Identity, state: &FrameState) -> f32 {
    identity.noise * (1.0 + 0.8 * (1.0 - state.light.gain).max(0.0))
}

/// From the drawn pixmap to the camera image: blur, lighting (gain, slope, colour cast) and
/// Gaussian sensor noise, then 8-bit quantisation.
fn finish(pixmap: Pixmap, id: &Identity, s: &FrameState, size: u32) -> RgbImage {
    let rgb: Vec<f32> = pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .map(|v| v as f32 / 255.0)
        .collect();
    let mut img: ImageBuffer<Rgb<f32>, Vec<f32>> =
        ImageBuffer::from_raw(size, size, rgb).expect("3 floats per pixel");
    let sigma = s.blur * size as f32 / 112.0;
    if sigma > 0.25 {
        img = image::imageops::blur(&img, sigma);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(s.noise_seed);
    let noise = sensor_noise(id, s) / 255.0;
    // Brightness per column: gain times the left-right slope.
    let column_light: Vec<f32> = (0..size)
        .map(|x| {
            let xn = (x as f32 + 0.5) / size as f32;
            s.light.gain * (1.0 + s.light.gradient * (2.0 * xn - 1.0))
        })
        .collect();
    let mut out = Vec::with_capacity(img.as_raw().len());
    for (k, p) in img.as_raw().chunks_exact(3).enumerate() {
        let light = column_light[k % size as usize];
        for (v, tint) in p.iter().zip(id.tint) {
            let value = v * light * tint + noise * normal(&mut rng);
            out.push((value * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage::from_raw(size, size, out).expect("3 bytes per pixel")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::latent::simulate_video;

    #[test]
    fn same_state_same_pixels_and_sizes_follow_the_argument() {
        let states = simulate_video(7, 0, 3);
        let id = identity(7, 0);
        let a = render_face(&id, &states[2], 112);
        assert_eq!(a, render_face(&id, &states[2], 112));
        assert_eq!(a.dimensions(), (112, 112));
        assert_eq!(render_face(&id, &states[2], 48).dimensions(), (48, 48));
        assert_ne!(identity(7, 0), identity(7, 1));
    }
}
