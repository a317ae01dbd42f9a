#!/usr/bin/env bash
# `make test-slurm` (also part of `make test`): Slurm array jobs and a training sweep on a real,
# throw-away one-node cluster on this machine, checked against single-process runs.
#
# 1. Slurm: when its tools are missing, installs Debian's slurm-wlm and munge with apt-get. Needs
#    root (the daemons run as root) and built extractor and temporal binaries: stops with FAIL
#    (exit 1) without them. Starts munged, slurmctld and slurmd under a fresh
#    /tmp/test-slurm.XXXXXX (scripts/slurm/start-cluster.sh).
# 2. Extraction array vs. one process: `extractor sample-data` makes 8 videos of about 300 frames,
#    and `extractor extract --backbone hog --shard 0/1` fills a reference cache. A 4-task array
#    of configs/slurm/extract.sbatch with ids 1-4 (shard = id - lowest id) fills a second cache:
#    every task must complete and log exactly the videos of its shard, and the cache must equal
#    the reference: same files, same h5dump (datasets and attributes), same bytes.
# 3. Cancel and resume: a second 4-task array (ids 0-3, one task at a time) whose task 1 is
#    cancelled once the first of its two videos is cached. The other tasks must complete and
#    `extractor inspect --json` must show videos missing; the same array resubmitted must leave
#    the complete files untouched (inode and mtime), extract only the missing videos, leave no
#    incomplete file and give a cache equal to the reference (files, h5dump, bytes). Then an
#    array with SHARDS=4 and --array=1,3 must cache exactly the videos of shards 1/4 and 3/4.
# 4. Training sweep: a sweep of 3 members (lstm/basic, seeds 0-2, 2 epochs of a small model on
#    the hog cache of step 2). `temporal sweep --list` must give array size 3; a 3-task array of
#    configs/slurm/train-sweep.sbatch with PREDICT=validation must complete, `temporal sweep`
#    must report "finished: 3 of 3" and every member must have validation predictions;
#    `temporal ensemble` of the sweep folder must succeed, and its valence on the first frame of
#    the first video must be the mean of the members', which must differ
#    (scripts/slurm/check_ensemble_mean.py). Reported NOT RUN, not failed, when the temporal
#    binary has no `train --sweep-index` or no `sweep` subcommand (e.g. an older build).
# 5. Six folds and five submissions: the ABAW7 task-queries system (configs/systems/task-queries.toml
#    at toy size) on a synthetic token sample of 16 videos, as a 6-fold sweep with
#    `scheme = "frames"` (configs/sweeps/task-queries-6fold.toml's scheme) through a 6-task array
#    of train-sweep.sbatch; `temporal sweep` must report "finished: 6 of 6", and `temporal
#    submit-strategies` must write five MTL submission files with one row per test-list frame, in
#    its order (scripts/slurm/check_submission_order.py). NOT RUN without `submit-strategies`.
#
# Environment: EXTRACTOR and TEMPORAL, the binaries (default target/release/extractor and
# target/release/temporal; the jobs use the same ones, as sbatch passes the environment on);
# KEEP=1 keeps the temporary folder; SLURMCTLD_PORT and SLURMD_PORT, the cluster's ports (default:
# a free pair). Every SLURM_*, SBATCH_*, SALLOC_* and SRUN_* variable is unset first, so that an
# outer Slurm job does not leak into the test's jobs. Also needs h5dump (hdf5-tools; make setup
# installs it).
#
# Prints a "== ..." line per stage and one "PASS: ...", "FAIL: ..." or "NOT RUN: ..." line per
# check (with the tail of the tasks' logs when an array fails), then "(took N s)" and, last,
# "slurm: N passed, M failed" (", K not run" appended when some checks did not run). Exits 0
# when no check failed, 1 otherwise, 130 when interrupted. Prints "SKIPPED: ..." and exits 0
# when Slurm is missing and cannot be installed (not root, no apt-get, or apt-get fails).
# Always cleans up: jobs cancelled and daemons stopped by PID (scripts/slurm/stop-cluster.sh),
# the temporary folder removed ("kept FOLDER" instead with KEEP=1).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
X=${EXTRACTOR:-$REPO/target/release/extractor}   # the jobs see the same EXTRACTOR / TEMPORAL
T=${TEMPORAL:-$REPO/target/release/temporal}
VIDEOS=8
FRAMES=300   # long enough (about 0.5 s a video) to cancel a task between two videos
TASKS=4

# An outer Slurm job (someone running the tests on a cluster node) must not leak into ours.
for v in $(compgen -e | grep -E '^(SLURM_|SBATCH_|SALLOC_|SRUN_)'); do unset "$v"; done

passed=0 failed=0 notrun=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
not_run() { echo "NOT RUN: $*"; notrun=$((notrun + 1)); }
check() {  # check DESCRIPTION COMMAND...: one counted check
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
summary() {
  local line="slurm: $passed passed, $failed failed"
  [ "$notrun" -gt 0 ] && line="$line, $notrun not run"
  echo "$line"
}

# --- 1. Slurm -----------------------------------------------------------------------------------
have_slurm() {
  local t
  for t in munged mungekey slurmctld slurmd sbatch squeue scancel scontrol sinfo; do
    command -v "$t" >/dev/null || return 1
  done
}
if ! have_slurm; then
  if [ "$(id -u)" != 0 ]; then
    echo "SKIPPED: Slurm is not installed and installing it (apt-get install slurm-wlm munge) needs root"
    exit 0
  fi
  if ! command -v apt-get >/dev/null; then
    echo "SKIPPED: Slurm is not installed and this machine has no apt-get to install slurm-wlm and munge"
    exit 0
  fi
  echo "installing slurm-wlm and munge (apt-get)"
  log=$(mktemp /tmp/test-slurm-apt.XXXXXX)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >"$log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >>"$log" 2>&1
  fi
  if ! have_slurm; then
    echo "SKIPPED: cannot install slurm-wlm and munge here; apt-get said:"
    tail -n 5 "$log"
    rm -f "$log"
    exit 0
  fi
  rm -f "$log"
fi
if [ "$(id -u)" != 0 ]; then
  echo "FAIL: the test cluster's daemons run as root; run make test-slurm as root"
  exit 1
fi
for bin in "$X" "$T"; do
  if [ ! -x "$bin" ]; then
    echo "FAIL: $bin is missing; build it first (make setup, or cargo build --release --bins)"
    exit 1
  fi
done

BASE=$(mktemp -d /tmp/test-slurm.XXXXXX)
cleanup() {
  BASE="$BASE/cluster" bash "$REPO/scripts/slurm/stop-cluster.sh" >/dev/null 2>&1
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM
mkdir -p "$BASE/logs"

started=$SECONDS
if ! BASE="$BASE/cluster" bash scripts/slurm/start-cluster.sh; then
  fail "start the one-node cluster (logs above)"
  summary
  exit 1
fi
# shellcheck source=/dev/null
. "$BASE/cluster/env.sh"
# shellcheck source=scripts/slurm/lib.sh
. scripts/slurm/lib.sh
CPUS=$(sinfo -h -N -o %c | head -n 1)

submit() {  # submit SBATCH-ARGS...: prints the job id
  sbatch --parsable --chdir="$REPO" --output="$BASE/logs/%x-%A_%a.out" "$@" </dev/null | cut -d';' -f1
}
expected_states() {  # expected_states STATE IDS...: what slurm_task_states prints
  local st=$1 i; shift
  for i in "$@"; do echo "$i $st 0:0"; done
}
show_logs() {  # show_logs JOB-NAME JOBID: the tail of every task's output
  local f
  for f in "$BASE/logs/$1-$2"_*.out; do
    [ -e "$f" ] && { echo "--- $f"; tail -n 8 "$f"; }
  done
}
run_array() {  # run_array JOBID NAME [FIRST_ID]: wait, then check that every task completed
  local job=$1 name=$2 first=${3:-0} got want
  if ! slurm_wait "$job" 180; then
    fail "$name: finished within 180 s"; show_logs "$name" "$job"; return 1
  fi
  got=$(slurm_task_states "$job")
  want=$(expected_states COMPLETED $(seq "$first" $((first + TASKS - 1))))
  if [ "$got" = "$want" ]; then
    pass "$name: all $TASKS array tasks completed"
  else
    fail "$name: all $TASKS array tasks completed (got: $(tr '\n' ';' <<<"$got"))"
    show_logs "$name" "$job"
    return 1
  fi
}

# Caches: same files, same HDF5 content (h5dump of every dataset and attribute), same bytes.
h5_files() { (cd "$1" && find . -type f -name '*.h5' | sort); }
same_files() {
  diff <(h5_files "$1") <(h5_files "$2") >/dev/null || { echo "  file lists differ:"; diff <(h5_files "$1") <(h5_files "$2") | head; return 1; }
}
same_content() {
  local f
  for f in $(h5_files "$1"); do
    if ! diff <(cd "$1" && h5dump "$f") <(cd "$2" && h5dump "$f") >/dev/null; then
      echo "  $f: content differs:"; diff <(cd "$1" && h5dump "$f") <(cd "$2" && h5dump "$f") | head -n 8
      return 1
    fi
  done
}
same_bytes() {
  local f
  for f in $(h5_files "$1"); do
    cmp -s "$1/$f" "$2/$f" || { echo "  $f: bytes differ ($(cmp "$1/$f" "$2/$f" 2>&1 | head -n 1))"; return 1; }
  done
}
inspect_field() {  # inspect_field CACHE FIELD: a field of the hog summary of `extractor inspect --json`
  "$X" inspect "$1" --json | python3 scripts/slurm/inspect_field.py "$2"
}
count_h5() { find "$1" -type f -name '*.h5' | wc -l; }

# --- 2. extraction array vs. a single process ---------------------------------------------------
echo "== generated data: $VIDEOS videos of about $FRAMES frames; single-process reference cache"
"$X" sample-data --out "$BASE/data" --videos "$VIDEOS" --frames "$FRAMES" >"$BASE/logs/sample-data.out" 2>&1 \
  || { cat "$BASE/logs/sample-data.out"; fail "extractor sample-data"; summary; exit 1; }
n_videos=$(find "$BASE/data/cropped_aligned" -mindepth 1 -maxdepth 1 -type d | wc -l)
"$X" extract --data "$BASE/data" --out "$BASE/ref" --backbone hog --shard 0/1 --threads 1 --device cpu \
  >"$BASE/logs/reference.out" 2>&1 \
  || { tail "$BASE/logs/reference.out"; fail "single-process extraction"; summary; exit 1; }
check "single-process run cached all $n_videos videos" test "$(count_h5 "$BASE/ref")" = "$n_videos"

extract_args=(configs/slurm/extract.sbatch --data "$BASE/data" --out "$BASE/cache1" --backbone hog)
echo "== extraction array ($TASKS tasks, ids from 1: shard = id - SLURM_ARRAY_TASK_MIN) -> one cache"
job=$(submit --array=1-$TASKS --cpus-per-task=1 --job-name=extract1 "${extract_args[@]}")
if run_array "$job" extract1 1; then
  shares_ok=1
  for i in $(seq 0 $((TASKS - 1))); do
    log="$BASE/logs/extract1-${job}_$((i + 1)).out"
    want=$(( (n_videos - i + TASKS - 1) / TASKS ))   # videos at positions i, i+4, ...
    if ! grep -q "processing shard $i/$TASKS" "$log" || ! grep -q "^hog: $want videos written" "$log"; then
      shares_ok=0
      echo "  task $((i + 1)): expected shard $i/$TASKS and '$want videos written' in $log:"; tail -n 3 "$log"
    fi
  done
  check "task i+1 extracted exactly shard i/$TASKS (videos i, i+$TASKS, ...)" test $shares_ok = 1
  check "array cache has the same files as the single-process run" same_files "$BASE/ref" "$BASE/cache1"
  check "array cache equals the single-process run (h5dump: datasets and attributes)" same_content "$BASE/ref" "$BASE/cache1"
  check "array cache is byte-identical to the single-process run" same_bytes "$BASE/ref" "$BASE/cache1"
fi

# --- 3. a task cancelled mid-run, then the same array resubmitted ----------------------------------
echo "== second array: cancel task 1 while it runs, inspect, resubmit"
extract_args=(configs/slurm/extract.sbatch --data "$BASE/data" --out "$BASE/cache2" --backbone hog)
# One task at a time (each asks for every CPU), so task 1 starts only after task 0 has finished.
job=$(submit --array=0-$((TASKS - 1)) --cpus-per-task="$CPUS" --job-name=extract2 "${extract_args[@]}")
# Shard 1 holds the videos at sorted positions 1, 5, ...: cancel the task once the first of them
# is cached, while it works on the next one.
first_of_shard1=$(h5_files "$BASE/ref" | sed -n 2p)
state=
for _ in $(seq 1 1200); do
  state=$(slurm_task_state "$job" 1)
  [ "$state" = RUNNING ] && [ -e "$BASE/cache2/$first_of_shard1" ] && break
  case "$state" in COMPLETED|FAILED|CANCELLED*|TIMEOUT|NODE_FAIL) break ;; esac
  sleep 0.05
done
if [ "$state" = RUNNING ]; then
  scancel "${job}_1"
  slurm_wait "$job" 180
  got=$(slurm_task_states "$job" | awk '{print $1, $2}' | tr '\n' ';')
  check "task 1 cancelled, the others completed" test "$got" = "0 COMPLETED;1 CANCELLED;2 COMPLETED;3 COMPLETED;"
  have=$(inspect_field "$BASE/cache2" videos)
  check "extractor inspect shows the cache incomplete after the cancel ($have of $n_videos videos)" \
    test "$have" -lt "$n_videos"
  before=$(cd "$BASE/cache2" && find . -type f -name '*.h5' -printf '%p %i %T@\n' | sort)
  job=$(submit --array=0-$((TASKS - 1)) --cpus-per-task=1 --job-name=extract3 "${extract_args[@]}")
  if run_array "$job" extract3; then
    after=$(cd "$BASE/cache2" && find . -type f -name '*.h5' -printf '%p %i %T@\n' | sort)
    kept=$(comm -23 <(echo "$before") <(echo "$after"))
    check "the rerun left the $(grep -c . <<<"$before") complete files untouched (same inode and mtime)" test -z "$kept"
    written=$(cat "$BASE/logs/extract3-${job}"_*.out | awk '/^hog: [0-9]+ videos written/ { n += $2 } END { print n + 0 }')
    check "the rerun extracted only the $((n_videos - have)) missing videos (wrote ${written:-?})" \
      test "${written:-x}" = $((n_videos - have))
    check "extractor inspect shows all $n_videos videos after the rerun" test "$(inspect_field "$BASE/cache2" videos)" = "$n_videos"
    temps=$(inspect_field "$BASE/cache2" incomplete_files)
    check "extractor inspect shows no incomplete files after the rerun ($temps)" test "$temps" = 0
    check "resumed cache has the same files as the single-process run" same_files "$BASE/ref" "$BASE/cache2"
    check "resumed cache equals the single-process run (h5dump)" same_content "$BASE/ref" "$BASE/cache2"
    check "resumed cache is byte-identical to the single-process run" same_bytes "$BASE/ref" "$BASE/cache2"
  fi
else
  fail "task 1 of the second array was seen running with its first video cached, so it could be cancelled (state '${state:-none}')"
  show_logs extract2 "$job"
fi

echo "== SHARDS=$TASKS with --array=1,3: only shards 1/$TASKS and 3/$TASKS"
job=$(SHARDS=$TASKS submit --array=1,3 --cpus-per-task=1 --job-name=extract4 \
      configs/slurm/extract.sbatch --data "$BASE/data" --out "$BASE/cache4" --backbone hog)
if slurm_wait "$job" 180; then
  got=$(slurm_task_states "$job" | tr '\n' ';')
  check "both tasks completed" test "$got" = "1 COMPLETED 0:0;3 COMPLETED 0:0;"
  # Shards 1 and 3 of 4 are the videos at sorted positions 1, 3, 5, 7: every second file.
  check "the cache holds exactly the videos of shards 1 and 3" \
    diff <(h5_files "$BASE/ref" | sed -n '2~2p') <(h5_files "$BASE/cache4")
else
  fail "SHARDS array finished within 180 s"
fi

# --- 4. training sweep of 3 members, ensembled -----------------------------------------------------
echo "== training sweep (3 seeds) through train-sweep.sbatch, then an ensemble"
if ! "$T" train --help 2>/dev/null | grep -q -- '--sweep-index'; then
  not_run "training sweep: 'temporal train' has no --sweep-index yet"
elif ! "$T" sweep --help >/dev/null 2>&1; then
  not_run "training sweep: there is no 'temporal sweep' subcommand yet"
else
  cat >"$BASE/sweep-base.toml" <<EOF
data = "$BASE/data"
cache = "$BASE/cache1"
features = ["hog"]
epochs = 2
seg_len = 16
streams = 2
lr = 1e-3
threads = 1
[model]
hidden = 16
d_model = 16
n_layers = 1
n_heads = 2
ff = 32
dropout = 0.1
EOF
  cat >"$BASE/sweep.toml" <<EOF
name = "slurm-test"
base = "$BASE/sweep-base.toml"
out = "$BASE/sweep"
seeds = [0, 1, 2]
archs = ["lstm"]
topologies = ["basic"]
EOF
  listing=$("$T" sweep "$BASE/sweep.toml" --list 2>&1)
  check "temporal sweep --list gives an array size of 3" grep -qx 'array size: 3' <<<"$listing"
  job=$(PREDICT=validation submit --array=0-2 --cpus-per-task=1 --job-name=sweep \
        configs/slurm/train-sweep.sbatch "$BASE/sweep.toml")
  TASKS=3 run_array "$job" sweep
  status=$("$T" sweep "$BASE/sweep.toml" 2>&1)
  check "temporal sweep reports the 3 members finished" grep -qx 'finished: 3 of 3' <<<"$status"
  mapfile -t members < <(awk 'NR > 2 && $1 ~ /^[0-9]+$/ { print $2 }' <<<"$listing")
  preds=()
  for m in "${members[@]}"; do preds+=("$BASE/sweep/$m/predictions/validation"); done
  n_pred=0
  for p in "${preds[@]}"; do [ -n "$(ls "$p"/*.csv 2>/dev/null)" ] && n_pred=$((n_pred + 1)); done
  check "each of the 3 members wrote validation predictions" test "$n_pred" = 3
  if [ "$n_pred" = 3 ]; then
    # The sweep folder stands for every finished member's predictions/validation.
    if "$T" ensemble "$BASE/sweep" --split validation --out "$BASE/ensemble" >"$BASE/logs/ensemble.out" 2>&1; then
      pass "temporal ensemble of the sweep folder (3 members)"
      first=$(cd "${preds[0]}" && find . -maxdepth 1 -name "*.csv" | sort | head -n 1)
      # Row 2 (first frame), column 2 (valence): the ensemble is the mean of the members.
      check "ensemble valence = mean of the members' (first frame of $first)" \
        python3 scripts/slurm/check_ensemble_mean.py "$BASE/ensemble/$first" \
        "${preds[0]}/$first" "${preds[1]}/$first" "${preds[2]}/$first"
    else
      tail -n 5 "$BASE/logs/ensemble.out"
      fail "temporal ensemble of the sweep folder (3 members)"
    fi
  fi
fi

# --- 5. six folds of the task-queries system, five submissions ------------------------------------
echo "== six-fold task-queries sweep through train-sweep.sbatch, then the five submissions"
if ! "$T" submit-strategies --help >/dev/null 2>&1; then
  not_run "six folds: there is no 'temporal submit-strategies' subcommand yet"
else
  "$X" sample-data --out "$BASE/tokens" --videos 16 --frames 90 --no-frames --seed 4 \
    --synthetic-tokens 4 --token-dim 8 >"$BASE/logs/tokens.out" 2>&1 ||
    { tail -n 5 "$BASE/logs/tokens.out"; fail "synthetic token sample"; }
  # The system's own file with toy sizes: the keys after [model.task_queries] replace its values.
  sed -e 's/^epochs = .*/epochs = 2/' -e 's/^warmup_epochs = .*/warmup_epochs = 1/' \
    -e 's/^channels = .*/channels = 8/' -e 's/^compress_hidden = .*/compress_hidden = 16/' \
    -e 's/^heads = .*/heads = 2/' -e 's/^blocks = .*/blocks = 2/' -e 's/^ff = .*/ff = 16/' \
    -e "s|^data = .*|data = \"$BASE/tokens\"\nthreads = 1|" \
    configs/systems/task-queries.toml >"$BASE/tq-base.toml"
  sed -e "s|^base = .*|base = \"$BASE/tq-base.toml\"|" -e "s|^out = .*|out = \"$BASE/tq\"|" \
    configs/sweeps/task-queries-6fold.toml >"$BASE/tq.toml"
  listing=$("$T" sweep "$BASE/tq.toml" --list 2>&1)
  check "the six-fold sweep has an array size of 6" grep -qx 'array size: 6' <<<"$listing"
  job=$(submit --array=0-5 --cpus-per-task=1 --job-name=folds \
        configs/slurm/train-sweep.sbatch "$BASE/tq.toml")
  TASKS=6 run_array "$job" folds
  status=$("$T" sweep "$BASE/tq.toml" 2>&1)
  check "temporal sweep reports the 6 folds finished" grep -qx 'finished: 6 of 6' <<<"$status"
  if "$T" submit-strategies "$BASE/tq.toml" --test-list "$BASE/tokens/test_set_list.txt" \
      --out "$BASE/strategies" >"$BASE/logs/strategies.out" 2>&1; then
    pass "temporal submit-strategies over the six folds"
    for stem in 1-best-overall 2-best-per-task 3-folds-mean 4-folds-per-task 5-all-four; do
      check "submission $stem: one row per test-list frame, in its order" \
        python3 scripts/slurm/check_submission_order.py "$BASE/strategies/$stem.txt" \
        "$BASE/tokens/test_set_list.txt"
    done
  else
    tail -n 5 "$BASE/logs/strategies.out"
    fail "temporal submit-strategies over the six folds"
  fi
fi

echo "(took $((SECONDS - started)) s)"
summary
[ "$failed" = 0 ]
