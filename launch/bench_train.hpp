#pragma once
// `cohort bench train`: the time of whole training steps of a `cohort train`
// config's model -- forward, loss, backward with the data-parallel engine's
// reductions, optimizer step -- on synthetic inputs already on the device, so
// that the step is measured without the loader (`cohort bench data` measures
// that). The step is the trainer's own (launch/train_step.hpp), and its phases
// (forward, backward with the reductions, update) are timed on the device without
// synchronising inside the step. Under
// mpirun/srun every rank runs it and the per-rank breakdown names the slowest.
// The PyTorch counterpart is tools/bench_torch_train.py (same models, same
// layout of the result lines).
#include <string>

#include "core/device.hpp"
#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"

namespace cohort::launch {

struct BenchTrainOptions {
  int warmup = 5;
  int iters = 20;
  int profile_iters = 0;  // > 0: also print a synchronised per-layer profile
};

struct BenchTrainResult {
  int64_t parameters = 0;
  double median_ms = 0, mean_ms = 0, min_ms = 0;
  double images_per_s = 0;  // global batch / median step
  size_t peak_in_use = 0;   // this rank's device memory during the timed steps
};

// Image size of the synthetic inputs: dense models take data.crop_height x
// crop_width, classifiers data.image_size (when 0: 224, small_cnn 28x28x1).
BenchTrainResult run_bench_train(const TrainConfig& config, const BenchTrainOptions& options,
                                 core::Device device, TrainRanks ranks = {});

}  // namespace cohort::launch
