#!/usr/bin/env python3
"""The Markdown table of `make bench-extract` (scripts/bench-extract.sh), from its raw results.

What it does: reads RESULTS, one JSON object a line as bench-extract.sh writes them, one line per
backbone and round:
  {"model": NAME, "frames": N, "round": R,
   "ours_pipeline_fps": F,        # `extractor extract`, after the first batch
   "ours_pipeline_cold_fps": F,   # `extractor extract`, overall
   "ours_peak_rss_mb": M,         # `extractor extract`'s peak RSS, MiB (optional)
   "ours_forward": {"forward_fps": F, ...},                            # `extractor bench`
   "peer": {"pipeline_fps": F, "forward_fps": F, "gflop_per_frame": G, ...}}  # the PyTorch peer
groups the lines by model (in the order the models first appear) and gives each model one row:
median [min–max] over its rounds of every rate, and the ratios of the medians (ours pipeline /
our forward-only, ours pipeline / the peer's pipeline, our forward-only / the peer's), and the
peak RSS of each side, the maximum over rounds in GB ("–" where a result lacks it; the peer's is
its `peak_rss_mb`, its main process). Frames
and GFLOP/frame are taken from the model's first line.

Arguments: RESULTS THREADS BATCH REPS. THREADS, BATCH and REPS are only shown in the caption.

Prints on stdout: the CPU (scripts/cpu_info.py: model, logical CPUs, vector extensions), a
caption paragraph, an empty line, then the Markdown table (header, separator,
one row per model; no rows when RESULTS is empty). bench-extract.sh tees it to table.md.

Exit status: 0; 1 (with Python's traceback on stderr) when the arguments are not exactly four,
RESULTS cannot be read, a line is not JSON or lacks a key, or a median is zero.

Python 3 standard library only.
"""
import json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_info  # noqa: E402

path, threads, batch, reps = sys.argv[1:]
by_model = {}
for line in open(path):
    r = json.loads(line)
    by_model.setdefault(r["model"], []).append(r)


def cell(values):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} [{min(values):.2f}–{max(values):.2f}]"


print(f"CPU: {cpu_info.describe()}\n")
print(f"Feature extraction, frames/s: median [min–max] of {reps} interleaved rounds; batch {batch}, "
      f"{threads} threads, CPU, the same JPEG frames for both; ours pipeline = after its first "
      "batch (the peer times its pipeline after a warm-up forward).\n")
print("| backbone | frames | GFLOP/frame | ours pipeline | ours forward-only | peer pipeline "
      "| peer forward-only | pipeline / our fwd (>= 0.95) | pipeline / peer pipeline (>= 1.1) "
      "| our fwd / peer fwd | ours pipeline incl. first batch | ours peak RSS | peer peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
m = statistics.median


def rss(values):
    values = [v for v in values if v is not None]
    return f"{max(values) / 1024:.2f} GB" if values else "–"


for model, rs in by_model.items():
    op = [r["ours_pipeline_fps"] for r in rs]
    oc = [r["ours_pipeline_cold_fps"] for r in rs]
    of = [r["ours_forward"]["forward_fps"] for r in rs]
    pp = [r["peer"]["pipeline_fps"] for r in rs]
    pf = [r["peer"]["forward_fps"] for r in rs]
    print(f"| {model} | {rs[0]['frames']} | {rs[0]['peer']['gflop_per_frame']} | {cell(op)} "
          f"| {cell(of)} | {cell(pp)} | {cell(pf)} | {m(op) / m(of):.2f} | {m(op) / m(pp):.2f} "
          f"| {m(of) / m(pf):.2f} | {cell(oc)} "
          f"| {rss(r.get('ours_peak_rss_mb') for r in rs)} "
          f"| {rss(r['peer'].get('peak_rss_mb') for r in rs)} |")
