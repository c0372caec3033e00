#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite:
#   tests/run.sh                 # installs missing packages, builds (preset "default"), runs ctest
#   tests/run.sh --preset cpu    # another CMakePresets.json preset
#   tests/run.sh -L unit         # extra arguments go to ctest
# The CUDA backend is compiled when a CUDA toolkit with cuDNN and NCCL is present;
# tests labelled gpu then run on a GPU, or report "skipped" (exit 77) without one.
set -euo pipefail
cd "$(dirname "$0")/.."

preset=default
ctest_args=()
while (($#)); do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done

# COHORT_TEST_SLURM=1 (CI) also installs Slurm, so that the srun test runs
# instead of reporting skipped.
if [[ "${COHORT_TEST_SLURM:-0}" == 1 ]]; then tools/install-deps.sh --slurm; else tools/install-deps.sh; fi
jobs=$(nproc)
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$jobs"
# MPI tests run as root in containers and CI.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --preset "$preset" -j "$jobs" --timeout 900 "${ctest_args[@]}"
