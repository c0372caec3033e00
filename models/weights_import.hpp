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
  std::string format;                // what the file was ("torchvision safetensors", ...)
};

ImportReport import_torchvision_weights(const std::string& path, core::nn::Graph& graph,
                                        const ImportOptions& options = {});

// What a pretrained-weights file holds, told by its first bytes (not its name):
// HDF5's signature -> a cohort checkpoint; an 8-byte little-endian length that
// fits the file followed by '{' -> safetensors. Anything else (or a missing
// file) is an error naming the path, what was found and the two formats accepted.
enum class WeightsFormat { safetensors, cohort_checkpoint };
WeightsFormat detect_weights_format(const std::string& path);

// model.pretrained: torchvision weights in safetensors (import_torchvision_weights,
// unchanged) or a checkpoint written by `cohort train` (its model/ entries, by the
// same options: names get graph_prefix, ignore_file_prefixes are left out, strict
// requires every graph entry under graph_prefix). Either way every problem is
// reported by name in one error before anything is written.
ImportReport import_pretrained_weights(const std::string& path, core::nn::Graph& graph,
                                       const ImportOptions& options = {});

}  // namespace cohort::models
