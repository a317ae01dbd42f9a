#!/usr/bin/env bash
# `make bench-temporal`: training and inference frames/s of `temporal bench` beside a PyTorch
# peer, in one run, on the same sizes, threads, warm-up and step caps. The two never run at the
# same time. Prints one Markdown table (ratios = ours / peer; its first line names the CPU) and
# keeps the raw JSON in $OUT.
#
# Configurations:
#   ARCH/TOPOLOGY (gru/basic ... transformer/feedback): the temporal reference against
#     ../shared/peers/torch_temporal_ref.py (64 videos x 1500 frames x 2134 dims, B=8, l=250);
#   system/NAME-D or system/NAME-TxD: the training config configs/bench/NAME.toml (or else
#     configs/systems/NAME.toml) on D-wide features (T tokens of D: a backbone map), through
#     `temporal bench --system`, against scripts/bench/torch_frame_ref.py (the same config, the
#     models of scripts/fixtures/affect_refs.py and task_queries_refs.py); frame-level models
#     train on shuffled frames in batches of the config's batch_size (256; 64 for task-queries)
#     and infer on batches of as many frames. Data: 16 videos x 1000 frames (4 x 500 for token
#     inputs; 2 x 128 for token inputs of more than 100 000 values per frame, e.g. DINOv2's
#     289 x 1536 patches of the task-queries system: 0.45 GB of features per side). A system whose [model] arch is
#     "multirate" (configs/systems/multirate-au.toml, the ABAW5 multi-rate AU encoder) trains on
#     the config's streams x seg_len segments instead, against scripts/bench/torch_multirate_ref.py
#     (the model of scripts/fixtures/abaw5_refs.py).
#
# Environment:
#   THREADS=2          libtorch threads of both
#   STEPS=N            cap every timed pass at N steps (default: per configuration, below)
#   EPOCHS=3           timed training passes;  INFER_REPS=3 timed inference passes (per run)
#   ROUNDS=2           runs of each side per configuration, alternating who goes first
#   CONFIGS="gru/basic system/anfl-512 ..."   a subset (default: all 15)
#   PEERS=../shared/peers   OUT=out/bench-temporal   SKIP_BUILD=1 (use the existing release build)
#   PHASES=1           the temporal reference's peer runs through scripts/bench/torch_temporal_phases.py,
#                      which times its phases too; the table is then followed by a per-phase table
#                      (gather, forward, loss, backward, update; inference gather, forward, outputs:
#                      ms per step of each side). `temporal bench` and torch_frame_ref.py always
#                      report their phases.
#   KERNELS=1          after the timed rounds, one traced run of each side per configuration (one
#                      timed step, MKL_VERBOSE=1 ONEDNN_VERBOSE=1) and a table per configuration of
#                      the MKL and oneDNN kernels both sides called, ms per call
#                      (scripts/bench/kernel_share.py): where a ratio stays near 1, which kernels
#                      both sides spend the step in.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
EPOCHS=${EPOCHS:-3}
INFER_REPS=${INFER_REPS:-3}
ROUNDS=${ROUNDS:-2}
PEERS=${PEERS:-../shared/peers}
OUT=${OUT:-out/bench-temporal}
CONFIGS=${CONFIGS:-"gru/basic gru/share-bottom gru/feedback lstm/basic lstm/share-bottom lstm/feedback transformer/basic transformer/share-bottom transformer/feedback system/anfl-512 system/anfl-1288 system/mtca-1288 system/lrp-arl-ff-49x512 system/multirate-au-1288 system/task-queries-289x1536"}

# Timed steps per pass: for ARCH/TOPOLOGY 2000 frames each, chosen as the peer README's (gru 4,
# transformer 8, lstm 2, lstm feedback 1) and scaled down for the heavier topologies so that a
# run stays short; for the systems 256 frames each, so that a training pass takes 3-5 s on 2
# cores (a step of ANFL 512-d ~0.1 s, 1288-d ~0.55 s, MTCA 1288-d with SAM ~1.1 s, LRP-ARL-FF
# ~3 s, task-queries 289 x 1536 at batch 64 ~7 s; inference passes take the same steps, 3-10
# times faster).
default_steps() {
  case "$1" in
    system/anfl-512) echo 40 ;;
    system/anfl-1288) echo 8 ;;
    system/mtca-1288) echo 4 ;;
    system/lrp-arl-ff-49x512) echo 1 ;;
    system/task-queries-*) echo 2 ;;
    system/multirate-au-*) echo 2 ;;
    system/*) echo 4 ;;
    gru/basic) echo 4 ;;
    gru/share-bottom | gru/feedback) echo 2 ;;
    lstm/basic) echo 2 ;;
    lstm/share-bottom | lstm/feedback) echo 1 ;;
    transformer/basic) echo 8 ;;
    transformer/share-bottom | transformer/feedback) echo 4 ;;
    *) echo "bench-temporal: unknown configuration $1 (expected ARCH/TOPOLOGY or system/NAME-D)" >&2; return 1 ;;
  esac
}

PEER="$PEERS/torch_temporal_ref.py"
PHASE_PEER=scripts/bench/torch_temporal_phases.py
FRAME_PEER=scripts/bench/torch_frame_ref.py
MULTIRATE_PEER=scripts/bench/torch_multirate_ref.py
for c in $CONFIGS; do
  if [ "${c%%/*}" != system ] && [ ! -f "$PEER" ]; then
    echo "bench-temporal: the peer $PEER is missing; set PEERS=<folder of torch_temporal_ref.py>" >&2
    exit 1
  fi
done
# system/NAME-D or system/NAME-TxD -> the config file, tokens and dim (the globals SYS_*).
parse_system() {
  local spec=${1#system/} size
  size=${spec##*-}
  local name=${spec%-*}
  case "$size" in
    *x*) SYS_TOKENS=${size%x*}; SYS_DIM=${size#*x} ;;
    *) SYS_TOKENS=1; SYS_DIM=$size ;;
  esac
  SYS_FILE=configs/bench/$name.toml
  [ -f "$SYS_FILE" ] || SYS_FILE=configs/systems/$name.toml
  if [ "$spec" = "$size" ] || [ ! -f "$SYS_FILE" ] || ! [[ "$SYS_DIM$SYS_TOKENS" =~ ^[0-9]+$ ]]; then
    echo "bench-temporal: $1: expected system/NAME-D or system/NAME-TxD with configs/bench/NAME.toml or configs/systems/NAME.toml" >&2
    return 1
  fi
  if [ $((SYS_TOKENS * SYS_DIM)) -gt 100000 ]; then SYS_DATA=(--videos 2 --frames 128)
  elif [ "$SYS_TOKENS" -gt 1 ]; then SYS_DATA=(--videos 4 --frames 500)
  else SYS_DATA=(--videos 16 --frames 1000); fi
}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bins
fi
TEMPORAL=target/release/temporal
[ -x "$TEMPORAL" ] || { echo "bench-temporal: $TEMPORAL is missing; run make build" >&2; exit 1; }
echo "bench-temporal: preparing the peer's PyTorch venv (once, ~5 GB)" >&2
PY=$(bash scripts/fixtures/venv.sh)

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
failed=0
# The command line of one side on one configuration, into the global CMD (steps timed per pass,
# timed training passes, timed inference passes).
bench_cmd() { # who config steps epochs infer_reps
  local who=$1 c=$2 arch=${2%%/*} topology=${2#*/}
  local args=(--threads "$THREADS" --max-steps "$3" --epochs "$4" --infer-reps "$5")
  local peer=$PEER
  if [ "$arch" = system ]; then
    parse_system "$c" || return 1
    args+=(--system "$SYS_FILE" --dim "$SYS_DIM" --tokens "$SYS_TOKENS" "${SYS_DATA[@]}")
    peer=$FRAME_PEER
    if grep -Eq '^arch *= *"multirate"' "$SYS_FILE"; then peer=$MULTIRATE_PEER; fi
  else
    args+=(--arch "$arch" --topology "$topology")
  fi
  CMD=("$TEMPORAL" bench)
  [ "$who" = peer ] && CMD=("$PY" "$peer")
  if [ "$who" = peer ] && [ "$arch" != system ] && [ -n "${PHASES:-}" ]; then
    CMD=("$PY" "$PHASE_PEER" --peer "$PEER")
  fi
  CMD+=("${args[@]}")
}
run_one() { # who config steps round
  local who=$1 c=$2 steps=$3 r=$4 arch=${2%%/*} topology=${2#*/}
  local base="$OUT/$arch-$topology.$who.$r"
  bench_cmd "$who" "$c" "$steps" "$EPOCHS" "$INFER_REPS" || { failed=1; return; }
  echo "bench-temporal: round $r/$ROUNDS, $c, $steps steps per pass: $who" >&2
  if ! "${CMD[@]}" >"$base.json" 2>"$base.log"; then
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

# KERNELS=1: one traced run per side (MKL and oneDNN print every call with its time on stdout).
if [ -n "${KERNELS:-}" ]; then
  rm -f "$OUT"/*.trace "$OUT"/kernels.md
  for c in $CONFIGS; do
    name="${c%%/*}-${c#*/}"
    for who in ours peer; do
      echo "bench-temporal: kernel trace of $c: $who (MKL_VERBOSE, ONEDNN_VERBOSE; 1 step)" >&2
      bench_cmd "$who" "$c" 1 1 1 || { failed=1; continue; }
      MKL_VERBOSE=1 ONEDNN_VERBOSE=1 "${CMD[@]}" >"$OUT/$name.$who.trace" 2>&1 ||
        { echo "bench-temporal: traced $who failed on $c; see $OUT/$name.$who.trace" >&2; failed=1; }
    done
    { echo "Kernels of $c (traced run: 1 timed training step and 1 inference step per pass, warm-ups included):"
      echo
      "$PY" scripts/bench/kernel_share.py "$OUT/$name.ours.trace" "$OUT/$name.peer.trace"
      echo; } >>"$OUT/kernels.md"
  done
  cat "$OUT/kernels.md"
fi

BENCH_LOAD_START="$LOAD_START" BENCH_THREADS="$THREADS" \
  "$PY" scripts/bench_temporal_table.py "$OUT" $CONFIGS | tee "$OUT/table.md"
echo "bench-temporal: median [min–max] frames/s over the timed passes of $ROUNDS round(s); ratio = ours / peer (medians); peak RSS = max over rounds; raw JSON in $OUT" >&2
exit $failed
