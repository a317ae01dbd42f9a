#!/usr/bin/env bash
# Start a throw-away one-node Slurm cluster on this machine (munged + slurmctld + slurmd, as root,
# without systemd) with everything under $BASE: config, munge key and socket, state, spool, logs,
# pid files. For tests of array jobs; adapted from ../shared/recipes/slurm-start-cluster.sh.
#
#   BASE=/tmp/mycluster bash scripts/slurm/start-cluster.sh
#   . /tmp/mycluster/env.sh        # exports SLURM_CONF for sbatch, squeue, scancel, scontrol
#   BASE=/tmp/mycluster bash scripts/slurm/stop-cluster.sh
#
# Differences from the recipe: BASE is required (no shared default folder); the two TCP ports
# are free ones picked at start (or SLURMCTLD_PORT / SLURMD_PORT), so several clusters can run
# at once; a daemon that does not start shows its log; `$BASE/env.sh` is written for the clients.
# Needs: apt-get install -y slurm-wlm munge (Debian 12: Slurm 22.05, munge 0.5.15).
set -euo pipefail
: "${BASE:?set BASE to the folder that will hold the cluster (e.g. a mktemp -d folder)}"
BASE=$(mkdir -p "$BASE" && cd "$BASE" && pwd)
HOST=$(hostname -s)
CPUS=${SLURM_TEST_CPUS:-$(nproc)}
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
[ "$MEM_MB" -gt 256 ] || MEM_MB=256

for tool in munged mungekey munge unmunge slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "start-cluster: $tool not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "start-cluster: the daemons run as root here; run as root" >&2; exit 1; }
[ -e "$BASE/etc/slurm.conf" ] && { echo "start-cluster: $BASE already holds a cluster; stop it or use another BASE" >&2; exit 1; }

port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
pick_port() {  # a free port p with p+1 also free (slurmctld, slurmd)
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 20000 ))
    port_free "$p" && port_free $((p + 1)) && { echo "$p"; return 0; }
  done
  echo "start-cluster: no free port pair found between 20000 and 40000" >&2; return 1
}
CTLD_PORT=${SLURMCTLD_PORT:-$(pick_port)}
SLURMD_PORT=${SLURMD_PORT:-$((CTLD_PORT + 1))}

mkdir -p "$BASE"/{etc,munge,state,spool,log,run}
chmod 755 "$BASE/munge"   # munged refuses group/other-writable dirs; 755 lets clients reach the socket

show_log() { echo "--- $1 (last lines)"; tail -n 20 "$1" 2>/dev/null || true; }

# --- munge: the key must belong to the user running munged and be mode 0600 ----------------------
mungekey --create --keyfile="$BASE/munge/munge.key"
chmod 600 "$BASE/munge/munge.key"
MUNGE_SOCK="$BASE/munge/munge.socket.2"
munged --force \
       --key-file="$BASE/munge/munge.key" \
       --socket="$MUNGE_SOCK" \
       --pid-file="$BASE/run/munged.pid" \
       --log-file="$BASE/log/munged.log" \
       --seed-file="$BASE/munge/munged.seed" </dev/null \
  || { show_log "$BASE/log/munged.log"; exit 1; }
munge --socket="$MUNGE_SOCK" -n </dev/null | unmunge --socket="$MUNGE_SOCK" >/dev/null \
  || { echo "start-cluster: munge credentials do not round-trip"; show_log "$BASE/log/munged.log"; exit 1; }

# --- slurm.conf ------------------------------------------------------------------------------------
cat > "$BASE/etc/slurm.conf" <<CONF
ClusterName=testcluster
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${MUNGE_SOCK}
CredType=cred/munge
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
StateSaveLocation=${BASE}/state
SlurmdSpoolDir=${BASE}/spool
SlurmctldPidFile=${BASE}/run/slurmctld.pid
SlurmdPidFile=${BASE}/run/slurmd.pid
SlurmctldLogFile=${BASE}/log/slurmctld.log
SlurmdLogFile=${BASE}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$BASE/etc/slurm.conf"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF" > "$BASE/env.sh"

# --- daemons (they fork and write their pid files) -------------------------------------------------
slurmctld -f "$SLURM_CONF" </dev/null || { show_log "$BASE/log/slurmctld.log"; exit 1; }
slurmd    -f "$SLURM_CONF" </dev/null || { show_log "$BASE/log/slurmd.log"; exit 1; }

st=
for _ in $(seq 1 60); do
  st=$(sinfo -h -N -o %t 2>/dev/null || true)
  [ "$st" = idle ] && break
  sleep 0.5
done
if [ "$st" != idle ]; then
  echo "start-cluster: the node never became idle (state '${st:-unknown}')"
  show_log "$BASE/log/slurmctld.log"; show_log "$BASE/log/slurmd.log"
  exit 1
fi
echo "slurm cluster up: $CPUS CPUs, ports $CTLD_PORT/$SLURMD_PORT, SLURM_CONF=$SLURM_CONF"
