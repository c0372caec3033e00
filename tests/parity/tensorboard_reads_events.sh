#!/usr/bin/env bash
# TensorBoard's own reader on `cohort train`'s event files, end to end:
#   tests/parity/tensorboard_reads_events.sh <cohort> <work dir> [python]
# trains the small CNN on Fashion-MNIST shards with a log record every step,
# stops at step 10, damages that checkpoint so the next run resumes from step 8
# (as after a crash: steps 9 and 10 were logged by a run whose state is lost),
# lets the resumed run finish at step 12 with an evaluation, and checks with
# tensorboard's EventAccumulator (tensorboard_reads_events.py) that every scalar
# of metrics.jsonl is there, each step once, with the resumed run's values.
# tensorboard (pure Python), its protobuf and absl-py are fetched from PyPI into
# the build tree once, without their dependencies (numpy comes from the
# distribution). Without network access, or without the dataset-fashion-mnist
# package, the test reports skipped.
set -euo pipefail
cohort=$1
work=$2
py=${3:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
tools=$(dirname "$work")/pytools-tensorboard
data=/usr/share/datasets/fashion-mnist

if [[ ! -e $data/t10k-images-idx3-ubyte.gz ]]; then
  echo "SKIPPED: $data is missing (apt-get install dataset-fashion-mnist)"
  exit 77
fi
if ! "$here/fetch_pytools.sh" "$tools" "$py" \
    "from tensorboard.backend.event_processing import event_accumulator" \
    tensorboard==2.18.0 protobuf==5.28.3 absl-py==2.1.0; then
  echo "SKIPPED: tensorboard could not be fetched from PyPI (no pip or no network)"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work"
"$cohort" convert fashion-mnist --dir "$data" --split test --out "$work/shards" --quiet
run=("$cohort" train --set model.kind=small_cnn --set data.train="$work/shards"
  --set data.eval="$work/shards" --set run.out_dir="$work/run" --set data.batch=32
  --set schedule.max_steps=12 --set schedule.warmup_steps=2 --set log.every_steps=1
  --set checkpoint.every_steps=4 --set checkpoint.keep_last=3)
code=0
"${run[@]}" --set run.stop_after_steps=10 || code=$?
((code == 75)) || { echo "FAIL: the first run ended with $code, not 75 (stopped with a checkpoint)"; exit 1; }
# Damage the newest checkpoint: the next run sets it aside and resumes at step 8.
"$py" - "$work/run/checkpoint-00000010.h5" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2)
    f.write(bytes(range(1, 65)))
PY
"${run[@]}" | tee "$work/resumed.log"
grep -q "resuming at step 8" "$work/resumed.log"
PYTHONPATH=$tools "$py" "$here/tensorboard_reads_events.py" "$work/run" 12
