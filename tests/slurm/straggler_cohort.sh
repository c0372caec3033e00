#!/usr/bin/env bash
# Stands in for `cohort train` in tests/slurm/sbatch_check.sh (as COHORT=...):
# the first run of the job stops "with a checkpoint" the way it can go wrong
# across nodes: task 0 exits 75 at once while the others are still on their
# way out, so srun --kill-on-bad-exit kills them (SIGTERM, then SIGKILL) and srun
# itself exits 128 + that signal.
# slurm/train.sbatch must still see a clean stop and requeue. Any later run
# (SLURM_RESTART_COUNT > 0) finishes: exit 0.
echo "straggler_cohort: task ${SLURM_PROCID:-?} of run $((${SLURM_RESTART_COUNT:-0} + 1)): $*"
if ((${SLURM_RESTART_COUNT:-0} > 0)); then
  exit 0
fi
if ((${SLURM_PROCID:-0} == 0)); then
  exit 75
fi
sleep 30  # killed long before
exit 75
