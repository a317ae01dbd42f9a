# shellcheck shell=bash
# Helpers for scripts that drive a Slurm cluster (source this file; SLURM_CONF must be exported).
# Written for clusters without accounting (no sacct): job records are read with scontrol, which
# keeps them for MinJobAge (300 s by default) after the job ends.

# slurm_wait JOBID [SECONDS]: wait until every task of the job has left the queue (default 120 s).
# Returns 1 on timeout, after printing the queue.
slurm_wait() {
  local job=$1 limit=${2:-120} deadline
  deadline=$((SECONDS + limit))
  while [ -n "$(squeue -h -j "$job" -o %i 2>/dev/null)" ]; do
    if [ $SECONDS -ge "$deadline" ]; then
      echo "job $job still queued after ${limit}s:" >&2
      squeue >&2
      return 1
    fi
    sleep 0.3
  done
}

# slurm_task_states JOBID: one line per array task, "TASK_ID STATE EXIT_CODE", sorted by task id
# (a job that is not an array gives one line with task id "-").
slurm_task_states() {
  scontrol show job "$1" -o 2>/dev/null | awk '{
    id = "-"; st = "?"; ec = "?"
    for (i = 1; i <= NF; i++) {
      k = substr($i, 1, index($i, "=") - 1); v = substr($i, index($i, "=") + 1)
      if (k == "ArrayTaskId") id = v; else if (k == "JobState") st = v; else if (k == "ExitCode") ec = v
    }
    print id, st, ec
  }' | sort -n
}

# slurm_task_state JOBID TASK: the state of one array task (RUNNING, PENDING, COMPLETED, ...),
# empty when Slurm has no record of it.
slurm_task_state() {
  squeue -h -j "$1_$2" -o %T 2>/dev/null | head -n 1 | grep . \
    || slurm_task_states "$1" | awk -v t="$2" '$1 == t { print $2 }'
}
