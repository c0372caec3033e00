#include "launch/fashion_mnist_demo.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "core/nn/graph.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/optimizer.hpp"
#include "core/optim/schedule.hpp"
#include "data/idx.hpp"
#include "data/sampler.hpp"
#include "launch/engine.hpp"
#include "models/small_cnn.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

// Fashion-MNIST training-set statistics of pixel/255.
constexpr float kMean = 0.2860f, kStd = 0.3530f;

// Copies the given samples into a normalised [B, 28, 28, 1] image batch and labels.
void make_batch(const data::ImageClassificationSet& set, const std::vector<int64_t>& samples,
                Tensor& images, Tensor& labels) {
  const int64_t b = static_cast<int64_t>(samples.size()), pixels = set.height * set.width;
  images = Tensor::empty(Shape{b, set.height, set.width, 1}, DType::f32);
  labels = Tensor::empty(Shape{b}, DType::i32);
  float* img = images.data<float>();
  int32_t* lab = labels.data<int32_t>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t s = samples[static_cast<size_t>(i)];
    const uint8_t* src = set.images.data() + s * pixels;
    for (int64_t p = 0; p < pixels; ++p)
      img[i * pixels + p] = (src[p] / 255.0f - kMean) / kStd;
    lab[i] = set.labels[static_cast<size_t>(s)];
  }
}

// Correct predictions on this rank's part of the test set. Under ZeRO-3 every
// forward gathers parameters (collective), so every rank runs the same number of
// batches: a rank with fewer repeats its first image and ignores the result.
int64_t count_correct(core::nn::Graph& graph, const models::SmallCnnNodes& nodes,
                      core::Context& ctx, const data::ImageClassificationSet& test, int rank,
                      int world, bool lockstep) {
  constexpr int64_t kBatch = 500;
  const data::EvalSampler sampler(test.count, kBatch, rank, world);
  const int64_t batches = lockstep ? sampler.max_batches() : sampler.batches();
  int64_t correct = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const bool real = b < sampler.batches();
    const std::vector<int64_t> samples =
        real ? sampler.batch(b) : std::vector<int64_t>{std::min(sampler.begin(), test.count - 1)};
    Tensor images, labels;
    make_batch(test, samples, images, labels);
    graph.forward(ctx, {{"image", images.to(ctx.device(), ctx.stream())}}, {.training = false},
                  {nodes.logits});
    if (!real) continue;
    const Tensor predicted = core::ops::argmax_channels(ctx, graph.output(nodes.logits));
    const std::vector<double> p = predicted.to_vector(ctx.stream());
    for (size_t i = 0; i < samples.size(); ++i)
      correct += static_cast<int64_t>(p[i]) == labels.data<int32_t>()[i];
  }
  return correct;
}

}  // namespace

FashionMnistResult train_fashion_mnist(const FashionMnistOptions& o) {
  COHORT_CHECK(o.epochs >= 1, fmt::format("demo: --epochs must be >= 1, got {}", o.epochs));
  COHORT_CHECK(o.batch_size >= 1, fmt::format("demo: --batch must be >= 1, got {}", o.batch_size));
  COHORT_CHECK(o.lr > 0, fmt::format("demo: --lr must be > 0, got {}", o.lr));
  COHORT_CHECK(o.zero_stage >= 0 && o.zero_stage <= 3,
               fmt::format("demo: --zero must be 0, 1, 2 or 3, got {}", o.zero_stage));
  COHORT_CHECK(
      o.comm != nullptr || o.zero_stage == 0,
      fmt::format("demo: --zero {} needs ranks (start under mpirun or srun)", o.zero_stage));
  const int world = o.comm != nullptr ? o.comm->size() : 1;
  const int rank = o.comm != nullptr ? o.comm->rank() : 0;
  COHORT_CHECK(o.batch_size % world == 0,
               fmt::format("demo: the global --batch {} must split evenly over {} ranks",
                           o.batch_size, world));
  const bool talk = o.verbose && rank == 0;
  const auto start = std::chrono::steady_clock::now();
  const data::ImageClassificationSet train = data::load_fashion_mnist(o.data_dir, "train");
  const data::ImageClassificationSet test = data::load_fashion_mnist(o.data_dir, "t10k");
  const int64_t n_train =
      o.max_train_samples > 0 ? std::min(o.max_train_samples, train.count) : train.count;
  COHORT_CHECK(
      o.batch_size <= n_train,
      fmt::format("demo: --batch {} is larger than the {} training images", o.batch_size, n_train));

  core::nn::Graph graph;
  const models::SmallCnnNodes nodes = models::add_small_cnn(graph);
  graph.build(o.device, o.seed);
  core::Context ctx(o.device);
  // Dropout masks differ per rank (each rank's seed), as each rank's samples do.
  ctx.set_seed(o.seed + 1 + static_cast<uint64_t>(rank));

  core::optim::OptimizerConfig oc;
  oc.kind = "sgd";
  oc.momentum = 0.9;
  oc.nesterov = true;
  oc.weight_decay = 5e-4;
  TrainingEngine trainer(graph, oc, o.comm, o.zero_stage);  // collective with a communicator

  data::TrainSampler::Options so;
  so.dataset_size = n_train;
  so.batch_size = o.batch_size / world;
  so.rank = rank;
  so.world_size = world;
  so.seed = o.seed;
  data::TrainSampler sampler(so);
  const int64_t steps_per_epoch = sampler.steps_per_epoch();
  core::optim::ScheduleConfig sc;
  sc.kind = "cosine";
  sc.base_lr = o.lr;
  sc.total_steps = steps_per_epoch * o.epochs;
  sc.warmup_steps = std::min<int64_t>(100, sc.total_steps / 10);
  core::optim::validate(sc);

  FashionMnistResult result;
  result.world_size = world;
  comm::StepTimer timer;
  double last_loss = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      timer.begin_step();
      const auto data_start = std::chrono::steady_clock::now();
      Tensor images, labels;
      make_batch(train, sampler.next(), images, labels);
      timer.add_data_wait(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start).count());
      graph.forward(ctx,
                    {{"image", images.to(ctx.device(), ctx.stream())},
                     {"label", labels.to(ctx.device(), ctx.stream())}},
                    {.training = true});
      trainer.prepare(ctx);
      graph.backward(ctx, {{nodes.loss, Tensor()}});
      trainer.finish(ctx);
      timer.add_exposed_comm(trainer.exposed_comm_seconds());
      trainer.step(ctx, core::optim::learning_rate(sc, result.steps));
      ++result.steps;
      const bool progress = s % 100 == 0 || s + 1 == steps_per_epoch;
      if (progress || (epoch + 1 == o.epochs && s + 1 == steps_per_epoch)) {
        // Reading the loss synchronises; done only on progress lines.
        last_loss = graph.output(nodes.loss).item(ctx.stream());
        if (talk && progress)
          fmt::print("epoch {} step {:>4}/{} loss {:.4f} lr {:.4f}\n", epoch + 1, s + 1,
                     steps_per_epoch, last_loss, core::optim::learning_rate(sc, result.steps - 1));
      }
      timer.end_step();
    }
  }
  result.final_train_loss = last_loss;

  int64_t correct = count_correct(graph, nodes, ctx, test, rank, world, o.zero_stage == 3);
  if (o.comm != nullptr) {
    // Summed over ranks on the communicator's device (NCCL needs device memory).
    Tensor total = Tensor::from_vector({static_cast<double>(correct)}, Shape{1}, DType::i64)
                       .to(o.comm->device(), ctx.stream());
    o.comm->all_reduce(total, comm::ReduceOp::sum, ctx.stream())->wait();
    correct = static_cast<int64_t>(total.item(ctx.stream()));
    // The communicator spans MPI_COMM_WORLD (the launcher's ranks).
    result.step_times = comm::summarize(timer, MPI_COMM_WORLD);
  }
  result.test_accuracy = static_cast<double>(correct) / static_cast<double>(test.count);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace cohort::launch
