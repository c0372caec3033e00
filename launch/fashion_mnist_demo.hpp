#pragma once
// The README's first command: train the small CNN on the real Fashion-MNIST from
// Debian's dataset-fashion-mnist package and report test accuracy. On one process,
// or data-parallel across the ranks of a communicator (`mpirun -np N cohort demo`,
// `srun --mpi=pmix cohort demo`), optionally with ZeRO stages 1-3: the global batch
// is split over the ranks, each rank reads its part of a world-size-independent
// sample order (data::TrainSampler), evaluation visits each test image once across
// ranks (data::EvalSampler) and the counts are summed.
#include <cstdint>
#include <string>

#include "comm/communicator.hpp"
#include "comm/step_timer.hpp"
#include "core/device.hpp"

namespace cohort::launch {

struct FashionMnistOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  core::Device device = core::Device::cpu();
  int epochs = 1;
  int batch_size = 64;  // global: split evenly over the ranks
  double lr = 0.05;
  uint64_t seed = 0;
  int64_t max_train_samples = 0;  // 0 = all 60000
  bool verbose = true;            // progress lines on stdout (rank 0)
  // Data parallelism: ranks of this communicator train one model (nullptr: this
  // process alone). The device must be the communicator's.
  comm::Communicator* comm = nullptr;
  int zero_stage = 0;  // 0 = plain data parallelism; 1-3 = ZeRO (with `comm`)
};

struct FashionMnistResult {
  double test_accuracy = 0;     // on the full 10k test set (summed over ranks)
  double final_train_loss = 0;  // this rank's last micro-batch
  int64_t steps = 0;
  double seconds = 0;
  int world_size = 1;
  comm::RankBreakdowns step_times;  // with `comm`: per-rank data / exposed comm / compute
};

FashionMnistResult train_fashion_mnist(const FashionMnistOptions& options);

}  // namespace cohort::launch
