// Multi-task losses with weights that are not trained (loss.balancing fixed and
// dwa) on CUDA against the CPU: the weighted sum and its backward, the running
// loss sums, and the WeightedLossSum layer with DWA's buffers on the device
// (sums accumulated in training forwards, weights set at the epoch boundary).
#include <gtest/gtest.h>

#include <memory>

#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"
#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

std::vector<Tensor> scalars(const std::vector<double>& values) {
  std::vector<Tensor> out;
  for (double v : values)
    out.push_back(Tensor::from_vector({v}, Shape{1}, DType::f32));
  return out;
}

std::vector<Tensor> on_gpu(const std::vector<Tensor>& cpu_tensors) {
  std::vector<Tensor> out;
  for (const Tensor& t : cpu_tensors)
    out.push_back(to_gpu(t));
  return out;
}

TEST(GpuWeightedLossSum, MatchesCpu) {
  const std::vector<Tensor> losses = scalars({2.5, 0.25, 1.0});
  const std::vector<Tensor> gpu_losses = on_gpu(losses);
  const Tensor w = Tensor::from_vector({1.0, 0.0, 0.75}, Shape{3}, DType::f32);
  expect_near("total", core::ops::weighted_loss_sum(gpu(), gpu_losses, to_gpu(w)),
              core::ops::weighted_loss_sum(cpu(), losses, w), kTightF32);
  const Tensor g = Tensor::from_vector({-1.5}, Shape{1}, DType::f32);
  const std::vector<Tensor> dc = core::ops::weighted_loss_sum_backward(cpu(), g, w);
  const std::vector<Tensor> dg = core::ops::weighted_loss_sum_backward(gpu(), to_gpu(g), to_gpu(w));
  ASSERT_EQ(dg.size(), 3u);
  for (size_t i = 0; i < dc.size(); ++i)
    expect_equal("dloss " + std::to_string(i), dg[i], dc[i]);

  Tensor sums_cpu = Tensor::from_vector({1.0, 2.0, 3.0, 4.0}, Shape{4}, DType::f32);
  Tensor sums_gpu = to_gpu(sums_cpu);
  for (int step = 0; step < 3; ++step) {
    core::ops::accumulate_loss_sums(cpu(), losses, sums_cpu);
    core::ops::accumulate_loss_sums(gpu(), gpu_losses, sums_gpu);
  }
  expect_equal("running sums", sums_gpu, sums_cpu);
  EXPECT_EQ(values(sums_gpu)[3], 7.0) << "the count";
}

// a, b (graph inputs) -> DWA "loss"; four training forwards per epoch.
struct DwaGraph {
  core::nn::Graph g;
  core::nn::NodeId loss;
  explicit DwaGraph(Device device) {
    const core::nn::NodeId a = g.input("a"), b = g.input("b");
    core::nn::LossBalancing balancing;
    balancing.method = core::nn::LossBalancingMethod::dwa;
    loss = core::nn::add_balanced_loss(g, "loss", {a, b}, balancing);
    g.build(device, 3);
  }
  core::nn::WeightedLossSum& layer() {
    return dynamic_cast<core::nn::WeightedLossSum&>(*g.layer(loss));
  }
  Tensor buffer(const std::string& name) {
    for (const core::nn::Buffer& b : g.buffers())
      if (b.name == name) return b.value;
    ADD_FAILURE() << "no buffer " << name;
    return {};
  }
};

TEST(GpuWeightedLossSum, DwaLayerMatchesCpu) {
  DwaGraph on_cpu(Device::cpu()), on_cuda(Device::cuda(0));
  std::vector<double> weights_cpu, weights_gpu;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int step = 0; step < 4; ++step) {
      const std::vector<Tensor> l =
          scalars({1.0 + 0.5 * epoch + 0.1 * step, 3.0 - 0.8 * epoch + 0.05 * step});
      on_cpu.g.forward(cpu(), {{"a", l[0]}, {"b", l[1]}}, {.training = true});
      on_cuda.g.forward(gpu(), {{"a", to_gpu(l[0])}, {"b", to_gpu(l[1])}}, {.training = true});
      expect_near("total", on_cuda.g.output(on_cuda.loss), on_cpu.g.output(on_cpu.loss), kTightF32);
    }
    expect_equal("sums", on_cuda.buffer("loss.dwa_stats"), on_cpu.buffer("loss.dwa_stats"));
    weights_cpu = on_cpu.layer().finish_epoch(cpu());
    weights_gpu = on_cuda.layer().finish_epoch(gpu());
    EXPECT_EQ(weights_gpu, weights_cpu);
    expect_equal("weights", on_cuda.buffer("loss.weights"), on_cpu.buffer("loss.weights"));
    expect_equal("statistics", on_cuda.buffer("loss.dwa_stats"), on_cpu.buffer("loss.dwa_stats"));
  }
  EXPECT_NE(weights_gpu[0], 1.0) << "the third epoch's weights come from the first two";
}

}  // namespace
}  // namespace cohort::gputest
