//! Tests of the feature cache: round trips, crash safety, determinism, h5dump compatibility.

use super::*;
use ndarray::IxDyn;
use std::fs;

fn attrs(dtype: Dtype, dim: usize) -> CacheAttrs {
    CacheAttrs {
        backbone: "iresnet18".into(),
        dim,
        input_size: 112,
        dtype,
        preprocessing: "resize 112, (x-127.5)/127.5".into(),
        weights: "seed:7".into(),
        source: "data/cropped_aligned/1-30-1280x720".into(),
        tool_version: crate::TOOL_VERSION.into(),
    }
}

/// Features whose every value differs: `sin(0.37 i - 1.1 j) * 3` at flat position (i, j).
fn features(shape: &[usize]) -> ArrayD<f32> {
    let n = shape[0];
    let row: usize = shape[1..].iter().product();
    let values =
        (0..n * row).map(|k| ((k / row) as f32 * 0.37 - (k % row) as f32 * 1.1).sin() * 3.0);
    ArrayD::from_shape_vec(IxDyn(shape), values.collect()).unwrap()
}

fn missing(list: &[(i32, &str)]) -> Vec<MissingFrame> {
    list.iter()
        .map(|&(frame, reason)| MissingFrame {
            frame,
            reason: reason.into(),
        })
        .collect()
}

fn sample(shape: &[usize]) -> VideoFeatures {
    // Frames 1, 2, 3, 5, 8, ...: gaps where frames 4, 6, 7 could not be read.
    let frames = [1, 2, 3, 5, 8, 9, 10, 11, 12, 13][..shape[0]].to_vec();
    VideoFeatures {
        frames,
        features: features(shape),
        missing: missing(&[
            (4, "no face"),
            (6, "cannot decode 00006.jpg: bad Huffman code"),
            (7, "no face"),
        ]),
    }
}

fn id(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn video_path_is_cache_backbone_video_h5() {
    let p = video_path(Path::new("/c"), "mae", &id("1-30-1280x720"));
    assert_eq!(p, Path::new("/c/mae/1-30-1280x720.h5"));
}

#[test]
fn round_trip_f32_is_exact_with_missing_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = video_path(dir.path(), "ires", &id("v1"));
    let a = attrs(Dtype::F32, 7);
    let v = sample(&[5, 7]);
    write_video(&path, &a, &v).unwrap();
    assert_eq!(names_in(&dir.path().join("ires")), ["v1.h5"]);

    let (a2, v2) = read_video(&path).unwrap();
    assert_eq!(a2, a);
    assert_eq!(v2.frames, [1, 2, 3, 5, 8]);
    assert_eq!(v2.features, v.features);
    assert_eq!(v2.missing, v.missing);
    assert_eq!(read_attrs(&path).unwrap(), a);
    // sin(0.37*1 - 1.1*2) * 3 at row 1, column 2.
    assert_eq!(v2.features[[1, 2]], (0.37f32 - 2.2).sin() * 3.0);
}

#[test]
fn round_trip_f16_is_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    let mut v = sample(&[4, 6]);
    // Values that float16 holds exactly must come back exactly.
    v.features[[0, 0]] = 0.5;
    v.features[[0, 1]] = -2.0;
    v.features[[0, 2]] = 1024.0;
    v.features[[0, 3]] = 65504.0;
    write_video(&path, &attrs(Dtype::F16, 6), &v).unwrap();
    let (a, back) = read_video(&path).unwrap();
    assert_eq!(a.dtype, Dtype::F16);
    assert_eq!(back.features.shape(), [4, 6]);
    assert_eq!(
        &back.features.as_slice().unwrap()[..4],
        [0.5, -2.0, 1024.0, 65504.0]
    );
    for (x, y) in v.features.iter().zip(back.features.iter()) {
        // 10 stored mantissa bits: relative rounding error at most 2^-11.
        assert!(
            (x - y).abs() <= x.abs() * 2f32.powi(-11) + 2f32.powi(-25),
            "{x} read back as {y}"
        );
    }
    let file = hdf5::File::open(&path).unwrap();
    assert_eq!(file.dataset("features").unwrap().dtype().unwrap().size(), 2);
}

#[test]
fn token_features_round_trip_in_three_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    let v = sample(&[3, 4, 5]);
    write_video(&path, &attrs(Dtype::F32, 5), &v).unwrap();
    let (_, back) = read_video(&path).unwrap();
    assert_eq!(back.features.shape(), [3, 4, 5]);
    assert_eq!(back.features, v.features);
}

#[test]
fn row_file_reads_any_run_of_rows_as_the_whole_file_read_does() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, shape) in [
        (Dtype::F32, vec![7, 5]),
        (Dtype::F16, vec![7, 5]),
        (Dtype::F32, vec![7, 3, 5]),
        (Dtype::F16, vec![7, 3, 5]),
        (Dtype::F16, vec![7, 1, 5]),
    ] {
        let path = dir.path().join(format!("{dtype}-{}.h5", shape.len()));
        write_video(&path, &attrs(dtype, 5), &sample(&shape)).unwrap();
        let (_, whole) = read_video(&path).unwrap();
        let rows = RowFile::open(&path).unwrap();
        let row_len: usize = shape[1..].iter().product();
        assert_eq!(rows.frames(), whole.frames, "{path:?}");
        assert_eq!(
            (rows.row_len(), rows.tokens_axis()),
            (row_len, shape.len() == 3)
        );
        assert_eq!(rows.row_bytes(), row_len * dtype.size());
        let flat = whole.features.as_slice().unwrap();
        for (start, n) in [(0, 7), (2, 3), (6, 1), (4, 0)] {
            let mut got = vec![f32::NAN; n * row_len];
            rows.read_rows(start, &mut got).unwrap();
            assert_eq!(
                got,
                flat[start * row_len..(start + n) * row_len],
                "{path:?} {start}+{n}"
            );
        }
        assert_eq!(rows.missing().unwrap(), whole.missing);
    }
}

#[test]
fn a_video_written_batch_by_batch_is_the_file_written_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, shape) in [(Dtype::F32, vec![10, 6]), (Dtype::F16, vec![10, 3, 2])] {
        let v = sample(&shape);
        let row_len: usize = shape[1..].iter().product();
        let once = dir.path().join(format!("once-{dtype}.h5"));
        write_video(&once, &attrs(dtype, shape[shape.len() - 1]), &v).unwrap();
        let batched = dir.path().join(format!("batched-{dtype}.h5"));
        let mut w = VideoWriter::create(
            &batched,
            &attrs(dtype, shape[shape.len() - 1]),
            &shape[1..],
            None,
        )
        .unwrap();
        let values = v.features.as_slice().unwrap();
        for (start, end) in [(0, 3), (3, 3), (3, 7), (7, 10)] {
            w.append(
                &v.frames[start..end],
                &values[start * row_len..end * row_len],
            )
            .unwrap();
        }
        assert_eq!(w.rows(), 10);
        assert!(
            !batched.exists(),
            "no file under the final name before finish"
        );
        w.finish(&v.missing).unwrap();
        let (a, x) = read_video(&once).unwrap();
        let (b, y) = read_video(&batched).unwrap();
        assert_eq!(
            (a, x.frames, x.features, x.missing),
            (b, y.frames, y.features, y.missing)
        );
        assert_eq!(
            names_in(dir.path()).len(),
            2 * (1 + (dtype == Dtype::F16) as usize)
        );
    }
}

#[test]
fn a_bad_batch_is_refused_naming_the_frame_and_an_unfinished_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    let mut w = VideoWriter::create(&path, &attrs(Dtype::F16, 2), &[2], Some(4)).unwrap();
    w.append(&[1, 2], &[0.5, 1.0, 2.0, 3.0]).unwrap();
    let err = w.append(&[2, 3], &[0.0; 4]).unwrap_err().to_string();
    assert!(
        err.contains("v.h5") && err.contains("frame 2 follows frame 2"),
        "{err}"
    );
    let err = w.append(&[3], &[1e6, 0.0]).unwrap_err().to_string();
    assert!(err.contains("frame 3") && err.contains("float16"), "{err}");
    let err = w.append(&[3], &[f32::NAN, 0.0]).unwrap_err().to_string();
    assert!(
        err.contains("frame 3") && err.contains("not finite"),
        "{err}"
    );
    assert_eq!(w.rows(), 2, "a refused batch writes nothing");
    assert_eq!(names_in(dir.path()).len(), 1, "only the temporary file");
    drop(w);
    assert!(
        names_in(dir.path()).is_empty(),
        "a dropped writer removes its temporary file"
    );
    let w = VideoWriter::create(&path, &attrs(Dtype::F16, 2), &[2], None).unwrap();
    let err = w
        .finish(&missing(&[(3, "no face"), (2, "no face")]))
        .unwrap_err();
    assert!(err.to_string().contains("missing frames"), "{err}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn video_without_any_readable_frame_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    let v = VideoFeatures {
        frames: vec![],
        features: ArrayD::zeros(IxDyn(&[0, 3])),
        missing: missing(&[(1, "no face"), (2, "no face")]),
    };
    write_video(&path, &attrs(Dtype::F16, 3), &v).unwrap();
    let (_, back) = read_video(&path).unwrap();
    assert_eq!(back.features.shape(), [0, 3]);
    assert!(back.frames.is_empty());
    assert_eq!(back.missing, v.missing);
}

#[test]
fn features_are_chunked_by_whole_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    write_video(&path, &attrs(Dtype::F32, 7), &sample(&[5, 7])).unwrap();
    let file = hdf5::File::open(&path).unwrap();
    // 5 rows of 28 bytes are far below the 1 MiB target: one chunk of all rows.
    assert_eq!(file.dataset("features").unwrap().chunk(), Some(vec![5, 7]));

    // Rows of 300 000 f32 (1.2 MB) exceed the target: one row per chunk.
    let path = dir.path().join("big.h5");
    let v = VideoFeatures {
        frames: vec![1, 2],
        features: ArrayD::zeros(IxDyn(&[2, 300_000])),
        missing: vec![],
    };
    write_video(&path, &attrs(Dtype::F32, 300_000), &v).unwrap();
    let file = hdf5::File::open(&path).unwrap();
    assert_eq!(
        file.dataset("features").unwrap().chunk(),
        Some(vec![1, 300_000])
    );
}

#[test]
fn identical_input_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (dir.path().join("a/v.h5"), dir.path().join("b/v.h5"));
    let a = attrs(Dtype::F32, 7);
    let v = sample(&[5, 7]);
    write_video(&p1, &a, &v).unwrap();
    let first = fs::read(&p1).unwrap();
    // Time stamps have a resolution of one second: make sure the clock moves on.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_video(&p2, &a, &v).unwrap();
    write_video(&p1, &a, &v).unwrap(); // rewrite over the existing file
    assert_eq!(fs::read(&p2).unwrap(), first);
    assert_eq!(fs::read(&p1).unwrap(), first);
    assert_eq!(names_in(&dir.path().join("a")), ["v.h5"]);
}

#[test]
fn leftover_temp_file_is_not_a_video_but_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    write_video(
        &video_path(cache, "mae", &id("v1")),
        &attrs(Dtype::F32, 7),
        &sample(&[5, 7]),
    )
    .unwrap();
    // What a writer killed half-way leaves: a temporary name next to the final one.
    let temp = crate::atomic::temp_path_for(&video_path(cache, "mae", &id("v2")));
    fs::write(&temp, b"\x89HDF\r\n\x1a\n half").unwrap();

    assert!(is_temp_file(&temp));
    assert!(!is_temp_file(&video_path(cache, "mae", &id("v1"))));
    assert_eq!(list_videos(cache, "mae").unwrap(), [id("v1")]);
    assert_eq!(
        list_temp_files(cache, "mae").unwrap(),
        std::slice::from_ref(&temp)
    );

    let s = summarize(cache).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].videos, 1);
    let temp_name = temp.file_name().unwrap().to_str().unwrap();
    assert_eq!(s[0].incomplete_files, [temp_name]);
    assert!(s[0].unreadable.is_empty());
}

#[test]
fn garbage_and_truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.h5");
    fs::write(&garbage, "frame,valence\n1,0.5\n").unwrap();
    for err in [
        read_video(&garbage).unwrap_err(),
        read_attrs(&garbage).unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(
            msg.contains("garbage.h5") && msg.contains("extractor extract"),
            "{msg}"
        );
    }

    let truncated = dir.path().join("truncated.h5");
    write_video(&truncated, &attrs(Dtype::F32, 64), &sample(&[10, 64])).unwrap();
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let msg = read_video(&truncated).unwrap_err().to_string();
    assert!(
        msg.contains("truncated.h5") && msg.contains("delete the file"),
        "{msg}"
    );

    let absent = dir.path().join("absent.h5");
    let msg = read_attrs(&absent).unwrap_err().to_string();
    assert!(
        msg.contains("absent.h5") && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn unreadable_and_mixed_files_are_reported_by_summarize() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    let a = attrs(Dtype::F32, 7);
    write_video(&video_path(cache, "ires", &id("v1")), &a, &sample(&[5, 7])).unwrap();
    let mut other = a.clone();
    other.weights = "seed:8".into();
    other.source = "elsewhere".into(); // source may differ: not reported
    write_video(
        &video_path(cache, "ires", &id("v2")),
        &other,
        &sample(&[4, 7]),
    )
    .unwrap();
    let mut v3 = sample(&[2, 7]);
    v3.missing = missing(&[(3, "no face")]);
    write_video(&video_path(cache, "ires", &id("v3")), &a, &v3).unwrap();
    fs::write(cache.join("ires/v4.h5"), "not hdf5").unwrap();
    fs::write(cache.join("ires/notes.txt"), "ignored").unwrap();

    let s = summarize(cache).unwrap();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!(s.backbone, "ires");
    assert_eq!(
        (s.videos, s.frames, s.dim, s.dtype),
        (3, 5 + 4 + 2, 7, Dtype::F32)
    );
    assert_eq!(s.weights, "seed:7");
    assert_eq!(s.preprocessing, a.preprocessing);
    // v1 and v2 miss frames 4, 6, 7 each; v3 misses frame 3.
    assert_eq!(s.missing_frames, 7);
    let reasons: Vec<(&str, usize)> = s
        .missing_reasons
        .iter()
        .map(|(k, &n)| (k.as_str(), n))
        .collect();
    assert_eq!(
        reasons,
        [
            ("cannot decode 00006.jpg: bad Huffman code", 2),
            ("no face", 5)
        ]
    );
    assert_eq!(s.mixed_attrs, [r#"v2: weights "seed:7" vs "seed:8""#]);
    assert_eq!(s.unreadable.len(), 1);
    assert!(
        s.unreadable[0].starts_with("v4.h5: not a readable HDF5 file"),
        "{:?}",
        s.unreadable
    );
    assert!(s.incomplete_files.is_empty());
}

#[test]
fn compatible_with_names_both_values_of_each_difference() {
    let a = attrs(Dtype::F32, 512);
    let mut b = a.clone();
    b.source = "other folder".into();
    b.tool_version = "affect-toolkit 9.9.9".into();
    assert_eq!(a.compatible_with(&b), Ok(()));

    b.dim = 768;
    b.weights = "sha256:ab12".into();
    assert_eq!(
        a.compatible_with(&b),
        Err(r#"dim 512 vs 768; weights "seed:7" vs "sha256:ab12""#.into())
    );

    let c = CacheAttrs {
        backbone: "vit_b16".into(),
        input_size: 224,
        dtype: Dtype::F16,
        preprocessing: "imagenet".into(),
        ..a.clone()
    };
    assert_eq!(
        a.compatible_with(&c),
        Err(concat!(
            r#"backbone "iresnet18" vs "vit_b16"; input_size 112 vs 224; dtype f32 vs f16; "#,
            r#"preprocessing "resize 112, (x-127.5)/127.5" vs "imagenet""#
        )
        .into())
    );
}

#[test]
fn invalid_input_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.h5");
    let a = attrs(Dtype::F32, 7);
    let cases: Vec<(VideoFeatures, CacheAttrs, &str)> = vec![
        (
            VideoFeatures {
                frames: vec![1, 3, 3, 4, 5],
                ..sample(&[5, 7])
            },
            a.clone(),
            "frame 3 follows frame 3",
        ),
        (
            VideoFeatures {
                frames: vec![1, 2, 3, 4],
                ..sample(&[5, 7])
            },
            a.clone(),
            "5 rows but there are 4",
        ),
        (
            sample(&[5, 6]),
            a.clone(),
            "last axis 6 but attribute dim is 7",
        ),
        (sample(&[5]), attrs(Dtype::F32, 5), "expected (frames, dim)"),
        (
            VideoFeatures {
                frames: vec![1, 2, 4, 5, 8],
                ..sample(&[5, 7])
            },
            a.clone(),
            "frame 4 is both",
        ),
        (
            VideoFeatures {
                missing: missing(&[(7, "x"), (6, "y")]),
                ..sample(&[5, 7])
            },
            a.clone(),
            "missing frames: frame 6 follows frame 7",
        ),
        (
            sample(&[5, 7]),
            CacheAttrs {
                weights: "a\0b".into(),
                ..a.clone()
            },
            "weights contains a NUL",
        ),
    ];
    for (v, at, expected) in cases {
        let msg = write_video(&path, &at, &v).unwrap_err().to_string();
        assert!(
            msg.contains("bad.h5") && msg.contains(expected),
            "{msg} lacks {expected:?}"
        );
    }
    let mut v = sample(&[5, 7]);
    v.features[[3, 1]] = f32::NAN;
    let msg = write_video(&path, &a, &v).unwrap_err().to_string();
    assert!(
        msg.contains("frame 5: feature value NaN is not finite"),
        "{msg}"
    );
    v.features[[3, 1]] = 70000.0;
    write_video(&path, &a, &v).unwrap(); // fits f32
    let msg = write_video(&path, &attrs(Dtype::F16, 7), &v)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("frame 5: feature value 70000 does not fit float16; use --dtype f32"),
        "{msg}"
    );
    // Only the one valid write produced a file; no temporary file is left behind.
    assert_eq!(names_in(dir.path()), ["bad.h5"]);
    assert_eq!(read_video(&path).unwrap().1.features[[3, 1]], 70000.0);
}

#[test]
fn listing_sorts_and_skips_non_cache_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path();
    for b in ["mae", "densenet", ".hidden"] {
        fs::create_dir_all(cache.join(b)).unwrap();
    }
    fs::write(cache.join("features.toml"), "").unwrap();
    assert_eq!(list_backbones(cache).unwrap(), ["densenet", "mae"]);
    for v in ["b", "a", "c-1"] {
        write_video(
            &video_path(cache, "mae", &id(v)),
            &attrs(Dtype::F32, 7),
            &sample(&[2, 7]),
        )
        .unwrap();
    }
    fs::write(cache.join("mae/readme.md"), "").unwrap();
    assert_eq!(
        list_videos(cache, "mae").unwrap(),
        [id("a"), id("b"), id("c-1")]
    );
    assert!(list_videos(cache, "densenet").unwrap().is_empty());

    fs::write(cache.join("mae/-x.h5"), "").unwrap();
    let msg = list_videos(cache, "mae").unwrap_err().to_string();
    assert!(
        msg.contains("-x.h5") && msg.contains("rename or remove"),
        "{msg}"
    );
    let msg = list_videos(cache, "absent").unwrap_err().to_string();
    assert!(msg.contains("absent"), "{msg}");
    let msg = summarize(&cache.join("features.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("features.toml: not a folder"), "{msg}");
}

#[test]
fn dtype_names() {
    assert_eq!(serde_json::to_string(&Dtype::F16).unwrap(), r#""f16""#);
    assert_eq!(
        serde_json::from_str::<Dtype>(r#""f32""#).unwrap(),
        Dtype::F32
    );
    assert_eq!("f16".parse::<Dtype>(), Ok(Dtype::F16));
    assert!("float16"
        .parse::<Dtype>()
        .unwrap_err()
        .contains("\"f32\" or \"f16\""));
    assert_eq!(Dtype::F32.to_string(), "f32");
}

/// `h5dump` (the HDF5 reference tool, like h5py built on the C library) sees the documented
/// datasets, types and attributes.
#[test]
fn h5dump_shows_datasets_and_attributes() {
    let h5dump = Path::new("/usr/bin/h5dump");
    if !h5dump.exists() {
        eprintln!("skipped: /usr/bin/h5dump is not installed (make setup installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.h5");
    write_video(&path, &attrs(Dtype::F32, 7), &sample(&[5, 7])).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(h5dump)
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "h5dump {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let header = run(&["-H", "-p"]);
    let squeezed: String = header.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        r#"DATASET "features" { DATATYPE H5T_IEEE_F32LE DATASPACE SIMPLE { ( 5, 7 ) / ( H5S_UNLIMITED, 7 ) }"#,
        "CHUNKED ( 5, 7 )",
        r#"DATASET "frames" { DATATYPE H5T_STD_I32LE DATASPACE SIMPLE { ( 5 ) / ( 5 ) }"#,
        r#"DATASET "missing" { DATATYPE H5T_STD_I32LE DATASPACE SIMPLE { ( 3 ) / ( 3 ) }"#,
        r#"DATASET "missing_reason" { DATATYPE H5T_STRING { STRSIZE H5T_VARIABLE;"#,
        r#"ATTRIBUTE "dim" { DATATYPE H5T_STD_I64LE DATASPACE SCALAR }"#,
        r#"ATTRIBUTE "input_size" { DATATYPE H5T_STD_I64LE DATASPACE SCALAR }"#,
    ] {
        assert!(
            squeezed.contains(expected),
            "h5dump -H lacks {expected:?}:\n{header}"
        );
    }
    for name in [
        "backbone",
        "dtype",
        "preprocessing",
        "weights",
        "source",
        "tool_version",
    ] {
        let utf8 = "STRSIZE H5T_VARIABLE; STRPAD H5T_STR_NULLTERM; CSET H5T_CSET_UTF8;";
        let expected = format!(r#"ATTRIBUTE "{name}" {{ DATATYPE H5T_STRING {{ {utf8}"#);
        assert!(
            squeezed.contains(&expected),
            "h5dump -H lacks {expected:?}:\n{header}"
        );
    }
    let values: String = run(&["-A"])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for expected in [
        r#"(0): "seed:7""#,
        r#"(0): "iresnet18""#,
        r#"(0): "f32""#,
        "(0): 112",
        "(0): 7",
    ] {
        assert!(
            values.contains(expected),
            "h5dump -A lacks {expected:?}:\n{values}"
        );
    }
    let frames = run(&["-d", "/frames"]);
    assert!(
        frames
            .split_whitespace()
            .collect::<String>()
            .contains("(0):1,2,3,5,8"),
        "{frames}"
    );
    let reasons = run(&["-d", "/missing_reason"]);
    assert!(
        reasons.contains(r#""cannot decode 00006.jpg: bad Huffman code""#),
        "{reasons}"
    );
}
