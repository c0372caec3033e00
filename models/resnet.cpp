#include "models/resnet.hpp"

#include <fmt/format.h>

#include <memory>

#include "core/nn/layers.hpp"

namespace cohort::models {
namespace {

using core::nn::BatchNorm2d;
using core::nn::BatchNormOptions;
using core::nn::Conv2d;
using core::nn::Conv2dOptions;
using core::nn::Graph;
using core::nn::NodeId;

struct Builder {
  Graph& g;
  std::string prefix;
  bool zero_init_residual;

  NodeId conv(const std::string& name, NodeId x, int64_t in, int64_t out, int k, int stride,
              int dilation) {
    Conv2dOptions o;
    o.in_channels = in;
    o.out_channels = out;
    o.kernel_h = o.kernel_w = k;
    o.geometry.stride_h = o.geometry.stride_w = stride;
    o.geometry.pad_h = o.geometry.pad_w = (k / 2) * dilation;
    o.geometry.dilation_h = o.geometry.dilation_w = dilation;
    return g.add(prefix + name, std::make_unique<Conv2d>(o), {x});
  }
  NodeId bn(const std::string& name, NodeId x, int64_t channels, bool relu, NodeId residual = -1,
            bool zero_init = false) {
    BatchNormOptions o;
    o.channels = channels;
    o.relu = relu;
    o.residual = residual >= 0;
    o.zero_init = zero_init;
    std::vector<NodeId> inputs{x};
    if (residual >= 0) inputs.push_back(residual);
    return g.add(prefix + name, std::make_unique<BatchNorm2d>(o), inputs);
  }
};

}  // namespace

ResNetNodes add_resnet(Graph& graph, NodeId input, const ResNetOptions& opt,
                       const std::string& prefix) {
  std::array<int, 4> blocks;
  bool bottleneck = true;
  switch (opt.depth) {
    case 18:
      blocks = {2, 2, 2, 2};
      bottleneck = false;
      break;
    case 34:
      blocks = {3, 4, 6, 3};
      bottleneck = false;
      break;
    case 50:
      blocks = {3, 4, 6, 3};
      break;
    case 101:
      blocks = {3, 4, 23, 3};
      break;
    default:
      COHORT_FAIL(fmt::format("ResNet: depth {} is not one of 18, 34, 50, 101", opt.depth));
  }
  const int expansion = bottleneck ? 4 : 1;
  Builder b{graph, prefix, opt.zero_init_residual};
  ResNetNodes out;

  NodeId x = b.conv("conv1", input, opt.in_channels, 64, 7, 2, 1);
  x = b.bn("bn1", x, 64, true);
  core::ops::PoolGeometry pool{3, 3, 2, 2, 1, 1, true};
  x = graph.add(prefix + "maxpool", std::make_unique<core::nn::MaxPool2d>(pool), {x});
  out.stem = x;

  int64_t in_ch = 64;
  int dilation = 1;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t width = 64 << stage;
    int stride = stage == 0 ? 1 : 2;
    const int previous_dilation = dilation;
    if (stage > 0 && opt.dilate[stage - 1]) {
      dilation *= stride;
      stride = 1;
    }
    for (int j = 0; j < blocks[stage]; ++j) {
      const std::string name = fmt::format("layer{}.{}.", stage + 1, j);
      const int s = j == 0 ? stride : 1;
      // torchvision: the first block of a stage uses the previous dilation.
      const int d = j == 0 ? previous_dilation : dilation;
      const int64_t out_ch = width * expansion;
      NodeId identity = x;
      if (j == 0 && (s != 1 || in_ch != out_ch)) {
        identity = b.conv(name + "downsample.0", x, in_ch, out_ch, 1, s, 1);
        identity = b.bn(name + "downsample.1", identity, out_ch, false);
      }
      NodeId y;
      if (bottleneck) {
        y = b.conv(name + "conv1", x, in_ch, width, 1, 1, 1);
        y = b.bn(name + "bn1", y, width, true);
        y = b.conv(name + "conv2", y, width, width, 3, s, d);
        y = b.bn(name + "bn2", y, width, true);
        y = b.conv(name + "conv3", y, width, out_ch, 1, 1, 1);
        y = b.bn(name + "bn3", y, out_ch, true, identity, opt.zero_init_residual);
      } else {
        y = b.conv(name + "conv1", x, in_ch, width, 3, s, d);
        y = b.bn(name + "bn1", y, width, true);
        y = b.conv(name + "conv2", y, width, width, 3, 1, d);
        y = b.bn(name + "bn2", y, width, true, identity, opt.zero_init_residual);
      }
      x = y;
      in_ch = out_ch;
    }
    if (stage == 0) {
      out.layer1 = x;
      out.layer1_channels = in_ch;
    }
    if (stage == 1) out.layer2 = x;
    if (stage == 2) out.layer3 = x;
    if (stage == 3) out.layer4 = x;
  }
  out.layer4_channels = in_ch;
  if (opt.num_classes > 0) {
    NodeId p =
        graph.add(prefix + "avgpool", std::make_unique<core::nn::AdaptiveAvgPool2d>(1, 1), {x});
    p = graph.add(prefix + "flatten", std::make_unique<core::nn::Flatten>(), {p});
    out.logits =
        graph.add(prefix + "fc", std::make_unique<core::nn::Linear>(in_ch, opt.num_classes), {p});
  }
  return out;
}

}  // namespace cohort::models
