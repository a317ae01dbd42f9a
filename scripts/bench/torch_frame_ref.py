#!/usr/bin/env python3
"""PyTorch peer of `temporal bench --system FILE` for frame-level systems (arch = "none").

What it does: reads the same training config as the Rust side (`configs/bench/*.toml`,
`configs/systems/*.toml`: tasks, [model], [model.heads], [model.lrp], [loss], optimizer, lr,
momentum, weight_decay, nesterov, sam_rho, clip, batch_size; the defaults of a missing key are
`temporal train`'s), builds the model from the parity references in scripts/fixtures/affect_refs.py
(imported, not copied):
  tasks au,          au = "anfl"        -> AnflHead(C, 12, anfl_neighbors, drop = anfl_dropout)
  tasks va+expr+au,  va = "tanh-bn", expr = "au-attention", au = "anfl"
                                        -> Amtl(C, anfl_neighbors) (its ANFL dropout = anfl_dropout)
  tasks au,          au = "lrp-arl-ff"  -> LrpArlFf(C, [model.lrp]) on tokens [N, T, C]
and from scripts/fixtures/task_queries_refs.py:
  any tasks,         all = "task-queries" -> TaskQueries(C, T, [model.task_queries]) on tokens
                                           [N, T, C] (the configured tasks' outputs)
and times training and inference on synthetic in-memory data exactly as `temporal bench` does:
  data     --videos x --frames rows of --tokens x --dim standard normal floats (seed --seed);
           labels as the temporal peer: VA uniform [-1, 1), expression uniform 0..8, AUs 0/1
           with p 1/2, each task invalid (-5 / -1 / -1) on ~10% of the frames;
  loss     per task over its valid frames: WAL (weights "auto" from the AU rates of the
           synthetic labels, as `temporal train` counts them), BCE (+ circle), class-balanced CE
           (the weighted mean; "auto" = sklearn-balanced weights, whose scale cancels), 1 - CCC
           or MSE for valence and arousal; times [loss.task_weights];
  step     zero_grad(set_to_none) -> forward -> loss -> backward; with sam_rho > 0 the public
           SAM (davda54/sam, as MTL-ABAW4 uses it): e = rho g / (||g|| + 1e-12), w += e, a second
           forward/backward with BatchNorm running statistics frozen (momentum 0), w restored from
           a copy; then clip_grad_norm_(clip) and the base torch.optim step (Adam, AdamW, SGD);
  batches  training: a fresh torch.randperm of all rows per pass (seed --seed + pass; warm-up
           10 000), --batch frames per step [default: the file's batch_size]; inference: rows
           in order, --infer-batch frames per step [default: the training batch], eval mode,
           inference_mode, probabilities (VA, expression softmax, AU scores or sigmoid) written
           into a [N, 22] row tensor;
  timing   --warmup-steps untimed training steps and 2 untimed inference steps, then --epochs
           training passes and --infer-reps inference passes, each capped at --max-steps steps;
           frames/s = real frames / seconds of the pass.

Prints one JSON object on stdout with the keys of `temporal bench` (train_epochs, infer_epochs,
medians, min/max, peak_rss_mb, train_phases_ms / infer_phases_ms: the mean milliseconds per
timed step of gather, forward, loss, backward, update (zero_grad, SAM's ascent, clipping, the
step) and of gather, forward, outputs, with the boundaries of `temporal bench`; see
scripts/bench/phases.py).

Exit status: 0; 1 with a message on stderr for a config this peer does not build (another
encoder, heads or tasks; frozen parts).

Run with the fixture venv: PY=$(bash scripts/fixtures/venv.sh); $PY scripts/bench/torch_frame_ref.py
--system configs/bench/anfl.toml --dim 512 --epochs 3 --max-steps 20.
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
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import affect_refs as refs  # noqa: E402
import task_queries_refs as tq_refs  # noqa: E402
from phases import Phases  # noqa: E402

N_AU, N_EXPR = refs.N_AU, refs.N_EXPR
PRED_COLS = 2 + N_EXPR + N_AU


def fail(msg):
    print(f"torch_frame_ref: {msg}", file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------------------------
# config (defaults: temporal's TrainConfig / model Config / LossConfig / LrpConfig)
# --------------------------------------------------------------------------------------------
def load_config(path):
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    model = raw.get("model", {})
    heads = {"va": "mlp", "expr": "mlp", "au": "mlp", "all": "none", **model.get("heads", {})}
    task_queries = {"channels": 128, "compress_hidden": 512, "heads": 8, "blocks": 4, "ff": 512,
                    "dropout": 0.1, "positions": "learned", "graph": "knn", "neighbors": 4,
                    **model.get("task_queries", {})}
    lrp = {"lanets": 4, "reduction": 8, "fusion": "attention", "fusion_weight": 0.5,
           "fusion_heads": 8, "fusion_ff": 0, "fusion_layers": 2, "fusion_dropout": 0.1,
           **model.get("lrp", {})}
    loss = {"va_loss": "mse", "expr_class_weights": "none", "au_pos_weight": "none",
            "au_loss": "bce", "au_weights": "none", **raw.get("loss", {})}
    loss["task_weights"] = {"valence": 1.0, "arousal": 1.0, "expr": 1.0, "au": 1.0,
                            **loss.get("task_weights", {})}
    return {
        "name": os.path.splitext(os.path.basename(path))[0],
        "tasks": raw.get("tasks", ["va", "expr", "au"]),
        "batch_size": raw.get("batch_size", 256),
        "optimizer": raw.get("optimizer", "adam"),
        "lr": raw.get("lr", 5e-5),
        "weight_decay": raw.get("weight_decay", 0.0),
        "momentum": raw.get("momentum", 0.9),
        "nesterov": raw.get("nesterov", False),
        "sam_rho": raw.get("sam_rho", 0.0),
        "clip": raw.get("clip", 5.0),
        "freeze": raw.get("freeze", []),
        "arch": model.get("arch", "gru"),
        "topology": model.get("topology", "basic"),
        "anfl_neighbors": model.get("anfl_neighbors", 4),
        "anfl_dropout": model.get("anfl_dropout", 0.0),
        "heads": heads,
        "lrp": lrp,
        "task_queries": task_queries,
        "loss": loss,
    }


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
class FrameModel(nn.Module):
    """One of the affect_refs models behind one interface: forward(x) -> {task: output}."""

    def __init__(self, cfg, dim, tokens):
        super().__init__()
        if cfg["arch"] != "none" or cfg["topology"] != "basic":
            fail(f"arch = {cfg['arch']!r}, topology = {cfg['topology']!r}: this peer builds "
                 "frame-level systems (arch = \"none\", basic); use "
                 "../shared/peers/torch_temporal_ref.py for the temporal ones")
        if cfg["freeze"]:
            fail(f"freeze = {cfg['freeze']}: frozen parts are not supported by this peer")
        tasks, h = set(cfg["tasks"]), cfg["heads"]
        self.tokens = tokens
        self.tasks = tasks
        if h["all"] == "task-queries" and tokens > 1:
            self.kind = "task-queries"
            self.net = tq_refs.TaskQueries(dim, tokens, **cfg["task_queries"])
        elif h["all"] != "none":
            fail(f"[model.heads] all = {h['all']!r} on {tokens} token(s): not a system this peer builds")
        elif tasks == {"au"} and h["au"] == "anfl" and tokens == 1:
            self.kind = "anfl"
            self.net = refs.AnflHead(dim, N_AU, cfg["anfl_neighbors"], drop=cfg["anfl_dropout"])
        elif (tasks == {"va", "expr", "au"} and (h["va"], h["expr"], h["au"])
              == ("tanh-bn", "au-attention", "anfl") and tokens == 1):
            self.kind = "amtl"
            self.net = refs.Amtl(dim, cfg["anfl_neighbors"])
            for block in self.net.au.class_linears:
                block.drop = cfg["anfl_dropout"]
        elif tasks == {"au"} and h["au"] == "lrp-arl-ff" and tokens > 1:
            self.kind = "lrp"
            l = cfg["lrp"]
            self.net = refs.LrpArlFf(dim, fusion=l["fusion"], fusion_weight=l["fusion_weight"],
                                     num_lanets=l["lanets"], reduction=l["reduction"],
                                     neighbor_num=cfg["anfl_neighbors"], heads=l["fusion_heads"],
                                     ff_dim=l["fusion_ff"] or None, layers=l["fusion_layers"],
                                     dropout=l["fusion_dropout"])
        else:
            fail(f"tasks {sorted(tasks)} with heads {h} on {tokens} token(s): not a system this "
                 "peer builds (ANFL AU; MTCA: tanh-bn VA + au-attention EXPR + ANFL AU; "
                 "LRP-ARL-FF AU on tokens; task queries on tokens)")
        self.au_probabilities = self.kind not in ("lrp", "task-queries")

    def forward(self, x):
        if self.kind == "anfl":
            return {"au": self.net(x)}
        if self.kind == "amtl":
            va, ex, au = self.net(x)
            return {"va": va, "expr": ex, "au": au}
        if self.kind == "task-queries":
            au, ex, va = self.net(x.view(x.shape[0], self.tokens, -1))
            return {k: v for k, v in (("va", va), ("expr", ex), ("au", au)) if k in self.tasks}
        return {"au": self.net(x.view(x.shape[0], self.tokens, -1))}


# --------------------------------------------------------------------------------------------
# data and loss
# --------------------------------------------------------------------------------------------
class Synthetic:
    def __init__(self, n, width, seed, invalid=0.1):
        g = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(n, width, generator=g)
        va = torch.rand(n, 2, generator=g) * 2 - 1
        va[torch.rand(n, generator=g) < invalid] = -5.0
        expr = torch.randint(0, N_EXPR, (n,), generator=g)
        expr[torch.rand(n, generator=g) < invalid] = -1
        au = torch.randint(0, 2, (n, N_AU), generator=g).float()
        au[torch.rand(n, generator=g) < invalid] = -1.0
        self.va, self.expr, self.au = va, expr, au
        self.n = n


def weights(spec, auto, n):
    """none / auto / an explicit list, as a tensor (None for none)."""
    if spec == "none":
        return None
    if spec == "auto":
        return auto()
    if len(spec) != n:
        fail(f"{len(spec)} weights given where {n} are needed")
    return torch.tensor(spec, dtype=torch.float32)


class Loss:
    """temporal's masked multi-task loss for the systems above (see the module docstring)."""

    def __init__(self, cfg, data, au_probabilities):
        self.c = cfg["loss"]
        self.tw = self.c["task_weights"]
        self.au_probabilities = au_probabilities
        au_ok = (data.au != -1).all(-1)
        y = data.au[au_ok]
        pos, neg = y.sum(0).double(), (1 - y).sum(0).double()
        self.wal_w = weights(self.c["au_weights"],
                             lambda: refs.wal_weights(pos / (pos + neg)).float(), N_AU)
        self.pos_w = weights(self.c["au_pos_weight"],
                             lambda: torch.where((pos > 0) & (neg > 0), neg / pos.clamp_min(1),
                                                 torch.ones_like(pos)).float(), N_AU)
        counts = torch.bincount(data.expr[data.expr >= 0], minlength=N_EXPR)
        self.expr_counts = counts
        spec = self.c["expr_class_weights"]
        self.expr_w = None if spec in ("none", "auto") else weights(spec, None, N_EXPR)

    def bce(self, out, y):
        if not self.au_probabilities:
            return F.binary_cross_entropy_with_logits(out, y, pos_weight=self.pos_w,
                                                      reduction="none").mean(-1).mean()
        w = 1.0 if self.pos_w is None else self.pos_w
        return -(w * y * out.log().clamp_min(-100)
                 + (1 - y) * (1 - out).log().clamp_min(-100)).mean(-1).mean()

    def __call__(self, out, va, expr, au):
        total = 0.0
        if "au" in out:
            m = (au != -1).all(-1)
            o, y = out["au"][m], au[m]
            kind = self.c["au_loss"]
            if kind == "wal":
                p = o if self.au_probabilities else o.sigmoid()
                w = torch.ones(N_AU) if self.wal_w is None else self.wal_w
                loss = refs.wal_loss(p, y, w)
            elif kind == "bce":
                loss = self.bce(o, y)
            elif kind == "bce+circle":
                s = o.clamp(1e-7, 1 - 1e-7).logit() if self.au_probabilities else o
                loss = self.bce(o, y) + refs.circle_loss(s, y)
            else:
                fail(f"au_loss = {kind!r}")
            total = total + self.tw["au"] * loss
        if "expr" in out:
            m = expr != -1
            logits, t = out["expr"][m], expr[m]
            if self.c["expr_class_weights"] == "auto":
                loss = refs.balanced_ce(logits, t, self.expr_counts, reduction="weighted")
            else:
                loss = F.cross_entropy(logits, t, weight=self.expr_w)
            total = total + self.tw["expr"] * loss
        if "va" in out:
            m = va[:, 0] != -5.0
            p, y = out["va"][m], va[m]
            if self.c["va_loss"] == "ccc":
                parts = [1 - refs.ccc(p[:, i], y[:, i]) for i in range(2)]
            else:
                parts = [((p[:, i] - y[:, i]) ** 2).mean() for i in range(2)]
            total = total + self.tw["valence"] * parts[0] + self.tw["arousal"] * parts[1]
        return total


def probabilities(model, out):
    n = next(iter(out.values())).shape[0]
    va = out["va"] if "va" in out else torch.zeros(n, 2)
    expr = out["expr"].softmax(-1) if "expr" in out else torch.full((n, N_EXPR), 1 / N_EXPR)
    if "au" in out:
        au = out["au"] if model.au_probabilities else out["au"].sigmoid()
    else:
        au = torch.full((n, N_AU), 0.5)
    return torch.cat([va, expr, au], -1)


# --------------------------------------------------------------------------------------------
# optimizer (+ SAM) and passes
# --------------------------------------------------------------------------------------------
def make_optimizer(cfg, params):
    kind = cfg["optimizer"]
    if kind == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"])
    fail(f"optimizer = {kind!r}")


def set_bn_momentum(model, saved=None):
    """SAM's disable_running_stats (saved None: momentum 0, returns the old ones) and
    enable_running_stats (restores them)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if saved is None:
        old = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0
        return old
    for m, mom in zip(bns, saved):
        m.momentum = mom


def train_step(model, opt, loss_fn, data, idx, sam_rho, clip, ph):
    ph.start()
    x = data.feats.index_select(0, idx)
    va, expr, au = data.va[idx], data.expr[idx], data.au[idx]
    params = [p for p in model.parameters() if p.requires_grad]
    ph.lap("gather")
    opt.zero_grad(set_to_none=True)
    ph.lap("update")
    out = model(x)
    ph.lap("forward")
    loss = loss_fn(out, va, expr, au)
    value = loss.item()
    ph.lap("loss")
    loss.backward()
    ph.lap("backward")
    if sam_rho > 0:
        with torch.no_grad():
            grads = [p for p in params if p.grad is not None]
            norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in grads]), p=2)
            scale = sam_rho / (norm + 1e-12)
            old = [p.data.clone() for p in grads]
            for p in grads:
                p.add_(p.grad * scale)
        opt.zero_grad(set_to_none=True)
        saved = set_bn_momentum(model)
        ph.lap("update")
        out = model(x)
        ph.lap("forward")
        second = loss_fn(out, va, expr, au)
        second.item()
        ph.lap("loss")
        second.backward()
        ph.lap("backward")
        set_bn_momentum(model, saved)
        with torch.no_grad():
            for p, o in zip(grads, old):
                p.data = o
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    ph.lap("update")
    ph.step_done()
    return value


def train_pass(model, opt, loss_fn, data, batch, seed, max_steps, sam_rho, clip, ph):
    model.train()
    perm = torch.randperm(data.n, generator=torch.Generator().manual_seed(seed))
    steps = min(-(-data.n // batch), max_steps)
    frames = 0
    t0 = time.perf_counter()
    for t in range(steps):
        idx = perm[t * batch:(t + 1) * batch]
        train_step(model, opt, loss_fn, data, idx, sam_rho, clip, ph)
        frames += idx.numel()
    return frames, time.perf_counter() - t0, steps


def infer_pass(model, data, batch, max_steps, ph):
    model.eval()
    rows = torch.zeros(data.n, PRED_COLS)
    steps = min(-(-data.n // batch), max_steps)
    frames = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for t in range(steps):
            ph.start()
            idx = torch.arange(t * batch, min((t + 1) * batch, data.n))
            x = data.feats.index_select(0, idx)
            ph.lap("gather")
            out = model(x)
            ph.lap("forward")
            rows.index_copy_(0, idx, probabilities(model, out))
            ph.lap("outputs")
            ph.step_done()
            frames += idx.numel()
    return frames, time.perf_counter() - t0, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--system", required=True, help="training config (TOML)")
    ap.add_argument("--epochs", type=int, default=1, help="timed training passes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--frames", type=int, default=1500, help="frames per video")
    ap.add_argument("--dim", type=int, default=2134, help="feature width per token")
    ap.add_argument("--tokens", type=int, default=1, help="tokens per frame")
    ap.add_argument("--batch", type=int, default=None, help="frames per training step")
    ap.add_argument("--infer-batch", type=int, default=None, help="frames per inference step")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--clip", type=float, default=None)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--infer-reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu"])
    args = ap.parse_args()

    cfg = load_config(args.system)
    if args.lr is not None:
        cfg["lr"] = args.lr
    clip = cfg["clip"] if args.clip is None else args.clip
    batch = args.batch or cfg["batch_size"]
    infer_batch = args.infer_batch or batch
    max_steps = args.max_steps if args.max_steps is not None else 1 << 62

    torch.set_num_threads(args.threads)
    t_data = time.perf_counter()
    data = Synthetic(args.videos * args.frames, args.tokens * args.dim, args.seed)
    t_data = time.perf_counter() - t_data

    torch.manual_seed(args.seed)
    model = FrameModel(cfg, args.dim, args.tokens)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    loss_fn = Loss(cfg, data, model.au_probabilities)

    train_pass(model, opt, loss_fn, data, batch, 10_000, args.warmup_steps, cfg["sam_rho"], clip,
               Phases())
    train_ph, infer_ph = Phases(), Phases()
    train = []
    for ep in range(args.epochs):
        torch.manual_seed(args.seed + ep)
        frames, dt, steps = train_pass(model, opt, loss_fn, data, batch, args.seed + ep,
                                       max_steps, cfg["sam_rho"], clip, train_ph)
        train.append({"frames": frames, "steps": steps, "seconds": round(dt, 3),
                      "fps": round(frames / dt, 1)})
    infer_pass(model, data, infer_batch, 2, Phases())
    infer = []
    for _ in range(args.infer_reps):
        frames, dt, steps = infer_pass(model, data, infer_batch, max_steps, infer_ph)
        infer.append({"frames": frames, "steps": steps, "seconds": round(dt, 3),
                      "fps": round(frames / dt, 1)})

    fps = lambda ps: [p["fps"] for p in ps]  # noqa: E731
    out = {
        "peer": "torch_frame_ref",
        "torch": torch.__version__,
        "system": cfg["name"],
        "arch": "none",
        "topology": "basic",
        "feedback": None,
        "optimizer": cfg["optimizer"] + ("+sam" if cfg["sam_rho"] > 0 else ""),
        "threads": args.threads,
        "params": n_params,
        "videos": args.videos,
        "frames_per_video": args.frames,
        "dim": args.dim,
        "tokens": args.tokens,
        "seg_len": 1,
        "batch_streams": batch,
        "infer_batch": infer_batch,
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
        "train_phases_ms": train_ph.mean_ms(),
        "infer_phases_ms": infer_ph.mean_ms(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
