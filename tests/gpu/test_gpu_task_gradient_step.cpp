// The trainer's step with per-task gradients (launch/task_gradients) on a GPU:
// PCGrad and GradNorm take the CPU's steps (parameters and GradNorm's weights),
// and in fp16 an overflowing step is skipped with GradNorm's weights and state
// left exactly as they were.
#ifdef COHORT_WITH_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/nn/loss_balancing.hpp"
#include "core/optim/loss_scaler.hpp"
#include "launch/engine.hpp"
#include "launch/task_gradients.hpp"
#include "launch/train_step.hpp"
#include "tests/gpu/test_gpu_common.hpp"
#include "tests/support/two_task_nodes.hpp"

namespace cohort::gputest {
namespace {

using Method = core::nn::LossBalancingMethod;

struct Result {
  std::vector<double> parameters, weights, state;
};

Result train(Context& ctx, Method method, int steps, DType compute = DType::f32,
             double loss_scale = 0) {
  core::nn::LossBalancing balancing;
  balancing.method = method;
  if (method == Method::pcgrad) balancing.weights = {1.0, 0.5};
  // BatchNorm in the trunk (cuDNN's on the GPU): two backwards from its one forward.
  testing::TwoTaskNet net(balancing, 23, ctx.device(), compute, /*batch_norm=*/true);
  const launch::ModelNodes nodes = testing::nodes_of(net);
  launch::TrainConfig config;
  config.momentum = 0.9;
  launch::TrainingEngine engine(net.graph, config, nullptr);
  launch::TaskGradientSettings settings;
  settings.method = method;
  launch::TaskGradients tasks(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine,
                              settings);
  core::optim::LossScalerConfig lc;
  lc.enabled = loss_scale > 0;
  if (lc.enabled) lc.init_scale = loss_scale;
  core::optim::LossScaler scaler(lc, ctx.device());
  for (int step = 0; step < steps; ++step) {
    launch::StepInputs batch;
    for (const auto& [name, t] : testing::two_task_batch(step, 4)) {
      Tensor on = t.to(ctx.device(), ctx.stream());
      // The image in the compute dtype; the depth target stays f32, as the loader
      // delivers it (the loss layer takes a 16-bit prediction against it).
      if (name == "image" && compute != DType::f32) on = core::ops::cast(ctx, on, compute);
      batch[name] = on;
    }
    launch::run_train_step(ctx, net.graph, nodes, engine, scaler, {batch},
                           {.lr = 0.1, .task_gradients = &tasks});
  }
  auto* layer = dynamic_cast<core::nn::WeightedLossSum*>(net.graph.layer(net.loss));
  Result r{net.graph.flat_params().to_vector(ctx.stream()),
           layer->weights(ctx).to_vector(ctx.stream()),
           {}};
  if (layer->is_gradnorm()) r.state = layer->gradnorm_state().to_vector(ctx.stream());
  return r;
}

double worst_relative(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
  return worst;
}

TEST(GpuTaskGradientStep, PcGradAndGradNormTakeTheCpuSteps) {
  for (Method method : {Method::pcgrad, Method::gradnorm}) {
    const Result on_gpu = train(gpu(), method, 3);
    const Result on_cpu = train(cpu(), method, 3);
    ASSERT_EQ(on_gpu.parameters.size(), on_cpu.parameters.size());
    EXPECT_LT(worst_relative(on_gpu.parameters, on_cpu.parameters), 1e-4)
        << (method == Method::pcgrad ? "pcgrad" : "gradnorm");
    EXPECT_LT(worst_relative(on_gpu.weights, on_cpu.weights), 1e-4);
  }
}

TEST(GpuTaskGradientStep, Fp16OverflowSkipsTheStepAndLeavesGradNormAlone) {
  const Result fresh = train(gpu(), Method::gradnorm, 0, DType::f16, 1024);
  // A loss scale of 2^40 overflows f16 gradients at once.
  const Result skipped = train(gpu(), Method::gradnorm, 1, DType::f16, std::ldexp(1.0, 40));
  EXPECT_EQ(skipped.parameters, fresh.parameters);
  EXPECT_EQ(skipped.weights, fresh.weights);
  EXPECT_EQ(skipped.state, fresh.state);
  const Result clean = train(gpu(), Method::gradnorm, 1, DType::f16, 1024);
  EXPECT_NE(clean.weights, fresh.weights) << "a clean fp16 step moves the weights";
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
