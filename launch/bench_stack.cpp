#include "launch/bench_stack.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "models/resnet.hpp"

namespace cohort::launch {

void run_bench_stack(const BenchStackOptions& o) {
  using core::DType;
  const DType dtype = o.dtype == "bf16" ? DType::bf16 : o.dtype == "f16" ? DType::f16 : DType::f32;
  COHORT_CHECK(o.dtype == "bf16" || o.dtype == "f16" || o.dtype == "f32",
               fmt::format("bench stack: --dtype must be f32, bf16 or f16, got {}", o.dtype));
  core::nn::Graph graph;
  const core::nn::NodeId image = graph.input("image");
  models::ResNetOptions ro;
  ro.depth = 50;
  ro.num_classes = 0;
  const models::ResNetNodes nodes = models::add_resnet(graph, image, ro);
  const core::nn::NodeId loss =
      graph.add("loss", std::make_unique<core::nn::MeanLoss>(), {nodes.layer4});
  graph.build(o.device, 0, dtype);
  core::Context ctx(o.device);

  core::Tensor x32 = core::Tensor::empty(
      core::Shape{o.batch, o.image_size, o.image_size, 3}, DType::f32, o.device, ctx.stream());
  core::ops::fill(ctx, x32, 0.5);
  const core::Tensor x = core::ops::cast(ctx, x32, dtype);

  std::vector<double> ms;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    graph.forward(ctx, {{"image", x}}, {.training = true});
    graph.backward(ctx, {{loss, core::Tensor()}});
    ctx.synchronize();
    const double t = std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - t0)
                         .count();
    if (i >= o.warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  fmt::print(
      "bench stack: ResNet-50 conv/BN/ReLU stack, {} params, batch {} x {}x{}x3 NHWC, {} compute, "
      "device {}\n",
      graph.num_parameters(), o.batch, o.image_size, o.image_size, o.dtype, o.device.str());
  fmt::print("forward+backward: median {:.2f} ms, min {:.2f} ms over {} iterations ({} warm-up); "
             "{:.0f} images/s\n",
             median, ms.front(), ms.size(), o.warmup, 1000.0 * o.batch / median);
}

}  // namespace cohort::launch
