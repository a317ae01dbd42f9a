#!/usr/bin/env python3
"""Check that an ensemble's valence is the mean of its three members', for scripts/test-slurm.sh.

What it does: reads the second row (the first frame, after the header) of four prediction CSV
files, the ensemble's and the three members' of the same video, takes column 2 (valence) of
each, and checks that the members do not all agree (identical predictions would mean the three
seeds did not make three different models) and that the ensemble's value is their mean (to
within 1e-5).

Arguments: ENSEMBLE_CSV MEMBER1_CSV MEMBER2_CSV MEMBER3_CSV.

Prints on stdout one line, before checking: "  members [v1, v2, v3], mean M, ensemble E"
(M and E with 6 decimals).

Exit status: 0 when both checks hold; 1 when one fails (AssertionError on stderr, with the
message "the three seeds gave identical predictions" for the first) or a file cannot be read or
parsed.

Python 3 standard library only.
"""
import csv, sys
rows = [list(csv.reader(open(p)))[1] for p in sys.argv[1:]]
ens, members = float(rows[0][1]), [float(r[1]) for r in rows[1:]]
mean = sum(members) / 3
print(f"  members {members}, mean {mean:.6f}, ensemble {ens:.6f}")
assert len(set(members)) > 1, "the three seeds gave identical predictions"
assert abs(ens - mean) < 1e-5
