//! MTCNN face detection (P-Net, R-Net, O-Net), native in tch, batched over frames.
//!
//! What it does: [`Mtcnn::load`] builds the three networks from an [`nn::Path`] with
//! facenet-pytorch's parameter names (`conv1`, `prelu1`, `conv4_1`, `dense5`, `dense6_3`, ...) and
//! fills them from the `pnet.pt`, `rnet.pt`, `onet.pt` state dicts of the facenet-pytorch 2.6.0
//! wheel (read without Python by [`crate::backbones::pth::read`]; `make setup` puts them in
//! `third_party/mtcnn/`). [`Mtcnn::detect`] runs the cascade on a batch of equally sized frames
//! (`[N,3,H,W]` RGB in 0..255 on the detector's device):
//! 1. an image pyramid (scales `12 / min_face_size * factor^k` while the short side stays >= 12
//!    px), each level an area resize of the whole batch to `(int(H*s+1), int(W*s+1))`, pixels
//!    `(x - 127.5) / 128`, P-Net on it; every cell with face probability >= `thresholds[0]` gives
//!    a 12 x 12 window (stride 2) mapped back to the frame; non-maximum suppression (IoU 0.5)
//!    within each level and frame, then (IoU 0.7) across levels;
//! 2. P-Net's box regression (offsets times the window's side), boxes made square around their
//!    centre, cropped from the frame (clamped to it), area-resized to 24 x 24, R-Net on all crops
//!    of all frames at once (chunks of [`CROP_CHUNK`]); probability > `thresholds[1]` kept, NMS
//!    0.7, R-Net's regression (offsets times side + 1), squared again;
//! 3. the same at 48 x 48 with O-Net: probability > `thresholds[2]` kept, the five landmarks
//!    (fractions of the square box, mapped to pixels), O-Net's regression, then NMS with the
//!    intersection over the *smaller* box's area (0.7), so a box inside another is dropped.
//!
//! The options ([`MtcnnOptions`]) default to facenet-pytorch's: minimum face 20 px, thresholds
//! 0.6 / 0.7 / 0.7, pyramid factor 0.709. Where facenet-pytorch's conventions differ between
//! stages they are kept, so the boxes match it (the parity test): NMS of stages 1 and 2 uses
//! `(x2-x1)*(y2-y1)` areas (torchvision's), the last one `(x2-x1+1)*(y2-y1+1)`; crops span
//! `[trunc(x1)-1, trunc(x2))` clamped to the frame. A box whose crop would be empty (entirely
//! outside the frame) is dropped (facenet-pytorch would then misalign its arrays). Box arithmetic
//! runs on the CPU in float32; convolutions, resizes and crops run on the device.
//!
//! What it does not: align or track faces ([`super::align`], [`super::track`]), decode frames,
//! handle frames of different sizes in one batch (the caller batches equal sizes), or rank the
//! faces of a frame (they come in the order of the final NMS, highest probability first).

use crate::backbones::pth;
use anyhow::bail;
use std::path::{Path, PathBuf};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Crops per R-Net / O-Net forward pass (bounds memory when a frame yields many candidates).
pub const CROP_CHUNK: i64 = 512;

/// R-Net / O-Net batches are padded to a multiple of this many crops. Without it every new
/// number of candidates is a new input shape, for which oneDNN builds and caches new
/// convolution primitives (up to 1024 of them): the process then grew by tens of MB over a long
/// video.
pub const CROP_ROUND: i64 = 32;

/// Detector options; the defaults are facenet-pytorch's `MTCNN()`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MtcnnOptions {
    /// Smallest face side in pixels searched for (sets the first pyramid scale, 12 / this).
    pub min_face_size: f64,
    /// Probability thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f64; 3],
    /// Scale ratio between pyramid levels (< 1).
    pub factor: f64,
}

impl Default for MtcnnOptions {
    fn default() -> Self {
        Self {
            min_face_size: 20.0,
            thresholds: [0.6, 0.7, 0.7],
            factor: 0.709,
        }
    }
}

impl MtcnnOptions {
    /// `Ok` if the options can run: min face >= 1, thresholds in [0, 1], factor in (0, 1).
    pub fn check(&self) -> anyhow::Result<()> {
        if !(self.min_face_size >= 1.0 && self.min_face_size.is_finite()) {
            bail!(
                "--min-face-size {}: must be at least 1 pixel",
                self.min_face_size
            );
        }
        if self.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
            bail!("--thresholds {:?}: each must be in [0, 1]", self.thresholds);
        }
        if !(self.factor > 0.0 && self.factor < 1.0) {
            bail!(
                "--factor {}: the pyramid factor must be in (0, 1)",
                self.factor
            );
        }
        Ok(())
    }
}

/// One detected face, in pixel coordinates of the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// O-Net's face probability.
    pub score: f32,
    /// `[x, y]` of left eye, right eye, nose, mouth left, mouth right (as seen in the image:
    /// "left" is the smaller x on a frontal face).
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    /// Box area (`(x2-x1) * (y2-y1)`, 0 if degenerate).
    pub fn area(&self) -> f32 {
        let [x1, y1, x2, y2] = self.bbox;
        (x2 - x1).max(0.0) * (y2 - y1).max(0.0)
    }
}

/// PReLU with PyTorch's name (`<name>.weight`, one slope per channel, initialised 0.25).
#[derive(Debug)]
struct PRelu {
    weight: Tensor,
}

impl PRelu {
    fn new(p: &nn::Path, channels: i64) -> Self {
        Self {
            weight: p.var("weight", &[channels], nn::Init::Const(0.25)),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.prelu(&self.weight)
    }
}

fn conv(p: &nn::Path, c_in: i64, c_out: i64, k: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, k, Default::default())
}

fn pool(x: &Tensor, k: i64, s: i64) -> Tensor {
    x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], true)
}

/// P-Net: a fully convolutional 12 x 12 window classifier and box regressor.
#[derive(Debug)]
struct PNet {
    conv1: nn::Conv2D,
    prelu1: PRelu,
    conv2: nn::Conv2D,
    prelu2: PRelu,
    conv3: nn::Conv2D,
    prelu3: PRelu,
    conv4_1: nn::Conv2D,
    conv4_2: nn::Conv2D,
}

impl PNet {
    fn new(p: &nn::Path) -> Self {
        Self {
            conv1: conv(&(p / "conv1"), 3, 10, 3),
            prelu1: PRelu::new(&(p / "prelu1"), 10),
            conv2: conv(&(p / "conv2"), 10, 16, 3),
            prelu2: PRelu::new(&(p / "prelu2"), 16),
            conv3: conv(&(p / "conv3"), 16, 32, 3),
            prelu3: PRelu::new(&(p / "prelu3"), 32),
            conv4_1: conv(&(p / "conv4_1"), 32, 2, 1),
            conv4_2: conv(&(p / "conv4_2"), 32, 4, 1),
        }
    }

    /// `(regression [N,4,h,w], face probability [N,h,w])`.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = crate::backbones::channels_last(x);
        let x = pool(&self.prelu1.forward(&self.conv1.forward(&x)), 2, 2);
        let x = self.prelu2.forward(&self.conv2.forward(&x));
        let x = self.prelu3.forward(&self.conv3.forward(&x));
        let prob = self
            .conv4_1
            .forward(&x)
            .softmax(1, Kind::Float)
            .select(1, 1);
        (self.conv4_2.forward(&x), prob)
    }
}

/// `[N,C,H,W]` to `[N, W*H*C]` in the (w, h, c) order facenet-pytorch's dense layers were
/// converted with.
fn flatten_whc(x: &Tensor) -> Tensor {
    let n = x.size()[0];
    x.permute([0, 3, 2, 1]).contiguous().view([n, -1])
}

/// R-Net: 24 x 24 crops to face probability and box regression.
#[derive(Debug)]
struct RNet {
    conv1: nn::Conv2D,
    prelu1: PRelu,
    conv2: nn::Conv2D,
    prelu2: PRelu,
    conv3: nn::Conv2D,
    prelu3: PRelu,
    dense4: nn::Linear,
    prelu4: PRelu,
    dense5_1: nn::Linear,
    dense5_2: nn::Linear,
}

impl RNet {
    fn new(p: &nn::Path) -> Self {
        Self {
            conv1: conv(&(p / "conv1"), 3, 28, 3),
            prelu1: PRelu::new(&(p / "prelu1"), 28),
            conv2: conv(&(p / "conv2"), 28, 48, 3),
            prelu2: PRelu::new(&(p / "prelu2"), 48),
            conv3: conv(&(p / "conv3"), 48, 64, 2),
            prelu3: PRelu::new(&(p / "prelu3"), 64),
            dense4: nn::linear(p / "dense4", 576, 128, Default::default()),
            prelu4: PRelu::new(&(p / "prelu4"), 128),
            dense5_1: nn::linear(p / "dense5_1", 128, 2, Default::default()),
            dense5_2: nn::linear(p / "dense5_2", 128, 4, Default::default()),
        }
    }

    /// `(regression [K,4], face probability [K])`.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor) {
        let x = crate::backbones::channels_last(x);
        let x = pool(&self.prelu1.forward(&self.conv1.forward(&x)), 3, 2);
        let x = pool(&self.prelu2.forward(&self.conv2.forward(&x)), 3, 2);
        let x = self.prelu3.forward(&self.conv3.forward(&x));
        let x = self.prelu4.forward(&self.dense4.forward(&flatten_whc(&x)));
        let prob = self
            .dense5_1
            .forward(&x)
            .softmax(1, Kind::Float)
            .select(1, 1);
        (self.dense5_2.forward(&x), prob)
    }
}

/// O-Net: 48 x 48 crops to face probability, box regression and five landmarks.
#[derive(Debug)]
struct ONet {
    conv1: nn::Conv2D,
    prelu1: PRelu,
    conv2: nn::Conv2D,
    prelu2: PRelu,
    conv3: nn::Conv2D,
    prelu3: PRelu,
    conv4: nn::Conv2D,
    prelu4: PRelu,
    dense5: nn::Linear,
    prelu5: PRelu,
    dense6_1: nn::Linear,
    dense6_2: nn::Linear,
    dense6_3: nn::Linear,
}

impl ONet {
    fn new(p: &nn::Path) -> Self {
        Self {
            conv1: conv(&(p / "conv1"), 3, 32, 3),
            prelu1: PRelu::new(&(p / "prelu1"), 32),
            conv2: conv(&(p / "conv2"), 32, 64, 3),
            prelu2: PRelu::new(&(p / "prelu2"), 64),
            conv3: conv(&(p / "conv3"), 64, 64, 3),
            prelu3: PRelu::new(&(p / "prelu3"), 64),
            conv4: conv(&(p / "conv4"), 64, 128, 2),
            prelu4: PRelu::new(&(p / "prelu4"), 128),
            dense5: nn::linear(p / "dense5", 1152, 256, Default::default()),
            prelu5: PRelu::new(&(p / "prelu5"), 256),
            dense6_1: nn::linear(p / "dense6_1", 256, 2, Default::default()),
            dense6_2: nn::linear(p / "dense6_2", 256, 4, Default::default()),
            dense6_3: nn::linear(p / "dense6_3", 256, 10, Default::default()),
        }
    }

    /// `(regression [K,4], landmarks [K,10] (5 x then 5 y), face probability [K])`.
    fn forward(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let x = crate::backbones::channels_last(x);
        let x = pool(&self.prelu1.forward(&self.conv1.forward(&x)), 3, 2);
        let x = pool(&self.prelu2.forward(&self.conv2.forward(&x)), 3, 2);
        let x = pool(&self.prelu3.forward(&self.conv3.forward(&x)), 2, 2);
        let x = self.prelu4.forward(&self.conv4.forward(&x));
        let x = self.prelu5.forward(&self.dense5.forward(&flatten_whc(&x)));
        let prob = self
            .dense6_1
            .forward(&x)
            .softmax(1, Kind::Float)
            .select(1, 1);
        (self.dense6_2.forward(&x), self.dense6_3.forward(&x), prob)
    }
}

/// A candidate box of one frame during the cascade.
#[derive(Debug, Clone, Copy)]
struct Cand {
    frame: usize,
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// The three networks and the options.
#[derive(Debug)]
pub struct Mtcnn {
    _vs: nn::VarStore,
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    opts: MtcnnOptions,
    device: Device,
}

/// The weights folder `make setup` fills: `third_party/mtcnn` of the workspace.
pub fn default_weights_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("third_party")
        .join("mtcnn")
}

impl Mtcnn {
    /// The three networks on `device` with the weights of `dir/{pnet,rnet,onet}.pt`.
    ///
    /// Errors name the missing or mismatched file and say to run `make setup`.
    pub fn load(dir: &Path, opts: MtcnnOptions, device: Device) -> anyhow::Result<Self> {
        opts.check()?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let pnet = PNet::new(&(&root / "pnet"));
        let rnet = RNet::new(&(&root / "rnet"));
        let onet = ONet::new(&(&root / "onet"));
        let vars = vs.variables();
        let _guard = tch::no_grad_guard();
        for net in ["pnet", "rnet", "onet"] {
            let path = dir.join(format!("{net}.pt"));
            if !path.is_file() {
                bail!(
                    "{}: MTCNN weights not found; run `make setup` (it fetches the facenet-pytorch \
                     2.6.0 wheel and unpacks pnet.pt, rnet.pt, onet.pt there), or give the folder \
                     holding them with --mtcnn-weights",
                    path.display()
                );
            }
            let tensors = pth::read(&path).map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read the MTCNN weights: {e}; run `make setup` again",
                    path.display()
                )
            })?;
            let prefix = format!("{net}.");
            let expected: Vec<&String> = vars.keys().filter(|k| k.starts_with(&prefix)).collect();
            let mut seen = 0;
            for (name, t) in &tensors {
                let key = format!("{prefix}{name}");
                let Some(var) = vars.get(&key) else {
                    bail!(
                        "{}: unexpected tensor `{name}` for {net}; this is not facenet-pytorch's \
                         {net}.pt, run `make setup` again",
                        path.display()
                    );
                };
                if var.size() != t.size() {
                    bail!(
                        "{}: `{name}` has shape {:?}, {net} needs {:?}; run `make setup` again",
                        path.display(),
                        t.size(),
                        var.size()
                    );
                }
                var.shallow_clone()
                    .copy_(&t.to_kind(Kind::Float).to_device(device));
                seen += 1;
            }
            if seen != expected.len() {
                bail!(
                    "{}: {seen} of the {} tensors {net} needs; run `make setup` again",
                    path.display(),
                    expected.len()
                );
            }
        }
        // Channels-last convolution weights and inputs (see `backbones::channels_last`).
        crate::backbones::convs_channels_last(&vs);
        Ok(Self {
            _vs: vs,
            pnet,
            rnet,
            onet,
            opts,
            device,
        })
    }

    /// The device the networks run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The options.
    pub fn options(&self) -> MtcnnOptions {
        self.opts
    }

    /// The pyramid scales for a frame of `h x w` pixels.
    pub fn scales(&self, h: i64, w: i64) -> Vec<f64> {
        let m = 12.0 / self.opts.min_face_size;
        let mut minl = h.min(w) as f64 * m;
        let mut s = m;
        let mut out = Vec::new();
        while minl >= 12.0 {
            out.push(s);
            s *= self.opts.factor;
            minl *= self.opts.factor;
        }
        out
    }

    /// The faces of each frame of `images` (`[N,3,H,W]` RGB, 0..255, any float or uint8 kind,
    /// any device: moved to the detector's).
    pub fn detect(&self, images: &Tensor) -> Vec<Vec<Face>> {
        tch::no_grad(|| self.detect_inner(images))
    }

    fn detect_inner(&self, images: &Tensor) -> Vec<Vec<Face>> {
        let imgs = images
            .to_device(self.device)
            .to_kind(Kind::Float)
            .contiguous();
        let (n, _, h, w) = imgs.size4().expect("images are [N,3,H,W]");
        // On the CPU the crops are cut and resized here, not by one small libtorch call per box
        // (whose per-call cost dominated with hundreds of boxes).
        let host: Option<&[f32]> = (self.device == Device::Cpu).then(|| {
            // SAFETY: `imgs` is a contiguous float32 CPU tensor of `numel` elements that lives,
            // unmodified, until the end of this function, which is as long as the slice is used.
            unsafe { std::slice::from_raw_parts(imgs.data_ptr() as *const f32, imgs.numel()) }
        });
        let n = n as usize;
        let th = self.opts.thresholds;

        // Stage 1: P-Net over the pyramid.
        let t0 = std::time::Instant::now();
        let mut cands: Vec<Cand> = Vec::new();
        for scale in self.scales(h, w) {
            let hs = (h as f64 * scale + 1.0) as i64;
            let ws = (w as f64 * scale + 1.0) as i64;
            let data = (imgs.adaptive_avg_pool2d([hs, ws]) - 127.5) * 0.0078125;
            let (reg, prob) = self.pnet.forward(&data);
            let mask = prob.ge(th[0]);
            let idx = mask.nonzero().to_device(Device::Cpu); // [K,3]: frame, y, x
            let k = idx.size()[0];
            if k == 0 {
                continue;
            }
            let scores = Vec::<f32>::try_from(prob.masked_select(&mask).to_device(Device::Cpu))
                .expect("float scores");
            let regs = reg.permute([1, 0, 2, 3]).masked_select(&mask.unsqueeze(0));
            let regs = floats(&regs.view([4, k]).transpose(0, 1));
            let idx = Vec::<i64>::try_from(idx.contiguous().view([-1])).expect("indices");
            let s = scale as f32;
            let mut level: Vec<Cand> = (0..k as usize)
                .map(|i| {
                    let (f, y, x) = (idx[3 * i], idx[3 * i + 1] as f32, idx[3 * i + 2] as f32);
                    Cand {
                        frame: f as usize,
                        b: [
                            ((2.0 * x + 1.0) / s).floor(),
                            ((2.0 * y + 1.0) / s).floor(),
                            ((2.0 * x + 12.0) / s).floor(),
                            ((2.0 * y + 12.0) / s).floor(),
                        ],
                        score: scores[i],
                        reg: [
                            regs[4 * i],
                            regs[4 * i + 1],
                            regs[4 * i + 2],
                            regs[4 * i + 3],
                        ],
                    }
                })
                .collect();
            level = nms_per_frame(level, 0.5, Overlap::Union, false);
            cands.extend(level);
        }
        let cands = nms_per_frame(cands, 0.7, Overlap::Union, false);
        let cands: Vec<Cand> = cands
            .into_iter()
            .map(|c| {
                let [x1, y1, x2, y2] = c.b;
                let (rw, rh) = (x2 - x1, y2 - y1);
                Cand {
                    b: square([
                        x1 + c.reg[0] * rw,
                        y1 + c.reg[1] * rh,
                        x2 + c.reg[2] * rw,
                        y2 + c.reg[3] * rh,
                    ]),
                    ..c
                }
            })
            .collect();

        // Stage 2: R-Net on 24 x 24 crops.
        let t1 = std::time::Instant::now();
        let n1 = cands.len();
        let (cands, crops) = self.crops(&imgs, host, cands, 24, w, h);
        let t1c = std::time::Instant::now();
        let mut cands = if cands.is_empty() {
            cands
        } else {
            let parts = chunked(&crops, |x| {
                let (a, b) = self.rnet.forward(x);
                vec![a, b]
            });
            let (reg, prob) = (floats(&parts[0]), floats(&parts[1]));
            let kept: Vec<Cand> = cands
                .iter()
                .enumerate()
                .filter(|(i, _)| f64::from(prob[*i]) > th[1])
                .map(|(i, c)| Cand {
                    score: prob[i],
                    reg: [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]],
                    ..*c
                })
                .collect();
            nms_per_frame(kept, 0.7, Overlap::Union, false)
                .into_iter()
                .map(|c| Cand {
                    b: square(regress(c.b, c.reg)),
                    ..c
                })
                .collect()
        };

        // Stage 3: O-Net on 48 x 48 crops, landmarks.
        let t2 = std::time::Instant::now();
        tracing::debug!(
            "mtcnn: {n} frames {w}x{h}: P-Net {:.3} s -> {n1} boxes; crops {:.3} s; R-Net {:.3} s -> {} boxes",
            (t1 - t0).as_secs_f64(),
            (t1c - t1).as_secs_f64(),
            (t2 - t1c).as_secs_f64(),
            cands.len()
        );
        let mut out: Vec<Vec<Face>> = vec![Vec::new(); n];
        if cands.is_empty() {
            return out;
        }
        let crops;
        (cands, crops) = self.crops(&imgs, host, cands, 48, w, h);
        if cands.is_empty() {
            return out;
        }
        let parts = chunked(&crops, |x| {
            let (a, b, c) = self.onet.forward(x);
            vec![a, b, c]
        });
        let (reg, pts, prob) = (floats(&parts[0]), floats(&parts[1]), floats(&parts[2]));
        let mut faces: Vec<(usize, Face)> = Vec::new();
        for (i, c) in cands.iter().enumerate() {
            if f64::from(prob[i]) <= th[2] {
                continue;
            }
            let [x1, y1, x2, y2] = c.b;
            let (bw, bh) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
            let p = &pts[10 * i..10 * i + 10];
            let mut landmarks = [[0f32; 2]; 5];
            for (j, l) in landmarks.iter_mut().enumerate() {
                *l = [bw * p[j] + x1 - 1.0, bh * p[5 + j] + y1 - 1.0];
            }
            let r = [reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]];
            faces.push((
                c.frame,
                Face {
                    bbox: regress(c.b, r),
                    score: prob[i],
                    landmarks,
                },
            ));
        }
        for (frame, slot) in out.iter_mut().enumerate() {
            let mine: Vec<Face> = faces
                .iter()
                .filter(|(f, _)| *f == frame)
                .map(|(_, face)| *face)
                .collect();
            let boxes: Vec<[f32; 4]> = mine.iter().map(|f| f.bbox).collect();
            let scores: Vec<f32> = mine.iter().map(|f| f.score).collect();
            *slot = nms(&boxes, &scores, 0.7, Overlap::Min, true)
                .into_iter()
                .map(|i| mine[i])
                .collect();
        }
        out
    }

    /// The crops of `cands` (clamped to the frame, area-resized to `side`), as one
    /// `[K,3,side,side]` tensor normalised for the networks, with the candidates whose crop is
    /// not empty (the others dropped).
    #[allow(clippy::too_many_arguments)]
    fn crops(
        &self,
        imgs: &Tensor,
        host: Option<&[f32]>,
        cands: Vec<Cand>,
        side: i64,
        w: i64,
        h: i64,
    ) -> (Vec<Cand>, Tensor) {
        let mut kept = Vec::with_capacity(cands.len());
        let mut tensors = Vec::with_capacity(cands.len());
        let mut pixels: Vec<f32> = Vec::with_capacity(if host.is_some() {
            cands.len() * 3 * (side * side) as usize
        } else {
            0
        });
        for c in cands {
            let x = (c.b[0].trunc() as i64).max(1);
            let y = (c.b[1].trunc() as i64).max(1);
            let ex = (c.b[2].trunc() as i64).min(w);
            let ey = (c.b[3].trunc() as i64).min(h);
            if ey > y - 1 && ex > x - 1 {
                if let Some(data) = host {
                    let plane = (h * w) as usize;
                    let frame = &data[c.frame * 3 * plane..(c.frame + 1) * 3 * plane];
                    let region = (y - 1, ey, x - 1, ex);
                    area_resize(frame, w as usize, region, side as usize, &mut pixels);
                    kept.push(c);
                    continue;
                }
                let crop = imgs
                    .get(c.frame as i64)
                    .slice(1, y - 1, ey, 1)
                    .slice(2, x - 1, ex, 1)
                    .unsqueeze(0);
                tensors.push(crop.adaptive_avg_pool2d([side, side]));
                kept.push(c);
            }
        }
        if !pixels.is_empty() {
            let k = kept.len() as i64;
            let data = Tensor::from_slice(&pixels).view([k, 3, side, side]);
            return (kept, (data - 127.5) * 0.0078125);
        }
        if tensors.is_empty() {
            return (
                kept,
                Tensor::zeros([0, 3, side, side], (Kind::Float, self.device)),
            );
        }
        let data = (Tensor::cat(&tensors, 0) - 127.5) * 0.0078125;
        (kept, data)
    }
}

/// Appends to `out` the `3 x side x side` area resize (PyTorch's `adaptive_avg_pool2d`: output
/// cell `i` averages input rows `floor(i*H/side) .. ceil((i+1)*H/side)`, the same for columns) of
/// rows `y0..y1`, columns `x0..x1` of the CHW frame `frame` of width `w`.
fn area_resize(
    frame: &[f32],
    w: usize,
    (y0, y1, x0, x1): (i64, i64, i64, i64),
    side: usize,
    out: &mut Vec<f32>,
) {
    let (y0, x0) = (y0 as usize, x0 as usize);
    let (ih, iw) = (y1 as usize - y0, x1 as usize - x0);
    let plane = frame.len() / 3;
    let span = |o: usize, n: usize| (o * n / side, ((o + 1) * n).div_ceil(side));
    for c in 0..3 {
        let p = &frame[c * plane..(c + 1) * plane];
        for oy in 0..side {
            let (sy, ey) = span(oy, ih);
            for ox in 0..side {
                let (sx, ex) = span(ox, iw);
                let mut sum = 0f32;
                for yy in sy..ey {
                    let row = (y0 + yy) * w + x0;
                    for xx in sx..ex {
                        sum += p[row + xx];
                    }
                }
                out.push(sum / ((ey - sy) * (ex - sx)) as f32);
            }
        }
    }
}

/// Runs `f` on chunks of [`CROP_CHUNK`] crops and concatenates each of its outputs.
fn chunked(x: &Tensor, f: impl Fn(&Tensor) -> Vec<Tensor>) -> Vec<Tensor> {
    let k = x.size()[0];
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    let mut start = 0;
    while start < k {
        let len = CROP_CHUNK.min(k - start);
        // Padded with zero crops to a multiple of CROP_ROUND: a few batch shapes only, so the
        // convolution library's per-shape cache stays small however many videos run.
        let padded = (len + CROP_ROUND - 1) / CROP_ROUND * CROP_ROUND;
        let chunk = x.narrow(0, start, len);
        let chunk = if padded > len {
            let (_, c, h, w) = chunk.size4().expect("crops are [K,3,S,S]");
            Tensor::cat(
                &[
                    chunk,
                    Tensor::zeros([padded - len, c, h, w], (x.kind(), x.device())),
                ],
                0,
            )
        } else {
            chunk
        };
        parts.push(f(&chunk).into_iter().map(|o| o.narrow(0, 0, len)).collect());
        start += len;
    }
    let outputs = parts.first().map_or(0, Vec::len);
    (0..outputs)
        .map(|o| {
            Tensor::cat(
                &parts
                    .iter()
                    .map(|p| p[o].shallow_clone())
                    .collect::<Vec<_>>(),
                0,
            )
        })
        .collect()
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .view([-1]),
    )
    .expect("float tensor")
}

/// A box moved by regression offsets times its side + 1 (R-Net's and O-Net's convention).
fn regress(b: [f32; 4], r: [f32; 4]) -> [f32; 4] {
    let w = b[2] - b[0] + 1.0;
    let h = b[3] - b[1] + 1.0;
    [
        b[0] + r[0] * w,
        b[1] + r[1] * h,
        b[2] + r[2] * w,
        b[3] + r[3] * h,
    ]
}

/// The square of side `max(w, h)` with the same centre.
fn square(b: [f32; 4]) -> [f32; 4] {
    let h = b[3] - b[1];
    let w = b[2] - b[0];
    let l = w.max(h);
    let x1 = b[0] + w * 0.5 - l * 0.5;
    let y1 = b[1] + h * 0.5 - l * 0.5;
    [x1, y1, x1 + l, y1 + l]
}

/// How NMS measures the overlap of two boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller area.
    Min,
}

/// Greedy non-maximum suppression: indices of the kept boxes, highest score first; a box is
/// dropped when its overlap with a kept one exceeds `threshold`. `plus_one`: areas and
/// intersections count pixels inclusively (`x2 - x1 + 1`).
pub fn nms(
    boxes: &[[f32; 4]],
    scores: &[f32],
    threshold: f32,
    overlap: Overlap,
    plus_one: bool,
) -> Vec<usize> {
    let one = if plus_one { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + one) * (b[3] - b[1] + one);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut removed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        if removed[i] {
            continue;
        }
        keep.push(i);
        let bi = &boxes[i];
        let ai = area(bi);
        for &j in &order[pos + 1..] {
            if removed[j] {
                continue;
            }
            let bj = &boxes[j];
            let iw = (bi[2].min(bj[2]) - bi[0].max(bj[0]) + one).max(0.0);
            let ih = (bi[3].min(bj[3]) - bi[1].max(bj[1]) + one).max(0.0);
            let inter = iw * ih;
            let aj = area(bj);
            let o = match overlap {
                Overlap::Union => inter / (ai + aj - inter),
                Overlap::Min => inter / ai.min(aj),
            };
            if o > threshold {
                removed[j] = true;
            }
        }
    }
    keep
}

/// [`nms`] within each frame; the survivors keep their frame, grouped by frame.
fn nms_per_frame(cands: Vec<Cand>, threshold: f32, overlap: Overlap, plus_one: bool) -> Vec<Cand> {
    let frames = cands.iter().map(|c| c.frame + 1).max().unwrap_or(0);
    let mut out = Vec::with_capacity(cands.len());
    for f in 0..frames {
        let mine: Vec<&Cand> = cands.iter().filter(|c| c.frame == f).collect();
        let boxes: Vec<[f32; 4]> = mine.iter().map(|c| c.b).collect();
        let scores: Vec<f32> = mine.iter().map(|c| c.score).collect();
        out.extend(
            nms(&boxes, &scores, threshold, overlap, plus_one)
                .into_iter()
                .map(|i| *mine[i]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_all_separate_ones() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0],
            [20.0, 20.0, 30.0, 30.0],
            [2.0, 2.0, 8.0, 8.0],
        ];
        let scores = [0.8, 0.9, 0.5, 0.7];
        // IoU of 0 and 1 is 81/119 = 0.68 > 0.5; box 3 is inside 1 (IoU 0.36).
        assert_eq!(nms(&boxes, &scores, 0.5, Overlap::Union, false), [1, 3, 2]);
        // By the smaller area, box 3 overlaps box 1 entirely.
        assert_eq!(nms(&boxes, &scores, 0.7, Overlap::Min, true), [1, 2]);
    }

    #[test]
    fn the_cpu_area_resize_equals_adaptive_average_pooling() {
        let (h, w) = (37i64, 53i64);
        let img = Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu)) * 255.0;
        let data = floats(&img);
        for (region, side) in [
            ((3, 30, 5, 50), 24),
            ((0, 37, 0, 53), 48),
            ((10, 12, 7, 9), 24),
        ] {
            let mut mine = Vec::new();
            area_resize(&data, w as usize, region, side, &mut mine);
            let (y0, y1, x0, x1) = region;
            let want = img
                .slice(2, y0, y1, 1)
                .slice(3, x0, x1, 1)
                .adaptive_avg_pool2d([side as i64, side as i64]);
            let want = floats(&want);
            assert_eq!(mine.len(), want.len());
            let worst = mine
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "region {region:?} -> {side}: off by {worst}");
        }
    }

    #[test]
    fn square_keeps_the_centre_and_takes_the_longer_side() {
        assert_eq!(square([10.0, 20.0, 30.0, 60.0]), [0.0, 20.0, 40.0, 60.0]);
    }

    #[test]
    fn the_pyramid_starts_at_twelve_over_the_minimum_face_and_stops_below_twelve_pixels() {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Mtcnn {
            pnet: PNet::new(&(vs.root() / "pnet")),
            rnet: RNet::new(&(vs.root() / "rnet")),
            onet: ONet::new(&(vs.root() / "onet")),
            _vs: vs,
            opts: MtcnnOptions::default(),
            device: Device::Cpu,
        };
        let s = m.scales(120, 160);
        assert!((s[0] - 0.6).abs() < 1e-12);
        assert!((s[1] - 0.6 * 0.709).abs() < 1e-12);
        // 120 * 0.6 * 0.709^k >= 12 for k <= 5
        assert_eq!(s.len(), 6);
        assert!(
            m.scales(19, 400).is_empty(),
            "a frame smaller than the minimum face"
        );
    }
}
