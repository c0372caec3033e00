#pragma once
// The safetensors format, used to import pretrained weights exported from PyTorch
// (tools/export_torchvision_safetensors.py):
//   8 bytes   little-endian u64 N, the header's length
//   N bytes   JSON object: name -> {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
//             plus an optional "__metadata__" object (string -> string), ignored here
//   the rest  raw little-endian tensor bytes; [b, e) is relative to this section
// Tensors keep PyTorch's names and layouts; weight_layout.hpp converts conv weights.
#include <map>
#include <string>

#include "core/tensor.hpp"

namespace cohort::core::io {

// Reads every tensor (as CPU tensors). Supported dtypes: F32, F16, BF16, F64, I64, I32,
// U8. Any inconsistency -- a header longer than the file, bad JSON, an unknown dtype,
// offsets outside the data section or not matching the shape -- throws cohort::Error
// naming the file and the tensor; nothing is read out of bounds.
std::map<std::string, Tensor> read_safetensors(const std::string& path);

// Writes CPU tensors in name order, contiguous, header padded to 8 bytes.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors);

}  // namespace cohort::core::io
