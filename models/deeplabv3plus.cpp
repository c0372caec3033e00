#include "models/deeplabv3plus.hpp"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/nn/layers.hpp"
#include "models/resnet.hpp"

namespace cohort::models {
namespace {

using core::nn::BatchNorm2d;
using core::nn::BatchNormOptions;
using core::nn::Conv2d;
using core::nn::Conv2dOptions;
using core::nn::Graph;
using core::nn::NodeId;

struct HeadBuilder {
  Graph& g;

  // k x k convolution, stride 1, "same" padding for the dilation.
  NodeId conv(const std::string& name, NodeId x, int64_t in, int64_t out, int k, int dilation = 1,
              bool bias = false) {
    Conv2dOptions o;
    o.in_channels = in;
    o.out_channels = out;
    o.kernel_h = o.kernel_w = k;
    o.geometry.pad_h = o.geometry.pad_w = (k / 2) * dilation;
    o.geometry.dilation_h = o.geometry.dilation_w = dilation;
    o.bias = bias;
    return g.add(name, std::make_unique<Conv2d>(o), {x});
  }
  NodeId bn_relu(const std::string& name, NodeId x, int64_t channels) {
    BatchNormOptions o;
    o.channels = channels;
    o.relu = true;
    return g.add(name, std::make_unique<BatchNorm2d>(o), {x});
  }
  // conv-BN-ReLU named like an nn.Sequential: `prefix`.{first}, `prefix`.{first+1}.
  NodeId conv_bn_relu(const std::string& prefix, int first, NodeId x, int64_t in, int64_t out,
                      int k, int dilation = 1) {
    x = conv(fmt::format("{}.{}", prefix, first), x, in, out, k, dilation);
    return bn_relu(fmt::format("{}.{}", prefix, first + 1), x, out);
  }
  // Bilinear (align_corners=false) to the spatial size of `like`.
  NodeId resize_like(const std::string& name, NodeId x, NodeId like) {
    return g.add(name, std::make_unique<core::nn::ResizeBilinear>(), {x, like});
  }
};

}  // namespace

std::array<int, 3> deeplab_aspp_rates(const DeepLabV3PlusOptions& o) {
  if (o.aspp_rates != std::array<int, 3>{0, 0, 0}) return o.aspp_rates;
  return o.output_stride == 8 ? std::array<int, 3>{12, 24, 36} : std::array<int, 3>{6, 12, 18};
}

DeepLabV3PlusNodes add_deeplabv3plus(Graph& graph, const DeepLabV3PlusOptions& o) {
  COHORT_CHECK(o.output_stride == 16 || o.output_stride == 8,
               fmt::format("DeepLabV3+: output_stride must be 16 or 8, got {}", o.output_stride));
  COHORT_CHECK(
      o.backbone_depth == 50 || o.backbone_depth == 101,
      fmt::format("DeepLabV3+: backbone_depth must be 50 or 101, got {}", o.backbone_depth));
  COHORT_CHECK(
      o.num_classes > 0 && o.aspp_channels > 0 && o.low_level_channels > 0 &&
          o.decoder_channels > 0,
      fmt::format("DeepLabV3+: num_classes {}, aspp_channels {}, low_level_channels {} "
                  "and decoder_channels {} must be positive",
                  o.num_classes, o.aspp_channels, o.low_level_channels, o.decoder_channels));
  COHORT_CHECK(std::isfinite(o.depth_scale) && o.depth_scale > 0,
               fmt::format("DeepLabV3+: depth_scale must be a positive number of metres, got {}",
                           o.depth_scale));
  COHORT_CHECK(o.aspp_dropout >= 0 && o.aspp_dropout < 1,
               fmt::format("DeepLabV3+: aspp_dropout must be in [0, 1), got {}", o.aspp_dropout));
  COHORT_CHECK(
      o.depth_head || (o.loss_balancing.method == core::nn::LossBalancingMethod::uncertainty &&
                       o.loss_balancing.weights.empty()),
      "DeepLabV3+: loss_balancing needs depth_head (one task has no losses to balance)");
  const std::array<int, 3> rates = deeplab_aspp_rates(o);
  for (int r : rates)
    COHORT_CHECK(r > 0, fmt::format("DeepLabV3+: atrous rates must be positive, got {}, {}, {}",
                                    rates[0], rates[1], rates[2]));

  DeepLabV3PlusNodes out;
  out.image = graph.input("image");
  out.label = graph.input("label");

  ResNetOptions backbone;
  backbone.depth = o.backbone_depth;
  backbone.num_classes = 0;  // features only
  backbone.in_channels = o.in_channels;
  // torchvision's replace_stride_with_dilation for layer2, layer3, layer4.
  backbone.dilate = o.output_stride == 8 ? std::array<bool, 3>{false, true, true}
                                         : std::array<bool, 3>{false, false, true};
  const ResNetNodes features = add_resnet(graph, out.image, backbone, "backbone.");
  out.layer1 = features.layer1;
  out.layer4 = features.layer4;
  const int64_t high_ch = features.layer4_channels;  // 2048
  const int64_t low_ch = features.layer1_channels;   // 256
  const int64_t aspp_ch = o.aspp_channels;

  HeadBuilder b{graph};
  // ---- ASPP on layer4: five parallel branches, concatenated, projected ----------
  std::vector<NodeId> branches;
  branches.push_back(b.conv_bn_relu("aspp.convs.0", 0, out.layer4, high_ch, aspp_ch, 1));
  for (int i = 0; i < 3; ++i)
    branches.push_back(b.conv_bn_relu(fmt::format("aspp.convs.{}", i + 1), 0, out.layer4, high_ch,
                                      aspp_ch, 3, rates[i]));
  // Image pooling: global context as a 1x1 map, broadcast back by the resize.
  NodeId pooled = graph.add("aspp.convs.4.0", std::make_unique<core::nn::AdaptiveAvgPool2d>(1, 1),
                            {out.layer4});
  pooled = b.conv_bn_relu("aspp.convs.4", 1, pooled, high_ch, aspp_ch, 1);
  branches.push_back(b.resize_like("aspp.convs.4.upsample", pooled, out.layer4));
  NodeId aspp = graph.add(
      "aspp.concat", std::make_unique<core::nn::ConcatChannels>(static_cast<int>(branches.size())),
      branches);
  aspp = b.conv_bn_relu("aspp.project", 0, aspp, static_cast<int64_t>(branches.size()) * aspp_ch,
                        aspp_ch, 1);
  aspp = graph.add("aspp.project.3", std::make_unique<core::nn::Dropout>(o.aspp_dropout), {aspp});
  out.aspp = aspp;

  // ---- decoder at stride 4 -----------------------------------------------------
  const NodeId up = b.resize_like("decoder.upsample", aspp, out.layer1);
  const NodeId skip =
      b.conv_bn_relu("decoder.low_level", 0, out.layer1, low_ch, o.low_level_channels, 1);
  NodeId x = graph.add("decoder.concat", std::make_unique<core::nn::ConcatChannels>(2), {up, skip});
  x = b.conv_bn_relu("decoder.fuse", 0, x, aspp_ch + o.low_level_channels, o.decoder_channels, 3);
  x = b.conv_bn_relu("decoder.fuse", 3, x, o.decoder_channels, o.decoder_channels, 3);
  const NodeId decoded = x;
  x = b.conv("classifier", x, o.decoder_channels, o.num_classes, 1, 1, /*bias=*/true);

  out.logits = b.resize_like("upsample", x, out.image);
  const NodeId seg_loss =
      graph.add(o.depth_head ? "seg_loss" : "loss",
                std::make_unique<core::nn::CrossEntropyLoss>(o.ignore_index, o.class_weights),
                {out.logits, out.label});
  out.seg_loss = seg_loss;
  out.loss = seg_loss;
  if (!o.depth_head) return out;

  // ---- multi-task: depth from the same decoder features -------------------------
  out.depth_target = graph.input("depth");
  out.depth_valid = graph.input("depth_valid");
  const NodeId depth = b.conv("depth_head", decoded, o.decoder_channels, 1, 1, 1, /*bias=*/true);
  const NodeId head = b.resize_like("depth_upsample", depth, out.image);
  NodeId target = out.depth_target;
  out.depth = head;
  if (o.depth_scale != 1.0) {
    // The loss compares head units with targets in them; evaluation reads metres.
    target = graph.add("depth_target_scaled",
                       std::make_unique<core::nn::Scale>(1.0 / o.depth_scale), {out.depth_target});
    out.depth = graph.add("depth_metres", std::make_unique<core::nn::Scale>(o.depth_scale), {head});
  }
  out.depth_loss = graph.add("depth_loss",
                             std::make_unique<core::nn::RegressionLossLayer>(
                                 core::ops::RegressionLoss::l1, /*masked=*/true),
                             {head, target, out.depth_valid});
  out.loss =
      core::nn::add_balanced_loss(graph, "loss", {seg_loss, out.depth_loss}, o.loss_balancing);
  return out;
}

}  // namespace cohort::models
