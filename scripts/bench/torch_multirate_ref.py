#!/usr/bin/env python3
"""PyTorch peer of `temporal bench --system configs/systems/multirate-au.toml` (the ABAW5
multi-rate AU encoder, `arch = "multirate"`).

What it does: reads the same training config as the Rust side ([model] d_model, n_heads, ff,
n_layers, dropout; optimizer, lr, momentum, weight_decay, nesterov, clip, streams, seg_len; the
defaults of a missing key are `temporal train`'s), builds `MultiRateAU` from
scripts/fixtures/abaw5_refs.py (imported, not copied; the parity reference of
temporal/src/model/multirate.rs), and times training and inference on synthetic in-memory data
exactly as `temporal bench` does for a segment model:
  data     --videos x --frames rows of --dim standard normal floats (seed --seed); AU labels 0/1
           with p 1/2, a frame's AUs invalid (-1) with p 0.1;
  batches  the temporal peer's streams: videos (shuffled per pass with seed --seed + pass; warm-up
           10 000) dealt greedily to the --batch streams with the fewest frames, each step the next
           --seg-len segment of every stream, padding masked as keys; inference: unshuffled,
           --infer-batch streams;
  loss     `au_loss = "bce"`: BCE with logits averaged over the 12 AUs, then over the frames with
           a valid AU label; `"focal"`: scripts/fixtures/loss_refs.py's focal_loss on those frames
           (focal_gamma; focal_alpha a number, 12 numbers or "frequency", counted on the
           synthetic labels as `temporal bench` does);
  step     zero_grad(set_to_none) -> forward -> loss -> backward -> clip_grad_norm_(clip) ->
           torch.optim.SGD (momentum, nesterov, weight decay) or Adam / AdamW;
  timing   --warmup-steps untimed training steps and 2 untimed inference steps, then --epochs
           training passes and --infer-reps inference passes (eval mode, inference_mode,
           sigmoid probabilities), each capped at --max-steps steps; frames/s = real frames /
           seconds of the pass.

Prints one JSON object on stdout with the keys of `temporal bench`.

Run with the fixture venv: PY=$(bash scripts/fixtures/venv.sh); $PY scripts/bench/torch_multirate_ref.py
--system configs/systems/multirate-au.toml --dim 512 --epochs 3 --max-steps 4.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import tomllib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import abaw5_refs as refs  # noqa: E402
import loss_refs  # noqa: E402

N_AU = refs.N_AU


def fail(msg):
    print(f"torch_multirate_ref: {msg}", file=sys.stderr)
    sys.exit(1)


def load_config(path):
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    model = raw.get("model", {})
    if model.get("arch") != "multirate":
        fail(f"{path}: arch = {model.get('arch')!r}; this peer builds arch = \"multirate\"")
    loss = raw.get("loss", {})
    if loss.get("au_loss", "bce") not in ("bce", "focal"):
        fail(f"{path}: au_loss = {loss.get('au_loss')!r}; this peer computes bce or focal")
    return {
        "au_loss": loss.get("au_loss", "bce"), "focal_gamma": loss.get("focal_gamma", 2.0),
        "focal_alpha": loss.get("focal_alpha", "frequency"),
        "name": os.path.splitext(os.path.basename(path))[0],
        "optimizer": raw.get("optimizer", "adam"), "lr": raw.get("lr", 5e-5),
        "weight_decay": raw.get("weight_decay", 0.0), "momentum": raw.get("momentum", 0.9),
        "nesterov": raw.get("nesterov", False), "clip": raw.get("clip", 5.0),
        "streams": raw.get("streams", 8), "seg_len": raw.get("seg_len", 250),
        "d_model": model.get("d_model", 512), "n_heads": model.get("n_heads", 4),
        "ff": model.get("ff", 1024), "n_layers": model.get("n_layers", 4),
        "dropout": model.get("dropout", 0.3),
    }


class Synthetic:
    def __init__(self, videos, frames, dim, seed):
        g = torch.Generator().manual_seed(seed)
        self.lengths = [frames] * videos
        self.offsets = [i * frames for i in range(videos + 1)]
        n = videos * frames
        self.feats = torch.randn(n, dim, generator=g)
        au = torch.randint(0, 2, (n, N_AU), generator=g).float()
        au[torch.rand(n, generator=g) < 0.1] = -1.0
        self.au = au


def batches(data, n_streams, seg_len, seed):
    """The temporal peer's streams: yields (x [B, L, D], au [B, L, 12], valid [B, L])."""
    order = list(range(len(data.lengths)))
    if seed is not None:
        order = torch.randperm(len(order), generator=torch.Generator().manual_seed(seed)).tolist()
    load = [0] * n_streams
    streams = [[] for _ in range(n_streams)]
    for v in order:
        s = min(range(n_streams), key=lambda i: load[i])
        n = data.lengths[v]
        streams[s].extend((v, st, min(seg_len, n - st)) for st in range(0, n, seg_len))
        load[s] += n
    dim = data.feats.shape[1]
    for t in range(max(len(s) for s in streams)):
        x = torch.zeros(n_streams, seg_len, dim)
        au = torch.full((n_streams, seg_len, N_AU), -1.0)
        valid = torch.zeros(n_streams, seg_len, dtype=torch.bool)
        for b, stream in enumerate(streams):
            if t >= len(stream):
                continue
            v, s, n = stream[t]
            o = data.offsets[v] + s
            x[b, :n] = data.feats[o:o + n]
            au[b, :n] = data.au[o:o + n]
            valid[b, :n] = True
        yield x, au, valid


def focal_alpha(cfg, data):
    """The focal loss's alpha per AU, as `temporal bench` resolves it."""
    a = cfg["focal_alpha"]
    if a == "frequency":
        labels = data.au[(data.au != -1).all(-1)]
        return loss_refs.focal_alpha_frequency(labels.sum(0), (1 - labels).sum(0)).float()
    return torch.tensor([float(a)] * N_AU if not isinstance(a, list) else a, dtype=torch.float32)


def au_loss(logits, au, valid, focal=None):
    """BCE, or with `focal = (alpha, gamma)` the focal loss, over the valid frames."""
    m = (au != -1).all(-1) & valid
    if focal is not None:
        if not m.any():
            return logits.sum() * 0
        return loss_refs.focal_loss(logits[m], au[m], focal[0], focal[1])
    bce = F.binary_cross_entropy_with_logits(logits, au.clamp(min=0), reduction="none").mean(-1)
    return (bce * m).sum() / m.sum().clamp(min=1)


def run_pass(model, opt, it, train, clip, max_steps, warmup=0, focal=None):
    model.train(train)
    frames, steps, t0 = 0, 0, time.perf_counter()
    ctx = torch.enable_grad() if train else torch.inference_mode()
    with ctx:
        for x, au, valid in it:
            if steps == warmup:
                frames, t0 = 0, time.perf_counter()
            logits = model(x, ~valid)
            if train:
                loss = au_loss(logits, au, valid, focal)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
            else:
                torch.sigmoid(logits)
            frames += int(valid.sum())
            steps += 1
            if steps >= warmup + max_steps:
                break
    return frames, time.perf_counter() - t0, steps - warmup


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", required=True, help="training config (TOML)")
    ap.add_argument("--epochs", type=int, default=1, help="timed training passes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=1500, help="frames per video")
    ap.add_argument("--dim", type=int, default=2134, help="feature width")
    ap.add_argument("--tokens", type=int, default=1, help="tokens per frame (must be 1)")
    ap.add_argument("--batch", type=int, default=None, help="training streams")
    ap.add_argument("--seg-len", type=int, default=None)
    ap.add_argument("--infer-batch", type=int, default=8, help="inference streams")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--clip", type=float, default=None)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--infer-reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu"])
    args = ap.parse_args()
    if args.tokens != 1:
        fail("--tokens must be 1: the multi-rate encoder reads one vector per frame")

    cfg = load_config(args.system)
    lr = cfg["lr"] if args.lr is None else args.lr
    clip = cfg["clip"] if args.clip is None else args.clip
    streams = args.batch or cfg["streams"]
    seg_len = args.seg_len or cfg["seg_len"]
    max_steps = args.max_steps if args.max_steps is not None else 1 << 62

    torch.set_num_threads(args.threads)
    t_data = time.perf_counter()
    data = Synthetic(args.videos, args.frames, args.dim, args.seed)
    t_data = time.perf_counter() - t_data

    torch.manual_seed(args.seed)
    model = refs.MultiRateAU(args.dim, cfg["d_model"], cfg["n_heads"], cfg["ff"], cfg["n_layers"],
                             cfg["dropout"])
    n_params = sum(p.numel() for p in model.parameters())
    params = list(model.parameters())
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                              weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg["weight_decay"])

    focal = (focal_alpha(cfg, data), cfg["focal_gamma"]) if cfg["au_loss"] == "focal" else None
    run_pass(model, opt, batches(data, streams, seg_len, 10_000), True, clip, 1,
             warmup=args.warmup_steps - 1, focal=focal)
    train = []
    for ep in range(args.epochs):
        torch.manual_seed(args.seed + ep)
        frames, dt, steps = run_pass(model, opt, batches(data, streams, seg_len, args.seed + ep), True,
                                     clip, max_steps, focal=focal)
        train.append({"frames": frames, "steps": steps, "seconds": round(dt, 3),
                      "fps": round(frames / dt, 1)})
    run_pass(model, None, batches(data, args.infer_batch, seg_len, None), False, clip, 1, warmup=1)
    infer = []
    for _ in range(args.infer_reps):
        frames, dt, steps = run_pass(model, None, batches(data, args.infer_batch, seg_len, None), False,
                                     clip, max_steps)
        infer.append({"frames": frames, "steps": steps, "seconds": round(dt, 3),
                      "fps": round(frames / dt, 1)})

    fps = lambda ps: [p["fps"] for p in ps]  # noqa: E731
    print(json.dumps({
        "peer": "torch_multirate_ref",
        "torch": torch.__version__,
        "system": cfg["name"],
        "arch": "multirate",
        "topology": "basic",
        "feedback": None,
        "optimizer": cfg["optimizer"],
        "threads": args.threads,
        "params": n_params,
        "videos": args.videos,
        "frames_per_video": args.frames,
        "dim": args.dim,
        "tokens": 1,
        "seg_len": seg_len,
        "batch_streams": streams,
        "infer_batch": args.infer_batch,
        "clip": clip,
        "data_gen_s": round(t_data, 2),
        "data_mb": round(data.feats.numel() * 4 / 2**20, 1),
        "train_epochs": train,
        "train_fps": round(statistics.median(fps(train)), 1),
        "train_fps_min_max": [min(fps(train)), max(fps(train))],
        "infer_epochs": infer,
        "infer_fps": round(statistics.median(fps(infer)), 1),
        "infer_fps_min_max": [min(fps(infer)), max(fps(infer))],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
