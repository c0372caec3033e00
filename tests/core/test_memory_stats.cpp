// memory_stats on the CPU: host tensor bytes now and at the peak, and what they
// prove about the graph executor -- a training step gives back every activation
// it saved, so memory does not grow from step to step.
#include <gtest/gtest.h>

#include "core/context.hpp"
#include "core/memory_stats.hpp"
#include "core/nn/graph.hpp"
#include "core/tensor.hpp"
#include "models/small_cnn.hpp"

namespace cohort {
namespace {

using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

TEST(MemoryStats, CountsHostTensorsAndTheirPeak) {
  const Device cpu = Device::cpu();
  core::reset_peak_memory(cpu);
  const core::MemoryStats before = core::memory_stats(cpu);
  EXPECT_EQ(before.peak_in_use, before.in_use);
  {
    Tensor a = Tensor::empty(Shape{1 << 20}, DType::f32);  // 4 MiB
    const core::MemoryStats during = core::memory_stats(cpu);
    EXPECT_GE(during.in_use, before.in_use + (4u << 20));
    EXPECT_EQ(during.reserved, during.in_use);
  }
  const core::MemoryStats after = core::memory_stats(cpu);
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_GE(after.peak_in_use, before.in_use + (4u << 20));
  core::reset_peak_memory(cpu);
  EXPECT_EQ(core::memory_stats(cpu).peak_in_use, after.in_use);
}

TEST(MemoryStats, TrainingStepsGiveBackEveryActivation) {
  const Device cpu = Device::cpu();
  core::nn::Graph graph;
  const models::SmallCnnNodes nodes = models::add_small_cnn(graph, 10);
  graph.build(cpu, 0);
  core::Context ctx(cpu);
  Tensor image = Tensor::full(Shape{32, 28, 28, 1}, 0.25);
  Tensor label = Tensor::zeros(Shape{32}, DType::i32);
  auto step = [&] {
    graph.forward(ctx, {{"image", image}, {"label", label}}, {.training = true});
    graph.backward(ctx, {{nodes.loss, Tensor()}});
  };
  step();
  const size_t after_one = core::memory_stats(cpu).in_use;
  core::reset_peak_memory(cpu);
  for (int i = 0; i < 3; ++i)
    step();
  const core::MemoryStats after = core::memory_stats(cpu);
  EXPECT_EQ(after.in_use, after_one) << "memory grew between training steps";
  // During a step the activations were there (the 32x28x28x32 feature map alone
  // is 3 MiB) and are gone afterwards.
  EXPECT_GE(after.peak_in_use, after_one + (3u << 20));
}

}  // namespace
}  // namespace cohort
