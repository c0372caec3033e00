#pragma once
// `cohort bench stack`: forward+backward time of a ResNet-50 (torchvision's
// layout, without the classifier) built from cohort's conv/BN/ReLU layers, with
// a mean-of-features loss. The PyTorch eager baseline is tools/bench_torch_stack.py.
#include <functional>
#include <string>

#include "core/device.hpp"
#include "core/nn/graph.hpp"

namespace cohort::launch {

struct BenchStackOptions {
  core::Device device = core::Device::cpu();
  int batch = 256;
  int image_size = 224;
  std::string dtype = "bf16";
  int warmup = 5;
  int iters = 20;
  int profile_iters = 0;  // > 0: also print a synchronised per-layer profile
};

void run_bench_stack(const BenchStackOptions& options);

// Runs `one_step` `iters` times with the graph's per-layer profiling on (every
// layer bracketed by stream synchronisations) and prints the time per layer kind
// and the slowest layers: where the time goes, not how fast the whole step is.
void print_layer_profile(core::nn::Graph& graph, const std::function<void()>& one_step, int iters);

}  // namespace cohort::launch
