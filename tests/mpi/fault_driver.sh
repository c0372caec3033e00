#!/usr/bin/env bash
# Runs one fault test: a whole MPI job (mpirun ... cohort_mpi_fault) as a child,
# with a hard time limit, and judges how the job ended.
#   fault_driver.sh LIMIT_S EXPECT REGEX -- mpirun-command...
#     LIMIT_S  the job must be over within this many seconds (wall clock)
#     EXPECT   fail: the job must exit non-zero; pass: it must exit 0
#     REGEX    extended regex that the job's combined output must contain
# Fault settings (COHORT_FAULT, ...) come from the environment, which mpirun
# hands to the ranks it starts on this machine.
#
# Why a driver rather than CTest properties: PASS_REGULAR_EXPRESSION makes
# CTest ignore the exit code, WILL_FAIL cannot be combined with a required
# message, and TIMEOUT alone cannot tell "ended in 10 s" from "ended in 299 s";
# a job that hangs must also be killed here, with its whole process group,
# rather than leave ranks behind for the next test.
set -u
if (($# < 5)) || [[ $4 != "--" ]]; then
  echo "usage: $0 LIMIT_S fail|pass REGEX -- command..." >&2
  exit 2
fi
limit=$1 expect=$2 regex=$3
shift 4

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s.%N)
# timeout: SIGTERM at the limit (mpirun then kills its ranks), SIGKILL 5 s later.
timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

cat "$log"
echo "---- fault_driver: exit code $rc after ${elapsed} s (limit ${limit} s, expected: $expect)"
status=0
if ((rc == 124 || rc == 137)); then
  echo "FAIL: the job was still running after ${limit} s and had to be killed"
  status=1
elif [[ $expect == fail ]] && ((rc == 0)); then
  echo "FAIL: the job exited 0 but had to fail"
  status=1
elif [[ $expect == pass ]] && ((rc != 0)); then
  echo "FAIL: the job exited $rc but had to succeed"
  status=1
fi
if ! grep -Eq -- "$regex" "$log"; then
  echo "FAIL: the output does not match /$regex/"
  status=1
fi
((status == 0)) && echo "PASS"
exit $status
