#!/usr/bin/env bash
# End-to-end check of slurm/train.sbatch on a throwaway one-node cluster
# (tests/slurm/cluster.sh; needs root): a real `cohort train` job with 2 CPU
# tasks is stopped twice and must requeue itself and resume each time.
#   sbatch_check.sh BUILD_DIR
# Cases, each judged by the job's state in `scontrol show job` (no slurmdbd,
# so no sacct), its output file and the run's metrics.jsonl:
#   1. requeue: Fashion-MNIST shards (cohort convert), a tiny config (batch 32,
#      60 steps, checkpoint every 10). Once the first checkpoint exists,
#      `scancel --signal=USR1 JOB` (what --signal=USR1@N sends: the tasks, not
#      the batch shell): run 1 must print "stopped at step k1" and the job
#      must be requeued (Restarts=1). Run 2 must print "resuming at step k1";
#      once it has logged a later step, `scancel --signal=TERM --batch JOB`
#      (the batch shell only: it must forward the stop to the ranks): "stopped
#      at step k2", k2 > k1, Restarts=2. Run 3 must resume at k2 and finish
#      at step 60; the job must end COMPLETED with exit code 0.
#      Slurm holds a requeued job for 120 s (BeginTime); the check releases it
#      with `scontrol update StartTime=now` once the old steps are gone.
#   2. failure: the same config with a missing shard directory: the job must
#      end FAILED, not requeued, with the error in its output, within 60 s.
#   3. straggler: tests/slurm/straggler_cohort.sh as COHORT: task 0 exits 75,
#      the other is killed by --kill-on-bad-exit (srun exits 143); the script
#      must still requeue, and the job complete on its second run.
#   4. time limit: --time=1 --signal=USR1@55 on a run of 1875 steps: Slurm's
#      own warning signal (3-35 s in) must stop it with a checkpoint and the
#      job requeue; then the check cancels it.
# Settings: COHORT_SBATCH_CHECK_BUDGET (seconds for the whole run, default
# 240), COHORT_SLURM_KEEP=1 keeps the cluster's folder (configuration, logs,
# job outputs). Exit codes: 0 passed, 1 a check failed, 2 usage, 77 skipped
# (no Slurm, no pmix plugin, not root, no Fashion-MNIST, or the cluster did
# not come up).
set -u

if (($# != 1)); then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" 2>/dev/null && pwd) || { echo "no build directory '$1'" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cohort=$build/launch/cohort
script=$repo/slurm/train.sbatch
straggler=$here/straggler_cohort.sh
[[ -x $cohort ]] || { echo "FAIL: $cohort is missing (build the cohort target)"; exit 1; }
[[ -r $script ]] || { echo "FAIL: $script is missing"; exit 1; }

budget=${COHORT_SBATCH_CHECK_BUDGET:-240}
# shellcheck source=tests/slurm/cluster.sh
source "$here/cluster.sh"

fmnist=/usr/share/datasets/fashion-mnist
[[ -r $fmnist/train-images-idx3-ubyte.gz ]] ||
  skip "no Fashion-MNIST in $fmnist (Debian: dataset-fashion-mnist)"
for c in sbatch scontrol scancel squeue; do
  command -v "$c" >/dev/null || skip "$c is not installed (Debian: slurm-client, slurmd, slurmctld)"
done

# Always a throwaway cluster, also inside a Slurm job: requeueing and
# releasing jobs on a real cluster is not this check's business. Inherited
# SLURM_*/SBATCH_*/SRUN_* settings would point at that cluster or override
# the options given here.
for v in $(compgen -e); do
  case $v in SLURM_* | SBATCH_* | SRUN_* | SALLOC_*) unset "$v" ;; esac
done
cluster_traps
start_cluster
require_pmix

failures=0
fail() {
  echo "FAIL $*"
  failures=$((failures + 1))
}

# job_field JOB KEY: KEY's value in `scontrol show job` (empty once forgotten).
job_field() {
  scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -n 1 | cut -d= -f2-
}

# wait_until LIMIT_S COMMAND...: polls every 0.25 s; 1 when the limit passed.
wait_until() {
  local limit t0
  limit=$(limit_for "$1")
  shift
  t0=$(date +%s)
  until "$@"; do
    (($(date +%s) - t0 >= limit)) && return 1
    sleep 0.25
  done
}

job_is() {  # job_is JOB STATE [RESTARTS]
  [[ $(job_field "$1" JobState) == "$2" ]] || return 1
  [[ -z ${3:-} || $(job_field "$1" Restarts) == "$3" ]]
}
job_ended() {
  case $(job_field "$1" JobState) in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | "") return 0 ;;
    *) return 1 ;;
  esac
}
job_summary() {
  echo "JobState=$(job_field "$1" JobState) Reason=$(job_field "$1" Reason)" \
    "Restarts=$(job_field "$1" Restarts) ExitCode=$(job_field "$1" ExitCode)"
}
show_job() {  # show_job JOB OUTPUT_FILE: what a failure report needs
  echo "---- job $1: $(job_summary "$1")"
  echo "---- $2"
  cat "$2" 2>/dev/null
}
# The largest "step" in metrics.jsonl (0 when none yet).
last_logged_step() {
  grep -o '"step": [0-9]*' "$1" 2>/dev/null | awk '{ if ($2 > m) m = $2 } END { print m + 0 }'
}
logged_past() { (($(last_logged_step "$1") > $2)); }
# No step of JOB left on the node: slurmd keeps a socket per running
# slurmstepd in its spool folder, and the PMIx plugin one per step.
steps_gone() {  # steps_gone JOB
  ! compgen -G "$tmp/spool/*_$1.*" >/dev/null && ! compgen -G "$tmp/spool/*pmix.$1.*" >/dev/null
}
# Slurm holds a requeued job for 120 s (Reason=BeginTime); this lets it start
# at once, but only once the previous run's steps are gone. The slurmstepd of
# a PMIx step lingers about 3 s after its tasks ended (PMIx finalize), and a
# new step with the same id fails to start meanwhile ("launch failed:
# Unspecified error"; slurmd.log: cannot bind stepd.slurm.pmix.JOB.0).
release() {  # release JOB
  wait_until 30 steps_gone "$1" || { echo "steps of job $1 still on the node after 30 s"; return 1; }
  scontrol update JobId="$1" StartTime=now
}
# Submits train.sbatch as 2 CPU tasks on the one node: the GPU defaults and
# --cpus-per-task are overridden and, unless limit_opts says otherwise, a
# 10-minute limit ends anything stuck, with --signal moved to 5 s before it
# (the check signals the job itself).
limit_opts=(--time=10 --signal=USR1@5)
submit() {  # submit OUTPUT_FILE ARGS...: prints the job id
  local out=$1
  shift
  sbatch --parsable --output="$out" --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
    "${limit_opts[@]}" --chdir="$tmp" "$script" "$@"
}

echo "converting Fashion-MNIST train shards"
t0=$(date +%s.%N)
if ! timeout "$(limit_for 60)" "$cohort" convert fashion-mnist --split train --out "$tmp/shards" \
  --quiet; then
  echo "FAIL: cohort convert fashion-mnist failed"
  exit 1
fi
echo "  $(elapsed "$t0") s"

max_steps=60
cat >"$tmp/tiny.yaml" <<EOF
# sbatch_check.sh: 60 steps of the small CNN on 2 CPU ranks (~10 s here)
run:
  out_dir: $tmp/run
  device: cpu
data:
  train: $tmp/shards
  batch: 32
  threads: 1
schedule:
  warmup_steps: 5
  max_steps: $max_steps
checkpoint:
  every_steps: 10
log:
  every_steps: 5
EOF
# Both ranks on the node's 2 CPUs plus loader threads: let waiting ranks yield.
export OMPI_MCA_mpi_yield_when_idle=1

# ---- 1. requeue: stop (tasks), resume, stop (batch shell), resume, finish ----
t0=$(date +%s.%N)
out=$tmp/requeue.out
metrics=$tmp/run/metrics.jsonl
case_ok=1
job=$(COHORT=$cohort submit "$out" "$tmp/tiny.yaml" --set log.every_steps=5) ||
  { fail "requeue: sbatch refused the job"; case_ok=0; }
# stop_run N SIGNAL_ARGS...: signals the job's run N (1-based) once it has
# progressed, waits for the requeue, checks the output and releases the job.
stopped_at=0
stop_run() {
  local n=$1 k
  shift
  if ! scancel "$@" "$job"; then
    fail "requeue: scancel $* refused"
    return 1
  fi
  if ! wait_until 60 job_is "$job" PENDING "$n"; then
    fail "requeue: after scancel $*, run $n did not end requeued (Restarts=$n) within 60 s"
    return 1
  fi
  k=$(grep -o 'stopped at step [0-9]*' "$out" | sed -n "${n}p" | grep -o '[0-9]*$')
  if [[ -z $k ]] || ((k <= stopped_at || k >= max_steps)); then
    fail "requeue: run $n printed no 'stopped at step k' with $stopped_at < k < $max_steps"
    return 1
  fi
  grep -q "requeueing job $job" "$out" || { fail "requeue: no 'requeueing' line"; return 1; }
  echo "  run $n: scancel $* -> stopped at step $k, requeued after $(elapsed "$t0") s"
  stopped_at=$k
  release "$job" || { fail "requeue: could not release the requeued job"; return 1; }
}
resumed_at() {  # resumed_at K: the output says "resuming at step K"
  grep -q "resuming at step $1\$" "$out"
}
if ((case_ok)); then
  # Run 1: signalled once the first checkpoint (step 10) exists.
  if ! wait_until 90 test -e "$tmp/run/checkpoint.h5"; then
    fail "requeue: run 1 wrote no checkpoint within 90 s"
    case_ok=0
  elif ! stop_run 1 --signal=USR1; then
    case_ok=0
  # Run 2: signalled (the batch shell only) once it logged a later step.
  elif ! wait_until 60 resumed_at "$stopped_at"; then
    fail "requeue: run 2 did not print 'resuming at step $stopped_at' within 60 s"
    case_ok=0
  elif ! wait_until 60 logged_past "$metrics" "$stopped_at"; then
    fail "requeue: run 2 logged no step after $stopped_at within 60 s"
    case_ok=0
  elif ! stop_run 2 --signal=TERM --batch; then
    case_ok=0
  elif ! wait_until 90 job_ended "$job"; then
    fail "requeue: run 3 did not end within 90 s"
    case_ok=0
  elif ! job_is "$job" COMPLETED 2 || [[ $(job_field "$job" ExitCode) != 0:0 ]]; then
    fail "requeue: the job ended $(job_summary "$job"), expected COMPLETED Restarts=2 ExitCode=0:0"
    case_ok=0
  elif ! resumed_at "$stopped_at" || ! grep -q "finished at step $max_steps:" "$out"; then
    fail "requeue: run 3 did not resume at step $stopped_at and finish at step $max_steps"
    case_ok=0
  fi
fi
if ((case_ok)); then
  echo "PASS requeue: stopped by the tasks' and the batch shell's signal, resumed twice," \
    "finished at step $max_steps, $(job_summary "$job"), $(elapsed "$t0") s"
else
  [[ -n $job ]] && show_job "$job" "$out"
fi

# ---- 2. a failing run ends the job FAILED, without requeue --------------------
t0=$(date +%s.%N)
out=$tmp/failure.out
job=$(COHORT=$cohort submit "$out" "$tmp/tiny.yaml" --set "data.train=$tmp/no-such-shards" \
  --set "run.out_dir=$tmp/run-failure") || fail "failure: sbatch refused the job"
if [[ -n $job ]]; then
  if ! wait_until 60 job_ended "$job"; then
    fail "failure: the job did not end within 60 s"
    show_job "$job" "$out"
  elif ! job_is "$job" FAILED 0 || [[ $(job_field "$job" ExitCode) == 75:* ]] ||
    grep -q "requeueing job" "$out" || ! grep -q "no-such-shards" "$out"; then
    fail "failure: $(job_summary "$job"); expected FAILED, not requeued, naming no-such-shards"
    show_job "$job" "$out"
  else
    echo "PASS failure: missing shards -> $(job_summary "$job") after $(elapsed "$t0") s"
  fi
fi

# ---- 3. a stop where srun killed the slower ranks still requeues -------------
t0=$(date +%s.%N)
out=$tmp/straggler.out
job=$(COHORT=$straggler submit "$out" "$tmp/tiny.yaml") || fail "straggler: sbatch refused the job"
if [[ -n $job ]]; then
  if ! wait_until 60 job_is "$job" PENDING 1; then
    fail "straggler: the job was not requeued within 60 s"
    show_job "$job" "$out"
  else
    release "$job"
    if ! wait_until 60 job_ended "$job"; then
      fail "straggler: run 2 did not end within 60 s"
      show_job "$job" "$out"
    elif ! job_is "$job" COMPLETED 1 || ! grep -q "the rest were only killed" "$out"; then
      fail "straggler: $(job_summary "$job"), expected COMPLETED Restarts=1 after 'only killed'"
      show_job "$job" "$out"
    else
      echo "PASS straggler: $(grep -o 'srun exited [0-9]*' "$out" | head -n 1)," \
        "requeued, $(job_summary "$job"), $(elapsed "$t0") s"
    fi
  fi
fi

# ---- 4. Slurm's own warning before the time limit stops the run ---------------
# --time=1 --signal=USR1@55: slurmctld sends SIGUSR1 to the tasks about 55 s
# before the limit, at one of its time-limit checks (every 30 s; Slurm allows
# itself to be up to a minute early): here 3-35 s in.
# The run (1875 steps, minutes here) must stop with a checkpoint and the job
# requeue; the check then cancels it.
t0=$(date +%s.%N)
out=$tmp/limit.out
limit_opts=(--time=1 --signal=USR1@55)
job=$(COHORT=$cohort submit "$out" "$tmp/tiny.yaml" --set "run.out_dir=$tmp/run-limit" \
  --set schedule.max_steps=0) || fail "time limit: sbatch refused the job"
if [[ -n $job ]]; then
  if ! wait_until 75 job_is "$job" PENDING 1; then
    fail "time limit: the job was not requeued within 75 s"
    show_job "$job" "$out"
  elif ! grep -q 'stopped at step [1-9][0-9]*: checkpoint' "$out" ||
    ! grep -q "requeueing job $job" "$out"; then
    fail "time limit: requeued without 'stopped at step k: checkpoint' and 'requeueing'"
    show_job "$job" "$out"
  else
    echo "PASS time limit: --signal=USR1@55 -> $(grep -o 'stopped at step [0-9]*' "$out")," \
      "requeued after $(elapsed "$t0") s"
  fi
  scancel "$job"
fi

echo "sbatch_check: $failures failure(s), $(elapsed "$started") s in all"
((failures == 0))
