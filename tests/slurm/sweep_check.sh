#!/usr/bin/env bash
# slurm/train.sbatch's sweeps (COHORT_SWEEP with an array job), without Slurm:
# the script runs with the variables an array task gets and a stand-in `srun`
# on the PATH that prints the command it was given. Checks: array task k gets
# line k of the sweep file (comments and blank lines skipped) as --set
# overrides after the user's, and its own run directory unless the line names
# one (under the user's run.out_dir when given); Windows line ends and trailing
# comments are dropped; a task without a line, a malformed or quoted setting, a
# sweep outside an array job and a line changed under a started task are
# refused with exit 2 and a message.
#   sweep_check.sh   (exit 0 passed, 1 failed)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
script=$here/../../slurm/train.sbatch
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
cat > "$tmp/bin/srun" <<'SH'
#!/bin/sh
echo "SRUN $*"
SH
printf '#!/bin/sh\nexit 0\n' > "$tmp/cohort"
chmod +x "$tmp/bin/srun" "$tmp/cohort"
echo "run: {}" > "$tmp/c.yaml"
cat > "$tmp/sweep.txt" <<'TXT'
# learning rates
optimizer.lr=0.1 optimizer.weight_decay=1e-4

optimizer.lr=0.02   optimizer.weight_decay=1e-4
optimizer.lr=0.01 run.out_dir=runs/mine
TXT
failed=0
run_task() {  # run_task TASK [extra env...] -- [script args...]
  local task=$1
  shift
  (cd "$tmp" && env PATH="$tmp/bin:$PATH" SLURM_JOB_ID=100 SLURM_ARRAY_JOB_ID=99 \
    SLURM_ARRAY_TASK_ID="$task" SLURM_JOB_NAME=sweep COHORT="$tmp/cohort" \
    COHORT_SWEEP=sweep.txt "$@" bash "$script" c.yaml --set data.batch=8 2>&1)
}
refused() {  # refused NAME STATUS: the script must exit 2 (bad usage)
  if (($2 == 2)); then echo "PASS $1 (exit 2)"; else echo "FAIL $1: exit $2, not 2"; failed=1; fi
}
expect() {  # expect NAME OUTPUT PATTERN
  if grep -qE -- "$3" <<<"$2"; then
    echo "PASS $1"
  else
    echo "FAIL $1: no match for '$3' in:"
    echo "$2"
    failed=1
  fi
}
out=$(run_task 1)
expect "task 1 gets the second setting line, after the user's" "$out" \
  "SRUN .* train --config .*c.yaml --set data.batch=8 --set optimizer.lr=0.02 --set optimizer.weight_decay=1e-4 --set run.out_dir=runs/sweep-99/1$"
out=$(run_task 0)
expect "task 0 gets the first" "$out" "--set optimizer.lr=0.1 .*run.out_dir=runs/sweep-99/0$"
out=$(run_task 2)
expect "a line's own run.out_dir is kept" "$out" "--set optimizer.lr=0.01 --set run.out_dir=runs/mine$"
out=$(run_task 3)
refused "a task without a line" $?
expect "a task without a line is refused" "$out" "has no line for array task 3"
out=$(cd "$tmp" && env PATH="$tmp/bin:$PATH" SLURM_JOB_ID=100 COHORT="$tmp/cohort" \
  COHORT_SWEEP=sweep.txt bash "$script" c.yaml 2>&1)
refused "a sweep outside an array job" $?
expect "a sweep outside an array job is refused" "$out" "needs an array job"
echo "optimizer.lr" > "$tmp/bad.txt"
out=$(run_task 0 COHORT_SWEEP=bad.txt)
refused "a malformed setting" $?
expect "a malformed setting is refused" "$out" "'optimizer.lr' is not section.key=value"
printf 'optimizer.lr=0.3 # fast\r\n\r\n# note\r\noptimizer.lr=0.4\r\n' > "$tmp/crlf.txt"
out=$(run_task 1 COHORT_SWEEP=crlf.txt SLURM_ARRAY_JOB_ID=97)
expect "CRLF lines and trailing comments" "$out" "--set optimizer.lr=0.4 --set run.out_dir=runs/sweep-97/1$"
out=$(run_task 0 COHORT_SWEEP=crlf.txt SLURM_ARRAY_JOB_ID=97)
expect "a trailing comment goes" "$out" "--set optimizer.lr=0.3 --set run.out_dir=runs/sweep-97/0$"
echo 'run.name="my' > "$tmp/quoted.txt"
out=$(run_task 0 COHORT_SWEEP=quoted.txt)
refused "a quoted setting" $?
expect "a quoted setting is refused" "$out" "quotes are not supported"
# The user's run.out_dir is the sweep's base (resubmitting with it resumes).
out=$(cd "$tmp" && env PATH="$tmp/bin:$PATH" SLURM_JOB_ID=100 SLURM_ARRAY_JOB_ID=98 \
  SLURM_ARRAY_TASK_ID=1 COHORT="$tmp/cohort" COHORT_SWEEP=sweep.txt \
  bash "$script" c.yaml --set run.out_dir=runs/old 2>&1)
expect "under the user's run.out_dir" "$out" "--set optimizer.weight_decay=1e-4 --set run.out_dir=runs/old/1$"
# A requeued task whose line changed in the file stops.
sed -i 's/optimizer.lr=0.02/optimizer.lr=0.03/' "$tmp/sweep.txt"
out=$(run_task 1)
refused "a changed line under a started task" $?
expect "a changed line is refused" "$out" "this run started with 'optimizer.lr=0.02"
exit $failed
