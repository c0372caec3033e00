#!/usr/bin/env bash
# Runs the mpi suite under Slurm's own launcher, `srun --mpi=pmix`, to show that
# cohort's bootstrap (comm/mpi_session.cpp: world and local ranks, device
# planning) behaves as it does under mpirun (the `mpi` CTest label).
#   srun_check.sh BUILD_DIR
# Inside a Slurm allocation (SLURM_JOB_ID set) it uses that allocation's srun.
# Anywhere else it starts a throwaway one-node cluster (tests/slurm/cluster.sh:
# private munged, slurmctld and slurmd, all state under one temporary folder,
# ports picked at random) and tears it down on exit; that needs root, as
# slurmd starts tasks.
# Checks, each judged by exit code and output:
#   1. srun --mpi=pmix -n 1, 2, 4 cohort_mpi_tests (without the whole-workload
#      training runs, which test numerics, not the launcher, and took 75 s of
#      each run; the mpi label runs them under mpirun): exit 0 and rank 0's
#      "[mpi] N rank(s); failed tests summed over ranks: 0" (so MPI saw N ranks,
#      not N singletons); the Session tests in it assert world and local ranks.
#      Where mpirun is Open MPI's, the same run under mpirun -np N must pass
#      with the same numbers of passed and skipped tests. The environment is the
#      mpi CTest tests' (COHORT_COLLECTIVE_TIMEOUT=120), plus, with more tasks
#      than CPUs, OMPI_MCA_mpi_yield_when_idle=1 (see "the checks" below).
#   2. three faults of the mpi fault tests (throw, exit without MPI_Finalize,
#      hang caught by the watchdog) with cohort_mpi_fault: the step must end
#      non-zero within 10 s with the message naming the operation. srun runs
#      without --kill-on-bad-exit, as a user's would.
# Settings: COHORT_SRUN_CHECK_BUDGET (seconds for the whole run, default 500),
# COHORT_SLURM_KEEP=1 keeps the cluster's folder (configuration and logs).
# Exit codes: 0 all passed, 1 a check failed, 2 usage, 77 skipped (no Slurm,
# no pmix plugin, not root, or the cluster did not come up; the reason and the
# daemons' log tails are printed).
set -u

if (($# != 1)); then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" 2>/dev/null && pwd) || { echo "no build directory '$1'" >&2; exit 2; }
suite=$build/tests/cohort_mpi_tests
# Kept: bootstrap, collectives, ZeRO, checkpoints, the stop signal and resume
# across ranks, the step-time breakdown, the watchdog.
workloads='Demo.DataParallelAndZero3TrainTheSameModelOnEveryRank'
workloads+=':TrainRanks.GradNormLossBalancingResumesBitwise'
workloads+=':TrainRanks.DwaLossBalancingResumesBitwiseAcrossAnEpochBoundary'
suite_args=(--gtest_filter="-$workloads")
fault=$build/tests/cohort_mpi_fault
for f in "$suite" "$fault"; do
  [[ -x $f ]] || { echo "FAIL: $f is missing (build cohort_mpi_tests and cohort_mpi_fault)"; exit 1; }
done

budget=${COHORT_SRUN_CHECK_BUDGET:-500}
# shellcheck source=tests/slurm/cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"

command -v srun >/dev/null || skip "srun is not installed (Debian: slurm-client, slurmd, slurmctld)"

cluster_traps
if [[ -n ${SLURM_JOB_ID:-} ]]; then
  echo "inside Slurm job $SLURM_JOB_ID: using its srun"
else
  # Stray SLURM_* settings would point srun elsewhere.
  unset SLURM_CONF
  start_cluster
fi

require_pmix

# ---- the checks --------------------------------------------------------------
# --overcommit: more tasks than CPUs, as --oversubscribe allows for mpirun.
# mpirun --oversubscribe also makes Open MPI yield while it waits; direct-
# launched ranks busy-poll instead, and 4 ranks spinning on 2 cores made the
# suite take 70-80 s instead of 1.4 s. So, with more tasks than CPUs, ask for
# the same yield (other MPI libraries ignore the variable).
srun_cmd=(srun --mpi=pmix --overcommit --export=ALL)
cpus=${SLURM_CPUS_ON_NODE:-$(nproc)}
yield=()  # set_yield N: the setting for N tasks, or nothing
set_yield() {
  yield=()
  (($1 > cpus)) && yield=(OMPI_MCA_mpi_yield_when_idle=1)
}
# The same executable under mpirun, for its test counts, where mpirun is Open
# MPI's (the flags are those of the mpi CTest tests).
mpirun_cmd=()
if command -v mpirun >/dev/null && mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  mpirun_cmd=(mpirun --oversubscribe)
  ((EUID == 0)) && mpirun_cmd+=(--allow-run-as-root)
fi
failures=0
log=$(mktemp)
cluster_files+=("$log")

# "P passed, S skipped" from rank 0's GoogleTest summary in the log (colour
# codes dropped: mpirun hands the ranks a terminal, so GoogleTest colours).
test_counts() {
  local plain passed skipped
  plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
  passed=$(grep -Eo '^\[  PASSED  \] [0-9]+' <<<"$plain" | grep -Eo '[0-9]+$')
  skipped=$(grep -Eo '^\[  SKIPPED \] [0-9]+' <<<"$plain" | grep -Eo '[0-9]+$')
  echo "${passed:-0} passed, ${skipped:-0} skipped"
}

for n in 1 2 4; do
  t0=$(date +%s.%N)
  set_yield "$n"
  limit=$(limit_for 150)
  env COHORT_COLLECTIVE_TIMEOUT=120 "${yield[@]}" timeout --kill-after=10 "$limit" \
    "${srun_cmd[@]}" --ntasks="$n" "$suite" "${suite_args[@]}" >"$log" 2>&1
  rc=$?
  took=$(elapsed "$t0")
  counts=$(test_counts)
  summary="[mpi] $n rank(s); failed tests summed over ranks: 0"
  if ((rc != 0)) || ! grep -qF -- "$summary" "$log"; then
    cat "$log"
    echo "FAIL srun --mpi=pmix -n $n cohort_mpi_tests: exit code $rc after $took s (limit $limit s), expected 0 and '$summary'"
    failures=$((failures + 1))
    continue
  fi
  echo "PASS srun --mpi=pmix -n $n cohort_mpi_tests: $counts on rank 0, $took s"
  ((${#mpirun_cmd[@]})) || continue
  t0=$(date +%s.%N)
  limit=$(limit_for 150)
  # Inside an allocation mpirun counts the allocated tasks as slots, sees no
  # oversubscription and does not yield either (55 s instead of 1.4 s).
  env COHORT_COLLECTIVE_TIMEOUT=120 "${yield[@]}" timeout --kill-after=10 "$limit" \
    "${mpirun_cmd[@]}" -np "$n" "$suite" "${suite_args[@]}" >"$log" 2>&1
  rc=$?
  took=$(elapsed "$t0")
  if ((rc == 0)) && [[ $(test_counts) == "$counts" ]]; then
    echo "PASS   same counts under mpirun -np $n ($took s)"
  else
    cat "$log"
    echo "FAIL   mpirun -np $n: exit code $rc after $took s (limit $limit s), $(test_counts) (srun: $counts)"
    failures=$((failures + 1))
  fi
done

# A fault must end the whole step, non-zero, within its limit, with a message
# naming the operation. Judged here rather than by tests/mpi/fault_driver.sh:
# when one task dies, Slurm cancels the step and SIGKILLs the others, so srun
# itself can exit 137, which that driver reads as "killed by timeout";
# timeout --verbose says when it really had to act.
#   fault_case NAME TASKS LIMIT_S REGEX VAR=VALUE...
fault_case() {
  local name=$1 n=$2 limit=$3 regex=$4 t0 rc took verdict=""
  shift 4
  t0=$(date +%s.%N)
  set_yield "$n"
  limit=$(limit_for "$limit")
  env COHORT_COLLECTIVE_TIMEOUT=3 "${yield[@]}" "$@" timeout --verbose --kill-after=5 "$limit" \
    "${srun_cmd[@]}" --ntasks="$n" "$fault" >"$log" 2>&1
  rc=$?
  took=$(elapsed "$t0")
  if grep -q '^timeout: sending signal' "$log"; then
    verdict="the step was still running after $limit s and had to be killed"
  elif ((rc == 0)); then
    verdict="the step exited 0 but had to fail"
  elif ! grep -Eq -- "$regex" "$log"; then
    verdict="the output does not match /$regex/"
  fi
  if [[ -z $verdict ]]; then
    echo "PASS fault $name ($*, $n tasks): srun exit code $rc after $took s"
  else
    cat "$log"
    echo "FAIL fault $name ($*, $n tasks): $verdict (exit code $rc after $took s)"
    failures=$((failures + 1))
  fi
}
# An exception on one rank: run_rank_main calls MPI_Abort.
fault_case throw 4 10 "uncaught exception: injected fault .*throw at all_reduce #2" \
  COHORT_FAULT=1:2:throw
# A rank leaves without MPI_Finalize: nobody aborts; the launcher must notice
# (mpirun kills the job; under srun the PMIx plugin cancels the step).
fault_case exit 2 10 "exit at all_reduce #2.*exiting without MPI_Finalize" COHORT_FAULT=1:2:exit
# A rank stops calling collectives: the watchdog on rank 0 calls MPI_Abort.
fault_case hang 2 10 "watchdog: all_reduce #3 .* did not complete within 3 s" COHORT_FAULT=1:3:hang

echo "srun_check: $failures failure(s), $(elapsed "$started") s in all"
((failures == 0))
