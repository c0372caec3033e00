#include "launch/fashion_mnist_demo.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "core/nn/graph.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/optimizer.hpp"
#include "core/optim/schedule.hpp"
#include "data/idx.hpp"
#include "models/small_cnn.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

// Fashion-MNIST training-set statistics of pixel/255.
constexpr float kMean = 0.2860f, kStd = 0.3530f;

// Copies samples order[begin, end) into a normalised [B, 28, 28, 1] image batch and labels.
void make_batch(const data::ImageClassificationSet& set, const std::vector<int64_t>& order,
                int64_t begin, int64_t end, Tensor& images, Tensor& labels) {
  const int64_t b = end - begin, pixels = set.height * set.width;
  images = Tensor::empty(Shape{b, set.height, set.width, 1}, DType::f32);
  labels = Tensor::empty(Shape{b}, DType::i32);
  float* img = images.data<float>();
  int32_t* lab = labels.data<int32_t>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t s = order[static_cast<size_t>(begin + i)];
    const uint8_t* src = set.images.data() + s * pixels;
    for (int64_t p = 0; p < pixels; ++p)
      img[i * pixels + p] = (src[p] / 255.0f - kMean) / kStd;
    lab[i] = set.labels[static_cast<size_t>(s)];
  }
}

double evaluate(core::nn::Graph& graph, const models::SmallCnnNodes& nodes, core::Context& ctx,
                const data::ImageClassificationSet& test) {
  std::vector<int64_t> order(static_cast<size_t>(test.count));
  std::iota(order.begin(), order.end(), 0);
  int64_t correct = 0;
  constexpr int64_t kBatch = 500;
  for (int64_t begin = 0; begin < test.count; begin += kBatch) {
    const int64_t end = std::min(test.count, begin + kBatch);
    Tensor images, labels;
    make_batch(test, order, begin, end, images, labels);
    graph.forward(ctx, {{"image", images.to(ctx.device(), ctx.stream())}}, {.training = false},
                  {nodes.logits});
    const Tensor predicted = core::ops::argmax_channels(ctx, graph.output(nodes.logits));
    const std::vector<double> p = predicted.to_vector(ctx.stream());
    for (int64_t i = 0; i < end - begin; ++i)
      correct += static_cast<int64_t>(p[static_cast<size_t>(i)]) == labels.data<int32_t>()[i];
  }
  return static_cast<double>(correct) / static_cast<double>(test.count);
}

}  // namespace

FashionMnistResult train_fashion_mnist(const FashionMnistOptions& o) {
  COHORT_CHECK(o.epochs >= 1, fmt::format("demo: --epochs must be >= 1, got {}", o.epochs));
  COHORT_CHECK(o.batch_size >= 1, fmt::format("demo: --batch must be >= 1, got {}", o.batch_size));
  COHORT_CHECK(o.lr > 0, fmt::format("demo: --lr must be > 0, got {}", o.lr));
  const auto start = std::chrono::steady_clock::now();
  const data::ImageClassificationSet train = data::load_fashion_mnist(o.data_dir, "train");
  const data::ImageClassificationSet test = data::load_fashion_mnist(o.data_dir, "t10k");
  const int64_t n_train =
      o.max_train_samples > 0 ? std::min(o.max_train_samples, train.count) : train.count;

  core::nn::Graph graph;
  const models::SmallCnnNodes nodes = models::add_small_cnn(graph);
  graph.build(o.device, o.seed);
  core::Context ctx(o.device);
  ctx.set_seed(o.seed + 1);

  core::optim::OptimizerConfig oc;
  oc.kind = "sgd";
  oc.momentum = 0.9;
  oc.nesterov = true;
  oc.weight_decay = 5e-4;
  core::optim::Optimizer optimizer(graph, oc);
  const int64_t steps_per_epoch = n_train / o.batch_size;  // drop the ragged last batch
  COHORT_CHECK(
      steps_per_epoch >= 1,
      fmt::format("demo: --batch {} is larger than the {} training images", o.batch_size, n_train));
  core::optim::ScheduleConfig sc;
  sc.kind = "cosine";
  sc.base_lr = o.lr;
  sc.total_steps = steps_per_epoch * o.epochs;
  sc.warmup_steps = std::min<int64_t>(100, sc.total_steps / 10);
  core::optim::validate(sc);

  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> order(static_cast<size_t>(train.count));
  FashionMnistResult result;
  double running_loss = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      Tensor images, labels;
      make_batch(train, order, s * o.batch_size, (s + 1) * o.batch_size, images, labels);
      graph.forward(ctx,
                    {{"image", images.to(ctx.device(), ctx.stream())},
                     {"label", labels.to(ctx.device(), ctx.stream())}},
                    {.training = true});
      graph.backward(ctx, {{nodes.loss, Tensor()}});
      optimizer.step(ctx, core::optim::learning_rate(sc, result.steps));
      ++result.steps;
      if (o.verbose && (s % 100 == 0 || s + 1 == steps_per_epoch)) {
        // Reading the loss synchronises; done only on progress lines.
        const double loss = graph.output(nodes.loss).item(ctx.stream());
        running_loss = loss;
        fmt::print("epoch {} step {:>4}/{} loss {:.4f} lr {:.4f}\n", epoch + 1, s + 1,
                   steps_per_epoch, loss, core::optim::learning_rate(sc, result.steps - 1));
      }
    }
  }
  result.final_train_loss = o.verbose ? running_loss : graph.output(nodes.loss).item(ctx.stream());
  result.test_accuracy = evaluate(graph, nodes, ctx, test);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace cohort::launch
