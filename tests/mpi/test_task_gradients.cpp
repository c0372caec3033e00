// Per-task gradients across ranks (launch/task_gradients, loss.balancing pcgrad
// and gradnorm): N ranks on B/N images each, at ZeRO stages 0 to 3, take the
// steps one process takes on all B images. The projection (PCGrad) and the
// weight update (GradNorm) use the Gram matrix of the reduced task gradients,
// formed from every rank's part and summed, so neither the world size nor the
// sharding may change them; GradNorm's learned weights must agree too.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/nn/loss_balancing.hpp"
#include "launch/engine.hpp"
#include "launch/task_gradients.hpp"
#include "launch/train_step.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"
#include "tests/support/two_task_nodes.hpp"

namespace cohort::launch {
namespace {

using core::Tensor;
using Method = core::nn::LossBalancingMethod;

constexpr int64_t kBatch = 8;

struct Trained {
  Tensor parameters, weights;
};

// Four SGD steps with momentum; with ranks each takes its rows of the global batch.
Trained train(Method method, bool ranks, int zero_stage = 0) {
  core::nn::LossBalancing balancing;
  balancing.method = method;
  if (method == Method::pcgrad) balancing.weights = {1.0, 0.5};
  // BatchNorm (synchronised over the ranks) in the trunk: its backward, which
  // all-reduces too, runs once per task from the same forward.
  testing::TwoTaskNet net(balancing, 23, core::Device::cpu(), core::DType::f32,
                          /*batch_norm=*/true);
  const ModelNodes nodes = testing::nodes_of(net);
  TrainConfig config;
  config.momentum = 0.9;
  config.zero_stage = zero_stage;
  std::unique_ptr<comm::Communicator> comm = ranks ? mpitest::make_comm() : nullptr;
  core::Context ctx(core::Device::cpu());
  TrainingEngine engine(net.graph, config, comm.get());
  TaskGradientSettings settings;
  settings.method = method;
  settings.gradnorm.lr = 0.05;
  TaskGradients tasks(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine, settings);
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  const int world = ranks ? mpitest::world_size() : 1, rank = ranks ? mpitest::world_rank() : 0;
  const int64_t rows = kBatch / world;
  for (int step = 0; step < 4; ++step) {
    StepInputs part;
    for (const auto& [name, t] : testing::two_task_batch(step, kBatch))
      part[name] = t.slice(rank * rows, (rank + 1) * rows);
    run_train_step(ctx, net.graph, nodes, engine, scaler, {part},
                   {.lr = 0.2, .task_gradients = &tasks});
  }
  auto* weights = dynamic_cast<core::nn::WeightedLossSum*>(net.graph.layer(net.loss));
  return {engine.full_parameters(ctx).clone(), weights->weights(ctx).clone()};
}

TEST(TaskGradientsRanks, PcGradOnNRanksEqualsOneProcessAtEveryZeroStage) {
  const Trained alone = train(Method::pcgrad, false);
  for (int stage : {0, 1, 2, 3}) {
    const Trained ranks = train(Method::pcgrad, true, stage);
    EXPECT_LT(mpitest::max_relative_difference(ranks.parameters, alone.parameters), 1e-5)
        << mpitest::world_size() << " ranks, ZeRO-" << stage;
  }
}

TEST(TaskGradientsRanks, GradNormOnNRanksEqualsOneProcessAtEveryZeroStage) {
  const Trained alone = train(Method::gradnorm, false);
  const std::vector<double> w = alone.weights.to_vector();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0], 1.0) << "GradNorm moved the weights";
  EXPECT_NEAR(w[0] + w[1], 2.0, 1e-5) << "the weights sum to the task count";
  for (int stage : {0, 1, 2, 3}) {
    const Trained ranks = train(Method::gradnorm, true, stage);
    EXPECT_LT(mpitest::max_relative_difference(ranks.parameters, alone.parameters), 1e-5)
        << mpitest::world_size() << " ranks, ZeRO-" << stage;
    EXPECT_LT(mpitest::max_relative_difference(ranks.weights, alone.weights), 1e-5)
        << mpitest::world_size() << " ranks, ZeRO-" << stage;
  }
}

}  // namespace
}  // namespace cohort::launch
