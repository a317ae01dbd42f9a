//! Pixel conversion shared by frame folders and video files: interleaved RGB bytes to the
//! channels-first floats in `[0, 1]` that the backbones read.
//!
//! What it does not: decode or resize images, or normalise for a backbone (mean/std are the
//! backbone's business).

/// Interleaved RGB bytes of a `size x size` image (`HWC`, as ffmpeg's `rgb24` and `image`'s
/// `RgbImage`) to channels-first floats in `[0, 1]`.
///
/// # Panics
/// If `rgb.len() != 3 * size * size` (a caller bug).
pub fn rgb8_to_chw(rgb: &[u8], size: u32) -> Vec<f32> {
    let plane = (size as usize) * (size as usize);
    assert_eq!(
        rgb.len(),
        3 * plane,
        "rgb8_to_chw: buffer is not {size}x{size}x3"
    );
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_layout_and_scale() {
        // 2x2 image, pixels (r,g,b): (0,51,255) (255,0,0) / (0,255,0) (102,102,102)
        let rgb = [0, 51, 255, 255, 0, 0, 0, 255, 0, 102, 102, 102];
        let chw = rgb8_to_chw(&rgb, 2);
        let expected = [
            0.0, 1.0, 0.0, 0.4, // R plane
            0.2, 0.0, 1.0, 0.4, // G plane
            1.0, 0.0, 0.0, 0.4, // B plane
        ];
        for (a, b) in chw.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{chw:?}");
        }
    }
}
