#pragma once
// The inverse of import_torchvision_weights: a graph's parameters and buffers
// under their torchvision names in PyTorch's layouts, as a safetensors file that
// torch's load_state_dict takes with strict=True (train in cohort, use the model
// in PyTorch). Convolution weights [O, kh, kw, I] become [O, I, kh, kw]
// (transposed [I, kh, kw, O] -> [I, O, kh, kw]); everything is f32 (the master
// weights), and every BatchNorm gets PyTorch's num_batches_tracked (i64, shape
// []) set to `batches_tracked`.
#include <cstdint>
#include <string>

#include "core/nn/graph.hpp"

namespace cohort::models {

struct ExportOptions {
  // Only entries under this graph prefix, written without it ("backbone." writes
  // DeepLab's backbone as a torchvision ResNet); empty: everything.
  std::string prefix;
  int64_t batches_tracked = 0;
};

struct ExportReport {
  int tensors = 0;
  int64_t parameters = 0;  // elements of the exported parameters
};

ExportReport export_torchvision_weights(core::nn::Graph& graph, const std::string& path,
                                        const ExportOptions& options = {});

}  // namespace cohort::models
