// Per-task gradients in one process (launch/task_gradients): the trainer's step
// with loss.balancing pcgrad equals PCGrad worked by hand from each task's own
// gradient (graph backward from one loss at a time, projected in double here),
// and with gradnorm takes the weighted sum with GradNorm's weights and then
// moves the weights the way the paper's rule says.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/loss_balancing.hpp"
#include "launch/engine.hpp"
#include "launch/task_gradients.hpp"
#include "launch/train_step.hpp"
#include "tests/support/gradnorm_reference.hpp"
#include "tests/support/two_task_nodes.hpp"

namespace cohort::launch {
namespace {

using core::Tensor;
using Method = core::nn::LossBalancingMethod;
using Vec = std::vector<double>;

constexpr double kLr = 0.2;

core::nn::LossBalancing balancing_of(Method method, Vec weights = {}) {
  core::nn::LossBalancing b;
  b.method = method;
  b.weights = std::move(weights);
  return b;
}

TaskGradientSettings settings_of(Method method, double gradnorm_lr = 0.025) {
  TaskGradientSettings s;
  s.method = method;
  s.gradnorm.lr = gradnorm_lr;
  return s;
}

// Plain SGD: the step is params - lr * gradient.
TrainConfig plain_sgd() {
  TrainConfig c;
  c.momentum = 0;
  c.weight_decay = 0;
  return c;
}

using testing::nodes_of;

// Each task's gradient alone at the parameters `net` has now (and, into
// `losses` when given, each task's loss).
std::vector<Vec> task_gradients_by_hand(testing::TwoTaskNet& net, const StepInputs& batch,
                                        Vec* losses = nullptr) {
  core::Context ctx(core::Device::cpu());
  std::vector<Vec> out;
  if (losses != nullptr) losses->clear();
  for (core::nn::NodeId loss : {net.seg_loss, net.depth_loss}) {
    net.graph.forward(ctx, batch, {.training = true}, {net.seg_loss, net.depth_loss});
    net.graph.backward(ctx, {{loss, Tensor()}});
    out.push_back(net.graph.flat_grads().to_vector());
    if (losses != nullptr) losses->push_back(net.graph.output(loss).item());
  }
  return out;
}

// Whether flat element e belongs to a layer both tasks use (conv, bn, trunk).
std::vector<bool> shared_elements(const testing::TwoTaskNet& net) {
  std::vector<bool> shared(static_cast<size_t>(net.graph.num_parameters()), false);
  for (const core::nn::Parameter& p : net.graph.parameters())
    if (p.name.rfind("conv.", 0) == 0 || p.name.rfind("bn.", 0) == 0 ||
        p.name.rfind("trunk.", 0) == 0)
      for (int64_t e = 0; e < p.shape.numel(); ++e)
        shared[static_cast<size_t>(p.offset + e)] = true;
  return shared;
}

double dot(const Vec& a, const Vec& b, const std::vector<bool>& on) {
  double s = 0;
  for (size_t e = 0; e < a.size(); ++e)
    if (on[e]) s += a[e] * b[e];
  return s;
}

struct Engine {
  TrainingEngine engine;
  TaskGradients tasks;
  core::optim::LossScaler scaler{core::optim::LossScalerConfig{}, core::Device::cpu()};

  Engine(core::Context& ctx, testing::TwoTaskNet& net, Method method, double gradnorm_lr = 0.025)
      : engine(net.graph, plain_sgd(), nullptr),
        tasks(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine,
              settings_of(method, gradnorm_lr)) {}
  void step(core::Context& ctx, testing::TwoTaskNet& net, const StepInputs& batch) {
    run_train_step(ctx, net.graph, nodes_of(net), engine, scaler, {batch},
                   {.lr = kLr, .task_gradients = &tasks});
  }
};

TEST(TaskGradients, PcGradStepEqualsTheProjectionByHand) {
  const Vec w = {1.0, 0.5};
  const core::nn::LossBalancing balancing = balancing_of(Method::pcgrad, w);
  // BatchNorm in the trunk: its backward runs once per task from one forward.
  testing::TwoTaskNet net(balancing, 23, core::Device::cpu(), core::DType::f32, true);
  testing::TwoTaskNet twin(balancing, 23, core::Device::cpu(), core::DType::f32, true);
  core::Context ctx(core::Device::cpu());
  Engine run(ctx, net, Method::pcgrad);
  const std::vector<bool> shared = shared_elements(net);
  int conflicts = 0;
  for (int step = 0; step < 6; ++step) {
    const StepInputs batch = testing::two_task_batch(step, 4);
    const Vec before = net.graph.flat_params().to_vector();
    twin.graph.flat_params().copy_from(net.graph.flat_params());
    std::vector<Vec> h = task_gradients_by_hand(twin, batch);
    for (size_t t = 0; t < 2; ++t)
      for (double& v : h[t])
        v *= w[t];
    const double d = dot(h[0], h[1], shared);
    const double n0 = dot(h[0], h[0], shared), n1 = dot(h[1], h[1], shared);
    conflicts += d < 0 ? 1 : 0;
    Vec expected(before.size());
    for (size_t e = 0; e < before.size(); ++e) {
      double g = h[0][e] + h[1][e];
      // Each projected off the other's original gradient when they conflict.
      if (shared[e] && d < 0) g -= d / n1 * h[1][e] + d / n0 * h[0][e];
      expected[e] = before[e] - kLr * g;
    }
    run.step(ctx, net, batch);
    const Vec after = net.graph.flat_params().to_vector();
    double plain_difference = 0;
    for (size_t e = 0; e < after.size(); ++e) {
      ASSERT_NEAR(after[e], expected[e], 1e-6 + 1e-5 * std::abs(expected[e]))
          << "step " << step << ", element " << e << (shared[e] ? " (shared)" : "");
      plain_difference =
          std::max(plain_difference, std::abs(before[e] - kLr * (h[0][e] + h[1][e]) - after[e]));
    }
    if (d < 0) {
      EXPECT_GT(plain_difference, 1e-6) << "step " << step << ": nothing was projected";
    }
  }
  EXPECT_GE(conflicts, 1) << "the batches never made the tasks conflict: the test shows nothing";
  EXPECT_EQ(run.tasks.shared_parameters(), 2 * 9 * 4 + 4 + 2 * 4 + 4 * 4 + 4);
}

TEST(TaskGradients, GradNormWeighsTheTasksAndMovesTheWeightsByItsRule) {
  const core::nn::LossBalancing balancing = balancing_of(Method::gradnorm);
  // BatchNorm in the trunk: its backward runs once per task from one forward.
  testing::TwoTaskNet net(balancing, 23, core::Device::cpu(), core::DType::f32, true);
  testing::TwoTaskNet twin(balancing, 23, core::Device::cpu(), core::DType::f32, true);
  core::Context ctx(core::Device::cpu());
  constexpr double kWeightLr = 0.05;
  Engine run(ctx, net, Method::gradnorm, kWeightLr);
  EXPECT_EQ(run.tasks.gradnorm_layer(), "trunk") << "the last layer with weights both tasks use";
  auto* layer = dynamic_cast<core::nn::WeightedLossSum*>(net.graph.layer(net.loss));
  ASSERT_NE(layer, nullptr);
  std::vector<bool> trunk(static_cast<size_t>(net.graph.num_parameters()), false);
  for (const core::nn::Parameter& p : net.graph.parameters())
    if (p.name.rfind("trunk.", 0) == 0)
      for (int64_t e = 0; e < p.shape.numel(); ++e)
        trunk[static_cast<size_t>(p.offset + e)] = true;

  // The weights each step must end with: GradNorm's rule (written out in
  // double in tests/support) on the norms of each task's own gradient on the
  // trunk and the task losses, both worked out here.
  core::ops::GradNormArgs args;
  args.lr = kWeightLr;
  testing::GradNormReference reference(2, args);
  Vec weights = {1.0, 1.0};
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const StepInputs batch = testing::two_task_batch(step, 4);
    const Vec before = net.graph.flat_params().to_vector();
    twin.graph.flat_params().copy_from(net.graph.flat_params());
    Vec losses;
    const std::vector<Vec> g = task_gradients_by_hand(twin, batch, &losses);
    run.step(ctx, net, batch);
    const Vec after = net.graph.flat_params().to_vector();
    for (size_t e = 0; e < after.size(); ++e) {
      const double expected = before[e] - kLr * (weights[0] * g[0][e] + weights[1] * g[1][e]);
      ASSERT_NEAR(after[e], expected, 1e-6 + 1e-5 * std::abs(expected)) << "element " << e;
    }
    const double n0 = std::sqrt(dot(g[0], g[0], trunk));
    const double n1 = std::sqrt(dot(g[1], g[1], trunk));
    reference.update({n0, n1}, {losses[0], losses[1], 1.0});
    const Vec now = layer->weights(ctx).to_vector();
    for (size_t t = 0; t < 2; ++t)
      EXPECT_NEAR(now[t], reference.w[t], 1e-5) << "task " << t;
    if (step == 0) {
      // All r_t are 1 at the first update, so the target is the mean norm: the
      // task with the larger gradient on the trunk loses weight. Adam's first
      // step moves each weight by its rate (the sum stays 2).
      ASSERT_NE(n0, n1);
      const double sign = n0 > n1 ? 1.0 : -1.0;
      EXPECT_NEAR(now[0], 1.0 - sign * kWeightLr, 1e-6);
      EXPECT_NEAR(now[1], 1.0 + sign * kWeightLr, 1e-6);
    }
    EXPECT_NEAR(now[0] + now[1], 2.0, 1e-6);
    weights = now;
  }
  const std::vector<double> state = layer->gradnorm_state().to_vector();
  ASSERT_EQ(state.size(), 8u);
  EXPECT_GT(state[0], 0.0) << "L(0) of segmentation kept";
  EXPECT_GT(state[1], 0.0) << "L(0) of depth kept";
  EXPECT_EQ(state[6], 4.0) << "four updates counted";
}

TEST(TaskGradients, MisuseIsRefusedWithTheReason) {
  core::Context ctx(core::Device::cpu());
  testing::TwoTaskNet fixed(balancing_of(Method::fixed));
  TrainingEngine engine(fixed.graph, TrainConfig{}, nullptr);
  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string not_gradnorm = error_of([&] {
    TaskGradients t(ctx, fixed.graph, {fixed.seg_loss, fixed.depth_loss}, fixed.loss, engine,
                    settings_of(Method::gradnorm));
  });
  EXPECT_NE(not_gradnorm.find("lacks GradNorm's weights"), std::string::npos) << not_gradnorm;

  testing::TwoTaskNet net(balancing_of(Method::gradnorm));
  TrainingEngine engine2(net.graph, TrainConfig{}, nullptr);
  TaskGradientSettings head = settings_of(Method::gradnorm);
  head.gradnorm_layer = "seg";
  const std::string unshared = error_of([&] {
    TaskGradients t(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine2, head);
  });
  EXPECT_NE(unshared.find("loss.gradnorm_layer 'seg'"), std::string::npos) << unshared;
  EXPECT_NE(unshared.find("every task uses"), std::string::npos) << unshared;
  head.gradnorm_layer = "decoder.fuse.3";  // DeepLab's, not this network's
  const std::string unknown = error_of([&] {
    TaskGradients t(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine2, head);
  });
  EXPECT_NE(unknown.find("loss.gradnorm_layer 'decoder.fuse.3' is no layer of the model"),
            std::string::npos)
      << unknown;
  // A frozen layer has no gradient to compare: the weights would never move.
  net.graph.set_trainable("trunk.", false);
  head.gradnorm_layer = "trunk";
  const std::string frozen = error_of([&] {
    TaskGradients t(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine2, head);
  });
  EXPECT_NE(frozen.find("frozen"), std::string::npos) << frozen;
  net.graph.set_trainable("trunk.", true);

  // Two micro-batches would need a gradient buffer per task and micro-batch.
  TaskGradients tasks(ctx, net.graph, {net.seg_loss, net.depth_loss}, net.loss, engine2,
                      settings_of(Method::gradnorm));
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  const StepInputs batch = testing::two_task_batch(0, 4);
  StepInputs a, b;
  for (const auto& [name, t] : batch) {
    a[name] = t.slice(0, 2);
    b[name] = t.slice(2, 4);
  }
  const std::string micro = error_of([&] {
    run_train_step(ctx, net.graph, nodes_of(net), engine2, scaler, {a, b},
                   {.lr = kLr, .task_gradients = &tasks});
  });
  EXPECT_NE(micro.find("one micro-batch"), std::string::npos) << micro;
}

}  // namespace
}  // namespace cohort::launch
