# shellcheck shell=bash
# A throwaway one-node Slurm cluster for the checks in tests/slurm/ (sourced,
# not run): a private munged, slurmctld and slurmd, all configuration, state,
# logs and PMIx directories under one temporary folder, ports picked at random.
# It needs root, as slurmd starts the tasks.
#
#   budget=SECONDS                 # the whole check, teardown included
#   source tests/slurm/cluster.sh  # starts the clock
#   cluster_traps                  # stops the cluster and removes $tmp on exit
#   cluster_extra_conf="KEY=VALUE lines appended to slurm.conf"   (optional)
#   start_cluster                  # sets tmp and SLURM_CONF; exit 77 when it cannot
#
# Also: skip REASON (exit 77), elapsed T0, limit_for WANT_S, show_logs,
# cluster_files (paths removed on exit, for files made before the cluster).
# COHORT_SLURM_KEEP=1 keeps the folder (configuration and logs) after exit.

started=$(date +%s.%N)
budget=${budget:-500}
tmp=""
ctld_pid=""
daemon_pids=()  # munged, slurmctld, slurmd
cluster_files=()
cluster_extra_conf=${cluster_extra_conf:-}

skip() {
  echo "skipped: $*"
  exit 77
}

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# The whole run, teardown included, must end before the caller's limit (CTest
# kills with SIGKILL, which would leave the daemons running): every command
# gets at most what is left of the budget less 40 s for killing it and tearing
# the cluster down.
limit_for() {  # limit_for WANT_S: seconds this command may run (at least 1)
  awk -v want="$1" -v used="$(elapsed "$started")" -v budget="$budget" \
    'BEGIN { left = int(budget - 40 - used); l = want < left ? want : left; print l < 1 ? 1 : l }'
}

port_in_use() {  # any TCP socket on this port, listening or not
  local hex
  hex=$(printf '%04X' "$1")
  awk -v p="$hex" 'FNR > 1 { split($2, a, ":"); if (a[2] == p) found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

pick_port_pair() {  # two adjacent free ports in 20000..59999
  local p
  for _ in $(seq 50); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! port_in_use "$p" && ! port_in_use $((p + 1)); then
      echo "$p"
      return 0
    fi
  done
  return 1
}

show_logs() {
  local f
  [[ -n $tmp ]] || return 0
  for f in "$tmp"/log/*.log; do
    [[ -s $f ]] || continue
    echo "---- last lines of $f"
    tail -n 15 "$f"
  done
}

cluster_on_exit() {
  local rc=$? pid alive=0 jobs=()
  trap - EXIT INT TERM
  # A reader that went away (| head) must not end the teardown half way.
  trap '' PIPE
  ((${#cluster_files[@]})) && rm -rf "${cluster_files[@]}"
  [[ -n $tmp ]] || exit "$rc"
  # Jobs first (a killed check may leave a step behind), then the daemons we
  # started, each by the pid we recorded: never by name, never anyone else's.
  if [[ -n $ctld_pid ]] && kill -0 "$ctld_pid" 2>/dev/null; then
    mapfile -t jobs < <(squeue -h -o %i 2>/dev/null)
    if ((${#jobs[@]})); then
      scancel --quiet "${jobs[@]}" 2>/dev/null
      for _ in $(seq 20); do
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.25
      done
    fi
  fi
  # All at once (each takes 1-2 s to save state and go), up to 10 s, then KILL.
  for pid in "${daemon_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for _ in $(seq 40); do
    alive=0
    for pid in "${daemon_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.25
  done
  if ((alive)); then
    for pid in "${daemon_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
  fi
  ((rc != 0 && rc != 77)) && show_logs
  if [[ -n ${COHORT_SLURM_KEEP:-} ]]; then
    echo "kept $tmp (COHORT_SLURM_KEEP)"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}

cluster_traps() {
  trap cluster_on_exit EXIT
  trap 'exit 130' INT TERM
}

# Waits up to $2 seconds for the pid file $1, then prints the pid.
wait_pid_file() {
  for _ in $(seq $(($2 * 4))); do
    if [[ -s $1 ]]; then
      cat "$1"
      return 0
    fi
    sleep 0.25
  done
  return 1
}

start_cluster() {
  local d node ctld_port auth pid state=""
  for d in slurmctld slurmd; do
    command -v "$d" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$d" >/dev/null || skip "$d is not installed (Debian: slurmctld, slurmd)"
  done
  ((EUID == 0)) || skip "a throwaway cluster needs root (slurmd starts the tasks)"
  node=$(hostname -s)
  ctld_port=$(pick_port_pair) || skip "no free TCP port pair for slurmctld/slurmd"
  tmp=$(mktemp -d /tmp/cohort-slurm.XXXXXX)
  mkdir -p "$tmp"/{state,spool,log,munge}
  chmod 700 "$tmp/munge"
  : >"$tmp/plugstack.conf"
  # mpi.conf is read from next to slurm.conf; keeps the PMIx plugin's
  # per-step directories in here rather than in /tmp.
  mkdir -p "$tmp/pmix"
  echo "PMIxCliTmpDirBase=$tmp/pmix" >"$tmp/mpi.conf"
  # Open MPI names its shared-memory segments after the Slurm job and step
  # (slurm.pmix.JOB.STEP); besides the random FirstJobId below, a private backing
  # directory keeps concurrent throwaway clusters from ever sharing one.
  mkdir -p "$tmp/shm"
  export OMPI_MCA_btl_vader_backing_directory="$tmp/shm"

  # Authentication: a private munged on its own socket and key. Without munged,
  # auth/none, which Slurm up to 22.05 still ships (a newer slurmctld then
  # refuses to start and the check is skipped with its log).
  if command -v munged >/dev/null || [[ -x /usr/sbin/munged ]]; then
    head -c 1024 /dev/urandom >"$tmp/munge/munge.key"
    chmod 400 "$tmp/munge/munge.key"
    PATH=$PATH:/usr/sbin munged --force --socket="$tmp/munge/socket" \
      --key-file="$tmp/munge/munge.key" --pid-file="$tmp/munge/munged.pid" \
      --seed-file="$tmp/munge/seed" --log-file="$tmp/log/munged.log" ||
      { show_logs; skip "munged did not start"; }
    pid=$(wait_pid_file "$tmp/munge/munged.pid" 10) || { show_logs; skip "munged wrote no pid file"; }
    daemon_pids+=("$pid")
    auth="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/socket"
  else
    auth="AuthType=auth/none
CredType=cred/none"
  fi

  # Job ids from a random start: Open MPI names its shared-memory segments
  # (/dev/shm/vader_segment.HOST.ID.RANK) after a hash of the PMIx namespace,
  # slurm.pmix.JOB.STEP, so two throwaway clusters on one host (parallel CI
  # runs) that both count jobs from 1 made ranks of different jobs share
  # segments and crash in mca_btl_vader_poll_handle_frag.
  local first_job=$((1000 + (RANDOM * 32768 + RANDOM) % 60000000))
  cat >"$tmp/slurm.conf" <<EOF
# Throwaway one-node cluster of tests/slurm/cluster.sh
ClusterName=cohortcheck
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$((ctld_port + 1))
SlurmUser=root
SlurmdUser=root
$auth
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
PlugStackConfig=$tmp/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
FirstJobId=$first_job
$cluster_extra_conf
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=cohort Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$tmp/slurm.conf
  slurmctld -f "$SLURM_CONF" || { show_logs; skip "slurmctld did not start"; }
  pid=$(wait_pid_file "$tmp/slurmctld.pid" 15) || { show_logs; skip "slurmctld wrote no pid file"; }
  daemon_pids+=("$pid")
  ctld_pid=$pid
  slurmd -f "$SLURM_CONF" -N "$node" || { show_logs; skip "slurmd did not start"; }
  pid=$(wait_pid_file "$tmp/slurmd.pid" 15) || { show_logs; skip "slurmd wrote no pid file"; }
  daemon_pids+=("$pid")
  for _ in $(seq 120); do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null)
    [[ $state == idle ]] && break
    sleep 0.25
  done
  if [[ $state != idle ]]; then
    show_logs
    skip "node $node of the throwaway cluster is '${state:-unknown}', not idle, after 30 s"
  fi
  echo "throwaway cluster up in $(elapsed "$started") s: node $node, ports $ctld_port/$((ctld_port + 1)), $tmp"
}

# srun --mpi=pmix must exist (Debian: mpi_pmix.so in slurm-wlm-basic-plugins).
require_pmix() {
  local types
  types=$(srun --mpi=list 2>&1)
  grep -qw pmix <<<"$types" ||
    skip "srun --mpi=list has no pmix (Debian ships mpi_pmix.so in slurm-wlm-basic-plugins): $types"
}
