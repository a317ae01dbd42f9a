#!/usr/bin/env python3
"""Which library kernels a benchmark run spent its time in, from MKL's and oneDNN's own traces.

What it does: reads the stderr/stdout logs of runs made with MKL_VERBOSE=1 and ONEDNN_VERBOSE=1
(both libraries ship inside libtorch, so the Rust side and the PyTorch peer print the same
lines), groups the timed calls by kernel and problem (`SGEMM(N,N,1024,256,1288)`,
`onednn rnn ref backward vanilla_lstm mb8 ...`), and prints a Markdown table of the kernels by the
peer's total time: calls and milliseconds per call on each side, the ratio peer / ours per call,
and each kernel's share of the peer's traced time. Kernels that only one side calls show "–"
for the other. Used by `KERNELS=1 bash scripts/bench-temporal.sh` to say, measured, which
kernels both sides call where a speed ratio stays near 1.

What it does not: time anything itself (the libraries' own timings are used; tracing adds a
little overhead to every call on both sides), or see kernels outside MKL and oneDNN (ATen's
own element-wise loops).

Usage: kernel_share.py OURS_LOG PEER_LOG [TOP]   (Python 3 standard library only)
"""
import re
import sys
from collections import defaultdict

MKL = re.compile(r"^MKL_VERBOSE (\w+)\(([^)]*)\) ([0-9.]+)(us|ms|s)\b")
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def mkl_key(func, args):
    """The function and its leading non-pointer arguments (transposes and sizes)."""
    keep = []
    for a in args.split(","):
        if a.startswith("0x"):
            continue
        keep.append(a)
    return f"{func}({','.join(keep)})"


def onednn_key(fields):
    """kind, implementation, propagation, algorithm and problem of a oneDNN exec line."""
    kind, impl, prop = fields[5], fields[6], fields[7]
    alg = next((f for f in fields[8:-1] if f.startswith("alg:")), "")
    problem = fields[-2]
    return f"onednn {kind} {impl} {prop} {alg} {problem}".strip()


def parse(path):
    calls = defaultdict(lambda: [0, 0.0])
    with open(path, errors="replace") as fh:
        for line in fh:
            m = MKL.match(line)
            if m:
                k = mkl_key(m.group(1), m.group(2))
                calls[k][0] += 1
                calls[k][1] += float(m.group(3)) * UNIT[m.group(4)]
                continue
            if line.startswith("onednn_verbose") and ",exec," in line:
                fields = line.rstrip("\n").split(",")
                try:
                    ms = float(fields[-1])
                except ValueError:
                    continue
                if fields[5] == "reorder":
                    k = f"onednn reorder {fields[6]}"
                else:
                    k = onednn_key(fields)
                calls[k][0] += 1
                calls[k][1] += ms
    return calls


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: kernel_share.py OURS_LOG PEER_LOG [TOP]")
    ours, peer = parse(sys.argv[1]), parse(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    peer_total = sum(t for _, t in peer.values()) or 1.0
    ours_total = sum(t for _, t in ours.values()) or 1.0
    keys = sorted(set(ours) | set(peer), key=lambda k: -max(peer.get(k, [0, 0])[1],
                                                            ours.get(k, [0, 0])[1]))[:top]
    print("| kernel (MKL / oneDNN) | ours calls | ours ms/call | peer calls | peer ms/call "
          "| peer / ours per call | share of the peer's traced time |")
    print("|---|---|---|---|---|---|---|")
    for k in keys:
        oc, ot = ours.get(k, [0, 0.0])
        pc, pt = peer.get(k, [0, 0.0])
        o = f"{ot / oc:.2f}" if oc else "–"
        p = f"{pt / pc:.2f}" if pc else "–"
        r = f"{(pt / pc) / (ot / oc):.2f}" if oc and pc and ot > 0 else "–"
        print(f"| `{k[:110]}` | {oc} | {o} | {pc} | {p} | {r} | {100 * pt / peer_total:.0f} % |")
    print(f"\ntraced time in MKL and oneDNN: ours {ours_total:.0f} ms, peer {peer_total:.0f} ms")


if __name__ == "__main__":
    main()
