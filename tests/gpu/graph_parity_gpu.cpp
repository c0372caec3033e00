// Whole networks on the GPU against the CPU: the graph executor driving CUDA ops
// (f32) must match the CPU run; bf16 compute must train.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "core/determinism.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/optimizer.hpp"
#include "models/resnet.hpp"
#include "models/small_cnn.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort {
namespace {

using core::Context;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

double relative_difference(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct ResNetRun {
  Context ctx;  // declared first: destroyed after the graph whose tensors use its stream
  core::nn::Graph g;
  core::nn::NodeId loss;
  ResNetRun(Device d, DType compute) : ctx(d) {
    const core::nn::NodeId image = g.input("image");
    const core::nn::NodeId label = g.input("label");
    models::ResNetOptions o;
    o.depth = 18;
    o.num_classes = 10;
    const models::ResNetNodes n = models::add_resnet(g, image, o);
    loss = g.add("loss", std::make_unique<core::nn::CrossEntropyLoss>(), {n.logits, label});
    g.build(d, 5, compute);
  }
  double step(const Tensor& x, const Tensor& y) {
    const DType in = g.compute_dtype();
    Tensor xd = x.to(ctx.device(), ctx.stream());
    if (in != DType::f32) xd = core::ops::cast(ctx, xd, in);
    g.forward(ctx, {{"image", xd}, {"label", y.to(ctx.device(), ctx.stream())}},
              {.training = true});
    g.backward(ctx, {{loss, Tensor()}});
    return g.output(loss).item(ctx.stream());
  }
};

TEST(GraphGpu, ResNet18ForwardBackwardMatchesTheCpu) {
  const Tensor x = testing::random_tensor(Shape{4, 64, 64, 3}, 1, -1, 1, DType::f32);
  const Tensor y = Tensor::from_vector({1, 3, 5, 7}, Shape{4}, DType::i32);
  ResNetRun cpu(Device::cpu(), DType::f32), gpu(Device::cuda(0), DType::f32);
  const double lc = cpu.step(x, y), lg = gpu.step(x, y);
  EXPECT_NEAR(lg, lc, 1e-3 * std::abs(lc)) << "loss";
  const double dgrad = relative_difference(gpu.g.flat_grads(), cpu.g.flat_grads());
  std::printf("ResNet-18 f32: loss cpu %.6f gpu %.6f; relative gradient difference %.3g\n", lc, lg,
              dgrad);
  EXPECT_LT(dgrad, 1e-3);
  for (const auto& [name, t] : cpu.g.state()) {
    if (name.find("running_") != std::string::npos) {
      EXPECT_LT(relative_difference(gpu.g.state().at(name), t), 1e-4) << name;
    }
  }
}

TEST(GraphGpu, Bf16ComputeTracksF32AndTrains) {
  const Tensor x = testing::random_tensor(Shape{8, 32, 32, 3}, 2, -1, 1, DType::f32);
  const Tensor y = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7}, Shape{8}, DType::i32);
  ResNetRun f32(Device::cuda(0), DType::f32), bf16(Device::cuda(0), DType::bf16);
  const double l32 = f32.step(x, y), l16 = bf16.step(x, y);
  EXPECT_NEAR(l16, l32, 0.05 * std::abs(l32)) << "first loss, bf16 vs f32";
  // An untrained ResNet-18 is sensitive: rounding only the input image to bf16
  // already moves its gradients by ~18% (measured on an H100), full bf16 compute
  // by ~36%. The bound catches broken kernels (differences of order 1).
  EXPECT_LT(relative_difference(bf16.g.flat_grads(), f32.g.flat_grads()), 0.5);
  core::optim::OptimizerConfig c;
  c.kind = "sgd";
  c.momentum = 0.9;
  core::optim::Optimizer opt(bf16.g, c);
  double last = l16;
  for (int i = 0; i < 30; ++i) {
    opt.step(bf16.ctx, 0.05);
    last = bf16.step(x, y);
  }
  std::printf("bf16 ResNet-18 memorising 8 images: loss %.4f -> %.4f\n", l16, last);
  EXPECT_LT(last, 0.5 * l16);
}

// The flat gradients of one bf16 ResNet-18 backward on the GPU, copied to the host.
struct Bf16Passes {
  ResNetRun run{Device::cuda(0), DType::bf16};
  Tensor y = Tensor::from_vector({0, 1, 2, 3}, Shape{4}, DType::i32);
  Tensor pass(const Tensor& x, bool accumulate) {
    Tensor xd = core::ops::cast(run.ctx, x.to(run.ctx.device(), run.ctx.stream()), DType::bf16);
    run.g.forward(run.ctx, {{"image", xd}, {"label", y.to(run.ctx.device(), run.ctx.stream())}},
                  {.training = true});
    run.g.backward(run.ctx, {{run.loss, Tensor()}}, accumulate);
    Tensor grads = run.g.flat_grads().to(Device::cpu(), run.ctx.stream());
    run.ctx.synchronize();
    return grads;
  }
};

// With a 16-bit compute dtype, accumulating micro-batch gradients must equal the
// sum of the micro-batches' separate gradients (each counted once). Deterministic
// algorithms make the passes comparable to the last bit: without them this check
// was 7e-4 off (two passes over one input differ by 3.7e-4; H200, cuDNN 9.14).
TEST(GraphGpu, Bf16AccumulationCountsEachMicroBatchOnce) {
  core::DeterministicAlgorithms deterministic(true);
  const Tensor x1 = testing::random_tensor(Shape{4, 32, 32, 3}, 11, -1, 1, DType::f32);
  const Tensor x2 = testing::random_tensor(Shape{4, 32, 32, 3}, 12, -1, 1, DType::f32);
  Bf16Passes p;
  const Tensor g1 = p.pass(x1, false);
  const Tensor g2 = p.pass(x2, false);
  p.pass(x1, false);
  const Tensor both = p.pass(x2, true);
  Context cpu;
  const double difference = relative_difference(both, core::ops::add(cpu, g1, g2));
  std::printf("bf16 accumulation: relative difference %.3g from the separate sums\n", difference);
  // Counting a micro-batch twice or not at all is off by order 1; accumulating
  // in bf16 rather than f32 by ~1e-3.
  EXPECT_LT(difference, 1e-6);
}

// run.deterministic: the same backward twice gives the same gradients, bit for bit.
TEST(GraphGpu, DeterministicAlgorithmsRepeatBackwardBitwise) {
  const Tensor x = testing::random_tensor(Shape{4, 32, 32, 3}, 21, -1, 1, DType::f32);
  {
    // For the record: how far apart two passes are with the fastest algorithms.
    Bf16Passes p;
    p.pass(x, false);
    const Tensor a = p.pass(x, false), b = p.pass(x, false);
    std::printf("fastest algorithms: two passes differ by %.3g relative\n",
                relative_difference(a, b));
  }
  core::DeterministicAlgorithms deterministic(true);
  Bf16Passes p;
  const Tensor a = p.pass(x, false);
  for (int i = 0; i < 3; ++i) {
    const Tensor b = p.pass(x, false);
    const std::vector<double> va = a.to_vector(), vb = b.to_vector();
    int64_t differing = 0;
    for (size_t k = 0; k < va.size(); ++k)
      differing += va[k] != vb[k];
    EXPECT_EQ(differing, 0) << "pass " << i + 2 << ": " << differing << " of " << va.size()
                            << " gradients differ from the first pass";
  }
}

TEST(GraphGpu, SmallCnnTrainingStepsMatchTheCpu) {
  auto run = [](Device d) {
    core::nn::Graph g;
    const models::SmallCnnNodes n = models::add_small_cnn(g, 10, 0.0);
    g.build(d, 3);
    Context ctx(d);
    core::optim::OptimizerConfig c;
    c.kind = "sgd";
    c.momentum = 0.9;
    c.weight_decay = 1e-4;
    core::optim::Optimizer opt(g, c);
    const Tensor x = testing::random_tensor(Shape{16, 28, 28, 1}, 4, -1, 1, DType::f32);
    std::vector<double> labels;
    for (int i = 0; i < 16; ++i)
      labels.push_back(i % 10);
    const Tensor y = Tensor::from_vector(labels, Shape{16}, DType::i64);
    for (int s = 0; s < 3; ++s) {
      g.forward(ctx, {{"image", x.to(d, ctx.stream())}, {"label", y.to(d, ctx.stream())}},
                {.training = true});
      g.backward(ctx, {{n.loss, Tensor()}});
      opt.step(ctx, 0.05);
    }
    Tensor out = g.flat_params().to(Device::cpu(), ctx.stream());
    ctx.synchronize();
    return out;
  };
  const Tensor cpu = run(Device::cpu());
  const Tensor gpu = run(Device::cuda(0));
  EXPECT_LT(relative_difference(gpu, cpu), 1e-4);
}

}  // namespace
}  // namespace cohort
