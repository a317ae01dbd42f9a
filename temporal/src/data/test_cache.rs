//! Test support: small cache files with known values, for the data layer's tests.

use shared::cache;
use std::path::Path;

/// Writes `<root>/<set>/<video>.h5` with the given frame numbers, `shape` per frame (`[d]` or
/// `[tokens, d]`) stored as `dtype`, and `features[frame][t][c] = f(frame, t, c)`.
pub fn write_set(
    root: &Path,
    set: &str,
    video: &str,
    frames: &[i32],
    shape: &[usize],
    dtype: cache::Dtype,
    f: fn(usize, usize, usize) -> f32,
) {
    let (t, d) = match *shape {
        [d] => (1, d),
        [t, d] => (t, d),
        _ => panic!("shape {shape:?}: [d] or [tokens, d]"),
    };
    let mut full = vec![frames.len()];
    full.extend_from_slice(shape);
    let values: Vec<f32> = frames
        .iter()
        .flat_map(|&frame| (0..t * d).map(move |i| f(frame as usize, i / d, i % d)))
        .collect();
    let v = cache::VideoFeatures {
        frames: frames.to_vec(),
        features: ndarray::ArrayD::from_shape_vec(full, values).unwrap(),
        missing: Vec::new(),
    };
    let attrs = cache::CacheAttrs {
        backbone: set.to_string(),
        dim: d,
        input_size: 0,
        dtype,
        preprocessing: "test".to_string(),
        weights: "seed:0".to_string(),
        source: "test".to_string(),
        tool_version: shared::TOOL_VERSION.to_string(),
    };
    let path = cache::video_path(root, set, &video.parse().unwrap());
    cache::write_video(&path, &attrs, &v).unwrap();
}
