#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, loopback only, for the tests.
#   tests/slurm/cluster.sh install   # Debian packages (root; about 10 s)
#   tests/slurm/cluster.sh start     # munge, slurmctld, slurmd, then waits until the node is idle
#   tests/slurm/cluster.sh stop      # stops exactly the daemons it started
# State and logs live in $GRADVAR_SLURM_DIR (default /tmp/gradvar-slurm). The configuration goes to
# SLURM's default place, /etc/slurm, because commands run inside jobs (srun in the job script of
# Snakemake's executor) do not see a SLURM_CONF set by the submitting shell.
# It changes this machine, so it refuses to overwrite a SLURM configuration it did not write (a real
# site's), never replaces an existing munge key, and `stop` stops every daemon it started (munged too)
# and removes the files it created.
set -euo pipefail
STATE=${GRADVAR_SLURM_DIR:-/tmp/gradvar-slurm}
ETC=/etc/slurm
CONF=$ETC/slurm.conf

OURS="# written by gradvar's tests/slurm/cluster.sh (removed by its stop)"
CREATED=$STATE/created   # files this script created, one per line, removed by stop

created() { mkdir -p "$STATE"; echo "$1" >> "$CREATED"; }

ours() {  # ours FILE: true if FILE is absent or was written by this script (or by its earlier versions)
  [ ! -e "$1" ] || grep -qx "$OURS" "$1" || grep -qx "ClusterName=gradvar" "$1" \
    || [ "$(cat "$1")" = "Name=gpu Type=fake File=/dev/fakegpu0" ]
}

wait_for() {  # wait_for SECONDS COMMAND...: retry until the command succeeds
  local limit=$1; shift
  for _ in $(seq $((limit * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    return 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi  # someone else's: leave it running
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    created /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- munged --force
  wait_for 10 sh -c 'munge -n | unmunge'
  mkdir -p "$STATE"  # not made yet where the munge key was already there (nothing recorded as created)
  cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || pgrep -n -x munged > "$STATE/munged.pid"
}

write_config() {
  for file in "$CONF" "$ETC/gres.conf"; do
    if ! ours "$file"; then
      echo "refusing to overwrite $file: it was not written by this script (a real SLURM site?)" >&2
      exit 3
    fi
  done
  mkdir -p "$STATE/spool" "$STATE/slurmd" "$STATE/log" "$ETC"
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1)
  if [ ! -e /dev/fakegpu0 ]; then mknod -m 666 /dev/fakegpu0 c 1 3; created /dev/fakegpu0; fi
  printf '%s\nName=gpu Type=fake File=/dev/fakegpu0\n' "$OURS" > "$ETC/gres.conf"
  created "$ETC/gres.conf"
  created "$CONF"
  cat > "$CONF" <<CONF
$OURS
ClusterName=gradvar
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
EnforcePartLimits=ALL
GresTypes=gpu
StateSaveLocation=$STATE/spool
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
${node} NodeAddr=127.0.0.1 Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  install
  start_munge
  stop_daemons slurmd slurmctld
  write_config
  slurmctld -f "$CONF"
  wait_for 30 scontrol ping
  slurmd -f "$CONF"
  wait_for 60 sh -c "sinfo -h -o %t | grep -qx idle"
  echo "SLURM is up: $(sinfo -h -o '%P %D nodes %t')"
}

stop_daemons() {  # stop_daemons NAME...: the daemons this script started, by their pid files
  for name in "$@"; do
    local pidfile=$STATE/$name.pid
    local pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

stop() {
  stop_daemons slurmd slurmctld munged
  if [ -f "$CREATED" ]; then
    sort -u "$CREATED" | while read -r file; do
      case "$file" in
        "$CONF"|"$ETC/gres.conf") ours "$file" && rm -f "$file" ;;
        *) rm -f "$file" ;;
      esac
    done
    rm -f "$CREATED"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
