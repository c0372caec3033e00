#pragma once
// ResNet-18/34/50/101 as torchvision builds them (v1.5: stride on the 3x3 conv of
// a bottleneck), with torchvision's module names so that weights import by name:
// conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc. BatchNorm layers
// that close a block fuse the residual add and the ReLU.
#include <array>
#include <string>

#include "core/nn/graph.hpp"

namespace cohort::models {

struct ResNetOptions {
  int depth = 50;  // 18, 34, 50, 101
  // Replace the stride of layer2/3/4 by dilation (DeepLab's output stride 16 or 8).
  std::array<bool, 3> dilate{false, false, false};
  int num_classes = 1000;  // 0: no avgpool/fc head (a backbone)
  bool zero_init_residual = false;
  int in_channels = 3;
};

struct ResNetNodes {
  core::nn::NodeId stem = -1;    // after maxpool, stride 4
  core::nn::NodeId layer1 = -1;  // stride 4
  core::nn::NodeId layer2 = -1;  // stride 8
  core::nn::NodeId layer3 = -1;  // stride 16 (or 8 dilated)
  core::nn::NodeId layer4 = -1;  // stride 32 (or 16/8 dilated)
  core::nn::NodeId logits = -1;  // when num_classes > 0
  int64_t layer1_channels = 0, layer4_channels = 0;
};

// Adds a ResNet to `graph` reading `input` ([N, H, W, in_channels]). Node names get
// `prefix` prepended ("backbone." for DeepLab), which also prefixes parameter names.
ResNetNodes add_resnet(core::nn::Graph& graph, core::nn::NodeId input, const ResNetOptions& options,
                       const std::string& prefix = "");

}  // namespace cohort::models
