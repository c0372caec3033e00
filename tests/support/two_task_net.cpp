#include "tests/support/two_task_net.hpp"

#include <memory>
#include <random>
#include <vector>

#include "core/nn/layers.hpp"

namespace cohort::testing {

using core::DType;
using core::Shape;
using core::Tensor;

TwoTaskNet::TwoTaskNet(const core::nn::LossBalancing& balancing, uint64_t seed, core::Device device,
                       core::DType compute, bool batch_norm) {
  using namespace core::nn;
  const NodeId image = graph.input("image");
  const NodeId label = graph.input("label");
  const NodeId target = graph.input("depth");
  const NodeId valid = graph.input("depth_valid");
  Conv2dOptions c;
  c.in_channels = 2;
  c.out_channels = 4;
  c.bias = true;
  c.geometry.pad_h = c.geometry.pad_w = 1;
  NodeId h = graph.add("conv", std::make_unique<Conv2d>(c), {image});
  if (batch_norm) {
    BatchNormOptions bn;
    bn.channels = 4;
    bn.relu = true;
    h = graph.add("bn", std::make_unique<BatchNorm2d>(bn), {h});
  } else {
    h = graph.add("relu", std::make_unique<ReLU>(), {h});
  }
  Conv2dOptions point;
  point.in_channels = 4;
  point.out_channels = 4;
  point.kernel_h = point.kernel_w = 1;
  point.bias = true;
  h = graph.add("trunk", std::make_unique<Conv2d>(point), {h});
  h = graph.add("trunk_relu", std::make_unique<ReLU>(), {h});
  point.out_channels = 3;
  logits = graph.add("seg", std::make_unique<Conv2d>(point), {h});
  point.out_channels = 1;
  depth = graph.add("depth_head", std::make_unique<Conv2d>(point), {h});
  seg_loss = graph.add("seg_loss", std::make_unique<CrossEntropyLoss>(), {logits, label});
  depth_loss = graph.add("depth_loss",
                         std::make_unique<RegressionLossLayer>(core::ops::RegressionLoss::l1, true),
                         {depth, target, valid});
  loss = add_balanced_loss(graph, "loss", {seg_loss, depth_loss}, balancing);
  graph.build(device, seed, compute);
}

std::map<std::string, Tensor> two_task_batch(int step, int64_t rows) {
  constexpr int64_t side = kTwoTaskSide, pixels_per_image = side * side;
  std::mt19937_64 rng(900 + static_cast<uint64_t>(step));
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const int64_t pixels = rows * pixels_per_image;
  std::vector<double> image(static_cast<size_t>(pixels * 2)), label(pixels), depth(pixels),
      valid(pixels);
  for (double& v : image)
    v = u(rng);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t p = 0; p < pixels_per_image; ++p) {
      const size_t at = static_cast<size_t>(i * pixels_per_image + p);
      label[at] = p < 4 * i ? 255 : static_cast<double>((p + i + step) % 3);
      depth[at] = 2.0 + u(rng);
      valid[at] = (p * 7 + i) % 36 < 30 - 3 * i ? 1 : 0;
    }
  return {{"image", Tensor::from_vector(image, Shape{rows, side, side, 2})},
          {"label", Tensor::from_vector(label, Shape{rows, side, side}, DType::u8)},
          {"depth", Tensor::from_vector(depth, Shape{rows, side, side, 1})},
          {"depth_valid", Tensor::from_vector(valid, Shape{rows, side, side, 1}, DType::u8)}};
}

}  // namespace cohort::testing
