#pragma once
// The ZeRO memory benchmark for a ResNet-50: stages 0-3 at a given world size,
// per-rank bytes measured on the buffers that ZeroDataParallel::plan allocates.
// Header-only so that cohort_comm does not depend on cohort_models: a caller
// links cohort_models (the `cohort` executable does through cohort_launch).
#include "comm/zero.hpp"
#include "models/resnet.hpp"

namespace cohort::comm {

inline std::vector<ZeroMemory> run_zero_memory_report(const ZeroReportOptions& options,
                                                      std::FILE* out = stdout) {
  return run_zero_memory_report(
      options,
      [](core::nn::Graph& graph) {
        models::ResNetOptions resnet;
        resnet.depth = 50;
        models::add_resnet(graph, graph.input("image"), resnet);
      },
      "ResNet-50", out);
}

}  // namespace cohort::comm
