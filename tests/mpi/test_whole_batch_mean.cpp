// Whole-batch means across ranks (launch/train_step, loss.normalize global): a
// dense two-task network (per-pixel cross entropy with ignored pixels, masked L1
// depth, balanced by learned uncertainty weights) trained by N ranks on B/N
// images each, in 1 or 2 micro-batches, at ZeRO stages 0, 2 and 3, ends where one
// process training on all B images ends, although the ranks' images hold very different numbers of
// counted pixels. Averaging each rank's own mean (per_rank, as PyTorch's DDP) does not.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "core/nn/layers.hpp"
#include "launch/engine.hpp"
#include "launch/train_step.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

constexpr int64_t kBatch = 8, kSide = 6;

struct SegDepthNet {
  core::nn::Graph graph;
  ModelNodes nodes;

  SegDepthNet() {
    using namespace core::nn;
    const NodeId image = graph.input("image");
    const NodeId label = graph.input("label");
    const NodeId depth = graph.input("depth");
    const NodeId valid = graph.input("depth_valid");
    Conv2dOptions c;
    c.in_channels = 2;
    c.out_channels = 4;
    c.bias = true;
    c.geometry.pad_h = c.geometry.pad_w = 1;
    NodeId h = graph.add("conv", std::make_unique<Conv2d>(c), {image});
    h = graph.add("relu", std::make_unique<ReLU>(), {h});
    Conv2dOptions head;
    head.in_channels = 4;
    head.out_channels = 3;
    head.kernel_h = head.kernel_w = 1;
    head.bias = true;
    nodes.logits = graph.add("seg", std::make_unique<Conv2d>(head), {h});
    head.out_channels = 1;
    nodes.depth = graph.add("depth_head", std::make_unique<Conv2d>(head), {h});
    nodes.seg_loss =
        graph.add("seg_loss", std::make_unique<CrossEntropyLoss>(), {nodes.logits, label});
    nodes.depth_loss = graph.add(
        "depth_loss", std::make_unique<RegressionLossLayer>(core::ops::RegressionLoss::l1, true),
        {nodes.depth, depth, valid});
    nodes.loss = graph.add("loss", std::make_unique<UncertaintyWeighting>(2),
                           {nodes.seg_loss, nodes.depth_loss});
    nodes.dense = true;
    graph.build(core::Device::cpu(), 23);
  }
};

// The global batch of `step`: image i has 4 * i of its 36 pixels ignored (image
// 0 none, image 7 almost all) and its depth valid on a different, growing part.
StepInputs global_batch(int step) {
  std::mt19937_64 rng(900 + static_cast<uint64_t>(step));
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const int64_t pixels = kBatch * kSide * kSide;
  std::vector<double> image(static_cast<size_t>(pixels * 2)), label(pixels), depth(pixels),
      valid(pixels);
  for (double& v : image)
    v = u(rng);
  for (int64_t i = 0; i < kBatch; ++i)
    for (int64_t p = 0; p < kSide * kSide; ++p) {
      const size_t at = static_cast<size_t>(i * kSide * kSide + p);
      label[at] = p < 4 * i ? 255 : static_cast<double>((p + i + step) % 3);
      depth[at] = 2.0 + u(rng);
      valid[at] = (p * 7 + i) % 36 < 30 - 3 * i ? 1 : 0;
    }
  return {{"image", Tensor::from_vector(image, Shape{kBatch, kSide, kSide, 2})},
          {"label", Tensor::from_vector(label, Shape{kBatch, kSide, kSide}, DType::u8)},
          {"depth", Tensor::from_vector(depth, Shape{kBatch, kSide, kSide, 1})},
          {"depth_valid", Tensor::from_vector(valid, Shape{kBatch, kSide, kSide, 1}, DType::u8)}};
}

// Rows [begin, begin + rows) of every input, in `micro` micro-batches.
std::vector<StepInputs> parts_of(const StepInputs& batch, int64_t begin, int64_t rows, int micro) {
  std::vector<StepInputs> parts(static_cast<size_t>(micro));
  const int64_t m = rows / micro;
  for (int k = 0; k < micro; ++k)
    for (const auto& [name, t] : batch)
      parts[static_cast<size_t>(k)][name] = t.slice(begin + k * m, begin + (k + 1) * m);
  return parts;
}

// Three SGD steps; with ranks each takes its rows of the global batch.
Tensor train(bool ranks, int micro, bool whole_batch_mean, int zero_stage = 0) {
  SegDepthNet net;
  TrainConfig config;
  config.momentum = 0.9;
  config.weight_decay = 1e-4;
  config.zero_stage = zero_stage;
  std::unique_ptr<comm::Communicator> comm = ranks ? mpitest::make_comm() : nullptr;
  core::Context ctx(core::Device::cpu());
  TrainingEngine engine(net.graph, config, comm.get());
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  const int world = ranks ? mpitest::world_size() : 1, rank = ranks ? mpitest::world_rank() : 0;
  const int64_t rows = kBatch / world;
  for (int step = 0; step < 3; ++step)
    run_train_step(ctx, net.graph, net.nodes, engine, scaler,
                   parts_of(global_batch(step), rank * rows, rows, micro),
                   {.lr = 0.2, .whole_batch_mean = whole_batch_mean});
  // ZeRO-3 keeps only its shard of the parameters: gathered to compare.
  return engine.full_parameters(ctx).clone();
}

TEST(WholeBatchMean, NRanksEqualOneProcessWithUnevenValidPixels) {
  const Tensor alone = train(false, 1, true);
  const int64_t rows = kBatch / mpitest::world_size();
  for (int stage : {0, 2, 3})
    for (int micro : {1, 2}) {
      if (rows % micro != 0 || rows < micro) continue;
      const Tensor ranks = train(true, micro, true, stage);
      EXPECT_LT(mpitest::max_relative_difference(ranks, alone), 1e-5)
          << mpitest::world_size() << " ranks x " << micro << " micro-batches, ZeRO-" << stage;
    }
  // The comparison can fail: each part's own mean weighs the pixels differently.
  if (mpitest::world_size() > 1) {
    EXPECT_GT(mpitest::max_relative_difference(train(true, 1, false), alone), 1e-3)
        << "per-rank means equal the whole batch's although the ranks count different pixels";
  }
}

}  // namespace
}  // namespace cohort::launch
