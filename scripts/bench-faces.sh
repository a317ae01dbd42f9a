#!/usr/bin/env bash
# `make bench-faces`: frames/s of face detection + alignment, ours (`extractor faces`, native
# MTCNN in tch) against facenet-pytorch's MTCNN (scripts/bench/torch_mtcnn_ref.py), on the same
# frames, the same batch and the same threads, plus the peak RSS of both processes.
#
# Frames: FRAMES frames of WIDTHxHEIGHT made once from the scikit-image photographs of
# extractor/tests/fixtures/mtcnn/ (two faces per frame, moving and changing size), PNG, in
# target/bench/faces-frames/bench/. Each of REPS rounds runs the peer (one warm-up batch, then
# the whole set timed: detect + largest face aligned to the 112 template) and `extractor faces`
# (its logged detection + alignment rate after the first batch: decoding and JPEG writing are
# not counted, the same as the peer's, whose frames are loaded before timing). Peak RSS is GNU
# time's %M of each whole process (ours includes decoding and writing). Prints a table of
# medians with the ratio ours / peer (the issue's target: >= 1.0 on the CPU). A benchmark, not a
# test: it never fails on a missed target.
#
# Environment: THREADS (2), BATCH (8), REPS (3), FRAMES (64), WIDTH (640), HEIGHT (360),
# EXTRACTOR (a built binary to use instead of building the release one).
# Results: target/bench/faces/{results.jsonl,table.md}.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
REPS=${REPS:-3}
FRAMES=${FRAMES:-64}
WIDTH=${WIDTH:-640}
HEIGHT=${HEIGHT:-360}
PEER=scripts/bench/torch_mtcnn_ref.py
BENCH=target/bench
DATA=$BENCH/faces-frames
OUT=$BENCH/faces
say() { printf '[bench-faces] %s\n' "$*" >&2; }

[ -f third_party/mtcnn/pnet.pt ] || { say "third_party/mtcnn/ is empty: run make setup"; exit 1; }
command -v /usr/bin/time >/dev/null || { say "GNU time (/usr/bin/time) is needed: apt-get install time"; exit 1; }

if [ -z "${EXTRACTOR:-}" ]; then
  say "building the extractor (release)"
  cargo build --release --quiet -p extractor --bin extractor
  EXTRACTOR=target/release/extractor
fi

say "PyTorch venv for the peer (fixture-venv) with facenet-pytorch 2.6.0 (no dependencies)"
PY=$(bash scripts/fixtures/venv.sh)
"$PY" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('facenet_pytorch') is None)" ||
  "$PY" -m pip install -q --no-deps facenet-pytorch==2.6.0
"$PY" -c "import torchvision" 2>/dev/null || "$PY" -m pip install -q torchvision

stamp="$DATA/.ready-$FRAMES-${WIDTH}x$HEIGHT"
if [ ! -f "$stamp" ]; then
  say "making $FRAMES frames of ${WIDTH}x$HEIGHT in $DATA"
  rm -rf "$DATA"
  "$PY" "$PEER" --make-frames --frames "$FRAMES" --width "$WIDTH" --height "$HEIGHT" --frames-dir "$DATA"
  touch "$stamp"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
for r in $(seq 1 "$REPS"); do
  say "round $r/$REPS: peer ($FRAMES frames, batch $BATCH, $THREADS threads)"
  peer_json=$(OMP_NUM_THREADS=$THREADS /usr/bin/time -f '%M' -o "$OUT/peer.rss" \
    "$PY" "$PEER" --frames-dir "$DATA" --threads "$THREADS" --batch "$BATCH" | tail -n 1)
  peer_rss=$(tail -n 1 "$OUT/peer.rss")
  say "round $r/$REPS: ours"
  rm -rf "$OUT/crops"
  OMP_NUM_THREADS=$THREADS RUST_LOG=info /usr/bin/time -f '%M' -o "$OUT/ours.rss" \
    "$EXTRACTOR" faces --data "$DATA" --out "$OUT/crops" --device cpu --threads "$THREADS" \
    --batch-size "$BATCH" 2>"$OUT/ours.log" >/dev/null
  ours_rss=$(tail -n 1 "$OUT/ours.rss")
  ours_fps=$(grep -o '[0-9.]* frames/s after the first batch' "$OUT/ours.log" | tail -n 1 | cut -d' ' -f1)
  [ -n "$ours_fps" ] || { say "no rate in $OUT/ours.log"; cat "$OUT/ours.log" >&2; exit 1; }
  "$PY" - "$peer_json" "$peer_rss" "$ours_fps" "$ours_rss" >>"$RESULTS" <<'EOF'
import json, sys
peer = json.loads(sys.argv[1])
print(json.dumps({"peer_fps": peer["fps"], "peer_rss_kb": int(sys.argv[2]),
                  "ours_fps": float(sys.argv[3]), "ours_rss_kb": int(sys.argv[4])}))
EOF
done

"$PY" - "$RESULTS" "$THREADS" "$BATCH" "$FRAMES" "${WIDTH}x$HEIGHT" >"$OUT/table.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda k: statistics.median(r[k] for r in rows)
print(f"| {sys.argv[4]} frames of {sys.argv[5]}, batch {sys.argv[3]}, {sys.argv[2]} threads | frames/s | peak RSS |")
print("|---|---:|---:|")
print(f"| facenet-pytorch 2.6.0 MTCNN + alignment | {med('peer_fps'):.1f} | {med('peer_rss_kb') / 1024:.0f} MB |")
print(f"| ours (`extractor faces`, tch) | {med('ours_fps'):.1f} | {med('ours_rss_kb') / 1024:.0f} MB |")
print(f"| ratio ours / peer (target >= 1.0) | {med('ours_fps') / med('peer_fps'):.2f} | |")
EOF
cat "$OUT/table.md"
