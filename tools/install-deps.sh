#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages cohort needs that this machine lacks.
# Idempotent: packages already present are left alone. The CUDA toolkit, cuDNN and
# NCCL come from NVIDIA's packages and are optional (without them: CPU-only build).
#   tools/install-deps.sh           # build, run, test
#   tools/install-deps.sh --slurm   # also Slurm's daemons, for the srun test (CI)
# Then the real fine-tuning data that sits inside packages too heavy to install
# (python3-sklearn's digits, opencv-doc's digits): each file is extracted once from
# the package's .deb into $COHORT_DATA_CACHE (default ~/.cache/cohort), as the
# invoking user, and found there later (tools/*_digits_to_imagefolder.py).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libfmt-dev libspdlog-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libpng-dev libjpeg-dev zlib1g-dev libopenblas-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist
  python3 python3-numpy python3-pil python3-h5py python3-torch python3-torchvision
)
# tests/slurm/srun_check.sh starts a throwaway one-node cluster with these.
if [[ "${1:-}" == --slurm ]]; then packages+=(slurmd slurmctld slurm-client munge); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Fine-tuning data (tests/core/test_finetune_real_data.cpp); a no-op once cached.
tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for tool in sklearn_digits_to_imagefolder.py opencv_digits_to_imagefolder.py; do
  if file=$(/usr/bin/python3 "$tools_dir/$tool" --fetch); then
    echo "install-deps: data for $tool: $file"
  else
    echo "install-deps: warning: $tool --fetch failed; the fine-tuning test will skip" >&2
  fi
done
