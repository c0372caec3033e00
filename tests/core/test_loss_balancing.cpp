// Multi-task loss balancing with weights that are not trained (loss.balancing
// fixed and dwa): the weighted-sum ops by hand values and central differences,
// the running loss sums, Dynamic Weight Average's formula, and the WeightedLossSum
// layer in a small two-task graph (fixed weights scale each task's gradient; DWA
// accumulates only in training, sums over ranks through a reducer and sets the
// weights once per epoch from its buffers).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "core/error.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/nn/loss_balancing.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core {
namespace {

using nn::Graph;
using nn::NodeId;
using testing::expect_close;
using testing::expect_gradient;
using testing::random_tensor;

Tensor scalar(double v, DType dtype = DType::f64) {
  return Tensor::from_vector({v}, Shape{1}, dtype);
}

using cohort::testing::error_of;

TEST(WeightedLossSum, HandValues) {
  Context ctx;
  const std::vector<Tensor> losses = {scalar(2.0), scalar(0.5)};
  const Tensor w = Tensor::from_vector({1.0, 0.25}, Shape{2}, DType::f64);
  EXPECT_DOUBLE_EQ(ops::weighted_loss_sum(ctx, losses, w).item(), 2.0 + 0.125);
  const std::vector<Tensor> d = ops::weighted_loss_sum_backward(ctx, scalar(3.0), w);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_DOUBLE_EQ(d[0].item(), 3.0);
  EXPECT_DOUBLE_EQ(d[1].item(), 0.75);
}

TEST(WeightedLossSum, GradientsByCentralDifferences) {
  Context ctx;
  std::vector<Tensor> losses;
  for (int i = 0; i < 3; ++i)
    losses.push_back(random_tensor(Shape{1}, 300 + i, 0.1, 3.0));
  const Tensor w = random_tensor(Shape{3}, 310, 0.0, 2.0);
  const Tensor r = scalar(-0.7);
  const std::vector<Tensor> d = ops::weighted_loss_sum_backward(ctx, r, w);
  auto forward = [&] { return ops::weighted_loss_sum(ctx, losses, w); };
  for (size_t i = 0; i < losses.size(); ++i)
    expect_gradient("d/d loss " + std::to_string(i), forward, losses[i], r, d[i]);
}

TEST(WeightedLossSum, RunningSumsAddEachLossAndOneToTheCount) {
  Context ctx;
  Tensor sums = Tensor::from_vector({1.0, 2.0, 5.0}, Shape{3}, DType::f32);
  ops::accumulate_loss_sums(ctx, {scalar(0.5, DType::f32), scalar(0.25, DType::f32)}, sums);
  EXPECT_EQ(sums.to_vector(), (std::vector<double>{1.5, 2.25, 6.0}));
}

TEST(WeightedLossSum, OpErrorsNameTheOpAndTheShapes) {
  Context ctx;
  const Tensor w = Tensor::from_vector({1.0, 1.0}, Shape{2}, DType::f32);
  const std::string count =
      error_of([&] { ops::weighted_loss_sum(ctx, {scalar(1.0, DType::f32)}, w); });
  EXPECT_NE(count.find("weighted_loss_sum"), std::string::npos) << count;
  EXPECT_NE(count.find("one weight per loss"), std::string::npos) << count;
  const std::string dtype = error_of([&] {
    ops::weighted_loss_sum(ctx, {scalar(1.0), scalar(1.0)}, w);
  });
  EXPECT_NE(dtype.find("f32"), std::string::npos) << dtype;
  Tensor short_sums = Tensor::zeros(Shape{2}, DType::f32);
  const std::string sums = error_of([&] {
    ops::accumulate_loss_sums(ctx, {scalar(1.0, DType::f32), scalar(1.0, DType::f32)}, short_sums);
  });
  EXPECT_NE(sums.find("accumulate_loss_sums"), std::string::npos) << sums;
  EXPECT_NE(sums.find("[3]"), std::string::npos) << sums;
}

TEST(DynamicWeightAverage, WeightsFollowTheFormula) {
  // r = {1/2, 0.5/0.5} = {0.5, 1}; T = 2.
  const std::vector<double> w = nn::dwa_weights({1.0, 0.5}, {2.0, 0.5}, 2.0);
  const double a = std::exp(0.25), b = std::exp(0.5);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NEAR(w[0], 2 * a / (a + b), 1e-12);
  EXPECT_NEAR(w[1], 2 * b / (a + b), 1e-12);
  EXPECT_GT(w[1], w[0]) << "the task whose loss fell less gets more weight";
  // Three tasks, another temperature: the weights sum to K.
  const std::vector<double> three = nn::dwa_weights({0.9, 0.3, 2.0}, {1.0, 0.6, 1.0}, 0.5);
  double total = 0, denominator = 0;
  for (double r : {0.9, 0.5, 2.0})
    denominator += std::exp(r / 0.5);
  for (size_t k = 0; k < 3; ++k) {
    total += three[k];
    EXPECT_NEAR(three[k], 3 * std::exp(std::vector<double>{0.9, 0.5, 2.0}[k] / 0.5) / denominator,
                1e-12);
  }
  EXPECT_NEAR(total, 3.0, 1e-12);
  // Equal ratios: all 1. A large temperature: close to 1.
  for (double x : nn::dwa_weights({2.0, 4.0}, {1.0, 2.0}, 2.0))
    EXPECT_NEAR(x, 1.0, 1e-12);
  for (double x : nn::dwa_weights({1.0, 0.1}, {0.1, 1.0}, 1e6))
    EXPECT_NEAR(x, 1.0, 1e-4);
  // A ratio that cannot be formed (a mean of 0 before, an infinite quotient)
  // counts as 1; a huge finite one does not overflow exp().
  EXPECT_NEAR(nn::dwa_weights({1.0, 1.0}, {0.0, 1.0}, 2.0)[0], 1.0, 1e-12);
  EXPECT_NEAR(nn::dwa_weights({1e300, 1.0}, {1e-300, 1.0}, 2.0)[0], 1.0, 1e-12);
  const std::vector<double> huge = nn::dwa_weights({1e3, 1.0}, {1e-3, 1.0}, 1.0);
  EXPECT_TRUE(std::isfinite(huge[0]) && std::isfinite(huge[1]));
  EXPECT_NEAR(huge[0], 2.0, 1e-12);
  EXPECT_NE(error_of([] { nn::dwa_weights({1.0}, {1.0}, 0.0); }).find("temperature"),
            std::string::npos);
}

// x [4, 3] -> shared (Linear 3->5, ReLU) -> head_a, head_b (Linear 5->1) -> L1
// against targets -> loss_a, loss_b -> balanced "loss".
struct TwoTaskNet {
  Graph g;
  NodeId loss_a, loss_b, loss;
  explicit TwoTaskNet(const nn::LossBalancing& balancing, Device device = Device::cpu()) {
    const NodeId x = g.input("x"), ta = g.input("ta"), tb = g.input("tb");
    NodeId h = g.add("shared", std::make_unique<nn::Linear>(3, 5), {x});
    h = g.add("relu", std::make_unique<nn::ReLU>(), {h});
    const NodeId a = g.add("head_a", std::make_unique<nn::Linear>(5, 1), {h});
    const NodeId b = g.add("head_b", std::make_unique<nn::Linear>(5, 1), {h});
    loss_a =
        g.add("loss_a", std::make_unique<nn::RegressionLossLayer>(ops::RegressionLoss::l1, false),
              {a, ta});
    loss_b =
        g.add("loss_b", std::make_unique<nn::RegressionLossLayer>(ops::RegressionLoss::l1, false),
              {b, tb});
    loss = nn::add_balanced_loss(g, "loss", {loss_a, loss_b}, balancing);
    g.build(device, 11);
  }
  std::map<std::string, Tensor> inputs(uint64_t seed) const {
    return {{"x", random_tensor(Shape{4, 3}, seed, -1, 1, DType::f32)},
            {"ta", random_tensor(Shape{4, 1}, seed + 1, 2, 3, DType::f32)},
            {"tb", random_tensor(Shape{4, 1}, seed + 2, -3, -2, DType::f32)}};
  }
  // The shared layer's weight gradient from a training step at `seed`, backward
  // from the node `from` (the outputs of all three losses are kept).
  Tensor shared_grad(Context& ctx, uint64_t seed, NodeId from) {
    g.forward(ctx, inputs(seed), {.training = true}, {loss, loss_a, loss_b});
    g.backward(ctx, {{from, Tensor()}});
    return g.parameter("shared.weight").grad.clone();
  }
};

nn::LossBalancing fixed(std::vector<double> weights) {
  nn::LossBalancing b;
  b.method = nn::LossBalancingMethod::fixed;
  b.weights = std::move(weights);
  return b;
}

TEST(WeightedLossSumLayer, FixedWeightsScaleEachTasksGradient) {
  Context ctx;
  // Each task's own gradient, from the same network (same seed and parameters).
  TwoTaskNet plain(fixed({}));
  const Tensor ga = plain.shared_grad(ctx, 5, plain.loss_a);
  const Tensor gb = plain.shared_grad(ctx, 5, plain.loss_b);
  ASSERT_GT(std::abs(ga.to_vector()[0]) + std::abs(gb.to_vector()[0]), 0.0);

  // Weights 1, 0: exactly the first task's gradient, and none for the second head.
  TwoTaskNet only_a(fixed({1.0, 0.0}));
  EXPECT_EQ(only_a.shared_grad(ctx, 5, only_a.loss).to_vector(), ga.to_vector());
  for (double v : only_a.g.parameter("head_b.weight").grad.to_vector())
    EXPECT_EQ(v, 0.0);
  EXPECT_EQ(only_a.g.output(only_a.loss).item(), only_a.g.output(only_a.loss_a).item());

  // Weights 2, 0.5: 2 ga + 0.5 gb; the default (no weights) is 1, 1.
  TwoTaskNet mixed(fixed({2.0, 0.5}));
  const Tensor expected = ops::add(ctx, ops::scale(ctx, ga, 2.0), ops::scale(ctx, gb, 0.5));
  expect_close("2 ga + 0.5 gb", mixed.shared_grad(ctx, 5, mixed.loss), expected, 1e-5, 1e-7);
  EXPECT_NEAR(mixed.g.output(mixed.loss).item(),
              2.0 * mixed.g.output(mixed.loss_a).item() + 0.5 * mixed.g.output(mixed.loss_b).item(),
              1e-5);
  expect_close("1 ga + 1 gb", plain.shared_grad(ctx, 5, plain.loss), ops::add(ctx, ga, gb), 1e-5,
               1e-7);
  EXPECT_TRUE(plain.g.buffers().empty()) << "fixed weights are configuration, not state";

  EXPECT_NE(error_of([] {
              TwoTaskNet bad(fixed({1.0, 2.0, 3.0}));
            }).find("3 fixed weights for 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { TwoTaskNet bad(fixed({1.0, -1.0})); }).find(">= 0"), std::string::npos);
}

TEST(WeightedLossSumLayer, DefaultIsLearnedUncertainty) {
  TwoTaskNet net({});
  EXPECT_EQ(net.g.layer(net.loss)->kind(), "UncertaintyWeighting");
  EXPECT_EQ(net.g.parameter("loss.log_vars").shape, Shape{2});
}

// Doubles what it reduces: two ranks that saw the same losses.
class TwoEqualRanks : public ops::StatsReducer {
 public:
  void all_reduce_sum(Context&, Tensor& values) override {
    for (int64_t i = 0; i < values.numel(); ++i)
      values.data<float>()[i] *= 2;
  }
};

nn::LossBalancing dwa(double temperature = 2.0) {
  nn::LossBalancing b;
  b.method = nn::LossBalancingMethod::dwa;
  b.temperature = temperature;
  return b;
}

// Runs one training forward at `seed` and returns {loss_a, loss_b, total}.
std::vector<double> train_forward(TwoTaskNet& net, Context& ctx, uint64_t seed) {
  net.g.forward(ctx, net.inputs(seed), {.training = true}, {net.loss, net.loss_a, net.loss_b});
  return {net.g.output(net.loss_a).item(), net.g.output(net.loss_b).item(),
          net.g.output(net.loss).item()};
}

std::vector<double> buffer_values(Graph& g, const std::string& name) {
  for (const nn::Buffer& b : g.buffers())
    if (b.name == name) return b.value.to_vector();
  ADD_FAILURE() << "no buffer " << name;
  return {};
}

TEST(WeightedLossSumLayer, DwaAccumulatesInTrainingAndSetsWeightsPerEpoch) {
  Context ctx;
  TwoTaskNet net(dwa(2.0));
  auto* layer = dynamic_cast<nn::WeightedLossSum*>(net.g.layer(net.loss));
  ASSERT_NE(layer, nullptr);
  ASSERT_TRUE(layer->is_dwa());
  EXPECT_EQ(buffer_values(net.g, "loss.weights"), (std::vector<double>{1, 1}));
  ASSERT_EQ(buffer_values(net.g, "loss.dwa_stats").size(), 9u) << "[3, K + 1]";

  // Epoch 0: two steps; an evaluation forward in between adds nothing.
  std::vector<std::vector<double>> epoch0 = {train_forward(net, ctx, 1)};
  net.g.forward(ctx, net.inputs(99), {.training = false});
  epoch0.push_back(train_forward(net, ctx, 2));
  std::vector<double> stats = buffer_values(net.g, "loss.dwa_stats");
  EXPECT_NEAR(stats[0], epoch0[0][0] + epoch0[1][0], 1e-5);
  EXPECT_NEAR(stats[1], epoch0[0][1] + epoch0[1][1], 1e-5);
  EXPECT_EQ(stats[2], 2.0) << "the count";
  EXPECT_NEAR(epoch0[0][2], epoch0[0][0] + epoch0[0][1], 1e-5) << "weights 1 in epoch 0";
  EXPECT_EQ(layer->finish_epoch(ctx), (std::vector<double>{1, 1}))
      << "lambda = 1 for the first two epochs";
  stats = buffer_values(net.g, "loss.dwa_stats");
  const double a0 = (epoch0[0][0] + epoch0[1][0]) / 2, b0 = (epoch0[0][1] + epoch0[1][1]) / 2;
  EXPECT_EQ(stats[0], 0.0) << "row 0 restarts";
  EXPECT_EQ(stats[2], 0.0);
  EXPECT_NEAR(stats[3], a0, 1e-5);
  EXPECT_NEAR(stats[4], b0, 1e-5);
  EXPECT_EQ(stats[5], 2.0);
  EXPECT_EQ(stats[8], 0.0) << "no epoch before the first";

  // Epoch 1: three steps on other data (the losses change), then DWA weights.
  double a1 = 0, b1 = 0;
  for (uint64_t s : {10, 20, 30}) {
    const std::vector<double> l = train_forward(net, ctx, s);
    a1 += l[0] / 3;
    b1 += l[1] / 3;
  }
  const std::vector<double> w = layer->finish_epoch(ctx);
  stats = buffer_values(net.g, "loss.dwa_stats");
  EXPECT_NEAR(stats[3], a1, 1e-5);
  EXPECT_EQ(stats[5], 3.0);
  EXPECT_NEAR(stats[6], a0, 1e-5) << "row 1 moved to row 2";
  const std::vector<double> expected =
      nn::dwa_weights({stats[3], stats[4]}, {stats[6], stats[7]}, 2.0);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NEAR(w[0], expected[0], 1e-6);
  EXPECT_NEAR(w[1], expected[1], 1e-6);
  EXPECT_NE(w[0], 1.0);
  EXPECT_EQ(buffer_values(net.g, "loss.weights"), w);
  // Epoch 2 trains on those weights, forward and backward.
  const std::vector<double> l = train_forward(net, ctx, 40);
  EXPECT_NEAR(l[2], w[0] * l[0] + w[1] * l[1], 1e-5);
  net.g.backward(ctx, {{net.loss, Tensor()}});
  Tensor ga = net.shared_grad(ctx, 40, net.loss_a), gb = net.shared_grad(ctx, 40, net.loss_b);
  const Tensor expected_grad = ops::add(ctx, ops::scale(ctx, ga, w[0]), ops::scale(ctx, gb, w[1]));
  expect_close("w_a ga + w_b gb", net.shared_grad(ctx, 40, net.loss), expected_grad, 1e-5, 1e-7);
}

TEST(WeightedLossSumLayer, DwaSumsEachStepOverTheRanks) {
  Context ctx;
  TwoTaskNet net(dwa());
  TwoEqualRanks ranks;
  dynamic_cast<nn::WeightedLossSum*>(net.g.layer(net.loss))->set_reducer(&ranks);
  const std::vector<double> l = train_forward(net, ctx, 1);
  train_forward(net, ctx, 1);
  const std::vector<double> stats = buffer_values(net.g, "loss.dwa_stats");
  EXPECT_NEAR(stats[0], 4 * l[0], 1e-5) << "2 ranks x 2 steps";
  EXPECT_EQ(stats[2], 4.0) << "the count is over rank-steps, so the mean is over both";
}

}  // namespace
}  // namespace cohort::core
