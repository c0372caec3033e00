#!/usr/bin/env bash
# `cohort bench train` and its PyTorch counterpart (tools/bench_torch_train.py)
# must time the same networks: for each benchmarked model the two must report
# the same number of parameters (torchvision's ResNet and cohort's DeepLabV3+
# head, written out in tools/torch_models.py), and both must print a step time.
#   tests/parity/bench_models_match.sh <cohort> <python with torch> <source dir>
set -euo pipefail
cohort=$1
py=$2
src=$3
status=0

check() {  # name, cohort --set arguments, torch arguments
  local name=$1 sets=$2 targs=$3
  local ours theirs
  # shellcheck disable=SC2086
  if ! ours=$("$cohort" bench train --set run.device=cpu --set data.batch=2 --iters 1 --warmup 0 \
    $sets 2>&1); then
    echo "FAIL $name: cohort bench train failed"
    echo "$ours"
    status=1
    return
  fi
  # shellcheck disable=SC2086
  if ! theirs=$("$py" "$src/tools/bench_torch_train.py" --device cpu --dtype f32 --batch 2 \
    --iters 1 --warmup 0 $targs 2>&1); then
    echo "FAIL $name: tools/bench_torch_train.py failed"
    echo "$theirs" | tail -5
    status=1
    return
  fi
  local n_ours n_theirs
  n_ours=$(grep -oE '[0-9]+ parameters' <<<"$ours" | head -1)
  n_theirs=$(grep -oE '[0-9]+ parameters' <<<"$theirs" | head -1)
  if [[ -z $n_ours || $n_ours != "$n_theirs" ]]; then
    echo "FAIL $name: cohort has ${n_ours:-no count}, PyTorch ${n_theirs:-no count}"
    echo "$ours"
    echo "$theirs"
    status=1
    return
  fi
  if ! grep -q "train step (forward + backward + optimizer): median" <<<"$ours" ||
    ! grep -q "train step (forward + backward + optimizer): median" <<<"$theirs"; then
    echo "FAIL $name: a step-time line is missing"
    echo "$ours"
    echo "$theirs"
    status=1
    return
  fi
  echo "ok   $name: $n_ours in both"
}

check "ResNet-50 classifier" \
  "--set model.kind=resnet --set model.num_classes=10 --set data.image_size=64" \
  "--model resnet --classes 10 --size 64"
check "DeepLabV3+ R50 OS16" \
  "--set model.kind=deeplabv3plus --set model.num_classes=19 --set data.crop_height=64 --set data.crop_width=96" \
  "--model deeplabv3plus --classes 19 --height 64 --width 96"
check "DeepLabV3+ R101 OS8 multi-task" \
  "--set model.kind=deeplabv3plus --set model.depth=101 --set model.output_stride=8 --set model.num_classes=7 --set model.depth_head=true --set data.crop_height=48 --set data.crop_width=48" \
  "--model deeplabv3plus --depth 101 --output-stride 8 --classes 7 --depth-head --height 48 --width 48"
exit $status
