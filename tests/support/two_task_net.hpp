#pragma once
// A small dense two-task network for tests of multi-task training: a shared
// trunk (3x3 conv, ReLU -- or BatchNorm with fused ReLU --, 1x1 conv, ReLU) feeding a segmentation
// head (3 classes, cross entropy with ignore label 255) and a depth head (masked L1), their losses
// combined by `balancing`. Inputs: "image" [N, 6, 6, 2] f32, "label" [N, 6, 6] u8,
// "depth" [N, 6, 6, 1] f32, "depth_valid" [N, 6, 6, 1] u8; two_task_batch() makes
// them with very different numbers of counted pixels per image.
#include <map>
#include <string>

#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"

namespace cohort::testing {

struct TwoTaskNet {
  core::nn::Graph graph;
  core::nn::NodeId logits = -1, depth = -1, seg_loss = -1, depth_loss = -1, loss = -1;

  explicit TwoTaskNet(const core::nn::LossBalancing& balancing = {}, uint64_t seed = 23,
                      core::Device device = core::Device::cpu(),
                      core::DType compute = core::DType::f32, bool batch_norm = false);
};

inline constexpr int64_t kTwoTaskSide = 6;

// `rows` images for `step`: image i has 4 * i of its 36 pixels ignored (image 0
// none, image 7 almost all) and its depth valid on a different, growing part.
std::map<std::string, core::Tensor> two_task_batch(int step, int64_t rows);

}  // namespace cohort::testing
