#pragma once
// Imports torchvision-named weights (a state_dict written to safetensors by
// tools/export_torchvision_safetensors.py) into a graph. PyTorch's convolution
// weights [O, I, kh, kw] become cohort's [O, kh, kw, I] (transposed convolutions
// [I, O, kh, kw] -> [I, kh, kw, O]); everything else keeps its shape. Every
// problem (missing, unexpected, mis-shaped entries) is reported in one error
// before anything is written.
#include <string>
#include <vector>

#include "core/nn/graph.hpp"

namespace cohort::models {

struct ImportOptions {
  std::string graph_prefix;  // prepended to file names to find graph names ("backbone.")
  std::vector<std::string>
      ignore_file_prefixes;  // file entries to leave out ("fc." for a new head)
  bool strict = true;        // graph entries under graph_prefix with no file entry are errors
};

struct ImportReport {
  int loaded = 0;
  std::vector<std::string> ignored;  // file entries skipped (ignored prefixes, num_batches_tracked)
};

ImportReport import_torchvision_weights(const std::string& path, core::nn::Graph& graph,
                                        const ImportOptions& options = {});

}  // namespace cohort::models
