#!/usr/bin/env bash
# Packs what tools/gpu-check.sh needs on a GPU host into gpu-data/ (git-ignored,
# sent with the device tool's carry): the CUDA build's two binaries, the shared
# libraries whose soname differs between Debian 12 and Ubuntu 24.04 (libjpeg.so.62,
# libyaml-cpp.so.0.7), and Fashion-MNIST for the demos. Building here (2 cores)
# instead of there saves minutes of device time.
#   tools/gpu-pack.sh [build-dir]      (default build-gpu; built with COHORT_WITH_CUDA=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
ninja -C "$build" cohort cohort_gpu_tests
mkdir -p gpu-data/bin/lib
cp "$build/launch/cohort" "$build/tests/cohort_gpu_tests" gpu-data/bin/
for soname in libjpeg.so.62 libyaml-cpp.so.0.7; do
  path=$(ldd "$build/launch/cohort" | awk -v s="$soname" '$1 == s {print $3}')
  [[ -n $path ]] && cp -L "$path" "gpu-data/bin/lib/$soname"
done
if [[ ! -e gpu-data/fashion-mnist && -d /usr/share/datasets/fashion-mnist ]]; then
  cp -r /usr/share/datasets/fashion-mnist gpu-data/
fi
du -sh gpu-data/*
