#pragma once
// The README's first command: train the small CNN on the real Fashion-MNIST from
// Debian's dataset-fashion-mnist package and report test accuracy.
#include <cstdint>
#include <string>

#include "core/device.hpp"

namespace cohort::launch {

struct FashionMnistOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  core::Device device = core::Device::cpu();
  int epochs = 1;
  int batch_size = 64;
  double lr = 0.05;
  uint64_t seed = 0;
  int64_t max_train_samples = 0;  // 0 = all 60000
  bool verbose = true;            // progress lines on stdout
};

struct FashionMnistResult {
  double test_accuracy = 0;  // on the full 10k test set
  double final_train_loss = 0;
  int64_t steps = 0;
  double seconds = 0;
};

FashionMnistResult train_fashion_mnist(const FashionMnistOptions& options);

}  // namespace cohort::launch
