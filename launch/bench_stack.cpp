#include "launch/bench_stack.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "models/resnet.hpp"

namespace cohort::launch {

// Per-layer times with a synchronisation around every layer: where the time goes,
// not how fast the whole step is (synchronising removes all overlap).
void print_layer_profile(core::nn::Graph& graph, const std::function<void()>& one_step, int iters) {
  graph.set_profiling(true);
  graph.reset_timings();
  for (int i = 0; i < iters; ++i)
    one_step();
  graph.set_profiling(false);
  struct Total {
    double forward = 0, backward = 0;
    int layers = 0;
  };
  std::map<std::string, Total> by_kind;
  std::vector<core::nn::Graph::LayerTiming> layers;
  for (const auto& t : graph.timings()) {
    if (t.runs == 0) continue;
    Total& k = by_kind[t.kind];
    k.forward += t.forward_ms / iters;
    k.backward += t.backward_ms / iters;
    ++k.layers;
    layers.push_back(t);
  }
  fmt::print("per-layer profile (synchronised, mean of {} iterations), by kind:\n", iters);
  for (const auto& [kind, t] : by_kind)
    fmt::print("  {:<18} {:>3} layers  forward {:>9.2f} ms  backward {:>9.2f} ms\n", kind, t.layers,
               t.forward, t.backward);
  std::sort(layers.begin(), layers.end(), [](const auto& a, const auto& b) {
    return a.forward_ms + a.backward_ms > b.forward_ms + b.backward_ms;
  });
  fmt::print("slowest layers:\n");
  for (size_t i = 0; i < std::min<size_t>(12, layers.size()); ++i)
    fmt::print("  {:<24} {:<12} forward {:>8.2f} ms  backward {:>8.2f} ms\n", layers[i].name,
               layers[i].kind, layers[i].forward_ms / iters, layers[i].backward_ms / iters);
}

void run_bench_stack(const BenchStackOptions& o) {
  using core::DType;
  const DType dtype = o.dtype == "bf16" ? DType::bf16 : o.dtype == "f16" ? DType::f16 : DType::f32;
  COHORT_CHECK(o.dtype == "bf16" || o.dtype == "f16" || o.dtype == "f32",
               fmt::format("bench stack: --dtype must be f32, bf16 or f16, got {}", o.dtype));
  COHORT_CHECK(
      o.batch >= 1 && o.image_size >= 32 && o.iters >= 1 && o.warmup >= 0 && o.profile_iters >= 0,
      fmt::format("bench stack: need --batch >= 1 (got {}), --size >= 32 (got {}), "
                  "--iters >= 1 (got {}), --warmup >= 0 (got {}), --profile >= 0 (got {})",
                  o.batch, o.image_size, o.iters, o.warmup, o.profile_iters));
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

  core::Tensor x32 = core::Tensor::empty(core::Shape{o.batch, o.image_size, o.image_size, 3},
                                         DType::f32, o.device, ctx.stream());
  core::ops::fill(ctx, x32, 0.5);
  const core::Tensor x = core::ops::cast(ctx, x32, dtype);
  // The mean's gradient, 1 / numel (3.9e-8 for layer 4 at batch 256), is below
  // f16's smallest normal: seed backward with a loss scale, as fp16 training does.
  core::Tensor seed;
  if (dtype == DType::f16) {
    seed = core::Tensor::empty(core::Shape{1}, DType::f32, o.device, ctx.stream());
    core::ops::fill(ctx, seed, 65536.0);
  }

  std::vector<double> ms;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    ctx.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    graph.forward(ctx, {{"image", x}}, {.training = true});
    graph.backward(ctx, {{loss, seed}});
    ctx.synchronize();
    const double t =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= o.warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  fmt::print(
      "bench stack: ResNet-50 conv/BN/ReLU stack, {} params, batch {} x {}x{}x3 NHWC, {} compute, "
      "device {}\n",
      graph.num_parameters(), o.batch, o.image_size, o.image_size, o.dtype, o.device.str());
  fmt::print(
      "forward+backward: median {:.2f} ms, min {:.2f} ms over {} iterations ({} warm-up); "
      "{:.0f} images/s\n",
      median, ms.front(), ms.size(), o.warmup, 1000.0 * o.batch / median);
  if (o.profile_iters > 0)
    print_layer_profile(
        graph,
        [&] {
          graph.forward(ctx, {{"image", x}}, {.training = true});
          graph.backward(ctx, {{loss, seed}});
        },
        o.profile_iters);
}

}  // namespace cohort::launch
