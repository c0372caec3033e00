#!/usr/bin/env bash
# One-shot check on a GPU host (no network): the gpu-labelled tests, the cuDNN
# paths, the Fashion-MNIST demo and NCCL (mpirun -np 1, ZeRO-2/3), the ResNet-50
# stack benchmark, whole training steps of DeepLabV3+ and ResNet-50 next to
# PyTorch eager, the multi-task workload end to end, what per-task gradients cost,
# and the data-loader benchmark next to PyTorch's DataLoader.
#   tools/gpu-check.sh [fashion-mnist-dir]
#
# Sections, in the order given by SECTIONS (space-separated; default: all):
#   doctor tests demos stack train_resnet train_deeplab balancing multitask data
#   sanitizer (compute-sanitizer memcheck) and deterministic (run.deterministic's
#   cost and tests): not in the default lists
# PART=1 and PART=2 split them into two calls that each fit the device tool's
# 10-minute limit. BUDGET_S (default 540) is the call's time budget: a section
# that would start after it is skipped (and says so).
#
# Binaries: PREBUILT=DIR uses DIR/cohort and DIR/cohort_gpu_tests (built on the
# development machine: cmake -B build-gpu -DCOHORT_WITH_CUDA=ON
# -DCMAKE_CUDA_ARCHITECTURES=90), with DIR/lib first on the library path for
# libraries whose soname differs between distributions (libjpeg.so.62,
# libyaml-cpp.so.0.7). If a library is still missing there, or PREBUILT is unset,
# the script builds build/gpu with CMake and Ninja (-j16) on the host itself.
#
# Only 8 files come back from $OUT: the logs are written to $LOGS
# (/tmp/cohort-gpu-logs) and packed into $OUT/logs<tag>.tgz after every section;
# $OUT/summary<tag>.txt holds the summary lines.
# Fashion-MNIST: the argument, else gpu-data/fashion-mnist, else
# /usr/share/datasets/fashion-mnist; without it the demos are skipped.
# With the device tool (a machine stays warm only 30 s after a call):
#   tools/gpu-pack.sh          # gpu-data/: binaries, the two libraries, Fashion-MNIST
#   run(command="PREBUILT=gpu-data/bin PART=1 tools/gpu-check.sh", carry=["gpu-data"])
#   run(command="PREBUILT=gpu-data/bin PART=2 tools/gpu-check.sh", carry=["gpu-data"])
set -uo pipefail
cd "$(dirname "$0")/.."
case "${PART:-}" in
  1) default_sections="doctor tests demos train_resnet data" ;;
  2) default_sections="train_deeplab multitask balancing stack" ;;
  "") default_sections="doctor tests demos stack train_resnet train_deeplab balancing multitask data" ;;
  *) echo "PART must be 1 or 2" >&2; exit 2 ;;
esac
sections=${SECTIONS:-$default_sections}
out=${OUT:-gpu-out}
logs=${LOGS:-/tmp/cohort-gpu-logs}
tag=${PART:+-part$PART}
mkdir -p "$out" "$logs"
summary=$out/summary$tag.txt
budget=${BUDGET_S:-540}
log() { echo "== $*" | tee -a "$summary"; }
pack() { tar czf "$out/logs$tag.tgz" -C "$logs" . 2>/dev/null; }
start=$(date +%s)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export COHORT_SOURCE_DIR=$PWD
data=${1:-}
if [[ -z $data ]]; then
  for d in gpu-data/fashion-mnist /usr/share/datasets/fashion-mnist; do
    [[ -e $d/t10k-images-idx3-ubyte.gz ]] && { data=$d; break; }
  done
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$summary"

# --- binaries --------------------------------------------------------------
cohort="" gputests=""
if [[ -n ${PREBUILT:-} ]]; then
  prebuilt=$(realpath -m "$PREBUILT")
  export LD_LIBRARY_PATH="$prebuilt/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  missing=""
  for b in cohort cohort_gpu_tests; do
    [[ -f $prebuilt/$b ]] || missing+="$b (no such file)"$'\n'
  done
  [[ -z $missing ]] &&
    missing=$(ldd "$prebuilt/cohort" "$prebuilt/cohort_gpu_tests" 2>&1 | grep "not found" | sort -u)
  if [[ -z $missing ]]; then
    cohort=$prebuilt/cohort gputests=$prebuilt/cohort_gpu_tests
    chmod +x "$cohort" "$gputests"
    log "binaries: prebuilt ($PREBUILT)"
  else
    log "binaries: prebuilt ones lack $(echo "$missing" | awk '{print $1}' | tr '\n' ' ')(building here)"
  fi
fi
if [[ -z $cohort ]]; then
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOHORT_WITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 > "$logs/configure.log" 2>&1 || { tail -30 "$logs/configure.log"; pack; exit 1; }
  # CMake falls back to a CPU-only build (with a warning) when nvcc, cuDNN or NCCL
  # is missing: every gpu test would then "pass" as skipped.
  grep -q "CUDA backend ON" "$logs/configure.log" ||
    { log "configure: no CUDA backend"; grep -iE "warn|cuda|cudnn|nccl" "$logs/configure.log" | tail -20; pack; exit 1; }
  cmake --build build/gpu -j16 --target cohort cohort_gpu_tests > "$logs/build.log" 2>&1 \
    || { grep -E "error|FAILED" "$logs/build.log" | head -40; pack; exit 1; }
  cohort=$PWD/build/gpu/launch/cohort gputests=$PWD/build/gpu/tests/cohort_gpu_tests
  log "build: $(( $(date +%s) - start )) s"
fi
pack

# section NAME: whether a section may start inside the time budget.
section() {
  local used=$(( $(date +%s) - start ))
  if (( used > budget )); then
    log "$1: skipped, ${used} s used of the ${budget} s budget"
    return 1
  fi
  echo "-- $1 at ${used} s" >> "$summary"
}

run_doctor() {
  # Versions, the GPU, and NCCL through MPI as one rank (launch/doctor.hpp).
  timeout 60 "$cohort" doctor > "$logs/doctor.log" 2>&1
  timeout 90 mpirun -np 1 "$cohort" doctor >> "$logs/doctor.log" 2>&1
  grep -E "CUDA:|GPU 0|check:|result:" "$logs/doctor.log" | tee -a "$summary"
}

# One test per process, as CTest runs them (exit 77: skipped), 4 at a time.
# --foreground keeps the test in this process group, so that the outer timeout
# of the whole batch stops it too (nothing left running on the GPU).
run_one_test() {
  local name=$1 rc t0=$SECONDS
  timeout --foreground -k 5 90 "$gputests" --gtest_filter="$name" > "$logs/gpu-tests/${name//\//_}.log" 2>&1
  rc=$?
  case $rc in 0) echo "PASS $name $(( SECONDS - t0 ))s" ;; 77) echo "SKIP $name" ;;
    124 | 137) echo "TIMEOUT $name" ;; *) echo "FAIL($rc) $name" ;; esac
}
export -f run_one_test
run_tests() {
  mkdir -p "$logs/gpu-tests"
  "$gputests" --gtest_list_tests | awk '/^[^ ]/ {suite=$1} /^  / {print suite $1}' > "$logs/gpu-test-list.txt"
  export gputests logs
  timeout -k 5 300 xargs -P 4 -I{} bash -c 'run_one_test "$1"' _ {} \
    < "$logs/gpu-test-list.txt" > "$logs/gpu-tests-unsorted.txt"
  local rc=$?
  (( rc == 124 || rc == 137 )) && log "gpu tests: stopped after 300 s"
  # A test with no result line was stopped by that limit or never started.
  awk '{print $2}' "$logs/gpu-tests-unsorted.txt" | sort > "$logs/gpu-tests-ran.txt"
  sort "$logs/gpu-test-list.txt" | comm -23 - "$logs/gpu-tests-ran.txt" | sed 's/^/NOT RUN /' \
    >> "$logs/gpu-tests-unsorted.txt"
  sort "$logs/gpu-tests-unsorted.txt" > "$logs/gpu-tests.txt"
  local total passed
  total=$(wc -l < "$logs/gpu-test-list.txt")
  passed=$(grep -c "^PASS" "$logs/gpu-tests.txt")
  # A skipped gpu test here means the GPU was not usable: never a pass.
  log "gpu tests: $passed of $total passed"
  grep -v "^PASS" "$logs/gpu-tests.txt" | head -40 | tee -a "$summary"
  # What cuDNN declined (a silent fallback to the own kernels by design), and the
  # path each batch-norm configuration took.
  COHORT_CUDNN_VERBOSE=1 timeout 120 "$gputests" --gtest_filter='GpuBatchNorm.*:GpuPool.*' \
    > "$logs/cudnn-paths.log" 2>&1
  grep -E "declined|batch norm train" "$logs/cudnn-paths.log" | sort | uniq -c | head -30 |
    tee -a "$summary"
}

run_demos() {
  if [[ -z $data ]]; then
    log "demos: skipped, no Fashion-MNIST (pass its folder, or carry gpu-data/fashion-mnist)"
    return
  fi
  timeout 120 "$cohort" demo --device cuda:0 --data "$data" > "$logs/demo.log" 2>&1
  log "demo: $(tail -1 "$logs/demo.log")"
  # One rank under mpirun: the NCCL communicator, ZeRO-2 and the step-time breakdown end to end.
  timeout 90 mpirun -np 1 "$cohort" demo --zero 2 --data "$data" > "$logs/demo-mpi.log" 2>&1
  log "demo (mpirun, NCCL, ZeRO-2): $(tail -4 "$logs/demo-mpi.log" | tr '\n' ' ')"
  # ZeRO-3 on NCCL with a prefetch window spanning several layers (parallel.prefetch_mib).
  "$cohort" convert fashion-mnist --dir "$data" --split test --out /tmp/cohort-fm \
    --quiet --overwrite > "$logs/zero3.log" 2>&1
  rm -rf /tmp/cohort-z3
  timeout 90 mpirun -np 1 "$cohort" train --set data.train=/tmp/cohort-fm \
    --set run.out_dir=/tmp/cohort-z3 --set parallel.zero_stage=3 --set parallel.prefetch_mib=1 \
    --set schedule.max_steps=100 --set log.every_steps=50 >> "$logs/zero3.log" 2>&1
  log "train (mpirun, NCCL, ZeRO-3, prefetch 1 MiB): $(grep -E 'step +100|rank +0|error' "$logs/zero3.log" | tr '\n' ' ')"
}

# `bench stack` lines: the median, and the profile rows the cuDNN switch changes.
stack_lines='median|^  (BatchNorm2d|Conv2d|MaxPool2d) '
run_stack() {
  timeout 120 "$cohort" bench stack --device cuda:0 --batch 256 --dtype bf16 \
    --iters 20 --profile 2 > "$logs/bench-cohort.log" 2>&1
  log "cohort (cuDNN BN/pool): $(grep -E "$stack_lines" "$logs/bench-cohort.log" | tr '\n' ' ')"
  COHORT_BATCHNORM=kernels COHORT_POOLING=kernels timeout 120 "$cohort" bench stack \
    --device cuda:0 --batch 256 --dtype bf16 --iters 20 --profile 2 > "$logs/bench-cohort-kernels.log" 2>&1
  log "cohort (own BN/pool): $(grep -E "$stack_lines" "$logs/bench-cohort-kernels.log" | tr '\n' ' ')"
  timeout 120 python3 tools/bench_torch_stack.py --batch 256 --dtype bf16 --iters 20 \
    > "$logs/bench-torch.log" 2>&1
  log "torch: $(tail -2 "$logs/bench-torch.log" | tr '\n' ' ')"
}

train_lines='median|phases|peak|error'
run_train_resnet() {
  # The ResNet-50 classifier at batch 256, alone and as one rank of a data-parallel
  # job (NCCL's single-rank overhead on a 25.6 M gradient set, the step-time
  # breakdown), next to PyTorch eager (same network: parity_bench_models_match).
  local resnet="--set model.kind=resnet --set model.num_classes=1000 --set data.batch=256"
  resnet+=" --set data.image_size=224 --set run.dtype=bf16"
  # shellcheck disable=SC2086
  timeout 120 "$cohort" bench train $resnet --set run.device=cuda:0 --iters 20 \
    > "$logs/bench-train-resnet.log" 2>&1
  log "cohort train step ResNet-50: $(grep -E "$train_lines" "$logs/bench-train-resnet.log" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  timeout 120 mpirun -np 1 "$cohort" bench train $resnet --iters 20 \
    > "$logs/bench-train-resnet-nccl.log" 2>&1
  log "cohort train step ResNet-50, mpirun -np 1 (NCCL): $(grep -E 'median|rank +0|error' "$logs/bench-train-resnet-nccl.log" | tr '\n' ' ')"
  timeout 120 python3 tools/bench_torch_train.py --model resnet --classes 1000 --batch 256 \
    --size 224 --iters 20 > "$logs/bench-train-resnet-torch.log" 2>&1
  log "torch train step ResNet-50: $(grep -E "$train_lines" "$logs/bench-train-resnet-torch.log" | tr '\n' ' ')"
}

run_train_deeplab() {
  # Whole training steps (forward, loss, backward, SGD) against PyTorch eager:
  # DeepLabV3+ R50 at 512x1024, batch 8 (issue #4's 45 ms reference). ROUNDS
  # (default 1) alternates the pair that often; ITERS (default 20) timed steps each;
  # PIN=CPU adds a cohort run bound to that core (as mpirun -np 1 binds it).
  local deeplab="--set model.kind=deeplabv3plus --set model.num_classes=19 --set data.batch=8"
  deeplab+=" --set data.crop_height=512 --set data.crop_width=1024 --set run.dtype=bf16"
  local iters=${ITERS:-20} round
  for (( round = 1; round <= ${ROUNDS:-1}; ++round )); do
    # shellcheck disable=SC2086
    timeout 120 "$cohort" bench train $deeplab --set run.device=cuda:0 \
      --set optimizer.lr=0.01 --iters "$iters" --profile 2 > "$logs/bench-train-deeplab-$round.log" 2>&1
    log "cohort train step DeepLabV3+ ($round): $(grep -E "$train_lines" "$logs/bench-train-deeplab-$round.log" | tr '\n' ' ')"
    timeout 120 python3 tools/bench_torch_train.py --model deeplabv3plus --batch 8 --height 512 \
      --width 1024 --iters "$iters" > "$logs/bench-train-deeplab-torch-$round.log" 2>&1
    log "torch train step DeepLabV3+ ($round): $(grep -E "$train_lines" "$logs/bench-train-deeplab-torch-$round.log" | tr '\n' ' ')"
  done
  if [[ -n ${PIN:-} ]]; then
    # shellcheck disable=SC2086
    timeout 120 taskset -c "$PIN" "$cohort" bench train $deeplab --set run.device=cuda:0 \
      --set optimizer.lr=0.01 --iters "$iters" > "$logs/bench-train-deeplab-pinned.log" 2>&1
    log "cohort train step DeepLabV3+ (taskset -c $PIN): $(grep -E "$train_lines" "$logs/bench-train-deeplab-pinned.log" | tr '\n' ' ')"
  fi
}

run_deterministic() {
  # What run.deterministic costs (deterministic cuDNN algorithms, the resize
  # backward's gather) on the DeepLabV3+ step, alternating off/on twice, and the
  # gpu tests that prove it (bitwise repeats).
  local deeplab="--set model.kind=deeplabv3plus --set model.num_classes=19 --set data.batch=8"
  deeplab+=" --set data.crop_height=512 --set data.crop_width=1024 --set run.dtype=bf16"
  local setting
  for setting in false true false true; do
    # shellcheck disable=SC2086
    timeout 90 "$cohort" bench train $deeplab --set run.device=cuda:0 --iters "${ITERS:-30}" \
      --set run.deterministic=$setting > "$logs/bench-train-deterministic-$setting.log" 2>&1
    log "cohort train step DeepLabV3+, run.deterministic $setting: $(grep -E "$train_lines" "$logs/bench-train-deterministic-$setting.log" | tr '\n' ' ')"
  done
  timeout 120 "$gputests" --gtest_filter='GraphGpu.Deterministic*:GraphGpu.Bf16Accumulation*:GpuResize.Deterministic*' \
    > "$logs/deterministic-tests.log" 2>&1
  log "deterministic tests: exit $?; $(grep -E 'relative|PASSED|FAILED  \]' "$logs/deterministic-tests.log" | tr '\n' ' ')"
}

run_sanitizer() {
  # compute-sanitizer memcheck over the gpu suites written since its last run
  # (SANITIZE_FILTER overrides the gtest filter).
  local filter=${SANITIZE_FILTER:-'GpuTaskGradient*:GpuOptim*:GpuLossNormaliser*:GpuBatchNorm*:GpuPool*:GpuWeightedLossSum*:GpuMetrics*:GpuMemoryStats*'}
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 "$gputests" \
    --gtest_filter="$filter" > "$logs/memcheck.log" 2>&1
  local rc=$?
  log "memcheck ($filter): exit $rc; $(grep -E 'ERROR SUMMARY|PASSED|FAILED  \]' "$logs/memcheck.log" | sort | uniq -c | tr '\n' ' ')"
}

run_balancing() {
  # What per-task gradients cost (loss.balancing pcgrad/gradnorm: one backward
  # and one reduction per task) against one backward (uncertainty), same model.
  local mt="--set model.kind=deeplabv3plus --set model.num_classes=19 --set model.depth_head=true"
  mt+=" --set data.batch=8 --set data.crop_height=512 --set data.crop_width=1024"
  mt+=" --set run.dtype=bf16 --set run.device=cuda:0 --iters 5 --warmup 2"
  local balancing
  for balancing in uncertainty pcgrad gradnorm; do
    # shellcheck disable=SC2086
    timeout 60 "$cohort" bench train $mt --set loss.balancing=$balancing \
      > "$logs/bench-train-mt-$balancing.log" 2>&1
    log "cohort train step multi-task $balancing: $(grep -E "$train_lines" "$logs/bench-train-mt-$balancing.log" | tr '\n' ' ')"
  done
}

run_multitask() {
  # The multi-task workload end to end in bf16: loader copy stream, cuDNN batch
  # norm in a real network, the balancing kernels, checkpoints, evaluation.
  # 32 scenes at batch 8 are 4 steps an epoch: 10 epochs give the 40 steps.
  "$cohort" convert synthetic-scenes --kind multitask --count 32 --width 1024 \
    --height 512 --out /tmp/cohort-mt-train --quiet --overwrite > "$logs/train.log" 2>&1
  "$cohort" convert synthetic-scenes --kind multitask --split val --count 8 \
    --width 1024 --height 512 --out /tmp/cohort-mt-val --quiet --overwrite >> "$logs/train.log" 2>&1
  rm -rf /tmp/cohort-mt-run /tmp/cohort-mt-pred  # a fresh run, also when the script is rerun
  timeout 180 "$cohort" train --set data.train=/tmp/cohort-mt-train \
    --set data.eval=/tmp/cohort-mt-val --set model.kind=deeplabv3plus --set model.num_classes=19 \
    --set model.depth_head=true --set run.dtype=bf16 --set data.batch=8 \
    --set data.crop_height=256 --set data.crop_width=512 --set schedule.epochs=10 \
    --set schedule.max_steps=40 --set schedule.warmup_steps=0 --set optimizer.lr=0.01 \
    --set log.every_steps=10 --set run.out_dir=/tmp/cohort-mt-run >> "$logs/train.log" 2>&1
  log "train (DeepLabV3+ multi-task, bf16): $(grep -E 'step +40|eval|error' "$logs/train.log" | tr '\n' ' ')"
  # The checkpoint on its own: the same scores, and a prediction PNG per image.
  timeout 90 "$cohort" eval --checkpoint /tmp/cohort-mt-run/checkpoint.h5 \
    --predictions /tmp/cohort-mt-pred --json "$logs/eval.json" > "$logs/eval.log" 2>&1
  log "eval (checkpoint): $(grep -E 'eval|error' "$logs/eval.log" | tr '\n' ' ') $(ls /tmp/cohort-mt-pred 2>/dev/null | wc -l) PNGs"
}

run_data() {
  timeout 150 "$cohort" bench data --dir /tmp/cohort-bench-data --threads 1,4,16 \
    > "$logs/bench-data.log" 2>&1
  log "data: $(grep -E '^(raw|png|jpeg) +[0-9]+ ' "$logs/bench-data.log" | tr '\n' ';')"
  timeout 90 python3 tools/bench_torch_dataloader.py --frames /tmp/cohort-bench-data/frames \
    --workers 16 > "$logs/bench-data-torch.log" 2>&1
  log "torch data: $(tail -2 "$logs/bench-data-torch.log" | tr '\n' ' ')"
}

for s in $sections; do
  if ! declare -F "run_$s" > /dev/null; then
    log "unknown section $s"
    continue
  fi
  section "$s" && "run_$s"
  pack
done
log "total: $(( $(date +%s) - start )) s"
cp "$summary" "$logs/" 2>/dev/null
pack
