#pragma once
// DeepLabV3+ (Chen et al., ECCV 2018) on a dilated torchvision ResNet: cohort's
// main workload, Cityscapes semantic segmentation.
//
//   image [N,H,W,3] -> ResNet (output stride 16 or 8) -> layer4 -> ASPP -> upsample
//   to layer1's size -> concat with a 48-channel projection of layer1 -> two 3x3
//   conv-BN-ReLU -> 1x1 classifier -> bilinear upsample to H x W -> logits
//   logits, label [N,H,W] -> CrossEntropyLoss(ignore_index) -> loss
//
// Every resize is bilinear with align_corners=false and takes its output size from
// another node at run time (ResizeBilinear's two-input form), so any input size
// works, odd ones included (65x65 gives layer1 17x17 and layer4 5x5 at OS16).
//
// Parameter (and node) names. The backbone is torchvision's resnet50 under
// "backbone." ("backbone.conv1.weight", "backbone.layer4.2.bn3.running_var"; no
// avgpool/fc), so ImageNet weights exported by tools/export_torchvision_safetensors.py
// import with ImportOptions{.graph_prefix = "backbone.", .ignore_file_prefixes = {"fc."}}.
// The head mirrors the PyTorch reference module of tests/parity/make_deeplab_golden.py
// (nn.Sequential indices; ReLUs are fused into the BatchNorm nodes):
//   aspp.convs.0.{0,1}        1x1 conv, BN                     (2048 -> 256)
//   aspp.convs.{1,2,3}.{0,1}  3x3 atrous conv (rate r_i), BN   (2048 -> 256)
//   aspp.convs.4.{1,2}        image pooling: 1x1 conv, BN      (2048 -> 256; .0 is the pool)
//   aspp.project.{0,1}        1x1 conv, BN; then dropout       (1280 -> 256)
//   decoder.low_level.{0,1}   1x1 conv, BN on layer1           (256 -> 48)
//   decoder.fuse.{0,1}        3x3 conv, BN                     (256 + 48 -> 256)
//   decoder.fuse.{3,4}        3x3 conv, BN                     (256 -> 256)
//   classifier.{weight,bias}  1x1 conv with bias               (256 -> num_classes)
// Convolutions have no bias except the classifier's.
//
// The image-pooling branch normalises N values per channel (a 1x1 map): in training
// it needs a batch of at least 2 per BatchNorm (PyTorch refuses 1), or SyncBatchNorm.
#include <array>

#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"

namespace cohort::models {

struct DeepLabV3PlusOptions {
  int num_classes = 19;    // Cityscapes' train ids
  int output_stride = 16;  // 16: layer4 dilated; 8: layer3 and layer4 dilated
  // Atrous rates of ASPP's three 3x3 branches; all zero: {6, 12, 18} at output
  // stride 16, {12, 24, 36} at 8 (the same receptive field in pixels).
  std::array<int, 3> aspp_rates{0, 0, 0};
  int aspp_channels = 256;
  int low_level_channels = 48;  // projection of layer1 (the decoder's skip)
  int decoder_channels = 256;
  // After ASPP's projection (torchvision's ASPP uses 0.5; 0.1 as common DeepLabV3+
  // implementations). 0 keeps the Dropout node as an identity.
  double aspp_dropout = 0.1;
  int ignore_index = 255;
  core::Tensor class_weights;  // cross entropy's per-class weights (f32 [num_classes]; none)
  int backbone_depth = 50;     // 50 or 101 (bottleneck ResNets: layer1 256, layer4 2048 channels)
  int in_channels = 3;
  // Multi-task (segmentation + depth): a depth head (1x1 conv with bias on the
  // decoder's features, "depth_head.*", upsampled to the input) with a masked L1
  // loss against the inputs "depth" [N, H, W, 1] (metres) and "depth_valid"
  // [N, H, W, 1] (u8), and the two losses {seg_loss, depth_loss} combined into
  // "loss" per `loss_balancing` (default: learned uncertainty, UncertaintyWeighting
  // with parameter "loss.log_vars"; see core/nn/loss_balancing.hpp).
  bool depth_head = false;
  // Metres per unit of the depth head's output. The head regresses depth / scale
  // against targets divided by it, so that with a scale near the data's typical
  // depth both are of order 1 (like the segmentation logits) and the L1 loss is
  // in units of the scale; the "depth" node is scale x head, in metres. 1: the
  // head regresses metres (no extra nodes; the PyTorch parity references).
  double depth_scale = 1.0;
  core::nn::LossBalancing loss_balancing;
};

struct DeepLabV3PlusNodes {
  core::nn::NodeId image = -1;     // graph input "image" [N, H, W, in_channels] f32
  core::nn::NodeId label = -1;     // graph input "label" [N, H, W] u8/i32/i64
  core::nn::NodeId layer1 = -1;    // backbone features, stride 4, 256 channels
  core::nn::NodeId layer4 = -1;    // backbone features, stride output_stride, 2048 channels
  core::nn::NodeId aspp = -1;      // ASPP output (after dropout), aspp_channels
  core::nn::NodeId logits = -1;    // [N, H, W, num_classes]
  core::nn::NodeId loss = -1;      // what backward starts from: seg_loss, or the balanced sum
  core::nn::NodeId seg_loss = -1;  // mean cross entropy over non-ignored pixels
  // depth_head only:
  core::nn::NodeId depth = -1;         // [N, H, W, 1] metres
  core::nn::NodeId depth_target = -1;  // graph input "depth"
  core::nn::NodeId depth_valid = -1;   // graph input "depth_valid"
  core::nn::NodeId depth_loss = -1;    // mean |depth - target| / depth_scale over valid pixels
};

// Adds the graph inputs "image" and "label", the network and its loss to `graph`.
DeepLabV3PlusNodes add_deeplabv3plus(core::nn::Graph& graph,
                                     const DeepLabV3PlusOptions& options = {});

// The atrous rates `options` resolves to (its aspp_rates, or the output stride's default).
std::array<int, 3> deeplab_aspp_rates(const DeepLabV3PlusOptions& options);

}  // namespace cohort::models
