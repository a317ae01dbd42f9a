#!/usr/bin/env python3
"""Read MB/s and frames/s of h5py + PyTorch on the rows `temporal bench-read` read: the peer of
`make bench-cache` (scripts/bench-cache.sh).

What it measures: the time to read, batch by batch, the rows of a read plan (the JSON that
`temporal bench-read --plan-out FILE` writes: {"batches": [[["/abs/path/video.h5", row], ...],
...]}, row = index along axis 0 of /features) the way a PyTorch `Dataset.__getitem__` with the
default collate does it: every HDF5 file of the plan is opened once with h5py (as a Dataset's
`__init__` would) and kept open, each frame is one `ds[row]` read, `.astype(np.float32)` and
`torch.from_numpy`, and each batch is one `torch.stack` of its frames. The clock runs from the
first batch's first read to the last batch's stack; parsing the plan and opening the files are
not timed (as in `temporal bench-read`, which opens its files before its clock starts).

Prints one JSON line on stdout (also written to --json FILE), with the keys of `temporal
bench-read --json`: {"frames": N, "bytes": B, "seconds": S, "mb_per_s": ..., "frames_per_s": ...,
"order": "...", "batch": ...}, where B counts the bytes of /features as stored on disk (an f16
file 2 bytes per value, f32 4) and MB = 2^20 bytes; "batch" is the largest batch of the plan and
"order" is --order (the plan does not say it). Also "peak_rss_mb" (this process, MiB).

What it does not: use DataLoader workers, shuffle or choose rows (the plan does), or check the
values against ours.

Needs numpy, h5py and torch (fixture-venv: scripts/fixtures/venv.sh).
"""
import argparse
import json
import resource
import sys
import time

import h5py
import numpy as np
import torch


class PlanDataset:
    """A map-style dataset over (file, row) pairs: every file opened once, kept open."""

    def __init__(self, paths):
        self.files = {p: h5py.File(p, "r") for p in paths}
        self.datasets = {p: f["features"] for p, f in self.files.items()}

    def __getitem__(self, item):
        path, row = item
        return torch.from_numpy(self.datasets[path][row].astype(np.float32))

    def close(self):
        for f in self.files.values():
            f.close()


def collate(frames):
    """torch.utils.data.default_collate on a list of tensors (outside a worker): one stack."""
    return torch.stack(frames, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="JSON written by temporal bench-read --plan-out")
    ap.add_argument("--order", default="?", help="copied to the output (shuffled or video)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (torch.stack)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with open(args.plan) as fh:
        batches = [[(str(p), int(r)) for p, r in b] for b in json.load(fh)["batches"]]
    if not batches:
        sys.exit(f"h5py_read: {args.plan} has no batches")

    data = PlanDataset(sorted({p for b in batches for p, _ in b}))
    frames = 0
    start = time.perf_counter()
    for batch in batches:
        x = collate([data[item] for item in batch])
        frames += x.shape[0]
    seconds = time.perf_counter() - start

    # Stored bytes per row of each file.
    row_bytes = {p: int(np.prod(ds.shape[1:])) * ds.dtype.itemsize for p, ds in data.datasets.items()}
    stored = sum(row_bytes[p] for b in batches for p, _ in b)
    data.close()
    result = {
        "frames": frames,
        "bytes": stored,
        "seconds": seconds,
        "mb_per_s": stored / 2**20 / seconds,
        "frames_per_s": frames / seconds,
        "order": args.order,
        "batch": max(len(b) for b in batches),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    line = json.dumps(result)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
