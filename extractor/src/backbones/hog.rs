//! HOG: a histogram-of-oriented-gradients face descriptor, the classical appearance feature of
//! OpenFace's action-unit pipeline (Dalal & Triggs 2005), computed on the CPU.
//!
//! What it does, per image (`3 x S x S` RGB in `[0, 1]`):
//! 1. grey levels `0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as OpenCV's `RGB2GRAY`);
//! 2. gradients with the centred kernel `[-1, 0, 1]` in x (to the right) and y (downwards); at the
//!    image border the edge pixel is repeated, so the difference there is one-sided;
//! 3. each pixel votes its gradient magnitude for its unsigned orientation `atan2(gy, gx)` folded
//!    into `[0, 180)` degrees, into `bins` orientation bins centred at `0, 180/bins, 2*180/bins, ...`
//!    (bin 0 holds horizontal gradients, i.e. vertical edges), with **trilinear interpolation**:
//!    linear between the two nearest bin centres (circularly, 170 deg is between 160 and 0) and
//!    bilinear between the four nearest cell centres (clamped at the border, so every vote lands
//!    in the grid and the cell histograms sum to the total gradient magnitude);
//! 4. cells of `cell_size x cell_size` pixels form a `C x C` grid with `C = floor(S / cell_size)`
//!    (pixels beyond `C * cell_size` on the right and bottom do not vote); blocks of `2 x 2`
//!    cells slide with a stride of one cell, giving `(C - 1)^2` blocks;
//! 5. each block's `4 * bins` vector is L2-Hys normalised: `v / sqrt(|v|^2 + eps^2)`, clipped at
//!    0.2, normalised again (so every block has L2 norm <= 1; an all-zero block stays zero);
//! 6. the blocks are concatenated row by row (block y, then block x), each block as its cells
//!    (cell y, then cell x), each cell as its bins.
//!
//! Dimension: `(C - 1)^2 * 4 * bins`. The default `S = 112, cell_size = 16, bins = 9` gives
//! `C = 7`, `6 x 6` blocks and **1296** values. Why: Aff-Wild2's `cropped_aligned` faces are
//! 112 x 112, so 112 needs no rescaling of the organisers' frames (the same input as the
//! IResNets); OpenFace's 8-pixel cells at 112 would give `13 x 13 x 36 = 6084` values here
//! (OpenFace's own 31-channel FHOG: `12 x 12 x 31 = 4464`), several times the reference system's
//! largest learned feature (768), so the cells are doubled to 16 pixels, which keeps the blocks'
//! overlap and the spatial layout of the face (eyes, nose, mouth each span about one block) at a
//! size comparable to the learned features. The config keys
//! `input_size`, `hog_cell` and `hog_bins` change them (see [`HogParams`]); for example
//! `input_size = 64, hog_cell = 8` gives `7 x 7 x 36 = 1764`.
//!
//! What it does not: learn or load weights (it is a classical descriptor; `weights_id` is
//! `"none"`), use the GPU (the batch is copied to the host and processed in parallel with rayon),
//! weight blocks with a Gaussian window, or compute Felzenszwalb's 31-channel FHOG variant.

use anyhow::{bail, Result};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use super::{check_out_dim, Backbone, BackboneConfig, BackboneMeta};

/// Default input side in pixels (Aff-Wild2's cropped-aligned frames are 112 x 112).
pub const DEFAULT_INPUT_SIZE: u32 = 112;
/// Default cell side in pixels.
pub const DEFAULT_CELL_SIZE: u32 = 16;
/// Default number of orientation bins over `[0, 180)` degrees.
pub const DEFAULT_BINS: u32 = 9;
/// Cells per block side (blocks are `BLOCK_CELLS x BLOCK_CELLS` cells, stride one cell).
pub const BLOCK_CELLS: usize = 2;
/// The L2-Hys clipping threshold.
pub const L2HYS_CLIP: f32 = 0.2;
/// The regulariser of the L2 norms, `v / sqrt(|v|^2 + EPS^2)`.
pub const EPS: f32 = 1e-5;

/// The geometry of the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HogParams {
    /// Side of the (square) input image in pixels.
    pub input_size: u32,
    /// Side of a cell in pixels.
    pub cell_size: u32,
    /// Orientation bins over `[0, 180)` degrees.
    pub bins: u32,
}

impl Default for HogParams {
    fn default() -> Self {
        Self {
            input_size: DEFAULT_INPUT_SIZE,
            cell_size: DEFAULT_CELL_SIZE,
            bins: DEFAULT_BINS,
        }
    }
}

impl HogParams {
    /// Check that the geometry gives at least one block; the error says which value to change.
    pub fn validate(&self) -> Result<()> {
        if self.cell_size == 0 || self.bins == 0 {
            bail!(
                "hog: hog_cell ({}) and hog_bins ({}) must be at least 1",
                self.cell_size,
                self.bins
            );
        }
        if self.bins > 360 {
            bail!("hog: hog_bins = {} is more than 360; use e.g. 9", self.bins);
        }
        if self.cells_per_side() < BLOCK_CELLS {
            bail!(
                "hog: input_size {} holds fewer than {BLOCK_CELLS} cells of {} pixels per side; \
                 raise input_size or lower hog_cell",
                self.input_size,
                self.cell_size
            );
        }
        Ok(())
    }

    /// Cells per image side, `floor(input_size / cell_size)`.
    pub fn cells_per_side(&self) -> usize {
        (self.input_size / self.cell_size.max(1)) as usize
    }

    /// Blocks per image side, `cells_per_side - 1` (blocks of 2 x 2 cells, stride one cell).
    pub fn blocks_per_side(&self) -> usize {
        (self.cells_per_side() + 1).saturating_sub(BLOCK_CELLS)
    }

    /// Length of one block's vector, `4 * bins`.
    pub fn block_len(&self) -> usize {
        BLOCK_CELLS * BLOCK_CELLS * self.bins as usize
    }

    /// Length of the descriptor, `blocks_per_side^2 * 4 * bins`.
    pub fn dim(&self) -> usize {
        self.blocks_per_side() * self.blocks_per_side() * self.block_len()
    }
}

/// The HOG backbone: no weights, deterministic, CPU only.
#[derive(Debug, Clone)]
pub struct Hog {
    meta: BackboneMeta,
    params: HogParams,
}

impl Hog {
    /// Build from a feature-set configuration: `input_size` (default 112), `hog_cell` (cell
    /// side in pixels, default 16) and `hog_bins` (default 9); `out_dim`, if set, must equal
    /// the resulting dimension. The config's other fields are rejected by
    /// [`BackboneConfig::check_fields`].
    pub fn new(cfg: &BackboneConfig) -> Result<Hog> {
        let hog = Self::with_params(HogParams {
            input_size: cfg.input_size.unwrap_or(DEFAULT_INPUT_SIZE),
            cell_size: cfg.hog_cell.unwrap_or(DEFAULT_CELL_SIZE),
            bins: cfg.hog_bins.unwrap_or(DEFAULT_BINS),
        })?;
        check_out_dim(cfg, hog.params.dim() as i64)?;
        Ok(hog)
    }

    /// Build from explicit parameters (validated).
    pub fn with_params(params: HogParams) -> Result<Hog> {
        params.validate()?;
        let meta = BackboneMeta {
            name: "hog".to_string(),
            input_size: params.input_size,
            output_shape: vec![params.dim()],
            preprocessing: format!(
                "rgb in [0,1] -> luma BT.601; HOG gradient [-1,0,1], {} unsigned bins, cell {}px, \
                 block 2x2 stride 1, trilinear votes, L2-Hys clip {L2HYS_CLIP}",
                params.bins, params.cell_size
            ),
            weights_id: "none".to_string(),
        };
        Ok(Hog { meta, params })
    }

    /// The descriptor's geometry.
    pub fn params(&self) -> HogParams {
        self.params
    }

    /// The descriptor of one `3 x S x S` channels-first RGB image in `[0, 1]`.
    ///
    /// # Panics
    /// If `chw.len() != 3 * S * S` (a caller bug; [`Backbone::forward`] checks shapes first).
    pub fn describe(&self, chw: &[f32]) -> Vec<f32> {
        let s = self.params.input_size as usize;
        assert_eq!(chw.len(), 3 * s * s, "hog: image is not 3x{s}x{s}");
        hog_gray(&grayscale(chw, s), s, &self.params)
    }
}

impl Backbone for Hog {
    fn meta(&self) -> &BackboneMeta {
        &self.meta
    }

    /// `images`: `[N, 3, S, S]` RGB in `[0, 1]` on any device; returns `[N, dim]` float32 on the
    /// same device. Panics if the shape is not `[N, 3, S, S]` with this backbone's `S`.
    fn forward(&self, images: &Tensor) -> Tensor {
        let s = self.params.input_size as i64;
        let shape = images.size();
        assert!(
            shape.len() == 4 && shape[1] == 3 && shape[2] == s && shape[3] == s,
            "hog: expected images of shape [N, 3, {s}, {s}], got {shape:?}"
        );
        let n = shape[0] as usize;
        let dim = self.params.dim();
        let host = images
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let pixels = Vec::<f32>::try_from(host.flatten(0, -1))
            .expect("a contiguous float CPU tensor converts to Vec<f32>");
        let per_image = 3 * (s * s) as usize;
        let mut out = vec![0f32; n * dim];
        out.par_chunks_mut(dim)
            .zip(pixels.par_chunks(per_image))
            .for_each(|(dst, chw)| dst.copy_from_slice(&self.describe(chw)));
        Tensor::from_slice(&out)
            .view([n as i64, dim as i64])
            .to_device(images.device())
    }
}

/// BT.601 luma of a channels-first RGB image: `0.299 R + 0.587 G + 0.114 B`, row-major.
pub fn grayscale(chw: &[f32], size: usize) -> Vec<f32> {
    let plane = size * size;
    let (r, rest) = chw.split_at(plane);
    let (g, b) = rest.split_at(plane);
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((r, g), b)| 0.299 * r + 0.587 * g + 0.114 * b)
        .collect()
}

/// The two orientation bins an unsigned angle (degrees, any value; folded into `[0, 180)`)
/// votes for, with their weights: `(low bin, high bin, weight of low, weight of high)`, bin
/// centres at `k * 180 / bins`, circular (the bin after the last is bin 0).
pub fn orientation_votes(degrees: f32, bins: usize) -> (usize, usize, f32, f32) {
    let width = 180.0 / bins as f32;
    let pos = degrees.rem_euclid(180.0) / width;
    let floor = pos.floor();
    let frac = pos - floor;
    let low = (floor as usize) % bins;
    (low, (low + 1) % bins, 1.0 - frac, frac)
}

/// The two cells (along one axis) a pixel votes for and their weights: `(c0, c1, w0, w1)`.
/// Cell centres are at `(c + 0.5) * cell - 0.5`; a pixel outside the outermost centres gives its
/// whole vote to the border cell.
fn spatial_votes(x: usize, cell: usize, cells: usize) -> (usize, usize, f32, f32) {
    let u = ((x as f32 + 0.5) / cell as f32 - 0.5).clamp(0.0, (cells - 1) as f32);
    let c0 = (u.floor() as usize).min(cells - 1);
    let c1 = (c0 + 1).min(cells - 1);
    let f = u - c0 as f32;
    (c0, c1, 1.0 - f, f)
}

/// Cell histograms of a grey image: `cells x cells x bins`, row-major (cell y, cell x, bin).
pub fn cell_histograms(gray: &[f32], size: usize, params: &HogParams) -> Vec<f32> {
    let cell = params.cell_size as usize;
    let bins = params.bins as usize;
    let cells = params.cells_per_side();
    assert_eq!(
        gray.len(),
        size * size,
        "hog: grey image is not {size}x{size}"
    );
    let mut hist = vec![0f32; cells * cells * bins];
    if cells == 0 {
        return hist;
    }
    let at = |x: usize, y: usize| gray[y * size + x];
    let covered = cells * cell;
    for y in 0..covered {
        let (y0, y1, wy0, wy1) = spatial_votes(y, cell, cells);
        let (up, down) = (y.saturating_sub(1), (y + 1).min(size - 1));
        for x in 0..covered {
            let (left, right) = (x.saturating_sub(1), (x + 1).min(size - 1));
            let gx = at(right, y) - at(left, y);
            let gy = at(x, down) - at(x, up);
            let magnitude = (gx * gx + gy * gy).sqrt();
            if magnitude == 0.0 {
                continue;
            }
            let (b0, b1, wb0, wb1) = orientation_votes(gy.atan2(gx).to_degrees(), bins);
            let (x0, x1, wx0, wx1) = spatial_votes(x, cell, cells);
            for (cy, wy) in [(y0, wy0), (y1, wy1)] {
                for (cx, wx) in [(x0, wx0), (x1, wx1)] {
                    let w = magnitude * wy * wx;
                    if w == 0.0 {
                        continue;
                    }
                    let base = (cy * cells + cx) * bins;
                    hist[base + b0] += w * wb0;
                    hist[base + b1] += w * wb1;
                }
            }
        }
    }
    hist
}

/// L2-Hys normalisation of one block vector in place: L2, clip at [`L2HYS_CLIP`], L2 again.
pub fn l2_hys(v: &mut [f32]) {
    let normalise = |v: &mut [f32]| {
        let norm = (v.iter().map(|x| x * x).sum::<f32>() + EPS * EPS).sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    };
    normalise(v);
    v.iter_mut().for_each(|x| *x = x.min(L2HYS_CLIP));
    normalise(v);
}

/// The HOG descriptor of a `size x size` grey image (row-major) with the given cell size and
/// bins (`params.input_size` is not used; `size` is). Layout as in the module doc.
pub fn hog_gray(gray: &[f32], size: usize, params: &HogParams) -> Vec<f32> {
    let params = HogParams {
        input_size: size as u32,
        ..*params
    };
    let hist = cell_histograms(gray, size, &params);
    let bins = params.bins as usize;
    let cells = params.cells_per_side();
    let blocks = params.blocks_per_side();
    let mut out = Vec::with_capacity(params.dim());
    for by in 0..blocks {
        for bx in 0..blocks {
            let start = out.len();
            for cy in by..by + BLOCK_CELLS {
                for cx in bx..bx + BLOCK_CELLS {
                    let base = (cy * cells + cx) * bins;
                    out.extend_from_slice(&hist[base..base + bins]);
                }
            }
            l2_hys(&mut out[start..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cell: u32, bins: u32) -> HogParams {
        HogParams {
            input_size: 16,
            cell_size: cell,
            bins,
        }
    }

    /// A 16 x 16 grey image, 0 left of column `edge`, 1 from it on (a vertical edge).
    fn vertical_edge(edge: usize) -> Vec<f32> {
        (0..16 * 16)
            .map(|i| if i % 16 >= edge { 1.0 } else { 0.0 })
            .collect()
    }

    /// Rotate a square row-major image by 90 degrees (counter-clockwise).
    fn rot90(img: &[f32], size: usize) -> Vec<f32> {
        let mut out = vec![0.0; size * size];
        for y in 0..size {
            for x in 0..size {
                // new (x', y') = (y, size - 1 - x)
                out[(size - 1 - x) * size + y] = img[y * size + x];
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol,
                "index {i}: got {g}, want {w}\n{got:?}"
            );
        }
    }

    #[test]
    fn dimension_formula() {
        assert_eq!(HogParams::default().dim(), 6 * 6 * 36);
        assert_eq!(HogParams::default().dim(), 1296);
        let p = |s, c, b| HogParams {
            input_size: s,
            cell_size: c,
            bins: b,
        };
        assert_eq!(p(64, 8, 9).dim(), 7 * 7 * 36);
        assert_eq!(p(112, 8, 9).dim(), 13 * 13 * 36);
        // 100 / 16 = 6 cells (4 pixels left over), 5 x 5 blocks of 4 x 12 values.
        assert_eq!(p(100, 16, 12).dim(), 5 * 5 * 48);
        assert_eq!(p(16, 8, 9).dim(), 36);
        assert!(p(15, 8, 9).validate().is_err());
        assert!(p(16, 0, 9).validate().is_err());
        assert!(p(16, 8, 0).validate().is_err());
        assert!(p(16, 8, 9).validate().is_ok());
    }

    #[test]
    fn orientation_interpolation() {
        assert_eq!(orientation_votes(0.0, 9), (0, 1, 1.0, 0.0));
        // 30 deg lies halfway between the centres 20 (bin 1) and 40 (bin 2).
        let (b0, b1, w0, w1) = orientation_votes(30.0, 9);
        assert_eq!((b0, b1), (1, 2));
        assert!((w0 - 0.5).abs() < 1e-6 && (w1 - 0.5).abs() < 1e-6);
        // 175 deg: 3/4 of the way from 160 (bin 8) to 180 = 0 (bin 0).
        let (b0, b1, w0, w1) = orientation_votes(175.0, 9);
        assert_eq!((b0, b1), (8, 0));
        assert!((w0 - 0.25).abs() < 1e-5 && (w1 - 0.75).abs() < 1e-5);
        // Unsigned: -45 deg is 135 deg, and 180 is 0.
        assert_eq!(orientation_votes(-45.0, 4), (3, 0, 1.0, 0.0));
        assert_eq!(orientation_votes(180.0, 9).0, 0);
        assert_eq!(orientation_votes(-180.0, 9).0, 0);
    }

    #[test]
    fn constant_image_gives_zeros() {
        for value in [0.0, 0.5, 1.0] {
            let d = hog_gray(&[value; 16 * 16], 16, &params(8, 9));
            assert_eq!(d, vec![0.0; 36]);
        }
    }

    #[test]
    fn centred_vertical_edge_by_hand() {
        // Edge at column 8: columns 7 and 8 have gx = 1, gy = 0 (angle 0, bin 0), 16 rows each.
        // Column 7 is at u = (7.5/8 - 0.5) = 0.4375 between the cell centres: 0.5625 to cell
        // column 0, 0.4375 to 1; column 8 the reverse, so each cell column gets 16 in total,
        // split evenly between the two cell rows by symmetry: every cell is [8, 0, ..., 0].
        let hist = cell_histograms(&vertical_edge(8), 16, &params(8, 9));
        let mut cell = [0.0; 9];
        cell[0] = 8.0;
        assert_close(&hist, &cell.repeat(4), 1e-5);
        // One block of four equal entries: L2 -> 0.5 each, clip -> 0.2 each, L2 -> 0.5 each.
        let d = hog_gray(&vertical_edge(8), 16, &params(8, 9));
        let mut want = vec![0.0; 36];
        for k in [0, 9, 18, 27] {
            want[k] = 0.5;
        }
        assert_close(&d, &want, 1e-5);
    }

    #[test]
    fn off_centre_edge_by_hand() {
        // Edge at column 4: columns 3 and 4 vote. Column 3 (u = -0.0625, clamped to 0) gives all
        // to cell column 0; column 4 (u = 0.0625) gives 0.9375 to cell column 0, 0.0625 to 1.
        // Per row: cell column 0 gets 1.9375, column 1 gets 0.0625; 8 rows' worth per cell.
        let hist = cell_histograms(&vertical_edge(4), 16, &params(8, 9));
        let (left, right) = (8.0 * 1.9375, 8.0 * 0.0625);
        let mut want = vec![0.0; 36];
        want[0] = left; // cell (0, 0)
        want[9] = right; // cell (0, 1)
        want[18] = left; // cell (1, 0)
        want[27] = right; // cell (1, 1)
        assert_close(&hist, &want, 1e-4);
        // L2-Hys by hand: |v| = sqrt(2 * 15.5^2 + 2 * 0.5^2) = sqrt(481).
        let n1 = 481f32.sqrt();
        let (a, b) = ((left / n1).min(0.2), (right / n1).min(0.2));
        assert_eq!(a, 0.2); // 15.5 / 21.93 = 0.707 is clipped
        let n2 = (2.0 * a * a + 2.0 * b * b).sqrt();
        let d = hog_gray(&vertical_edge(4), 16, &params(8, 9));
        for (k, v) in [(0, a), (9, b), (18, a), (27, b)] {
            want[k] = v / n2;
        }
        assert_close(&d, &want, 1e-5);
        // Numerically: 0.2 / 0.28468 = 0.70256 and 0.022798 / 0.28468 = 0.080085.
        assert!((d[0] - 0.70256).abs() < 1e-4 && (d[9] - 0.080085).abs() < 1e-4);
    }

    #[test]
    fn rotation_moves_energy_to_90_degrees() {
        let img = vertical_edge(8);
        let rotated = rot90(&img, 16);
        // A horizontal edge: gy != 0, gx = 0, angle 90 deg. With 9 bins (centres 80 and 100)
        // it splits evenly between bins 4 and 5; with 4 bins it is exactly bin 2.
        let hist = cell_histograms(&rotated, 16, &params(8, 9));
        for cell in hist.chunks(9) {
            assert_close(cell, &[0.0, 0.0, 0.0, 0.0, 4.0, 4.0, 0.0, 0.0, 0.0], 1e-5);
        }
        let hist4 = cell_histograms(&rotated, 16, &params(8, 4));
        for cell in hist4.chunks(4) {
            assert_close(cell, &[0.0, 0.0, 8.0, 0.0], 1e-5);
        }
        // Eight equal entries of the block normalise to 1/sqrt(8) after clipping.
        let d = hog_gray(&rotated, 16, &params(8, 9));
        for (k, v) in d.iter().enumerate() {
            let want = if k % 9 == 4 || k % 9 == 5 {
                0.125f32.sqrt()
            } else {
                0.0
            };
            assert!((v - want).abs() < 1e-5, "{k}: {v}");
        }
    }

    #[test]
    fn votes_sum_to_total_magnitude_and_blocks_are_normalised() {
        // A smooth non-trivial image: every pixel's vote must land somewhere.
        let size = 40;
        let img: Vec<f32> = (0..size * size)
            .map(|i| {
                let (x, y) = ((i % size) as f32, (i / size) as f32);
                0.5 + 0.4 * (0.3 * x + 0.1 * y).sin() * (0.2 * y).cos()
            })
            .collect();
        let p = HogParams {
            input_size: size as u32,
            cell_size: 8,
            bins: 9,
        };
        let mut total = 0.0f64;
        for y in 0..size {
            for x in 0..size {
                let at = |x: usize, y: usize| img[y * size + x];
                let gx = at((x + 1).min(size - 1), y) - at(x.saturating_sub(1), y);
                let gy = at(x, (y + 1).min(size - 1)) - at(x, y.saturating_sub(1));
                total += f64::from((gx * gx + gy * gy).sqrt());
            }
        }
        let hist = cell_histograms(&img, size, &p);
        let sum: f64 = hist.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - total).abs() < 1e-3 * total, "{sum} vs {total}");

        let d = hog_gray(&img, size, &p);
        assert_eq!(d.len(), 4 * 4 * 36);
        for block in d.chunks(36) {
            let norm: f32 = block.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(norm <= 1.0 + 1e-5 && norm > 0.9, "block norm {norm}");
            assert!(block.iter().all(|&v| (0.0..=1.0).contains(&v)));
        }
    }

    #[test]
    fn built_from_config() {
        let mut cfg = BackboneConfig {
            name: "hog".into(),
            ..BackboneConfig::default()
        };
        let hog = Hog::new(&cfg).unwrap();
        assert_eq!(hog.params(), HogParams::default());
        assert_eq!(hog.output_shape(), vec![1296]);
        assert_eq!(hog.input_size(), 112);
        cfg.input_size = Some(64);
        cfg.hog_cell = Some(8);
        cfg.out_dim = Some(1764);
        assert_eq!(Hog::new(&cfg).unwrap().output_shape(), vec![1764]);
        cfg.out_dim = Some(1000);
        assert!(Hog::new(&cfg).is_err());
        cfg.out_dim = None;
        cfg.hog_cell = Some(40);
        let err = Hog::new(&cfg).unwrap_err().to_string();
        assert!(err.contains("hog_cell"), "{err}");
    }

    #[test]
    fn records_its_cache_metadata() {
        // The preprocessing text is stored in caches; it must not change.
        let hog = Hog::with_params(HogParams::default()).unwrap();
        let want = BackboneMeta {
            name: "hog".into(),
            input_size: 112,
            output_shape: vec![1296],
            preprocessing: "rgb in [0,1] -> luma BT.601; HOG gradient [-1,0,1], 9 unsigned bins, \
                            cell 16px, block 2x2 stride 1, trilinear votes, L2-Hys clip 0.2"
                .into(),
            weights_id: "none".into(),
        };
        assert_eq!(hog.meta(), &want);
        assert_eq!(hog.name(), "hog");
        assert_eq!(hog.preprocessing(), want.preprocessing);
        assert_eq!(hog.weights_id(), "none");
    }

    #[test]
    fn grayscale_weights() {
        // 1 x 1 image, r = 1, g = 0.5, b = 0.25.
        let g = grayscale(&[1.0, 0.5, 0.25], 1);
        assert!((g[0] - (0.299 + 0.2935 + 0.0285)).abs() < 1e-6);
    }

    #[test]
    fn forward_matches_per_image_descriptor() {
        let hog = Hog::with_params(HogParams {
            input_size: 16,
            cell_size: 8,
            bins: 9,
        })
        .unwrap();
        // Image 0: the vertical edge in all channels (grey = 1 where the edge is 1).
        // Image 1: constant. Image 2: the rotated edge in the red channel only.
        let edge = vertical_edge(8);
        let rotated = rot90(&edge, 16);
        let mut pixels = Vec::new();
        pixels.extend(edge.iter().chain(&edge).chain(&edge));
        pixels.extend(std::iter::repeat_n(0.3f32, 3 * 256));
        pixels.extend(rotated.iter().chain(&[0.0; 256]).chain(&[0.0; 256]));
        let images = Tensor::from_slice(&pixels).view([3, 3, 16, 16]);
        let out = hog.forward(&images);
        assert_eq!(out.size(), vec![3, 36]);
        assert_eq!(out.kind(), Kind::Float);
        let rows = Vec::<Vec<f32>>::try_from(&out).unwrap();
        let mut want0 = vec![0.0; 36];
        for k in [0, 9, 18, 27] {
            want0[k] = 0.5;
        }
        assert_close(&rows[0], &want0, 1e-5);
        assert_close(&rows[1], &[0.0; 36], 0.0);
        // Scaling the image (red weight 0.299) does not change the normalised descriptor.
        assert_close(&rows[2], &hog_gray(&rotated, 16, &params(8, 9)), 1e-5);
        assert_eq!(hog.output_shape(), vec![36]);
        assert_eq!(hog.weights_id(), "none");
        // An empty batch gives an empty [0, dim] tensor.
        let empty = hog.forward(&Tensor::zeros([0, 3, 16, 16], (Kind::Float, Device::Cpu)));
        assert_eq!(empty.size(), vec![0, 36]);
    }
}
