#!/usr/bin/env bash
# `make bench-temporal`: training and inference frames/s of `temporal bench` beside the PyTorch
# peer ../shared/peers/torch_temporal_ref.py, for every arch x topology, in one run, on the same
# sizes (64 videos x 1500 frames x 2134 dims, B=8, l=250), threads, warm-up and step caps.
# The two never run at the same time. Prints one Markdown table (ratios = ours / peer) and keeps
# the raw JSON in $OUT.
#
# Environment:
#   THREADS=2          libtorch threads of both
#   STEPS=N            cap every timed pass at N steps (default: per arch x topology, below)
#   EPOCHS=3           timed training passes;  INFER_REPS=3 timed inference passes (per run)
#   ROUNDS=2           runs of each side per configuration, alternating who goes first
#   CONFIGS="gru/basic lstm/feedback ..."   a subset (default: all 9)
#   PEERS=../shared/peers   OUT=out/bench-temporal   SKIP_BUILD=1 (use the existing release build)
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-3}
INFER_REPS=${INFER_REPS:-3}
ROUNDS=${ROUNDS:-2}
PEERS=${PEERS:-../shared/peers}
OUT=${OUT:-out/bench-temporal}
CONFIGS=${CONFIGS:-"gru/basic gru/share-bottom gru/feedback lstm/basic lstm/share-bottom lstm/feedback transformer/basic transformer/share-bottom transformer/feedback"}

# Timed steps per pass (2000 frames each), chosen as the peer README's (gru 4, transformer 8,
# lstm 2, lstm feedback 1) and scaled down for the heavier topologies so that a run stays short.
default_steps() {
  case "$1" in
    gru/basic) echo 4 ;;
    gru/share-bottom | gru/feedback) echo 2 ;;
    lstm/basic) echo 2 ;;
    lstm/share-bottom | lstm/feedback) echo 1 ;;
    transformer/basic) echo 8 ;;
    transformer/share-bottom | transformer/feedback) echo 4 ;;
    *) echo "bench-temporal: unknown configuration $1 (expected ARCH/TOPOLOGY)" >&2; return 1 ;;
  esac
}

PEER="$PEERS/torch_temporal_ref.py"
if [ ! -f "$PEER" ]; then
  echo "bench-temporal: the peer $PEER is missing; set PEERS=<folder of torch_temporal_ref.py>" >&2
  exit 1
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bins
fi
TEMPORAL=target/release/temporal
[ -x "$TEMPORAL" ] || { echo "bench-temporal: $TEMPORAL is missing; run make build" >&2; exit 1; }
echo "bench-temporal: preparing the peer's PyTorch venv (once, ~5 GB)" >&2
PY=$(bash scripts/fixtures/venv.sh)

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log
failed=0
run_one() { # who config steps round
  local who=$1 c=$2 steps=$3 r=$4 arch=${2%%/*} topology=${2#*/}
  local base="$OUT/$arch-$topology.$who.$r"
  local args=(--arch "$arch" --topology "$topology" --threads "$THREADS" --max-steps "$steps"
    --epochs "$EPOCHS" --infer-reps "$INFER_REPS")
  echo "bench-temporal: round $r/$ROUNDS, $c, $steps steps per pass: $who" >&2
  local cmd=("$TEMPORAL" bench)
  [ "$who" = peer ] && cmd=("$PY" "$PEER")
  if ! "${cmd[@]}" "${args[@]}" >"$base.json" 2>"$base.log"; then
    echo "bench-temporal: $who failed on $c; see $base.log" >&2
    rm -f "$base.json"
    failed=1
  fi
}
# Rounds alternate who goes first, so that a slow spell of the shared host does not always hit
# the same side; the table pools the timed passes of every round.
for r in $(seq 1 "$ROUNDS"); do
  for c in $CONFIGS; do
    steps=${STEPS:-$(default_steps "$c")}
    if [ $((r % 2)) -eq 1 ]; then
      run_one peer "$c" "$steps" "$r"; run_one ours "$c" "$steps" "$r"
    else
      run_one ours "$c" "$steps" "$r"; run_one peer "$c" "$steps" "$r"
    fi
  done
done

"$PY" scripts/bench_temporal_table.py "$OUT" $CONFIGS | tee "$OUT/table.md"
echo "bench-temporal: median [min–max] frames/s over the timed passes of $ROUNDS round(s); ratio = ours / peer (medians); peak RSS = max over rounds; raw JSON in $OUT" >&2
exit $failed
