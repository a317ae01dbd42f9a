#!/usr/bin/env python3
"""The PyTorch peer of `make bench-faces`: facenet-pytorch's MTCNN plus a five-point alignment.

What it does:
  --make-frames  writes FRAMES frames of WIDTHxHEIGHT (PNG) into --frames-dir/bench/, each a
                 grey canvas with the scikit-image astronaut and cameraman photographs of
                 extractor/tests/fixtures/mtcnn/ pasted at positions and sizes that change from
                 frame to frame (two faces per frame, the astronaut larger);
  otherwise      loads those frames once (uint8 RGB arrays, not timed), then times detection
                 + alignment: facenet-pytorch 2.6.0's `MTCNN(device="cpu")` (default options,
                 the weights of its wheel) `.detect(batch, landmarks=True)` on batches of
                 --batch frames, then for each frame the largest face aligned onto the ArcFace
                 112 template scaled to --size (least-squares similarity, numpy; bilinear warp with
                 PIL's Image.transform), which is what `extractor faces` does. One warm-up batch
                 is run first and not timed; the rate is over the whole set after it, REPS passes.
                 Prints one JSON line: {"frames", "seconds", "fps", "faces", "threads"}.

What it does not: decode video, write images, or measure memory (the shell script wraps it in
GNU time for the peak RSS).

Needs facenet-pytorch in the venv (`pip install --no-deps facenet-pytorch==2.6.0`; torchvision
is there).
"""
import argparse
import glob
import importlib.util
import json
import os
import sys
import time
import types

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(ROOT, "extractor", "tests", "fixtures", "mtcnn")
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def make_frames(out, n, width, height):
    folder = os.path.join(out, "bench")
    os.makedirs(folder, exist_ok=True)
    astronaut = Image.open(os.path.join(FIXTURES, "astronaut.png")).convert("RGB")
    camera = Image.open(os.path.join(FIXTURES, "camera.png")).convert("RGB")
    rng = np.random.default_rng(0)
    for i in range(n):
        canvas = Image.new("RGB", (width, height), (96, 112, 128))
        a = int(height * rng.uniform(0.55, 0.8))
        c = int(height * rng.uniform(0.3, 0.45))
        canvas.paste(astronaut.resize((a, a), Image.BILINEAR),
                     (int(rng.uniform(0, width / 2 - a / 2)), int(rng.uniform(0, height - a))))
        canvas.paste(camera.resize((c, c), Image.BILINEAR),
                     (int(rng.uniform(width / 2, width - c)), int(rng.uniform(0, height - c))))
        canvas.save(os.path.join(folder, f"{i + 1:05d}.png"))


def load_mtcnn():
    # Register the package by its folder without running its __init__ (which imports
    # InceptionResnetV1 and `requests`); the detector needs neither.
    spec = importlib.util.find_spec("facenet_pytorch")
    pkg = os.path.dirname(spec.origin)
    for name, folder in [("facenet_pytorch", pkg),
                         ("facenet_pytorch.models", os.path.join(pkg, "models"))]:
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [folder]
            sys.modules[name] = m
    from facenet_pytorch.models.mtcnn import MTCNN
    return MTCNN(device="cpu")


def similarity(src, dst):
    """Least-squares similarity (rotation, scale, translation) taking src onto dst: 2x3 matrix."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    var = (s ** 2).sum()
    a = (s * d).sum() / var
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / var
    r = np.array([[a, -b], [b, a]])
    t = md - r @ ms
    return np.hstack([r, t[:, None]])


def align(img, landmarks, size):
    m = similarity(np.asarray(landmarks, dtype=np.float64), ARCFACE_112 * size / 112.0)
    full = np.vstack([m, [0, 0, 1]])
    inv = np.linalg.inv(full)[:2]  # PIL maps output to input coordinates
    return img.transform((size, size), Image.AFFINE, inv.flatten().tolist(), Image.BILINEAR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-dir", required=True)
    ap.add_argument("--make-frames", action="store_true")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    if args.make_frames:
        make_frames(args.frames_dir, args.frames, args.width, args.height)
        return
    import torch
    torch.set_num_threads(args.threads)
    files = sorted(glob.glob(os.path.join(args.frames_dir, "bench", "*.png")))
    pil = [Image.open(f).convert("RGB") for f in files]
    arrays = [np.asarray(p) for p in pil]
    mtcnn = load_mtcnn()
    batches = [list(range(i, min(i + args.batch, len(arrays))))
               for i in range(0, len(arrays), args.batch)]

    def run(batch):
        boxes, probs, points = mtcnn.detect([arrays[i] for i in batch], landmarks=True)
        n = 0
        for i, b, p in zip(batch, boxes, points):
            if b is None or len(b) == 0:
                continue
            areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            align(pil[i], p[int(np.argmax(areas))], args.size)
            n += 1
        return n

    with torch.no_grad():
        run(batches[0])
        faces = 0
        start = time.perf_counter()
        for _ in range(args.reps):
            for b in batches:
                faces += run(b)
        seconds = time.perf_counter() - start
    frames = len(arrays) * args.reps
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds,
                      "faces": faces, "threads": args.threads}))


if __name__ == "__main__":
    main()
