#!/usr/bin/env bash
# `make demo`: the whole pipeline on the synthetic Aff-Wild2 sample, every number computed here:
# sample data -> HOG features -> LSTM and Transformer runs -> predictions (validation, test)
# -> tuned smoothing -> ensemble -> MTL submission -> P_MTL at each stage beside chance.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
X=target/release/extractor
T=target/release/temporal
DATA=${DATA:-data/sample}
VAL_LABELS=$DATA/validation_set_annotations.txt
TEST_LABELS=$DATA/test_set_annotations.txt
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
p_mtl() { python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["p_mtl"])' "$1"; }
score() { # score NAME PRED -> out/demo/scores/NAME.json (quiet)
  "$T" evaluate --pred "$2" --labels "$VAL_LABELS" --json "$OUT/scores/$1.json" > /dev/null
}

rm -rf "$OUT"; mkdir -p "$OUT/scores"

step "1. synthetic Aff-Wild2 sample -> $DATA"
"$X" sample-data --out "$DATA"

step "2. features: HOG of every frame -> $DATA/features/hog"
"$X" extract --data "$DATA" --backbone hog
"$X" inspect "$DATA/features"

step "3. chance baseline (labels drawn from the training distribution)"
for split in validation test; do
  "$T" baseline --data "$DATA" --split "$split" --out "$OUT/predictions/chance/$split"
done
score chance "$OUT/predictions/chance/validation"

for arch in lstm transformer; do
  step "4. train $arch (configs/demo.toml) -> $OUT/runs/$arch, then score validation and test"
  "$T" train --config configs/demo.toml --data "$DATA" --arch "$arch" --out "$OUT/runs/$arch"
  for split in validation test; do
    "$T" predict --run "$OUT/runs/$arch" --split "$split" --out "$OUT/predictions/$arch/$split"
  done
  score "$arch" "$OUT/predictions/$arch/validation"

  step "5. smoothing of $arch tuned on validation, applied to test"
  "$T" smooth "$OUT/predictions/$arch/validation" --tune "$VAL_LABELS" --out "$OUT/smoothed/$arch/validation"
  "$T" smooth "$OUT/predictions/$arch/test" --config "$OUT/smoothed/$arch/validation/smoothing.json" \
    --out "$OUT/smoothed/$arch/test"
  score "$arch-smoothed" "$OUT/smoothed/$arch/validation"
done

step "6. ensemble of the two smoothed runs (best member per task on validation), applied to test"
"$T" ensemble "$OUT/smoothed/lstm/validation" "$OUT/smoothed/transformer/validation" \
  --method best-per-task --labels "$VAL_LABELS" --out "$OUT/ensemble/validation"
"$T" ensemble "$OUT/smoothed/lstm/test" "$OUT/smoothed/transformer/test" \
  --config "$OUT/ensemble/validation/ensemble.json" --out "$OUT/ensemble/test"
score ensemble "$OUT/ensemble/validation"

step "7. MTL submission for the held-out test list"
"$T" submit "$OUT/ensemble/test" --format mtl --test-list "$DATA/test_set_list.txt" \
  --out "$OUT/submission/mtl_submission.txt"
"$T" submit "$OUT/predictions/chance/test" --format mtl --test-list "$DATA/test_set_list.txt" \
  --out "$OUT/submission/chance_submission.txt" > /dev/null
# The sample ships its test truth (the real challenge withholds it), so the demo can score the submission.
"$T" evaluate --pred "$OUT/submission/mtl_submission.txt" --labels "$TEST_LABELS" \
  --json "$OUT/scores/submission-test.json" > /dev/null
"$T" evaluate --pred "$OUT/submission/chance_submission.txt" --labels "$TEST_LABELS" \
  --json "$OUT/scores/chance-test.json" > /dev/null

step "P_MTL at each stage (validation unless marked test; max 4 = 1 + 1 + 1 + 1)"
printf '  %-34s %s\n' "chance" "$(p_mtl "$OUT/scores/chance.json")"
for arch in lstm transformer; do
  printf '  %-34s %s\n' "$arch" "$(p_mtl "$OUT/scores/$arch.json")"
  printf '  %-34s %s\n' "$arch + tuned smoothing" "$(p_mtl "$OUT/scores/$arch-smoothed.json")"
done
printf '  %-34s %s\n' "ensemble (best per task)" "$(p_mtl "$OUT/scores/ensemble.json")"
printf '  %-34s %s\n' "test: chance submission" "$(p_mtl "$OUT/scores/chance-test.json")"
printf '  %-34s %s\n' "test: ensemble submission" "$(p_mtl "$OUT/scores/submission-test.json")"
cat <<EOT

Written:
  features     $DATA/features/hog/<video>.h5
  runs         $OUT/runs/{lstm,transformer}/ (config, metrics.jsonl, checkpoints, plots)
  predictions  $OUT/predictions/, smoothed $OUT/smoothed/, ensemble $OUT/ensemble/
  submission   $OUT/submission/mtl_submission.txt
  scores       $OUT/scores/*.json (with confusion-matrix and per-AU F1 PNGs beside them)
EOT
