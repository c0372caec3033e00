#pragma once
// Parameters and buffers of a model graph. Every parameter is a view into the
// graph's flat f32 master buffer, and its gradient a view into the flat f32
// gradient buffer at the same offset, so optimizers and collectives work on one
// contiguous range. With a 16-bit compute dtype, `compute` and `compute_grad` are
// views into parallel flat buffers of that dtype (BatchNorm's parameters stay f32).
#include <cstdint>
#include <string>

#include "core/tensor.hpp"

namespace cohort::core::nn {

class Layer;

enum class Init {
  zeros,
  ones,
  kaiming_normal_fan_out,  // N(0, 2/fan_out): torchvision's ResNet convolutions
  kaiming_uniform,         // PyTorch's default for Conv/Linear weights: U(+-1/sqrt(fan_in))
  uniform_fan_in,          // PyTorch's default for Conv/Linear biases: U(+-1/sqrt(fan_in))
};

struct ParamSpec {
  std::string name;  // local name, e.g. "weight"
  Shape shape;
  Init init = Init::zeros;
  int64_t fan_in = 1;
  int64_t fan_out = 1;
  bool no_decay = false;  // biases and BatchNorm affine parameters
  bool keep_f32 = false;  // stays f32 under mixed precision (BatchNorm)
};

struct BufferSpec {
  std::string name;  // e.g. "running_mean"
  Shape shape;
  Init init = Init::zeros;
};

struct Parameter {
  std::string name;  // full, torchvision style: "layer1.0.conv1.weight"
  Shape shape;
  int64_t offset = 0;   // element offset in the flat buffers
  Tensor value;         // f32 master weights
  Tensor grad;          // f32 gradient
  Tensor compute;       // what ops read: == value unless a 16-bit compute dtype is used
  Tensor compute_grad;  // what ops write: == grad unless a 16-bit compute dtype is used
  bool trainable = true;
  bool no_decay = false;
  bool keep_f32 = false;
  Layer* owner = nullptr;
};

struct Buffer {
  std::string name;  // "bn1.running_mean"
  Tensor value;      // f32, owned individually (not in the flat buffers)
};

}  // namespace cohort::core::nn
