//! The native MTCNN against facenet-pytorch's, on real face photographs.
//!
//! `tests/fixtures/mtcnn/` holds two photographs from the scikit-image wheel (the astronaut,
//! public domain; the cameraman, CC0; the second one grayscale) and a three-face group made from
//! them, with the boxes, probabilities and landmarks facenet-pytorch 2.6.0's `MTCNN()` finds
//! with its default options (`scripts/fixtures/mtcnn_fixture.py`). The native detector, with the
//! same weights (`third_party/mtcnn/`, `make setup`) and options, must find the same faces
//! (matched one to one by IoU), each box with IoU >= 0.95 and every landmark within 1 px.
//! A batch of two frames gives each frame's faces as it gives them alone.

use extractor::faces::mtcnn::{default_weights_dir, Face, Mtcnn, MtcnnOptions};
use extractor::faces::track::iou;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mtcnn")
}

fn detector() -> Mtcnn {
    let dir = default_weights_dir();
    Mtcnn::load(&dir, MtcnnOptions::default(), Device::Cpu).unwrap_or_else(|e| {
        panic!("{e:#}\n(the MTCNN weights come from `make setup`, see scripts/setup.sh)")
    })
}

/// A PNG as `[1,3,H,W]` uint8 RGB (grayscale expanded to three channels, as PIL's convert).
fn image(name: &str) -> Tensor {
    let img = image::open(fixtures().join(name)).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    Tensor::from_slice(img.as_raw())
        .view([1, h as i64, w as i64, 3])
        .permute([0, 3, 1, 2])
}

struct Reference {
    file: String,
    faces: Vec<Face>,
}

fn references() -> Vec<Reference> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["options"]["min_face_size"], 20);
    m["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|img| Reference {
            file: img["file"].as_str().unwrap().to_string(),
            faces: img["faces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let v = |x: &serde_json::Value| x.as_f64().unwrap() as f32;
                    let b: Vec<f32> = f["box"].as_array().unwrap().iter().map(v).collect();
                    let mut landmarks = [[0f32; 2]; 5];
                    for (l, p) in landmarks.iter_mut().zip(f["landmarks"].as_array().unwrap()) {
                        *l = [v(&p[0]), v(&p[1])];
                    }
                    Face {
                        bbox: [b[0], b[1], b[2], b[3]],
                        score: v(&f["prob"]),
                        landmarks,
                    }
                })
                .collect(),
        })
        .collect()
}

/// Every reference face matched to one found face (best IoU), with the IoU and landmark checks.
fn assert_same_faces(file: &str, want: &[Face], got: &[Face]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{file}: found {} faces, facenet-pytorch {}: {got:?} vs {want:?}",
        got.len(),
        want.len()
    );
    let mut used = vec![false; got.len()];
    for w in want {
        let (j, best) = got
            .iter()
            .enumerate()
            .filter(|(j, _)| !used[*j])
            .map(|(j, g)| (j, iou(&w.bbox, &g.bbox)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        used[j] = true;
        assert!(
            best >= 0.95,
            "{file}: box IoU {best} with {:?}, want {:?}",
            got[j].bbox,
            w.bbox
        );
        let mut worst = 0f32;
        for (k, (a, b)) in got[j].landmarks.iter().zip(&w.landmarks).enumerate() {
            let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
            assert!(
                d <= 1.0,
                "{file}: landmark {k} off by {d} px: {a:?} vs {b:?}"
            );
            worst = worst.max(d);
        }
        eprintln!("{file}: box IoU {best:.5}, landmarks within {worst:.4} px");
        assert!(
            (got[j].score - w.score).abs() < 1e-3,
            "{file}: probability {} vs {}",
            got[j].score,
            w.score
        );
    }
}

#[test]
fn mtcnn_finds_the_faces_facenet_pytorch_finds_on_real_photographs() {
    tch::set_num_threads(1);
    let mtcnn = detector();
    let refs = references();
    assert_eq!(refs.len(), 3);
    let mut total = 0;
    for r in &refs {
        let found = mtcnn.detect(&image(&r.file));
        assert_eq!(found.len(), 1);
        assert_same_faces(&r.file, &r.faces, &found[0]);
        total += r.faces.len();
    }
    assert_eq!(total, 5, "the fixture holds five faces");
}

#[test]
fn a_batch_of_frames_gives_each_frame_the_faces_it_has_alone() {
    tch::set_num_threads(1);
    let mtcnn = detector();
    let refs = references();
    let astronaut = refs.iter().find(|r| r.file == "astronaut.png").unwrap();
    let camera = refs.iter().find(|r| r.file == "camera.png").unwrap();
    let batch = Tensor::cat(&[image("astronaut.png"), image("camera.png")], 0);
    let found = mtcnn.detect(&batch);
    assert_eq!(found.len(), 2);
    assert_same_faces("astronaut.png (batch)", &astronaut.faces, &found[0]);
    assert_same_faces("camera.png (batch)", &camera.faces, &found[1]);
    // A frame of flat grey has no face.
    let grey = Tensor::full([1, 3, 120, 160], 128, (tch::Kind::Uint8, Device::Cpu));
    assert!(mtcnn.detect(&grey)[0].is_empty());
}

#[test]
fn missing_weights_are_an_error_that_says_make_setup() {
    let err = Mtcnn::load(
        Path::new("/nonexistent/mtcnn"),
        MtcnnOptions::default(),
        Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("/nonexistent/mtcnn/pnet.pt") && err.contains("make setup"),
        "{err}"
    );
}

#[test]
fn a_truncated_legacy_weights_file_is_an_error_naming_it() {
    // facenet-pytorch's weights are legacy (pre-1.6) torch.save files; cut one short.
    let dir = tempfile::tempdir().unwrap();
    for net in ["pnet", "rnet", "onet"] {
        std::fs::copy(
            default_weights_dir().join(format!("{net}.pt")),
            dir.path().join(format!("{net}.pt")),
        )
        .expect("the MTCNN weights from `make setup`");
    }
    let rnet = dir.path().join("rnet.pt");
    let bytes = std::fs::read(&rnet).unwrap();
    std::fs::write(&rnet, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Mtcnn::load(dir.path(), MtcnnOptions::default(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rnet.pt") && err.contains("truncated") && err.contains("make setup"),
        "{err}"
    );
}
