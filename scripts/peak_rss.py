#!/usr/bin/env python3
"""Runs a command and writes its peak resident set size, for the benchmarks.

What it does: `peak_rss.py OUT -- CMD ARGS...` runs CMD with its standard streams inherited,
then writes to the file OUT the peak resident set size of CMD and of every process it waited
for, in MiB with one decimal (getrusage RUSAGE_CHILDREN, ru_maxrss: Linux reports KiB), and
exits with CMD's exit status. bench-extract.sh uses it for `extractor extract`, whose decode
threads and forward share one process.

What it does not: sample memory over time, or count processes CMD did not wait for.

Python 3 standard library only.
"""
import resource
import subprocess
import sys


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: peak_rss.py OUT -- CMD [ARGS...]")
    out, cmd = sys.argv[1], sys.argv[3:]
    status = subprocess.call(cmd)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "w") as f:
        f.write(f"{peak_kib / 1024:.1f}\n")
    sys.exit(status)


if __name__ == "__main__":
    main()
