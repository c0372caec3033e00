#!/usr/bin/env bash
# One-shot check on a GPU host (no network): builds the CUDA backend for sm_90,
# runs the gpu-labelled tests, the Fashion-MNIST demo on the GPU, the ResNet-50
# stack benchmark (cuDNN batch norm/pooling, then the own kernels, with a
# per-layer profile) and whole training steps of DeepLabV3+ and ResNet-50 next
# to PyTorch eager, and the data-loader benchmark next to PyTorch's DataLoader.
#   tools/gpu-check.sh [fashion-mnist-dir]
# The whole script takes longer than one device call may run (10 min): run it as
# two calls (PART=1, then PART=2; the second reuses the build on a warm machine):
#   PART=1: build, doctor, gpu tests, cuDNN paths, demos (NCCL, ZeRO-2/3), stack benches
#   PART=2: training-step benches, the multi-task run + eval, the data benchmark,
#           what per-task gradients (pcgrad, gradnorm) cost
# SKIP_TESTS=1, SKIP_DEMO=1, SKIP_BENCH=1, SKIP_TRAIN_BENCH=1, SKIP_TRAIN=1,
# SKIP_DATA=1 leave single parts out. BUDGET_S (default 540) is the call's time
# budget: a section that would start after it is skipped (and says so), so the
# call ends inside the device tool's 10-minute limit with its logs packed.
# Only 8 files come back from $OUT: the logs are written to $LOGS
# (/tmp/cohort-gpu-logs) and packed into $OUT/logs-part<N>.tgz after every
# section; $OUT/summary-part<N>.txt holds the summary lines.
# Fashion-MNIST: the argument, else gpu-data/fashion-mnist (a git-ignored copy of
# /usr/share/datasets/fashion-mnist, sent with the device tool's carry), else
# /usr/share/datasets/fashion-mnist; without it the demos are skipped.
# With the device tool (a machine stays warm only 30 s after a call: send the
# second call at once, or it starts bare and rebuilds):
#   mkdir -p gpu-data && cp -r /usr/share/datasets/fashion-mnist gpu-data/
#   run(command="PART=1 tools/gpu-check.sh", carry=["gpu-data"], timeout_s=600)
#   run(command="PART=2 tools/gpu-check.sh", timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
case "${PART:-}" in
  1) SKIP_TRAIN_BENCH=1 SKIP_TRAIN=1 SKIP_DATA=1 ;;
  2) SKIP_TESTS=1 SKIP_DEMO=1 SKIP_BENCH=1 ;;
  "") ;;
  *) echo "PART must be 1 or 2" >&2; exit 2 ;;
esac
out=${OUT:-gpu-out}
logs=${LOGS:-/tmp/cohort-gpu-logs}
tag=${PART:+-part$PART}
mkdir -p "$out" "$logs"
summary=$out/summary$tag.txt
budget=${BUDGET_S:-540}
log() { echo "== $*" | tee -a "$summary"; }
pack() { tar czf "$out/logs$tag.tgz" -C "$logs" . 2>/dev/null; }
start=$(date +%s)
# section NAME: whether a section may start inside the time budget.
section() {
  local used=$(( $(date +%s) - start ))
  if (( used > budget )); then
    log "$1: skipped, ${used} s used of the ${budget} s budget"
    return 1
  fi
}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=${1:-}
if [[ -z $data ]]; then
  for d in gpu-data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    [[ -e $d/t10k-images-idx3-ubyte.gz ]] && { data=$d; break; }
  done
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$summary"
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOHORT_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 > "$logs/configure.log" 2>&1 || { tail -30 "$logs/configure.log"; pack; exit 1; }
# CMake falls back to a CPU-only build (with a warning) when nvcc, cuDNN or NCCL
# is missing: every gpu test would then "pass" as skipped.
grep -q "CUDA backend ON" "$logs/configure.log" ||
  { log "configure: no CUDA backend"; grep -iE "warn|cuda|cudnn|nccl" "$logs/configure.log" | tail -20; pack; exit 1; }
cmake --build build/gpu -j16 --target cohort cohort_gpu_tests > "$logs/build.log" 2>&1 \
  || { grep -E "error|FAILED" "$logs/build.log" | head -40; pack; exit 1; }
log "build: $(( $(date +%s) - start )) s"
pack

if [[ "${SKIP_TESTS:-0}" != 1 ]] && section "doctor"; then
  # Versions, the GPU, and NCCL through MPI as one rank (launch/doctor.hpp).
  timeout 60 build/gpu/launch/cohort doctor > "$logs/doctor.log" 2>&1
  timeout 90 mpirun -np 1 build/gpu/launch/cohort doctor >> "$logs/doctor.log" 2>&1
  grep -E "CUDA:|GPU 0|check:|result:" "$logs/doctor.log" | tee -a "$summary"
fi

if [[ "${SKIP_TESTS:-0}" != 1 ]] && section "gpu tests"; then
  (cd build/gpu && timeout 300 ctest -L gpu -j4 --timeout 120 --output-on-failure) \
    > "$logs/gpu-tests.log" 2>&1
  log "gpu tests: $(grep -E 'tests passed|tests failed' "$logs/gpu-tests.log")"
  # A skipped gpu test here means the GPU was not usable: never a pass.
  grep -E "\(Failed\)|\(Timeout\)|\(SEGFAULT\)|\(Subprocess|\(Skipped\)|Not Run" \
    "$logs/gpu-tests.log" | head -40 | tee -a "$summary"
  # What cuDNN declined (a silent fallback to the own kernels by design), and the
  # path each batch-norm configuration took.
  COHORT_CUDNN_VERBOSE=1 timeout 120 build/gpu/tests/cohort_gpu_tests \
    --gtest_filter='GpuBatchNorm.*:GpuPool.*' > "$logs/cudnn-paths.log" 2>&1
  grep -E "declined|batch norm train" "$logs/cudnn-paths.log" | sort | uniq -c | head -30 |
    tee -a "$summary"
  pack
fi

if [[ "${SKIP_DEMO:-0}" != 1 && -z $data ]]; then
  log "demos: skipped, no Fashion-MNIST (pass its folder, or carry gpu-data/fashion-mnist)"
elif [[ "${SKIP_DEMO:-0}" != 1 ]] && section "demos"; then
  timeout 120 build/gpu/launch/cohort demo --device cuda:0 --data "$data" > "$logs/demo.log" 2>&1
  log "demo: $(tail -1 "$logs/demo.log")"
  # One rank under mpirun: the NCCL communicator, ZeRO-2 and the step-time breakdown end to end.
  timeout 90 mpirun -np 1 build/gpu/launch/cohort demo --zero 2 --data "$data" \
    > "$logs/demo-mpi.log" 2>&1
  log "demo (mpirun, NCCL, ZeRO-2): $(tail -4 "$logs/demo-mpi.log" | tr '\n' ' ')"
  # ZeRO-3 on NCCL with a prefetch window spanning several layers (parallel.prefetch_mib).
  build/gpu/launch/cohort convert fashion-mnist --dir "$data" --split test --out /tmp/cohort-fm \
    --quiet --overwrite > "$logs/zero3.log" 2>&1
  rm -rf /tmp/cohort-z3
  timeout 90 mpirun -np 1 build/gpu/launch/cohort train --set data.train=/tmp/cohort-fm \
    --set run.out_dir=/tmp/cohort-z3 --set parallel.zero_stage=3 --set parallel.prefetch_mib=1 \
    --set schedule.max_steps=100 --set log.every_steps=50 >> "$logs/zero3.log" 2>&1
  log "train (mpirun, NCCL, ZeRO-3, prefetch 1 MiB): $(grep -E 'step +100|rank +0' "$logs/zero3.log" | tr '\n' ' ')"
  pack
fi

# `bench stack` lines: the median, and the profile rows the cuDNN switch changes.
stack_lines='median|^  (BatchNorm2d|Conv2d|MaxPool2d) '
if [[ "${SKIP_BENCH:-0}" != 1 ]] && section "stack benchmarks"; then
  timeout 120 build/gpu/launch/cohort bench stack --device cuda:0 --batch 256 --dtype bf16 \
    --iters 20 --profile 2 > "$logs/bench-cohort.log" 2>&1
  log "cohort (cuDNN BN/pool): $(grep -E "$stack_lines" "$logs/bench-cohort.log" | tr '\n' ' ')"
  COHORT_BATCHNORM=kernels COHORT_POOLING=kernels timeout 120 build/gpu/launch/cohort bench stack \
    --device cuda:0 --batch 256 --dtype bf16 --iters 20 --profile 2 > "$logs/bench-cohort-kernels.log" 2>&1
  log "cohort (own BN/pool): $(grep -E "$stack_lines" "$logs/bench-cohort-kernels.log" | tr '\n' ' ')"
  timeout 120 python3 tools/bench_torch_stack.py --batch 256 --dtype bf16 --iters 20 \
    > "$logs/bench-torch.log" 2>&1
  log "torch: $(tail -2 "$logs/bench-torch.log" | tr '\n' ' ')"
  pack
fi

train_lines='median|phases|peak'
if [[ "${SKIP_TRAIN_BENCH:-0}" != 1 ]] && section "training-step benchmarks"; then
  # Whole training steps (forward, loss, backward, SGD) against PyTorch eager:
  # DeepLabV3+ R50 at 512x1024, batch 8 (issue #4's 45 ms reference), and the
  # ResNet-50 classifier at batch 256; same networks (parity_bench_models_match).
  deeplab="--set model.kind=deeplabv3plus --set model.num_classes=19 --set data.batch=8"
  deeplab+=" --set data.crop_height=512 --set data.crop_width=1024 --set run.dtype=bf16"
  # shellcheck disable=SC2086
  timeout 150 build/gpu/launch/cohort bench train $deeplab --set run.device=cuda:0 \
    --set optimizer.lr=0.01 --iters 20 --profile 2 > "$logs/bench-train-deeplab.log" 2>&1
  log "cohort train step DeepLabV3+: $(grep -E "$train_lines" "$logs/bench-train-deeplab.log" | tr '\n' ' ')"
  timeout 150 python3 tools/bench_torch_train.py --model deeplabv3plus --batch 8 --height 512 \
    --width 1024 --iters 20 > "$logs/bench-train-deeplab-torch.log" 2>&1
  log "torch train step DeepLabV3+: $(grep -E "$train_lines" "$logs/bench-train-deeplab-torch.log" | tr '\n' ' ')"
  pack
  timeout 150 build/gpu/launch/cohort bench train --set model.kind=resnet --set model.num_classes=1000 \
    --set data.batch=256 --set data.image_size=224 --set run.dtype=bf16 --set run.device=cuda:0 \
    --iters 20 > "$logs/bench-train-resnet.log" 2>&1
  log "cohort train step ResNet-50: $(grep -E "$train_lines" "$logs/bench-train-resnet.log" | tr '\n' ' ')"
  # The same step as one rank of a data-parallel job: NCCL's single-rank overhead
  # on a ResNet-50-sized gradient set (25.6 M) and the step-time breakdown.
  timeout 120 mpirun -np 1 build/gpu/launch/cohort bench train --set model.kind=resnet \
    --set model.num_classes=1000 --set data.batch=256 --set data.image_size=224 \
    --set run.dtype=bf16 --iters 20 > "$logs/bench-train-resnet-nccl.log" 2>&1
  log "cohort train step ResNet-50, mpirun -np 1 (NCCL): $(grep -E 'median|rank +0' "$logs/bench-train-resnet-nccl.log" | tr '\n' ' ')"
  timeout 150 python3 tools/bench_torch_train.py --model resnet --classes 1000 --batch 256 \
    --size 224 --iters 20 > "$logs/bench-train-resnet-torch.log" 2>&1
  log "torch train step ResNet-50: $(grep -E "$train_lines" "$logs/bench-train-resnet-torch.log" | tr '\n' ' ')"
  pack
fi

if [[ "${SKIP_TRAIN_BENCH:-0}" != 1 ]] && section "multi-task balancing benchmark"; then
  # What per-task gradients cost (loss.balancing pcgrad/gradnorm: one backward
  # and one reduction per task) against one backward (uncertainty), same model.
  mt="--set model.kind=deeplabv3plus --set model.num_classes=19 --set model.depth_head=true"
  mt+=" --set data.batch=8 --set data.crop_height=512 --set data.crop_width=1024"
  mt+=" --set run.dtype=bf16 --set run.device=cuda:0 --iters 5 --warmup 2"
  for balancing in uncertainty pcgrad gradnorm; do
    # shellcheck disable=SC2086
    timeout 60 build/gpu/launch/cohort bench train $mt --set loss.balancing=$balancing \
      > "$logs/bench-train-mt-$balancing.log" 2>&1
    log "cohort train step multi-task $balancing: $(grep -E "$train_lines|error" "$logs/bench-train-mt-$balancing.log" | tr '\n' ' ')"
    pack
  done
fi

if [[ "${SKIP_TRAIN:-0}" != 1 ]] && section "multi-task run"; then
  # The multi-task workload end to end in bf16: loader copy stream, cuDNN batch
  # norm in a real network, the balancing kernels, checkpoints, evaluation.
  # 32 scenes at batch 8 are 4 steps an epoch: 10 epochs give the 40 steps.
  build/gpu/launch/cohort convert synthetic-scenes --kind multitask --count 32 --width 1024 \
    --height 512 --out /tmp/cohort-mt-train --quiet --overwrite > "$logs/train.log" 2>&1
  build/gpu/launch/cohort convert synthetic-scenes --kind multitask --split val --count 8 \
    --width 1024 --height 512 --out /tmp/cohort-mt-val --quiet --overwrite >> "$logs/train.log" 2>&1
  rm -rf /tmp/cohort-mt-run /tmp/cohort-mt-pred  # a fresh run, also when the script is rerun
  timeout 240 build/gpu/launch/cohort train --set data.train=/tmp/cohort-mt-train \
    --set data.eval=/tmp/cohort-mt-val --set model.kind=deeplabv3plus --set model.num_classes=19 \
    --set model.depth_head=true --set run.dtype=bf16 --set data.batch=8 \
    --set data.crop_height=256 --set data.crop_width=512 --set schedule.epochs=10 \
    --set schedule.max_steps=40 --set schedule.warmup_steps=0 --set optimizer.lr=0.01 \
    --set log.every_steps=10 --set run.out_dir=/tmp/cohort-mt-run >> "$logs/train.log" 2>&1
  log "train (DeepLabV3+ multi-task, bf16): $(grep -E 'step +40|eval|error' "$logs/train.log" | tr '\n' ' ')"
  # The checkpoint on its own: the same scores, and a prediction PNG per image.
  timeout 120 build/gpu/launch/cohort eval --checkpoint /tmp/cohort-mt-run/checkpoint.h5 \
    --predictions /tmp/cohort-mt-pred --json "$logs/eval.json" > "$logs/eval.log" 2>&1
  log "eval (checkpoint): $(grep -E 'eval|error' "$logs/eval.log" | tr '\n' ' ') $(ls /tmp/cohort-mt-pred 2>/dev/null | wc -l) PNGs"
  pack
fi

if [[ "${SKIP_DATA:-0}" != 1 ]] && section "data benchmark"; then
  timeout 240 build/gpu/launch/cohort bench data --dir /tmp/cohort-bench-data --threads 1,4,16 \
    > "$logs/bench-data.log" 2>&1
  log "data: $(grep -E '^(raw|png|jpeg) +[0-9]+ ' "$logs/bench-data.log" | tr '\n' ';')"
  timeout 180 python3 tools/bench_torch_dataloader.py --frames /tmp/cohort-bench-data/frames \
    --workers 16 > "$logs/bench-data-torch.log" 2>&1
  log "torch data: $(tail -2 "$logs/bench-data-torch.log" | tr '\n' ' ')"
  pack
fi
log "total: $(( $(date +%s) - start )) s"
cp "$summary" "$logs/" 2>/dev/null
pack
