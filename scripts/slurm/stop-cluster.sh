#!/usr/bin/env bash
# Stop the cluster that scripts/slurm/start-cluster.sh started under $BASE: cancel its jobs and
# wait for them to end (so no job step outlives the daemons), then stop slurmd and slurmctld, and
# munged last, each by the PID in its pid file (TERM, up to 10 s, then KILL). Safe to run twice
# and on a half-started cluster. Leaves $BASE in place (the caller removes it).
set -uo pipefail
: "${BASE:?set BASE to the folder of the cluster}"
export SLURM_CONF="$BASE/etc/slurm.conf"

alive() {  # running and not a zombie (PID 1 in some containers never reaps): check /proc, not kill -0
  [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
running() { [ -s "$BASE/run/$1.pid" ] && alive "$(cat "$BASE/run/$1.pid")"; }

if running slurmctld && command -v squeue >/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 100); do
      [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi

stop() {  # stop <daemon>...: SIGTERM each (in parallel), wait up to 10 s, then SIGKILL
  local pids=() d f pid
  for d in "$@"; do
    f="$BASE/run/$d.pid"; [ -s "$f" ] || continue
    pid=$(cat "$f")
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null && pids+=("$pid"); fi
    rm -f "$f"
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then echo "stop-cluster: pid $pid did not stop, sending KILL"; kill -KILL "$pid" 2>/dev/null; fi
  done
  return 0
}
stop slurmd slurmctld
stop munged
