#!/usr/bin/env python3
"""The final table of `make demo`: P_MTL of every stage on validation and on the held-out test.

Usage: python3 scripts/demo_table.py SCORES_DIR

SCORES_DIR holds the JSON files that `temporal evaluate --json` wrote for each stage and split,
named `<stage>-validation.json` and `<stage>-test.json`, with the stages

    chance, lstm, lstm-smoothed, transformer, transformer-smoothed, ensemble

(scripts/demo.sh writes them). Prints one row per stage with validation and test P_MTL side by
side, the per-task scores of the ensemble on both splits, and the ratio test / validation of the
ensemble. A missing file is an error that names it.

Then, when the files are there, the systems of configs/systems/ on the sample's synthetic
features (`system-<name>-{validation,test}.json`, with the chance baseline again): each on the
score it trains (P_MTL for a multi-task system, the mean VA CCC, expression F1 or AU F1 for a
single-task one), and the ABAW5 three combined best per task (`system-abaw5`).

What it does not: compute any metric (`temporal evaluate` does) or judge the numbers.
Plain Python 3 standard library.
"""

import json
import os
import sys

STAGES = [
    ("chance", "chance"),
    ("lstm", "lstm"),
    ("lstm-smoothed", "lstm + tuned smoothing"),
    ("transformer", "transformer"),
    ("transformer-smoothed", "transformer + tuned smoothing"),
    ("ensemble", "ensemble (best per task)"),
]
SPLITS = ("validation", "test")
SYSTEMS = [
    ("mtca", "p_mtl", "mtca (P_MTL; 64-d features)"),
    ("lrp-arl-ff", "f1_au", "lrp-arl-ff (F1 AU; tokens)"),
    ("task-queries", "p_mtl", "task-queries (P_MTL; tokens)"),
    ("polarity-va", "ccc_va", "polarity-va (mean CCC VA)"),
    ("bagged-expr", "f1_expr", "bagged-expr (F1 EXPR; 3 votes)"),
    ("multirate-au", "f1_au", "multirate-au (F1 AU)"),
    ("abaw5", "p_mtl", "abaw5: 3 best per task (P_MTL)"),
]
TASKS = [
    ("ccc_valence", "CCC valence"),
    ("ccc_arousal", "CCC arousal"),
    ("f1_expr", "F1 expression"),
    ("f1_au", "F1 AU"),
]


def load(scores, stage, split):
    """The report of one stage on one split."""
    path = os.path.join(scores, "%s-%s.json" % (stage, split))
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
            report["ccc_va"] = (report["ccc_valence"] + report["ccc_arousal"]) / 2
            return report
    except OSError as e:
        sys.exit("demo_table.py: cannot read %s (%s); run scripts/demo.sh first" % (path, e.strerror))
    except ValueError as e:
        sys.exit("demo_table.py: %s is not JSON: %s" % (path, e))


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2])
    scores = argv[1]
    reports = {(s, p): load(scores, s, p) for s, _ in STAGES for p in SPLITS}
    print("  %-30s %10s %10s" % ("P_MTL (max 4 = 1 + 1 + 1 + 1)", "validation", "test"))
    for stage, label in STAGES:
        v, t = (reports[(stage, p)]["p_mtl"] for p in SPLITS)
        print("  %-30s %10.4f %10.4f" % (label, v, t))
    print("  ensemble per task")
    for key, label in TASKS:
        v, t = (reports[("ensemble", p)][key] for p in SPLITS)
        print("    %-28s %10.4f %10.4f" % (label, v, t))
    v, t = (reports[("ensemble", p)]["p_mtl"] for p in SPLITS)
    ratio = t / v if v > 0 else float("nan")
    print("  %-30s %21.2f" % ("ensemble test / validation", ratio))
    present = [x for x in SYSTEMS
               if os.path.exists(os.path.join(scores, "system-%s-validation.json" % x[0]))]
    if present:
        print()
        print("  %-30s %10s %10s %10s" % ("systems (synthetic features)", "chance val", "validation", "test"))
        for name, key, label in present:
            v, t = (load(scores, "system-" + name, p)[key] for p in SPLITS)
            c = reports[("chance", "validation")][key]
            print("  %-30s %10.4f %10.4f %10.4f" % (label, c, v, t))


if __name__ == "__main__":
    main(sys.argv)
