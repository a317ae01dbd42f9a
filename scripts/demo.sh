#!/usr/bin/env bash
# `make demo`: the whole pipeline on the synthetic Aff-Wild2 sample, every number computed here:
# sample data -> HOG features -> LSTM and Transformer runs -> predictions (validation, test)
# -> tuned smoothing -> ensemble -> MTL submission -> P_MTL of each stage on validation and test
# (scripts/demo_table.py prints the table); then the systems of configs/systems/ (mtca on the
# sample's 64-d synthetic features, lrp-arl-ff and task-queries on its synthetic 4 x 4 token map), scored on
# validation and test beside chance.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/demo}
X=target/release/extractor
T=target/release/temporal
DATA=${DATA:-data/sample}
VAL_LABELS=$DATA/validation_set_annotations.txt
TEST_LABELS=$DATA/test_set_annotations.txt
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
score() { # score NAME SPLIT PRED -> out/demo/scores/NAME-SPLIT.json (quiet)
  local labels=$VAL_LABELS
  [ "$2" = test ] && labels=$TEST_LABELS
  "$T" evaluate --pred "$3" --labels "$labels" --json "$OUT/scores/$1-$2.json" > /dev/null
}

rm -rf "$OUT"; mkdir -p "$OUT/scores"

step "1. synthetic Aff-Wild2 sample -> $DATA"
"$X" sample-data --out "$DATA" --synthetic-features 64 --synthetic-tokens 16

step "2. features: HOG of every frame -> $DATA/features/hog"
"$X" extract --data "$DATA" --backbone hog
"$X" inspect "$DATA/features"

step "3. chance baseline (labels drawn from the training distribution)"
for split in validation test; do
  "$T" baseline --data "$DATA" --split "$split" --out "$OUT/predictions/chance/$split"
done
score chance validation "$OUT/predictions/chance/validation"

for arch in lstm transformer; do
  step "4. train $arch (configs/demo.toml) -> $OUT/runs/$arch, then score validation and test"
  "$T" train --config configs/demo.toml --data "$DATA" --arch "$arch" --out "$OUT/runs/$arch"
  for split in validation test; do
    "$T" predict --run "$OUT/runs/$arch" --split "$split" --out "$OUT/predictions/$arch/$split"
    score "$arch" "$split" "$OUT/predictions/$arch/$split"
  done

  step "5. smoothing of $arch tuned on validation, applied to test"
  "$T" smooth "$OUT/predictions/$arch/validation" --tune "$VAL_LABELS" --out "$OUT/smoothed/$arch/validation"
  "$T" smooth "$OUT/predictions/$arch/test" --config "$OUT/smoothed/$arch/validation/smoothing.json" \
    --out "$OUT/smoothed/$arch/test"
  for split in validation test; do
    score "$arch-smoothed" "$split" "$OUT/smoothed/$arch/$split"
  done
done

step "6. ensemble of the two smoothed runs (best member per task on validation), applied to test"
"$T" ensemble "$OUT/smoothed/lstm/validation" "$OUT/smoothed/transformer/validation" \
  --method best-per-task --labels "$VAL_LABELS" --out "$OUT/ensemble/validation"
"$T" ensemble "$OUT/smoothed/lstm/test" "$OUT/smoothed/transformer/test" \
  --config "$OUT/ensemble/validation/ensemble.json" --out "$OUT/ensemble/test"
score ensemble validation "$OUT/ensemble/validation"

step "7. MTL submission for the held-out test list"
"$T" submit "$OUT/ensemble/test" --format mtl --test-list "$DATA/test_set_list.txt" \
  --out "$OUT/submission/mtl_submission.txt"
"$T" submit "$OUT/predictions/chance/test" --format mtl --test-list "$DATA/test_set_list.txt" \
  --out "$OUT/submission/chance_submission.txt" > /dev/null
# The sample ships its test truth (the real challenge withholds it), so the demo can score the
# submissions: they are the test column of the ensemble and chance rows.
score ensemble test "$OUT/submission/mtl_submission.txt"
score chance test "$OUT/submission/chance_submission.txt"

step "8. systems (configs/systems/) on the sample's synthetic features"
# lrp-arl-ff trains 6 of its 15 epochs here (after the step decays at epochs 4 and 6 the rate is
# 1e-3 of the start and the scores no longer move on this sample), to keep the demo short.
# task-queries (ABAW7: 22 task queries over the tokens, AU-assisted graph) runs its own recipe
# (5 warm-up epochs, then one cosine epoch).
for system in mtca lrp-arl-ff task-queries; do
  args=(--features synthetic)
  [ "$system" = lrp-arl-ff ] && args=(--features synthetic-tokens --epochs 6)
  [ "$system" = task-queries ] && args=(--features synthetic-tokens)
  "$T" train --config "configs/systems/$system.toml" --data "$DATA" "${args[@]}" \
    --out "$OUT/runs/$system" 2>&1 | tail -n 1
  for split in validation test; do
    "$T" predict --run "$OUT/runs/$system" --split "$split" \
      --out "$OUT/predictions/$system/$split" > /dev/null
    score "system-$system" "$split" "$OUT/predictions/$system/$split"
  done
done

step "9. ABAW5 (Wang et al.): a recipe per task, combined per task into one MTL submission"
# VA: polarity classifiers, then regressors (one run, two stages); EXPR: 3 bootstrap members
# (ce+dice) and the rule vote; AU: the multi-rate Transformer (focal loss), 8 of its 24 epochs
# here (the F1 no longer moves much on this sample after them), to keep the demo short.
"$T" train --config configs/systems/polarity-va.toml --data "$DATA" --features synthetic \
  --out "$OUT/runs/polarity-va" 2>&1 | tail -n 1
"$T" train --config configs/systems/multirate-au.toml --data "$DATA" --features synthetic \
  --epochs 8 --out "$OUT/runs/multirate-au" 2>&1 | tail -n 1
for seed in 0 1 2; do
  "$T" train --config configs/systems/bagged-expr.toml --data "$DATA" --features synthetic \
    --seed "$seed" --out "$OUT/runs/bagged-expr/s$seed" 2>&1 | tail -n 1
done
for split in validation test; do
  for run in polarity-va multirate-au bagged-expr/s0 bagged-expr/s1 bagged-expr/s2; do
    "$T" predict --run "$OUT/runs/$run" --split "$split" > /dev/null
  done
  for system in polarity-va multirate-au; do
    score "system-$system" "$split" "$OUT/runs/$system/predictions/$split"
  done
done
"$T" ensemble "$OUT/runs/bagged-expr" --split validation --method rule-vote --priority 2,3,5,1 \
  --out "$OUT/predictions/bagged-expr/validation" > /dev/null
"$T" ensemble "$OUT/runs/bagged-expr" --split test \
  --config "$OUT/predictions/bagged-expr/validation/ensemble.json" \
  --out "$OUT/predictions/bagged-expr/test" > /dev/null
abaw5=("$OUT/runs/polarity-va" "$OUT/predictions/bagged-expr/validation" "$OUT/runs/multirate-au")
"$T" ensemble "${abaw5[@]}" --split validation --method best-per-task --labels "$VAL_LABELS" \
  --out "$OUT/predictions/abaw5/validation" > /dev/null
"$T" ensemble "$OUT/runs/polarity-va" "$OUT/predictions/bagged-expr/test" "$OUT/runs/multirate-au" \
  --split test --config "$OUT/predictions/abaw5/validation/ensemble.json" \
  --out "$OUT/predictions/abaw5/test" > /dev/null
for split in validation test; do
  score "system-bagged-expr" "$split" "$OUT/predictions/bagged-expr/$split"
  score "system-abaw5" "$split" "$OUT/predictions/abaw5/$split"
done
"$T" submit "$OUT/predictions/abaw5/test" --format mtl --test-list "$DATA/test_set_list.txt" \
  --out "$OUT/submission/abaw5_mtl_submission.txt"

step "P_MTL of each stage: validation (chooses checkpoint, smoothing, ensemble) and held-out test"
python3 scripts/demo_table.py "$OUT/scores"
cat <<EOT

Written:
  features     $DATA/features/{hog,synthetic,synthetic-tokens}/<video>.h5
  runs         $OUT/runs/{lstm,transformer,mtca,lrp-arl-ff,task-queries,polarity-va,multirate-au,bagged-expr}/
               (config, metrics.jsonl, checkpoints, plots)
  predictions  $OUT/predictions/, smoothed $OUT/smoothed/, ensemble $OUT/ensemble/
  submission   $OUT/submission/mtl_submission.txt, $OUT/submission/abaw5_mtl_submission.txt
  scores       $OUT/scores/<stage>-{validation,test}.json (with confusion-matrix and per-AU F1 PNGs)
EOT
