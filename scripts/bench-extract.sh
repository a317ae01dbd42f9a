#!/usr/bin/env bash
# `make bench-extract`: feature-extraction frames/s of ours against the PyTorch peer
# (../shared/peers/torch_extract_ref.py), on the same JPEG frames, same batch, same threads.
#
# For each backbone, sequentially: the peer (its pipeline and forward-only fps, median of REPS),
# then `extractor extract` REPS times into a fresh folder (pipeline fps as it logs it), then
# `extractor bench` (forward-only fps on a random pre-decoded batch, median of REPS). Prints one
# table with the ratios the issue sets targets for: pipeline >= 0.95 x our forward-only and
# >= 1.0 x the peer's pipeline. It is a benchmark, not a test: it never fails on a missed target.
#
# Environment: THREADS (2), BATCH (64), REPS (3), MODELS ("iresnet50:128 densenet121:128
# vit_b16:64" = backbone:frames, frames a multiple of 64), PEER (the peer script).
# Results: target/bench/extract/{results.jsonl,table.md}; frames cached in target/bench/frames.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
REPS=${REPS:-3}
MODELS=${MODELS:-"iresnet50:128 densenet121:128 vit_b16:64"}
PEER=${PEER:-../shared/peers/torch_extract_ref.py}
FRAMES_PER_VIDEO=64
BENCH=target/bench
FRAMES=$BENCH/frames
OUT=$BENCH/extract
say() {
  if [ -t 2 ]; then printf '\033[1m[bench-extract]\033[0m %s\n' "$*" >&2; else printf '[bench-extract] %s\n' "$*" >&2; fi
}

[ -f "$PEER" ] || { say "peer script $PEER not found; set PEER=path/to/torch_extract_ref.py"; exit 1; }

say "building the extractor (release)"
cargo build --release --quiet -p extractor --bin extractor
EXTRACTOR=target/release/extractor

say "PyTorch venv for the peer (fixture-venv; about a minute the first time)"
PY=$(bash scripts/fixtures/venv.sh)

if [ ! -f "$BENCH/frames.ready" ]; then
  say "making the peer's frames once: 8 videos x $FRAMES_PER_VIDEO JPEGs of 112 px in $FRAMES"
  rm -rf "$FRAMES"
  mkdir -p "$FRAMES"
  "$PY" "$PEER" --make-frames --models "" --videos 8 --frames-per-video "$FRAMES_PER_VIDEO" \
    --frames-dir "$FRAMES" --out-dir "$BENCH" >/dev/null
  touch "$BENCH/frames.ready"
fi

rm -rf "$OUT"
mkdir -p "$OUT/peer"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  say "warning: load average $load1 before starting; other processes share the cores, so" \
    "numbers will be low and noisy (compare medians, rerun when the machine is idle)"
fi

for spec in $MODELS; do
  model=${spec%%:*}
  n=${spec##*:}
  if [ $((n % FRAMES_PER_VIDEO)) -ne 0 ] || [ "$n" -le 0 ]; then
    say "MODELS: $spec: the frame count must be a positive multiple of $FRAMES_PER_VIDEO"
    exit 1
  fi
  # The peer's --limit N takes the first N frames in sorted order = the first N/64 videos.
  videos=$(find "$FRAMES" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort |
    head -n $((n / FRAMES_PER_VIDEO)) | paste -sd, -)

  say "$model: peer ($n frames, batch $BATCH, $THREADS threads, $REPS reps)"
  peer_json=$("$PY" "$PEER" --models "$model" --limit "$n" --reps "$REPS" --batch "$BATCH" \
    --threads "$THREADS" --frames-dir "$FRAMES" --out-dir "$OUT/peer" | tail -n 1)

  say "$model: ours, pipeline ($REPS runs of extractor extract --videos $videos)"
  pipe=()
  for r in $(seq 1 "$REPS"); do
    rm -rf "$OUT/cache"
    log=$OUT/extract-$model-$r.log
    RUST_LOG=info "$EXTRACTOR" extract --config /dev/null/none --data "$FRAMES" \
      --backbone "$model" --batch-size "$BATCH" --threads "$THREADS" --device cpu \
      --videos "$videos" --out "$OUT/cache" >"$log" 2>&1 ||
      { say "extractor extract failed; see $log"; cat "$log" >&2; exit 1; }
    fps=$(sed -nE "s/.*$model: ([0-9]+) frames in [0-9.]+ s \(([0-9.]+) frames\/s\).*/\2/p" "$log")
    [ -n "$fps" ] || { say "no 'frames/s' line in $log"; exit 1; }
    pipe+=("$fps")
  done
  rm -rf "$OUT/cache"

  say "$model: ours, forward only (extractor bench)"
  ours_fwd=$("$EXTRACTOR" bench --config /dev/null/none --backbone "$model" \
    --batch-size "$BATCH" --reps "$REPS" --threads "$THREADS" --device cpu 2>/dev/null)

  printf '{"model":"%s","frames":%s,"ours_pipeline_fps_all":[%s],"ours_forward":%s,"peer":%s}\n' \
    "$model" "$n" "$(IFS=,; echo "${pipe[*]}")" "$ours_fwd" "$peer_json" >>"$RESULTS"
done

python3 - "$RESULTS" "$THREADS" "$BATCH" "$REPS" <<'EOF' | tee "$OUT/table.md"
import json, statistics, sys

path, threads, batch, reps = sys.argv[1:]
rows = [json.loads(line) for line in open(path)]


def cell(values):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}"
    return f"{med:.2f} [{min(values):.2f}–{max(values):.2f}]"


print(f"Feature extraction, frames/s (median [min–max] of {reps}; batch {batch}, {threads} threads, "
      "CPU; same JPEG frames for both)\n")
print("| backbone | frames | ours pipeline | ours forward-only | peer pipeline | peer forward-only "
      "| pipeline / our fwd (>= 0.95) | pipeline / peer pipeline (>= 1.0) | fwd / peer fwd |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    op = r["ours_pipeline_fps_all"]
    of = r["ours_forward"]["forward_fps_all"]
    pp = r["peer"]["pipeline_fps_all"]
    pf = r["peer"]["forward_fps_all"]
    m = statistics.median
    print(f"| {r['model']} | {r['frames']} | {cell(op)} | {cell(of)} | {cell(pp)} | {cell(pf)} "
          f"| {m(op) / m(of):.2f} | {m(op) / m(pp):.2f} | {m(of) / m(pf):.2f} |")
EOF
say "raw results: $RESULTS; table: $OUT/table.md"
