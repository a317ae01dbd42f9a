#!/usr/bin/env python3
"""The Markdown table of `make bench-cache` (scripts/bench-cache.sh) and its results.json: the
token cache's read MB/s, ours against h5py + PyTorch, and the trainer's frames/s and peak RSS
with the features in memory or streamed.

What it reads, in OUT/raw/ (OUT the one argument):
  cache.json                     the cache: videos, frames_per_video, tokens, token_dim, dtype,
                                 bytes_on_disk, path
  read-<order>.<round>.ours.json `temporal bench-read --json`: frames, bytes, seconds, mb_per_s,
                                 frames_per_s, order, batch (one JSON value, pretty-printed)
  read-<order>.<round>.peer-t<T>.json  scripts/bench/h5py_read.py with T torch threads: the same
                                 keys (also read-<order>.<round>.peer.json, no thread count)
  read-<order>.<round>.<side>.rss   peak RSS of the process in MiB (scripts/peak_rss.py)
  train-<store>.<round>.metrics.jsonl  the run's metrics.jsonl (one epoch: train_fps, val_fps,
                                 seconds)
  train-<store>.<round>.rss      peak RSS of `temporal train` in MiB
  train-<store>.<round>.rss-samples  its RSS every 0.5 s, KiB, one a line (optional)
For each order the best round of each side counts (highest MB/s; the peer's over all its thread
counts), with the ratio ours / peer of those; for each feature store the best round's train frames/s (cells show "best [min–max]" of
the rounds when there are several), the epoch's loss of each round, and the largest median RSS
(over a run's samples) and peak RSS of its rounds.

Prints on stdout a line naming the CPU (scripts/cpu_info.py), the date, the threads
(BENCH_THREADS) and the load averages before (BENCH_LOAD_START) and after, then the reading table
and the training table. Writes OUT/results.json with the same numbers and every round.

Exit status 0; 1 with a traceback when a file is missing or malformed. Python 3 standard library.
"""
import datetime
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_info  # noqa: E402

out = sys.argv[1]
raw = os.path.join(out, "raw")


def last_json(path):
    """the file's JSON: the whole text (`temporal bench-read --json` is pretty-printed), or else
    its last line (a JSON-lines file)."""
    with open(path) as fh:
        text = fh.read().strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def rss(path):
    with open(path) as fh:
        return float(fh.read().strip())


def table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def median_rss(path):
    """the median of a run's RSS samples (KiB, one a line) in MiB; None without samples."""
    try:
        with open(path) as fh:
            v = sorted(int(line) for line in fh if line.strip())
    except FileNotFoundError:
        return None
    if not v:
        return None
    n = len(v)
    return (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2) / 1024


def spread(values, fmt):
    """the best of the rounds, and their range when there are several: "225 [217–225]"."""
    best = fmt.format(max(values))
    if len(values) < 2:
        return best
    return f"{best} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def gb(mib):
    return f"{mib / 1024:.2f} GiB"


cache = last_json(os.path.join(raw, "cache.json"))
results = {"cpu": cpu_info.describe(), "date": datetime.datetime.now().isoformat(timespec="minutes"),
           "threads": os.environ.get("BENCH_THREADS"), "cache": cache, "read": {}, "train": {}}

# Reading: rounds per order and side.
rounds = {}
for path in sorted(glob.glob(os.path.join(raw, "read-*.*.*.json"))):
    m = re.fullmatch(r"read-(\w+)\.(\d+)\.(ours|peer)(?:-t(\d+))?\.json", os.path.basename(path))
    if not m:
        continue
    order, r, who = m.group(1), int(m.group(2)), m.group(3)
    rec = last_json(path)
    rec["round"] = r
    if m.group(4):
        rec["torch_threads"] = int(m.group(4))
    rec["peak_rss_mb"] = rss(path[: -len(".json")] + ".rss")
    rounds.setdefault(order, {}).setdefault(who, []).append(rec)

read_rows = []
peer_threads = {}
for order in sorted(rounds, key=lambda o: (o != "shuffled", o)):
    sides = rounds[order]
    best = {who: max(runs, key=lambda x: x["mb_per_s"]) for who, runs in sides.items()}
    ours, peer = best.get("ours"), best.get("peer")
    ratio = ours["mb_per_s"] / peer["mb_per_s"] if ours and peer else None
    results["read"][order] = {"best": best, "ratio_mb_per_s": ratio, "rounds": sides}

    def cell(who, key, fmt):
        return spread([x[key] for x in sides[who]], fmt) if who in sides else "failed"

    frames = (ours or peer)["frames"]
    if peer and "torch_threads" in peer:
        peer_threads[order] = peer["torch_threads"]
    read_rows.append([
        order, (ours or peer)["batch"], f"{frames} ({(ours or peer)['bytes'] / 2**30:.2f} GiB)",
        cell("ours", "mb_per_s", "{:.0f}"), cell("peer", "mb_per_s", "{:.0f}"),
        f"{ratio:.2f}" if ratio else "–",
        cell("ours", "frames_per_s", "{:.0f}"), cell("peer", "frames_per_s", "{:.0f}"),
        gb(max(x["peak_rss_mb"] for x in sides["ours"])) if ours else "–",
        gb(max(x["peak_rss_mb"] for x in sides["peer"])) if peer else "–",
    ])

# Training: one epoch per feature store and round.
train_runs = {}
for path in sorted(glob.glob(os.path.join(raw, "train-*.*.metrics.jsonl"))):
    m = re.fullmatch(r"train-(\w+)\.(\d+)\.metrics\.jsonl", os.path.basename(path))
    if not m:
        continue
    store, r = m.group(1), int(m.group(2))
    epoch = last_json(path)
    train_runs.setdefault(store, []).append({
        "round": r, "train_fps": epoch["train_fps"], "val_fps": epoch["val_fps"],
        "epoch_seconds": epoch["seconds"], "loss": epoch["loss"],
        "peak_rss_mb": rss(os.path.join(raw, f"train-{store}.{r}.rss")),
        "median_rss_mb": median_rss(os.path.join(raw, f"train-{store}.{r}.rss-samples"))})
train_rows = []
for store in sorted(train_runs, key=lambda s: (s != "memory", s)):
    runs = train_runs[store]
    best = max(runs, key=lambda x: x["train_fps"])
    medians = [x["median_rss_mb"] for x in runs if x["median_rss_mb"] is not None]
    rec = {"train_fps": best["train_fps"], "val_fps": max(x["val_fps"] for x in runs),
           "epoch_seconds": best["epoch_seconds"],
           "peak_rss_mb": max(x["peak_rss_mb"] for x in runs),
           "median_rss_mb": max(medians) if medians else None, "rounds": runs}
    results["train"][store] = rec
    train_rows.append([store, spread([x["train_fps"] for x in runs], "{:.1f}"),
                       spread([x["val_fps"] for x in runs], "{:.1f}"),
                       f"{best['epoch_seconds']:.0f}",
                       " ".join(sorted({f"{x['loss']:.4f}" for x in runs})),
                       gb(rec["median_rss_mb"]) if medians else "–", gb(rec["peak_rss_mb"])])
mem, stream = results["train"].get("memory"), results["train"].get("stream")
if mem and stream:
    results["train"]["stream_over_memory"] = {
        "train_fps": stream["train_fps"] / mem["train_fps"],
        "val_fps": stream["val_fps"] / mem["val_fps"],
        "peak_rss_mb": stream["peak_rss_mb"] / mem["peak_rss_mb"]}
    both = stream["median_rss_mb"] and mem["median_rss_mb"]
    if both:
        results["train"]["stream_over_memory"]["median_rss_mb"] = (
            stream["median_rss_mb"] / mem["median_rss_mb"])
    train_rows.append(["ratio stream / memory", f"{stream['train_fps'] / mem['train_fps']:.2f}",
                       f"{stream['val_fps'] / mem['val_fps']:.2f}", "", "",
                       f"{stream['median_rss_mb'] / mem['median_rss_mb']:.2f}" if both else "–",
                       f"{stream['peak_rss_mb'] / mem['peak_rss_mb']:.2f}"])

try:
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
except OSError:
    load_after = "?"
results["load_before"] = os.environ.get("BENCH_LOAD_START")
results["load_after"] = load_after
with open(os.path.join(out, "results.json"), "w") as fh:
    json.dump(results, fh, indent=2)
    fh.write("\n")

shape = (f"{cache['videos']} videos x {cache['frames_per_video']} frames of {cache['tokens']} x "
         f"{cache['token_dim']} {cache['dtype']}, {cache['bytes_on_disk'] / 2**30:.2f} GiB on disk")
print(f"CPU: {results['cpu']}; {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
      f"{results['threads'] or '?'} threads; load average (1/5/15 min) before "
      f"{results['load_before'] or '?'}, after {load_after}")
print()
print(f"Reading the token cache ({shape}; page cache warm; best of each side's rounds; "
      f"MB = 2^20 bytes as stored):")
print()
print(table(["order", "batch", "frames read", "ours MB/s", "h5py MB/s", "ratio ours / h5py",
             "ours frames/s", "h5py frames/s", "ours peak RSS", "h5py peak RSS"], read_rows))
if peer_threads:
    print()
    print("h5py: best of its runs at " + ", ".join(sorted(
        {str(x["torch_threads"]) for o in rounds.values() for x in o.get("peer", [])
         if "torch_threads" in x}, key=int)) + " torch threads (ranges span both); the best was at "
          + ", ".join(f"{t} ({o})" for o, t in peer_threads.items()) + ".")
if train_rows:
    print()
    print("`temporal train --config configs/systems/task-queries.toml`, 1 epoch, on that cache "
          "(frames/s: best round; median RSS: of 0.5 s samples over the run, mostly the training "
          "steps; peak RSS: the whole process, validation pass included; both the largest of the "
          "rounds):")
    print()
    print(table(["feature store", "train frames/s", "validation frames/s", "epoch s",
                 "epoch loss", "median RSS", "peak RSS"], train_rows))
