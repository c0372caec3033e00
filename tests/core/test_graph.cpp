// Model graph executor: fan-out sums, early release of saved tensors, the
// gradient-ready hook, backward from one chosen loss, frozen parameters,
// gradient accumulation, and errors that name the layer.
#include <gtest/gtest.h>

#include <memory>
#include <set>

#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::core::nn {
namespace {

using cohort::testing::expect_close;
using cohort::testing::random_tensor;

// x[4, 6] -> fc1 -> {relu, identity} -> add -> fc2 -> mean
struct FanOutNet {
  Graph g;
  NodeId x, fc1, relu, sum, fc2, loss;
  FanOutNet() {
    x = g.input("x");
    fc1 = g.add("fc1", std::make_unique<Linear>(6, 5), {x});
    relu = g.add("relu", std::make_unique<ReLU>(), {fc1});
    sum = g.add("sum", std::make_unique<Add>(), {relu, fc1});
    fc2 = g.add("fc2", std::make_unique<Linear>(5, 3), {sum});
    loss = g.add("loss", std::make_unique<MeanLoss>(), {fc2});
    g.build(Device::cpu(), 7);
  }
};

TEST(Graph, FanOutGradientsEqualTheHandChainedOps) {
  FanOutNet net;
  Context ctx;
  const Tensor x = random_tensor(Shape{4, 6}, 1, -1, 1, DType::f32);
  net.g.forward(ctx, {{"x", x}}, {.training = true});
  net.g.backward(ctx, {{net.loss, Tensor()}});

  // The same computation by hand.
  Parameter& w1 = net.g.parameter("fc1.weight");
  Parameter& b1 = net.g.parameter("fc1.bias");
  Parameter& w2 = net.g.parameter("fc2.weight");
  const Tensor h = ops::linear(ctx, x, w1.value, b1.value);
  const Tensor r = ops::relu(ctx, h);
  const Tensor s = ops::add(ctx, r, h);
  const Tensor one = Tensor::from_vector({1.0}, Shape{1});
  const Tensor dout = ops::mean_backward(ctx, one, Shape{4, 3}, DType::f32);
  Tensor dw2 = Tensor::empty(w2.shape, DType::f32);
  ops::linear_backward_weight(ctx, dout, s, dw2, false);
  const Tensor ds = ops::linear_backward_input(ctx, dout, w2.value);
  const Tensor dh = ops::add(ctx, ops::relu_backward(ctx, ds, r), ds);  // fan-out sum
  Tensor dw1 = Tensor::empty(w1.shape, DType::f32);
  ops::linear_backward_weight(ctx, dh, x, dw1, false);

  expect_close("fc2.weight grad", w2.grad, dw2, 1e-6, 1e-7);
  expect_close("fc1.weight grad", w1.grad, dw1, 1e-6, 1e-7);
}

// A Scale node between two layers: fc2 sees 4x its input and the Scale's backward
// multiplies what reaches fc1 by 4, so both weight gradients are 4x the unscaled
// network's, bit for bit (a power of two).
TEST(Graph, ScaleNodeScalesTheGradientThroughIt) {
  auto net = [](double alpha) {
    auto g = std::make_unique<Graph>();
    const NodeId x = g->input("x");
    const NodeId fc1 = g->add("fc1", std::make_unique<Linear>(6, 5), {x});
    const NodeId scaled = g->add("scale", std::make_unique<Scale>(alpha), {fc1});
    const NodeId fc2 = g->add("fc2", std::make_unique<Linear>(5, 3), {scaled});
    g->add("loss", std::make_unique<MeanLoss>(), {fc2});
    g->build(Device::cpu(), 7);
    return g;
  };
  Context ctx;
  const Tensor x = random_tensor(Shape{4, 6}, 1, -1, 1, DType::f32);
  std::unique_ptr<Graph> plain = net(1.0), scaled = net(4.0);
  for (Graph* g : {plain.get(), scaled.get()}) {
    g->forward(ctx, {{"x", x}}, {.training = true});
    g->backward(ctx, {{g->num_nodes() - 1, Tensor()}});
  }
  expect_close("fc1.weight grad", scaled->parameter("fc1.weight").grad,
               ops::scale(ctx, plain->parameter("fc1.weight").grad, 4.0), 0, 0);
  expect_close("fc2.weight grad", scaled->parameter("fc2.weight").grad,
               ops::scale(ctx, plain->parameter("fc2.weight").grad, 4.0), 0, 0);
}

TEST(Graph, SavedTensorsAreReleasedRightAfterTheirBackward) {
  FanOutNet net;
  Context ctx;
  const Tensor x = random_tensor(Shape{4, 6}, 1, -1, 1, DType::f32);
  const long alone = x.storage().use_count();
  net.g.forward(ctx, {{"x", x}}, {.training = true});
  EXPECT_GT(x.storage().use_count(), alone) << "fc1 must keep its input for backward";
  long count_when_fc1_ready = -1;
  net.g.set_grad_ready_hook([&](std::span<Parameter* const> ps) {
    if (!ps.empty() && ps[0]->name == "fc1.weight") count_when_fc1_ready = x.storage().use_count();
  });
  net.g.backward(ctx, {{net.loss, Tensor()}});
  EXPECT_EQ(count_when_fc1_ready, alone) << "fc1's saved input must be freed before its hook";
}

TEST(Graph, HookFiresOncePerLayerInReverseOrder) {
  FanOutNet net;
  Context ctx;
  std::vector<std::string> order;
  net.g.set_grad_ready_hook([&](std::span<Parameter* const> ps) {
    for (Parameter* p : ps)
      order.push_back(p->name);
  });
  net.g.forward(ctx, {{"x", random_tensor(Shape{4, 6}, 2, -1, 1, DType::f32)}}, {.training = true});
  net.g.backward(ctx, {{net.loss, Tensor()}});
  const std::vector<std::string> expected{"fc2.weight", "fc2.bias", "fc1.weight", "fc1.bias"};
  EXPECT_EQ(order, expected);
}

// trunk -> head_a -> loss_a ; trunk -> head_b -> loss_b
struct TwoHeads {
  Graph g;
  NodeId loss_a, loss_b;
  TwoHeads() {
    const NodeId x = g.input("x");
    const NodeId t = g.add("trunk", std::make_unique<Linear>(6, 5), {x});
    const NodeId a = g.add("head_a", std::make_unique<Linear>(5, 2), {t});
    const NodeId b = g.add("head_b", std::make_unique<Linear>(5, 3), {t});
    loss_a = g.add("loss_a", std::make_unique<MeanLoss>(), {a});
    loss_b = g.add("loss_b", std::make_unique<MeanLoss>(), {b});
    g.build(Device::cpu(), 3);
  }
  Tensor grads_for(const std::vector<Graph::Seed>& seeds) {
    Context ctx;
    g.forward(ctx, {{"x", random_tensor(Shape{4, 6}, 5, -1, 1, DType::f32)}}, {.training = true});
    g.backward(ctx, seeds);
    return g.flat_grads().clone();
  }
};

TEST(Graph, BackwardFromOneLossLeavesTheOtherHeadAtZeroAndSumsAreLinear) {
  TwoHeads net;
  std::set<std::string> hooked;
  net.g.set_grad_ready_hook([&](std::span<Parameter* const> ps) {
    for (Parameter* p : ps)
      hooked.insert(p->name);
  });
  const Tensor ga = net.grads_for({{net.loss_a, Tensor()}});
  EXPECT_EQ(hooked.size(), 6u) << "every trainable parameter is reported, reached or not";
  const Parameter& hb = net.g.parameter("head_b.weight");
  for (double v : ga.flat(hb.offset, hb.shape.numel()).to_vector())
    EXPECT_EQ(v, 0.0);
  const Tensor gb = net.grads_for({{net.loss_b, Tensor()}});
  const Tensor both = net.grads_for({{net.loss_a, Tensor()}, {net.loss_b, Tensor()}});
  Context ctx;
  expect_close("g(a) + g(b) == g(a + b)", ops::add(ctx, ga, gb), both, 1e-6, 1e-7);
}

// Per-task gradients: backwards from one forward, each from its own loss, give
// what each would give after its own forward; the last one (without keep_saved)
// frees the saved tensors, so a further backward is refused.
TEST(Graph, KeepSavedAllowsOneBackwardPerLossFromOneForward) {
  TwoHeads net;
  const Tensor ga = net.grads_for({{net.loss_a, Tensor()}});
  const Tensor gb = net.grads_for({{net.loss_b, Tensor()}});
  Context ctx;
  net.g.forward(ctx, {{"x", random_tensor(Shape{4, 6}, 5, -1, 1, DType::f32)}}, {.training = true});
  net.g.backward(ctx, {{net.loss_a, Tensor()}}, false, /*keep_saved=*/true);
  EXPECT_EQ(net.g.flat_grads().to_vector(), ga.to_vector());
  net.g.backward(ctx, {{net.loss_b, Tensor()}});
  EXPECT_EQ(net.g.flat_grads().to_vector(), gb.to_vector());
  EXPECT_THROW(net.g.backward(ctx, {{net.loss_a, Tensor()}}), Error);
}

TEST(Graph, FrozenParametersGetNoGradientNoHookAndNoUpdate) {
  TwoHeads net;
  EXPECT_EQ(net.g.set_trainable("trunk", false), 2);
  Parameter& w = net.g.parameter("trunk.weight");
  Context ctx;
  net.grads_for({{net.loss_a, Tensor()}});  // the first backward after freezing zeroes them
  ops::fill(ctx, w.grad, 42.0);             // sentinel: must survive every later backward
  std::set<std::string> hooked;
  net.g.set_grad_ready_hook([&](std::span<Parameter* const> ps) {
    for (Parameter* p : ps)
      hooked.insert(p->name);
  });
  net.grads_for({{net.loss_a, Tensor()}, {net.loss_b, Tensor()}});
  for (double v : w.grad.to_vector())
    EXPECT_EQ(v, 42.0);
  EXPECT_EQ(hooked.count("trunk.weight"), 0u);
  EXPECT_EQ(hooked.count("head_a.weight"), 1u);
  EXPECT_THROW(net.g.set_trainable("nope", false), Error);
}

// Parameters frozen after training had filled their gradients hold zeros from
// the next backward on: a clipping norm over the flat buffer (single process,
// DataParallel) must not count a stale gradient of a trainable past.
TEST(Graph, FreezingAfterTrainingLeavesZeroGradients) {
  TwoHeads net;
  net.grads_for({{net.loss_a, Tensor()}, {net.loss_b, Tensor()}});
  Parameter& w = net.g.parameter("trunk.weight");
  double before = 0;
  for (double v : w.grad.to_vector())
    before += v * v;
  ASSERT_GT(before, 0.0);
  net.g.set_trainable("trunk", false);
  const Tensor after = net.grads_for({{net.loss_a, Tensor()}, {net.loss_b, Tensor()}});
  for (double v : after.flat(w.offset, w.shape.numel()).to_vector())
    EXPECT_EQ(v, 0.0);
  // Unfrozen again, it trains as before.
  net.g.set_trainable("trunk", true);
  double again = 0;
  const Tensor unfrozen = net.grads_for({{net.loss_a, Tensor()}, {net.loss_b, Tensor()}});
  for (double v : unfrozen.flat(w.offset, w.shape.numel()).to_vector())
    again += v * v;
  EXPECT_NEAR(again, before, 1e-9 * before);
}

TEST(Graph, AccumulateAddsIntoParameterGradients) {
  TwoHeads net;
  const Tensor once = net.grads_for({{net.loss_a, Tensor()}});
  Context ctx;
  net.g.forward(ctx, {{"x", random_tensor(Shape{4, 6}, 5, -1, 1, DType::f32)}}, {.training = true});
  net.g.backward(ctx, {{net.loss_a, Tensor()}}, /*accumulate=*/true);
  expect_close("two accumulated backwards", net.g.flat_grads(), ops::scale(ctx, once, 2.0), 1e-6,
               1e-7);
}

TEST(Graph, ErrorsNameTheLayerAndTheMissingInput) {
  FanOutNet net;
  Context ctx;
  try {
    net.g.forward(ctx, {}, {.training = true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input 'x'"), std::string::npos) << e.what();
  }
  try {
    net.g.forward(ctx, {{"x", random_tensor(Shape{4, 7}, 1, -1, 1, DType::f32)}},
                  {.training = true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos) << e.what();
  }
}

TEST(Graph, ParameterNamesAndFlatBuffersAreConsistent) {
  FanOutNet net;
  int64_t expected_offset = 0;
  for (const Parameter& p : net.g.parameters()) {
    EXPECT_EQ(p.offset, expected_offset) << p.name;
    EXPECT_EQ(p.value.raw(), net.g.flat_params().flat(p.offset, 1).raw()) << p.name;
    EXPECT_EQ(p.grad.raw(), net.g.flat_grads().flat(p.offset, 1).raw()) << p.name;
    expected_offset += p.shape.numel();
  }
  EXPECT_EQ(expected_offset, 6 * 5 + 5 + 5 * 3 + 3);
}

TEST(Graph, InitialisationIsDeterministicPerName) {
  FanOutNet a, b;
  EXPECT_EQ(a.g.flat_params().to_vector(), b.g.flat_params().to_vector());
}

}  // namespace
}  // namespace cohort::core::nn

namespace cohort::core::nn {
namespace {

// conv -> BN -> mean: BatchNorm's weight and bias freeze independently.
struct BnNet {
  Graph g;
  NodeId loss;
  BnNet() {
    Conv2dOptions c;
    c.in_channels = 2;
    c.out_channels = 3;
    const NodeId x = g.input("x");
    NodeId h = g.add("conv", std::make_unique<Conv2d>(c), {x});
    h = g.add("bn", std::make_unique<BatchNorm2d>(BatchNormOptions{3}), {h});
    h = g.add("scale", std::make_unique<Add>(), {h, h});
    loss = g.add("loss", std::make_unique<MeanLoss>(), {h});
    g.build(Device::cpu(), 2);
  }
  void run() {
    Context ctx;
    g.forward(ctx, {{"x", cohort::testing::random_tensor(Shape{2, 5, 5, 2}, 4, -1, 1, DType::f32)}},
              {.training = true});
    g.backward(ctx, {{loss, Tensor()}});
  }
};

TEST(Graph, BatchNormWeightAndBiasFreezeIndependently) {
  BnNet both;
  both.run();
  const std::vector<double> bias_grad = both.g.parameter("bn.bias").grad.to_vector();
  ASSERT_NE(bias_grad[0], 0.0);

  BnNet weight_frozen;
  weight_frozen.g.set_trainable("bn.weight", false);
  weight_frozen.run();
  EXPECT_EQ(weight_frozen.g.parameter("bn.bias").grad.to_vector(), bias_grad);

  BnNet bias_frozen;
  bias_frozen.g.set_trainable("bn.bias", false);
  bias_frozen.run();  // the first backward after freezing zeroes the frozen gradient
  for (double v : bias_frozen.g.parameter("bn.bias").grad.to_vector())
    EXPECT_EQ(v, 0.0);
  Context ctx;
  ops::fill(ctx, bias_frozen.g.parameter("bn.bias").grad, 42.0);  // later ones never touch it
  bias_frozen.run();
  for (double v : bias_frozen.g.parameter("bn.bias").grad.to_vector())
    EXPECT_EQ(v, 42.0);
  EXPECT_EQ(bias_frozen.g.parameter("bn.weight").grad.to_vector(),
            both.g.parameter("bn.weight").grad.to_vector());
}

TEST(Graph, SecondBackwardWithoutForwardIsAClearError) {
  BnNet net;
  net.run();
  Context ctx;
  try {
    net.g.backward(ctx, {{net.loss, Tensor()}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run forward again"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cohort::core::nn
