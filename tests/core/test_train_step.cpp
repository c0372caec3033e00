// The trainer's step (launch/train_step): gradient accumulation over
// micro-batches takes the same step as the whole batch, also when labels are
// ignored unevenly across the micro-batches (whole-batch means; per micro-batch
// means, loss.normalize per_rank, differ), the reported loss is the mean over the
// micro-batches, and gradient clipping scales the gradient to the maximum norm
// (and leaves it alone below it). A BatchNorm-free network, so that splitting the
// batch changes nothing but the order of sums (BatchNorm does change: see
// data.micro_batches in launch/train_config.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/optim/loss_scaler.hpp"
#include "launch/engine.hpp"
#include "launch/train_step.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

struct Mlp {
  core::nn::Graph graph;
  ModelNodes nodes;

  Mlp() {
    const auto image = graph.input("image");
    const auto label = graph.input("label");
    auto h = graph.add("fc1", std::make_unique<core::nn::Linear>(6, 16), {image});
    h = graph.add("relu", std::make_unique<core::nn::ReLU>(), {h});
    nodes.logits = graph.add("fc2", std::make_unique<core::nn::Linear>(16, 4), {h});
    nodes.loss =
        graph.add("loss", std::make_unique<core::nn::CrossEntropyLoss>(), {nodes.logits, label});
    graph.build(core::Device::cpu(), 7);
  }
};

// Labels of `ignored` rows are the ignore label 255.
data::Batch batch_of(int64_t rows, uint64_t seed, const std::vector<int>& ignored = {}) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> x(0.0, 1.0);
  std::uniform_int_distribution<int> cls(0, 3);
  data::Batch b;
  b.indices.assign(static_cast<size_t>(rows), 0);
  std::vector<double> image(static_cast<size_t>(rows * 6)), ids(static_cast<size_t>(rows));
  for (double& v : image)
    v = x(rng);
  for (double& v : ids)
    v = cls(rng);
  for (int r : ignored)
    ids.at(static_cast<size_t>(r)) = 255;
  b.image = Tensor::from_vector(image, Shape{rows, 6});
  b.class_id = Tensor::from_vector(ids, Shape{rows}, DType::i32);
  return b;
}

TrainConfig sgd_config(double momentum, double weight_decay) {
  TrainConfig c;
  c.momentum = momentum;
  c.nesterov = momentum > 0;
  c.weight_decay = weight_decay;
  return c;
}

// Runs `steps` steps of batches of 8 as `micro` micro-batches; the parameters
// after them and the last step's loss.
// With `ignored` rows (see batch_of) and whole-batch means or not.
std::pair<std::vector<double>, double> train(int micro, int steps, double clip = 0,
                                             double momentum = 0.9, double decay = 5e-4,
                                             const std::vector<int>& ignored = {},
                                             bool whole_batch_mean = true) {
  Mlp m;
  core::Context ctx(core::Device::cpu());
  TrainingEngine engine(m.graph, sgd_config(momentum, decay), nullptr);
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  double loss = 0;
  for (int s = 0; s < steps; ++s) {
    const data::Batch b = batch_of(8, 100 + static_cast<uint64_t>(s), ignored);
    const StepLosses l = run_train_step(
        ctx, m.graph, m.nodes, engine, scaler, step_inputs(ctx, b, m.nodes, DType::f32, micro),
        {.lr = 0.1, .grad_clip_norm = clip, .whole_batch_mean = whole_batch_mean});
    loss = l.loss.item();
  }
  return {m.graph.flat_params().to_vector(), loss};
}

double max_abs_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i)
    d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

TEST(TrainStep, MicroBatchesTakeTheSameStepAsTheWholeBatch) {
  const auto [whole, whole_loss] = train(1, 3);
  for (int micro : {2, 4, 8}) {
    const auto [split, split_loss] = train(micro, 3);
    // Only the order of f32 sums differs.
    EXPECT_LT(max_abs_difference(whole, split), 2e-6) << micro << " micro-batches";
    EXPECT_NEAR(split_loss, whole_loss, 2e-6) << micro << " micro-batches";
  }
  // And the comparison can fail: two steps are not three.
  EXPECT_GT(max_abs_difference(whole, train(1, 2).first), 1e-4);
}

// Rows 0-2 and 5 ignored: with 2 micro-batches one holds 1 counted row, the other
// 3; with 4, one holds none. The mean over each micro-batch alone weighs those
// rows differently from the whole batch's mean; whole-batch means do not.
TEST(TrainStep, MicroBatchesWithIgnoredLabelsTakeTheWholeBatchStep) {
  const std::vector<int> ignored = {0, 1, 2, 5};
  const auto [whole, whole_loss] = train(1, 3, 0, 0.9, 5e-4, ignored);
  for (int micro : {2, 4}) {
    const auto [split, split_loss] = train(micro, 3, 0, 0.9, 5e-4, ignored);
    EXPECT_LT(max_abs_difference(whole, split), 2e-6) << micro << " micro-batches";
    EXPECT_NEAR(split_loss, whole_loss, 2e-6) << micro << " micro-batches";
    const auto per_part = train(micro, 3, 0, 0.9, 5e-4, ignored, false).first;
    EXPECT_GT(max_abs_difference(whole, per_part), 1e-4)
        << micro << " micro-batches averaged alone differ from the whole batch";
  }
  // A micro-batch (and a whole batch) with nothing counted: no step, no NaN.
  const std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  Mlp start;
  const auto [none, none_loss] = train(2, 1, 0, 0.9, 0, all);
  EXPECT_EQ(none, start.graph.flat_params().to_vector());
  EXPECT_EQ(none_loss, 0.0);
}

TEST(TrainStep, TheStepLossIsTheMeanOverItsMicroBatches) {
  Mlp m;
  core::Context ctx(core::Device::cpu());
  const data::Batch b = batch_of(8, 5);
  const auto parts = step_inputs(ctx, b, m.nodes, DType::f32, 2);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[1].at("image").dim(0), 4);
  EXPECT_EQ(parts[1].at("label").to_vector()[0], b.class_id.to_vector()[4]);
  double expected = 0;
  for (const StepInputs& p : parts) {
    m.graph.forward(ctx, p, {.training = true}, {m.nodes.loss});
    expected += m.graph.output(m.nodes.loss).item() / 2;
  }
  TrainingEngine engine(m.graph, sgd_config(0.9, 0), nullptr);
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, core::Device::cpu());
  const StepLosses l = run_train_step(ctx, m.graph, m.nodes, engine, scaler, parts, {.lr = 0.1});
  EXPECT_NEAR(l.loss.item(), expected, 1e-6);
  EXPECT_THROW(step_inputs(ctx, b, m.nodes, DType::f32, 3), Error);
}

TEST(TrainStep, ClippingScalesTheGradientToTheMaximumNorm) {
  // Plain SGD (no momentum, no decay) with lr 0.1: the update is 0.1 * gradient.
  Mlp start;
  const std::vector<double> p0 = start.graph.flat_params().to_vector();
  const std::vector<double> free = train(1, 1, 0, 0, 0).first;
  double norm = 0;
  for (size_t i = 0; i < p0.size(); ++i)
    norm += (p0[i] - free[i]) * (p0[i] - free[i]);
  norm = std::sqrt(norm) / 0.1;  // the gradient's global L2 norm
  ASSERT_GT(norm, 0.05);

  const double max_norm = 0.25 * norm;
  const std::vector<double> clipped = train(1, 1, max_norm, 0, 0).first;
  const double factor = max_norm / (norm + 1e-6);
  for (size_t i = 0; i < p0.size(); ++i)
    EXPECT_NEAR(p0[i] - clipped[i], factor * (p0[i] - free[i]), 1e-6) << "element " << i;
  // Above the gradient's norm nothing changes, bitwise.
  EXPECT_EQ(train(1, 1, 4 * norm, 0, 0).first, free);
  // With micro-batches the clip applies to the accumulated gradient.
  EXPECT_LT(max_abs_difference(train(4, 1, max_norm, 0, 0).first, clipped), 2e-6);
}

}  // namespace
}  // namespace cohort::launch
