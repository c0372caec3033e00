#!/usr/bin/env bash
# `cohort eval` against Cityscapes' official evaluator, end to end with the CLI:
#   tests/parity/cityscapes_official_eval.sh <cohort> <work dir> [python]
# builds a small Cityscapes tree, converts it, trains DeepLabV3+ for a few steps,
# writes label-id predictions with `cohort eval --predictions`, and checks that
# cityscapesscripts' evalPixelLevelSemanticLabeling scores them exactly as cohort
# did. The evaluator (pure Python) is fetched from PyPI into the build tree once,
# without its dependencies: numpy and Pillow come from the distribution
# (python3-numpy, python3-pil). Without network access the test reports skipped.
set -euo pipefail
cohort=$1
work=$2
py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tools=$(dirname "$work")/pytools-cityscapesscripts

if ! "$here/fetch_pytools.sh" "$tools" "$py" \
    "import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling" \
    cityscapesscripts==2.3.0 pyquaternion==0.9.9; then
  echo "SKIPPED: cityscapesscripts could not be fetched from PyPI (no pip or no network)"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work"
"$py" "$here/make_cityscapes_tree.py" "$work/root"
for split in train val; do
  "$cohort" convert cityscapes --root "$work/root" --split "$split" --out "$work/$split" --quiet
done
"$cohort" train --set model.kind=deeplabv3plus --set model.num_classes=19 \
  --set data.train="$work/train" --set data.eval="$work/val" --set run.out_dir="$work/run" \
  --set data.batch=2 --set data.crop_height=64 --set data.crop_width=64 \
  --set data.min_scale=1 --set data.max_scale=1 --set data.threads=2 \
  --set optimizer.lr=0.02 --set schedule.warmup_steps=0 --set schedule.epochs=5 \
  --set log.every_steps=5
"$cohort" eval --checkpoint "$work/run/checkpoint.h5" --predictions "$work/predictions" \
  --json "$work/cohort_eval.json"
PYTHONPATH=$tools "$py" "$here/cityscapes_official_eval.py" "$work/root" "$work/predictions" \
  "$work/cohort_eval.json"
