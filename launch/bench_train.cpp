#include "launch/bench_train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <vector>

#include "comm/step_timer.hpp"
#include "core/determinism.hpp"
#include "core/memory_stats.hpp"
#include "core/optim/loss_scaler.hpp"
#include "launch/bench_stack.hpp"
#include "launch/engine.hpp"
#include "launch/train_step.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

// One batch of this rank's synthetic inputs, made on the host from (seed, rank)
// and copied once: plausible values (normalised pixels, every class and the
// ignore label, valid and invalid depth), so no op sees a degenerate case.
data::Batch synthetic_batch(const TrainConfig& c, const ModelNodes& nodes, int64_t rows,
                            int64_t height, int64_t width, int64_t channels, uint64_t seed,
                            core::Device device, core::Context& ctx) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> pixel(-2.0, 2.0), unit(0.0, 1.0), metres(1.0, 80.0);
  std::uniform_int_distribution<int> cls(0, c.num_classes - 1);
  data::Batch b;
  b.indices.resize(static_cast<size_t>(rows));
  std::iota(b.indices.begin(), b.indices.end(), 0);
  std::vector<double> image(static_cast<size_t>(rows * height * width * channels));
  for (double& v : image)
    v = pixel(rng);
  b.image =
      Tensor::from_vector(image, Shape{rows, height, width, channels}).to(device, ctx.stream());
  if (!nodes.dense) {
    std::vector<double> ids(static_cast<size_t>(rows));
    for (double& v : ids)
      v = cls(rng);
    b.class_id = Tensor::from_vector(ids, Shape{rows}, DType::i32).to(device, ctx.stream());
    return b;
  }
  const size_t pixels = static_cast<size_t>(rows * height * width);
  std::vector<double> label(pixels), depth(pixels), valid(pixels);
  for (size_t i = 0; i < pixels; ++i) {
    label[i] = unit(rng) < 0.1 ? 255 : cls(rng);
    valid[i] = unit(rng) < 0.9 ? 1 : 0;
    depth[i] = valid[i] != 0 ? metres(rng) : 0.0;
  }
  const Shape s{rows, height, width};
  b.label = Tensor::from_vector(label, s, DType::i32).to(device, ctx.stream());
  if (nodes.depth >= 0) {
    b.depth = Tensor::from_vector(depth, s, DType::f32).to(device, ctx.stream());
    b.depth_valid = Tensor::from_vector(valid, s, DType::u8).to(device, ctx.stream());
  }
  return b;
}

std::string model_text(const TrainConfig& c) {
  if (c.model == "deeplabv3plus")
    return fmt::format(
        "deeplabv3plus (ResNet-{}, output stride {}, {} classes{})", c.depth, c.output_stride,
        c.num_classes,
        c.depth_head ? fmt::format(", depth head, {} balancing", c.loss_balancing) : "");
  if (c.model == "resnet")
    return fmt::format("resnet (ResNet-{}, {} classes)", c.depth, c.num_classes);
  return fmt::format("{} ({} classes)", c.model, c.num_classes);
}

}  // namespace

BenchTrainResult run_bench_train(const TrainConfig& c, const BenchTrainOptions& o,
                                 core::Device device, TrainRanks ranks) {
  COHORT_CHECK(o.iters >= 1 && o.warmup >= 0 && o.profile_iters >= 0,
               fmt::format("bench train: need --iters >= 1 (got {}), --warmup >= 0 (got {}), "
                           "--profile >= 0 (got {})",
                           o.iters, o.warmup, o.profile_iters));
  // run.deterministic for this run (COHORT_DETERMINISTIC=1 sets it for the process).
  const core::DeterministicAlgorithms deterministic(c.deterministic ||
                                                    core::deterministic_algorithms());
  const int rank = rank_of(ranks), world = world_of(ranks);
  COHORT_CHECK(c.batch % (world * c.micro_batches) == 0,
               fmt::format("bench train: the global data.batch {} must split evenly over {} "
                           "ranks x {} micro-batches (data.micro_batches)",
                           c.batch, world, c.micro_batches));
  const DType compute = compute_dtype(c);
  core::nn::Graph graph;
  // small_cnn is the Fashion-MNIST network (grey images); the others take RGB.
  const int64_t channels = c.model == "small_cnn" ? 1 : 3;
  const ModelNodes nodes = add_model(graph, c, channels);
  graph.build(device, c.seed, compute);
  core::Context ctx(device);
  ctx.set_seed(c.seed + 1 + static_cast<uint64_t>(rank));
  TrainingEngine engine(graph, c, ranks.grads);
  core::optim::LossScalerConfig lc;
  lc.enabled = compute == DType::f16;
  core::optim::LossScaler scaler(lc, device);

  const int64_t rows = c.batch / world;
  int64_t height = c.crop_height, width = c.crop_width;
  // Classifiers: data.image_size, else 224 (small_cnn: Fashion-MNIST's 28).
  const int64_t default_size = c.model == "small_cnn" ? 28 : 224;
  if (!nodes.dense) height = width = c.image_size > 0 ? c.image_size : default_size;
  const data::Batch batch =
      synthetic_batch(c, nodes, rows, height, width, channels,
                      c.seed * 1000003 + static_cast<uint64_t>(rank), device, ctx);
  const auto inputs = step_inputs(ctx, batch, nodes, compute, c.micro_batches);
  const std::unique_ptr<TaskGradients> task_gradients =
      make_task_gradients(ctx, graph, nodes, engine, c);
  StepPhases phases(device);
  bool measure_phases = false;
  auto step = [&] {
    run_train_step(ctx, graph, nodes, engine, scaler, inputs,
                   {.lr = c.lr,
                    .grad_clip_norm = c.grad_clip_norm,
                    .whole_batch_mean = c.loss_normalize == "global",
                    .task_gradients = task_gradients.get()},
                   measure_phases ? &phases : nullptr);
  };
  std::vector<double> forward_ms, backward_ms, update_ms;
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };

  using Clock = std::chrono::steady_clock;
  std::vector<double> ms;
  comm::StepTimer timer;
  for (int i = 0; i < o.warmup + o.iters; ++i) {
    if (i == o.warmup) {
      ctx.synchronize();
      core::reset_peak_memory(device);  // the timed steps' peak, not setup's
      timer.reset();
    }
    ctx.synchronize();
    timer.begin_step();
    measure_phases = i >= o.warmup;
    const auto t0 = Clock::now();
    step();
    timer.add_exposed_comm(task_gradients ? task_gradients->exposed_comm_seconds()
                                          : engine.exposed_comm_seconds());
    ctx.synchronize();
    timer.end_step();
    if (i < o.warmup) continue;
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (c.micro_batches == 1) {
      // Complete after the synchronisation: every interval reads.
      forward_ms.push_back(1000.0 * phases.forward.seconds().value_or(0.0));
      backward_ms.push_back(1000.0 * phases.backward.seconds().value_or(0.0));
      update_ms.push_back(1000.0 * phases.update.seconds().value_or(0.0));
    }
  }
  measure_phases = false;
  BenchTrainResult r;
  r.parameters = graph.num_parameters();
  std::sort(ms.begin(), ms.end());
  r.median_ms = ms[ms.size() / 2];
  r.min_ms = ms.front();
  r.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  r.images_per_s = 1000.0 * static_cast<double>(c.batch) / r.median_ms;
  const core::MemoryStats mem = core::memory_stats(device);
  r.peak_in_use = mem.peak_in_use;

  if (rank == 0) {
    constexpr double mib = 1024.0 * 1024.0;
    fmt::print(
        "bench train: {}, {} parameters, global batch {} ({} per rank x {} rank{}{}), input "
        "{}x{}x{}, {} compute, {} optimizer{}, zero stage {}, device {}\n",
        model_text(c), r.parameters, c.batch, rows, world, world == 1 ? "" : "s",
        c.micro_batches > 1
            ? fmt::format(", {} micro-batches of {}", c.micro_batches, rows / c.micro_batches)
            : "",
        height, width, channels, c.dtype, c.optimizer,
        c.grad_clip_norm > 0 ? fmt::format(", gradient norm clipped to {}", c.grad_clip_norm) : "",
        c.zero_stage, device.str());
    fmt::print(
        "train step (forward + backward + optimizer): median {:.2f} ms, mean {:.2f} ms, min "
        "{:.2f} ms over {} iterations ({} warm-up); {:.1f} images/s\n",
        r.median_ms, r.mean_ms, r.min_ms, ms.size(), o.warmup, r.images_per_s);
    if (c.micro_batches == 1)
      fmt::print(
          "phases (device time, medians): forward {:.2f} ms, backward {:.2f} ms (with the "
          "gradient reductions), update {:.2f} ms\n",
          median_of(forward_ms), median_of(backward_ms), median_of(update_ms));
    fmt::print("peak memory (rank 0, timed steps): {:.1f} MiB in use, {:.1f} MiB reserved\n",
               static_cast<double>(mem.peak_in_use) / mib,
               static_cast<double>(mem.peak_reserved) / mib);
  }
  if (ranks.control != nullptr) {
    const comm::RankBreakdowns times = comm::summarize(timer, MPI_COMM_WORLD);
    if (rank == 0) fmt::print("step time per rank (mean):\n{}", times.str());
  }
  // Profiling synchronises around every layer; with several ranks the collectives
  // inside backward would tie the ranks' profiles together, so one rank only.
  if (o.profile_iters > 0 && world == 1) print_layer_profile(graph, step, o.profile_iters);
  if (o.profile_iters > 0 && world > 1 && rank == 0)
    fmt::print("--profile: skipped (one rank only; run without mpirun to profile)\n");
  return r;
}

}  // namespace cohort::launch
