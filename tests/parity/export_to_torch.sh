#!/usr/bin/env bash
# `cohort export` into PyTorch, end to end with the CLI:
#   tests/parity/export_to_torch.sh <cohort> <work dir> [python with torch]
# trains a ResNet-18 on Fashion-MNIST shards for 30 steps, evaluates it with
# `cohort eval`, exports it with `cohort export`, and checks with
# export_to_torch.py that torchvision's resnet18 loads the file strictly and
# classifies the 10000 test images as cohort did. Skipped (77) without the
# dataset-fashion-mnist package.
set -euo pipefail
cohort=$1
work=$2
py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
data=/usr/share/datasets/fashion-mnist
if [[ ! -e $data/t10k-images-idx3-ubyte.gz ]]; then
  echo "SKIPPED: $data is missing (apt-get install dataset-fashion-mnist)"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
"$cohort" convert fashion-mnist --dir "$data" --split test --out "$work/shards" --quiet
"$cohort" train --set model.kind=resnet --set model.depth=18 --set model.num_classes=10 \
  --set data.train="$work/shards" --set run.out_dir="$work/run" --set data.batch=32 \
  --set schedule.max_steps=30 --set schedule.warmup_steps=3 --set optimizer.lr=0.02 \
  --set log.every_steps=10
"$cohort" eval --checkpoint "$work/run/checkpoint.h5" --shards "$work/shards" \
  --json "$work/eval.json"
"$cohort" export --checkpoint "$work/run/checkpoint.h5" --out "$work/resnet18.safetensors"
"$py" "$here/export_to_torch.py" "$work/resnet18.safetensors" 18 10 "$data" \
  "$work/shards/manifest.json" "$work/eval.json"
