#!/usr/bin/env python3
"""The Markdown table of `make bench-temporal` (scripts/bench-temporal.sh), from its raw JSON.

What it does: for each configuration ARCH/TOPOLOGY (or system/NAME-SIZE) given, reads every
OUT/<ARCH>-<TOPOLOGY>.ours.*.json (`temporal bench`) and OUT/<ARCH>-<TOPOLOGY>.peer.*.json (the
PyTorch peer), one file per round, in sorted file-name order; of each file only the last line
counts, a JSON object with
  "train_epochs": [{"steps": S, "frames": N, "fps": F, ...}, ...]   the timed training passes
  "infer_epochs": [{"fps": F, ...}, ...]                            the timed inference passes
  "peak_rss_mb": M or null                                          peak resident set size, MiB
  "system", "tokens", "dim" (optional)                              the --system row's label
and gives the configuration one row: its label ("arch / topology", or for a system
"<system> / <dim>-d" or "<system> / <tokens> x <dim>" from the report, the configuration's own
name without reports), the steps per pass and frames per step ("S × N/S" of the first training
pass of the first report found, ours before the peer's; "–" without reports), for training and
then inference the median [min–max] frames/s over the timed passes of all rounds of each side
("failed" when a side has none) and the ratio ours / peer of those medians ("–" when a side has
none), and each side's peak RSS, the maximum over its rounds in GB (MiB / 1024; "–" when unknown).

Arguments: OUT CONFIG..., OUT the folder of the JSON files, each CONFIG an ARCH/TOPOLOGY such as
gru/basic or lstm/feedback, or system/NAME-SIZE such as system/anfl-512 (rows in the order
given). Environment (optional, set by bench-temporal.sh): BENCH_THREADS, BENCH_LOAD_START (the
1/5/15-minute load averages before the run).

Prints on stdout: one line naming the CPU (scripts/cpu_info.py: the "model name" of
/proc/cpuinfo, the number of logical CPUs and the vector extensions), the date, the threads and the load averages before and after the run, a blank
line, then the Markdown table (header, separator, one row per CONFIG). bench-temporal.sh tees it
to OUT/table.md.

When the reports of both sides give `train_phases_ms` / `infer_phases_ms` (`temporal bench`
always; the peers' `torch_frame_ref.py` always, the temporal reference with PHASES=1 through
scripts/bench/torch_temporal_phases.py), a second table follows: for each configuration and
phase (training: gather, forward, loss, backward, update; inference: gather, forward, outputs)
the median over rounds of each side's mean milliseconds per step, the ratio peer / ours (> 1:
ours is faster in that phase) and the phase's share of the peer's step.

Exit status: 0; 1 (with Python's traceback on stderr) when OUT is not given or cannot be listed,
a CONFIG has no "/", a report file is empty, not JSON or lacks a key, or a median is zero.

Python 3 standard library only.
"""
import datetime, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_info  # noqa: E402

out, configs = sys.argv[1], sys.argv[2:]


def cpu_model():
    """the CPU: model name, logical CPUs and vector extensions (scripts/cpu_info.py)."""
    return cpu_info.describe()


def load_now():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"

def load(name, who):
    """every round's report of one side, or [] if none ran."""
    runs = []
    for f in sorted(os.listdir(out)):
        if f.startswith(f"{name}.{who}.") and f.endswith(".json"):
            with open(os.path.join(out, f)) as fh:
                runs.append(json.loads(fh.read().strip().splitlines()[-1]))
    return runs

def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

def passes(runs, key):
    return [e["fps"] for r in runs for e in r[f"{key}_epochs"]]

def fps(runs, key):
    v = passes(runs, key)
    return f"{median(v):.0f} [{min(v):.0f}–{max(v):.0f}]" if v else "failed"

def ratio(a, b, key):
    if not passes(a, key) or not passes(b, key):
        return "–"
    return f"{median(passes(a, key)) / median(passes(b, key)):.2f}"

def rss(runs):
    v = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb") is not None]
    return f"{max(v) / 1024:.2f} GB" if v else "–"

def label(arch, topology, reports):
    if arch != "system":
        return f"{arch} / {topology}"
    r = next((r for r in reports if r.get("system")), None)
    if r is None:
        return f"system / {topology}"
    tokens, dim = r.get("tokens", 1), r.get("dim")
    return f"{r['system']} / {tokens} x {dim}" if tokens > 1 else f"{r['system']} / {dim}-d"


def steps_per_pass(reports):
    if not reports:
        return "–"
    p = reports[0]["train_epochs"][0]
    per_step = round(p["frames"] / p["steps"]) if p.get("steps") else "?"
    return f"{p['steps']} × {per_step}"


rows = []
for c in configs:
    arch, topology = c.split("/", 1)
    name = f"{arch}-{topology}"
    ours, peer = load(name, "ours"), load(name, "peer")
    any_ = ours + peer
    rows.append([label(arch, topology, any_), steps_per_pass(any_),
                 fps(ours, "train"), fps(peer, "train"), ratio(ours, peer, "train"),
                 fps(ours, "infer"), fps(peer, "infer"), ratio(ours, peer, "infer"),
                 rss(ours), rss(peer)])
head = ["configuration", "steps × frames/step", "ours train fps", "peer train fps", "ratio",
        "ours infer fps", "peer infer fps", "ratio", "ours peak RSS", "peer peak RSS"]
threads = os.environ.get("BENCH_THREADS", "?")
before = os.environ.get("BENCH_LOAD_START", "?")
print(f"CPU: {cpu_model()}; {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
      f"{threads} threads; load average (1/5/15 min) before {before}, after {load_now()}")
print()
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")

TRAIN_PHASES = ("gather", "forward", "loss", "backward", "update")
INFER_PHASES = ("gather", "forward", "outputs")


def phase_ms(runs, key, phase):
    v = [r[f"{key}_phases_ms"].get(phase, 0.0) for r in runs if r.get(f"{key}_phases_ms")]
    return median(v) if v else None


phase_rows = []
for c in configs:
    arch, topology = c.split("/", 1)
    name = f"{arch}-{topology}"
    ours, peer = load(name, "ours"), load(name, "peer")
    for key, phases in (("train", TRAIN_PHASES), ("infer", INFER_PHASES)):
        if not any(r.get(f"{key}_phases_ms") for r in peer) or not ours:
            continue
        peer_total = sum(phase_ms(peer, key, p) or 0.0 for p in phases)
        for p in phases:
            a, b = phase_ms(ours, key, p), phase_ms(peer, key, p)
            if a is None or b is None or (a == 0.0 and b == 0.0):
                continue
            r = f"{b / a:.2f}" if a > 0 else "–"
            share = f"{100 * b / peer_total:.0f} %" if peer_total > 0 else "–"
            phase_rows.append([label(arch, topology, ours + peer), key, p,
                               f"{a:.1f}", f"{b:.1f}", r, share])
if phase_rows:
    head = ["configuration", "pass", "phase", "ours ms/step", "peer ms/step",
            "peer / ours", "share of the peer's step"]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in phase_rows:
        print("| " + " | ".join(r) + " |")
