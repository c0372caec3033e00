// Optimizers, parameter groups, schedules and the loss scaler against values
// computed by hand from PyTorch's documented update rules.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/kernels.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/optim/optimizer.hpp"
#include "core/optim/schedule.hpp"

namespace cohort::core::optim {
namespace {

// fc (weight 2x3, bias 2) followed by a BatchNorm-free head: enough parameters to
// see groups and no-decay.
struct Net {
  nn::Graph g;
  Net() {
    const nn::NodeId x = g.input("x");
    const nn::NodeId a = g.add("body", std::make_unique<nn::Linear>(3, 2), {x});
    g.add("head", std::make_unique<nn::Linear>(2, 1), {a});
    g.build(Device::cpu(), 1);
  }
  // Sets every gradient to a fixed pattern.
  void set_grads(double base) {
    float* gp = g.flat_grads().data<float>();
    for (int64_t i = 0; i < g.num_parameters(); ++i)
      gp[i] = static_cast<float>(base + 0.1 * i);
  }
};

TEST(Sgd, MomentumNesterovWeightDecayMatchTheReference) {
  Net net;
  OptimizerConfig c;
  c.kind = "sgd";
  c.momentum = 0.9;
  c.nesterov = true;
  c.weight_decay = 0.01;
  c.no_decay_bias_bn = true;
  Optimizer opt(net.g, c);
  Context ctx;
  const std::vector<double> p0 = net.g.flat_params().to_vector();
  std::vector<double> p = p0, buf(p.size(), 0.0);
  for (int step = 0; step < 3; ++step) {
    net.set_grads(0.5 - step);
    const std::vector<double> g = net.g.flat_grads().to_vector();
    opt.step(ctx, 0.1);
    for (const nn::Parameter& prm : net.g.parameters()) {
      const double wd = prm.no_decay ? 0.0 : 0.01;
      for (int64_t i = prm.offset; i < prm.offset + prm.shape.numel(); ++i) {
        double d = g[i] + wd * p[i];
        buf[i] = step == 0 ? d : 0.9 * buf[i] + d;
        d = d + 0.9 * buf[i];
        p[i] -= 0.1 * d;
      }
    }
  }
  const std::vector<double> got = net.g.flat_params().to_vector();
  for (size_t i = 0; i < p.size(); ++i)
    EXPECT_NEAR(got[i], p[i], 1e-5) << "element " << i;
}

TEST(AdamW, MatchesTheReferenceWithGroupsAndNoDecay) {
  Net net;
  OptimizerConfig c;
  c.kind = "adamw";
  c.weight_decay = 0.05;
  c.groups = {{"head", 10.0, std::nullopt}};
  Optimizer opt(net.g, c);
  Context ctx;
  std::vector<double> p = net.g.flat_params().to_vector();
  std::vector<double> m(p.size(), 0.0), v(p.size(), 0.0);
  for (int step = 1; step <= 4; ++step) {
    net.set_grads(-0.3 * step);
    const std::vector<double> g = net.g.flat_grads().to_vector();
    opt.step(ctx, 1e-2);
    for (const nn::Parameter& prm : net.g.parameters()) {
      const double lr = prm.name.rfind("head", 0) == 0 ? 0.1 : 1e-2;
      const double wd = prm.no_decay ? 0.0 : 0.05;
      for (int64_t i = prm.offset; i < prm.offset + prm.shape.numel(); ++i) {
        p[i] *= 1 - lr * wd;
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
        const double mhat = m[i] / (1 - std::pow(0.9, step));
        const double vhat = v[i] / (1 - std::pow(0.999, step));
        p[i] -= lr * mhat / (std::sqrt(vhat) + 1e-8);
      }
    }
  }
  const std::vector<double> got = net.g.flat_params().to_vector();
  for (size_t i = 0; i < p.size(); ++i)
    EXPECT_NEAR(got[i], p[i], 2e-5) << "element " << i;
}

// The learning rate is read on the device (what a captured CUDA graph needs):
// a step from an f32 [1] tensor equals the step from the same host value,
// bitwise, with a group multiplier too, and changing the tensor between steps
// is what the next step uses.
TEST(Optimizer, LearningRateFromADeviceTensorEqualsTheHostValue) {
  for (const char* kind : {"sgd", "adamw"}) {
    SCOPED_TRACE(kind);
    Net host, device;
    OptimizerConfig c;
    c.kind = kind;
    c.momentum = 0.9;
    c.weight_decay = 0.01;
    c.groups = {{"head", 0.1, std::nullopt}};
    Optimizer by_value(host.g, c), by_tensor(device.g, c);
    Context ctx;
    Tensor lr = Tensor::zeros(Shape{1}, DType::f32);
    for (int step = 0; step < 3; ++step) {
      const double rate = 0.05 * (3 - step);
      host.set_grads(0.5 - step);
      device.set_grads(0.5 - step);
      by_value.step(ctx, rate);
      ops::fill(ctx, lr, rate);
      by_tensor.step(ctx, lr);
      EXPECT_EQ(host.g.flat_params().to_vector(), device.g.flat_params().to_vector())
          << "step " << step;
    }
  }
}

TEST(Optimizer, FrozenParametersAreNotUpdatedEvenWithWeightDecay) {
  Net net;
  net.g.set_trainable("body", false);
  OptimizerConfig c;
  c.weight_decay = 0.1;
  Optimizer opt(net.g, c);
  Context ctx;
  const std::vector<double> before = net.g.parameter("body.weight").value.to_vector();
  net.set_grads(1.0);
  opt.step(ctx, 0.5);
  EXPECT_EQ(net.g.parameter("body.weight").value.to_vector(), before);
  EXPECT_NE(net.g.parameter("head.weight").value.to_vector()[0],
            net.g.parameter("head.weight").grad.to_vector()[0]);
}

TEST(Optimizer, SkipFlagMakesTheStepANoOp) {
  Net net;
  Optimizer opt(net.g, OptimizerConfig{});
  Context ctx;
  const std::vector<double> before = net.g.flat_params().to_vector();
  net.set_grads(1.0);
  opt.step(ctx, 0.5, Tensor::from_vector({1.0}, Shape{1}));
  EXPECT_EQ(net.g.flat_params().to_vector(), before);
}

// A skipped step (fp16 overflow) leaves the optimizer as it was, its step count
// included, as PyTorch's GradScaler never calls step() for it: the first real
// update after skips is bitwise the first update of a fresh optimizer (AdamW's
// bias correction of step 1; SGD's momentum buffer started from the gradient,
// which dampening makes differ from a later step's).
TEST(Optimizer, SkippedStepsDoNotAdvanceTheStepCount) {
  for (const char* kind : {"adamw", "sgd"}) {
    SCOPED_TRACE(kind);
    OptimizerConfig c;
    c.kind = kind;
    c.momentum = 0.9;
    c.dampening = 0.5;
    c.weight_decay = 0.01;
    Net fresh, skipped;
    Optimizer fresh_opt(fresh.g, c), skipped_opt(skipped.g, c);
    Context ctx;
    const Tensor skip = Tensor::from_vector({1.0}, Shape{1});
    const Tensor no_skip = Tensor::from_vector({0.0}, Shape{1});
    skipped.set_grads(1e30);  // what an overflow would leave (never applied)
    skipped_opt.step(ctx, 0.1, skip);
    skipped_opt.step(ctx, 0.1, skip);
    EXPECT_EQ(skipped_opt.steps(), 0);
    for (int step = 1; step <= 2; ++step) {
      fresh.set_grads(0.5 * step);
      skipped.set_grads(0.5 * step);
      fresh_opt.step(ctx, 0.1, no_skip);
      skipped_opt.step(ctx, 0.1, no_skip);
      EXPECT_EQ(skipped.g.flat_params().to_vector(), fresh.g.flat_params().to_vector())
          << "step " << step;
    }
    EXPECT_EQ(skipped_opt.steps(), 2);
    EXPECT_EQ(fresh_opt.steps(), 2);
    skipped_opt.set_steps(7);
    EXPECT_EQ(skipped_opt.steps(), 7);
  }
}

// Gradient clipping: the factor and norm are computed where the gradients live;
// clipping only scales down, and a NaN norm leaves the gradients alone.
TEST(Optimizer, ClipFactorScalesDownOnlyAboveTheLimit) {
  Context ctx;
  for (double ss : {25.0, 0.25, static_cast<double>(NAN)}) {
    const Tensor sum_squares = Tensor::from_vector({ss}, Shape{1});
    Tensor norm = Tensor::zeros(Shape{1}, DType::f32), factor = Tensor::zeros(Shape{1}, DType::f32);
    clip_factor(ctx, sum_squares, 2.0, norm, factor);
    if (std::isnan(ss)) {
      EXPECT_TRUE(std::isnan(norm.item()));
      EXPECT_EQ(factor.item(), 1.0);
    } else {
      EXPECT_FLOAT_EQ(norm.item(), std::sqrt(ss));
      EXPECT_FLOAT_EQ(factor.item(), ss > 4 ? 2.0 / (5.0 + 1e-6) : 1.0);
    }
  }
  Tensor n = Tensor::zeros(Shape{1}, DType::f32), f = Tensor::zeros(Shape{1}, DType::f32);
  EXPECT_THROW(clip_factor(ctx, Tensor::from_vector({1.0}, Shape{1}), 0.0, n, f), Error);
}

TEST(Optimizer, UnknownGroupOrKindIsRefused) {
  Net net;
  OptimizerConfig c;
  c.groups = {{"missing", 1.0, std::nullopt}};
  EXPECT_THROW(Optimizer(net.g, c), Error);
  OptimizerConfig k;
  k.kind = "lamb";
  EXPECT_THROW(Optimizer(net.g, k), Error);
}

TEST(Schedule, ShapesMatchTheirFormulas) {
  ScheduleConfig poly;
  poly.kind = "poly";
  poly.base_lr = 0.01;
  poly.total_steps = 1000;
  EXPECT_DOUBLE_EQ(learning_rate(poly, 0), 0.01);
  EXPECT_NEAR(learning_rate(poly, 500), 0.01 * std::pow(0.5, 0.9), 1e-12);
  EXPECT_NEAR(learning_rate(poly, 1000), 0.0, 1e-12);

  ScheduleConfig cosine;
  cosine.kind = "cosine";
  cosine.total_steps = 100;
  EXPECT_NEAR(learning_rate(cosine, 50), 0.05, 1e-12);

  ScheduleConfig step;
  step.kind = "step";
  step.milestones = {10, 20};
  EXPECT_NEAR(learning_rate(step, 9), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate(step, 10), 0.01, 1e-12);
  EXPECT_NEAR(learning_rate(step, 25), 0.001, 1e-12);

  ScheduleConfig warm;
  warm.base_lr = 0.2;
  warm.warmup_steps = 10;
  warm.warmup_start_factor = 0.0;
  EXPECT_NEAR(learning_rate(warm, 0), 0.0, 1e-12);
  EXPECT_NEAR(learning_rate(warm, 5), 0.1, 1e-12);
  EXPECT_NEAR(learning_rate(warm, 10), 0.2, 1e-12);

  ScheduleConfig bad;
  bad.kind = "poly";
  bad.total_steps = 10;
  bad.warmup_steps = 10;
  EXPECT_THROW(validate(bad), Error);
  ScheduleConfig exotic;
  exotic.kind = "exotic";
  EXPECT_THROW(validate(exotic), Error);
}

TEST(LossScaler, BacksOffOnOverflowGrowsAfterTheIntervalAndRestores) {
  LossScalerConfig c;
  c.enabled = true;
  c.init_scale = 1024;
  c.growth_interval = 2;
  LossScaler scaler(c, Device::cpu());
  Context ctx;
  EXPECT_EQ(scaler.seed().item(), 1024.0);

  Tensor grads = Tensor::from_vector({2048.0, -1024.0}, Shape{2});
  scaler.unscale(ctx, grads);
  EXPECT_EQ(grads.to_vector(), (std::vector<double>{2.0, -1.0}));
  scaler.update(ctx);
  EXPECT_FALSE(scaler.last_step_skipped(ctx));

  Tensor bad = Tensor::from_vector({INFINITY, 1.0}, Shape{2});
  scaler.unscale(ctx, bad);
  EXPECT_EQ(scaler.skip_flag().item(), 1.0);
  scaler.update(ctx);
  EXPECT_TRUE(scaler.last_step_skipped(ctx));
  EXPECT_EQ(scaler.state(ctx).scale, 512.0);
  EXPECT_EQ(scaler.state(ctx).growth_tracker, 0);
  EXPECT_EQ(scaler.state(ctx).skipped_steps, 1);
  EXPECT_EQ(scaler.skip_flag().item(), 0.0) << "flag is cleared for the next step";
  EXPECT_EQ(scaler.seed().item(), 512.0) << "the seed handed out earlier follows the scale";

  for (int i = 0; i < 2; ++i) {
    Tensor g = Tensor::from_vector({1.0}, Shape{1});
    scaler.unscale(ctx, g);
    EXPECT_EQ(g.item(), 1.0 / 512.0);
    scaler.update(ctx);
    EXPECT_FALSE(scaler.last_step_skipped(ctx));
  }
  EXPECT_EQ(scaler.state(ctx).scale, 1024.0);
  EXPECT_EQ(scaler.state(ctx).growth_tracker, 0);
  EXPECT_EQ(scaler.seed().item(), 1024.0);

  LossScaler restored(c, Device::cpu());
  restored.set_state(ctx, LossScalerState{256.0, 1, 3});
  EXPECT_EQ(restored.seed().item(), 256.0);
  EXPECT_EQ(restored.state(ctx).growth_tracker, 1);
  EXPECT_EQ(restored.state(ctx).skipped_steps, 3);
  restored.update(ctx);  // a clean step completes the interval of 2
  EXPECT_EQ(restored.state(ctx).scale, 512.0);
  EXPECT_THROW(restored.set_state(ctx, LossScalerState{-1.0, 0, 0}), Error);
}

TEST(LossScaler, DisabledSeedsWithOneAndNeverChanges) {
  LossScalerConfig c;  // enabled = false
  LossScaler scaler(c, Device::cpu());
  Context ctx;
  EXPECT_EQ(scaler.seed().item(), 1.0);
  EXPECT_FALSE(scaler.skip_flag().defined());
  scaler.update(ctx);
  EXPECT_EQ(scaler.state(ctx).scale, 1.0);
}

}  // namespace
}  // namespace cohort::core::optim
