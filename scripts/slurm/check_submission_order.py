#!/usr/bin/env python3
"""Check that an MTL submission has one row per test-list frame, in the list's order, for
scripts/test-slurm.sh.

What it does: reads the submission (a header line, then `video/00001.jpg,...` rows) and the test
list (one `video/00001.jpg` per line, blank lines ignored), and checks that the first column of
the rows equals the list, line for line.

Arguments: SUBMISSION TEST_LIST.

Prints on stdout one line: "  N rows, first FRAME".

Exit status: 0 when the rows follow the list; 1 (AssertionError on stderr naming the first row
that differs, or the two counts) when they do not, or a file cannot be read.

Python 3 standard library only.
"""
import sys

sub_path, list_path = sys.argv[1:3]
with open(sub_path) as f:
    rows = [line.split(",", 1)[0].strip() for line in f.read().splitlines()[1:] if line.strip()]
with open(list_path) as f:
    listed = [line.strip() for line in f if line.strip()]
print(f"  {len(rows)} rows, first {rows[0] if rows else '-'}")
assert len(rows) == len(listed), f"{sub_path}: {len(rows)} rows for {len(listed)} test-list frames"
for i, (r, t) in enumerate(zip(rows, listed)):
    assert r == t, f"{sub_path}: row {i + 1} is {r}, the test list has {t}"
