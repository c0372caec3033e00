// The trainer's step (launch/train_step) on a GPU in fp16 with the dynamic loss
// scaler: two micro-batches take the step of the whole batch (the 1/K seed is
// multiplied into the loss scale), and an overflowing step with clipping on is
// skipped cleanly (parameters unchanged, scale backed off) on every path; and in
// f32 with labels ignored unevenly across the micro-batches, whole-batch means
// (the normalisers and shares on the device) take the whole batch's step.
#ifdef COHORT_WITH_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/optim/loss_scaler.hpp"
#include "launch/engine.hpp"
#include "launch/train_step.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

struct Mlp {
  core::nn::Graph graph;
  launch::ModelNodes nodes;
  explicit Mlp(DType compute) {
    const auto image = graph.input("image");
    const auto label = graph.input("label");
    auto h = graph.add("fc1", std::make_unique<core::nn::Linear>(8, 32), {image});
    h = graph.add("relu", std::make_unique<core::nn::ReLU>(), {h});
    nodes.logits = graph.add("fc2", std::make_unique<core::nn::Linear>(32, 5), {h});
    nodes.loss =
        graph.add("loss", std::make_unique<core::nn::CrossEntropyLoss>(), {nodes.logits, label});
    graph.build(gpu().device(), 3, compute);
  }
};

// Rows in `ignored` get the ignore label 255.
data::Batch gpu_batch(uint64_t seed, const std::vector<int>& ignored = {}) {
  data::Batch b;
  b.indices.assign(16, 0);
  b.image = to_gpu(random_cpu(Shape{16, 8}, seed, -2, 2));
  std::vector<double> ids(16);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<double>((i * 7 + seed) % 5);
  for (int r : ignored)
    ids.at(static_cast<size_t>(r)) = 255;
  b.class_id = to_gpu(Tensor::from_vector(ids, Shape{16}, DType::i32));
  return b;
}

std::vector<double> train_f16(int micro, int steps, double init_scale, double clip,
                              core::optim::LossScalerState* state = nullptr) {
  Mlp m(DType::f16);
  launch::TrainConfig c;
  c.momentum = 0.9;
  c.weight_decay = 0;
  launch::TrainingEngine engine(m.graph, c, nullptr);
  core::optim::LossScalerConfig lc;
  lc.enabled = true;
  lc.init_scale = init_scale;
  core::optim::LossScaler scaler(lc, gpu().device());
  for (int s = 0; s < steps; ++s) {
    const data::Batch b = gpu_batch(40 + static_cast<uint64_t>(s));
    launch::run_train_step(gpu(), m.graph, m.nodes, engine, scaler,
                           launch::step_inputs(gpu(), b, m.nodes, DType::f16, micro),
                           {.lr = 0.05, .grad_clip_norm = clip});
  }
  if (state != nullptr) *state = scaler.state(gpu());
  return m.graph.flat_params().to_vector(gpu().stream());
}

TEST(GpuTrainStep, Fp16MicroBatchesTakeTheWholeBatchStep) {
  const std::vector<double> whole = train_f16(1, 3, 1024, 0);
  const std::vector<double> split = train_f16(2, 3, 1024, 0);
  ASSERT_EQ(whole.size(), split.size());
  double worst = 0, moved = 0;
  Mlp fresh(DType::f16);
  const std::vector<double> start = fresh.graph.flat_params().to_vector(gpu().stream());
  for (size_t i = 0; i < whole.size(); ++i) {
    worst = std::max(worst, std::abs(whole[i] - split[i]));
    moved = std::max(moved, std::abs(whole[i] - start[i]));
  }
  EXPECT_GT(moved, 1e-3) << "the steps must change the parameters";
  // f16 compute: the micro-batches round differently; far below the step itself.
  EXPECT_LT(worst, 0.02 * moved);
}

TEST(GpuTrainStep, AnOverflowingStepIsSkippedWithClippingOn) {
  Mlp fresh(DType::f16);
  const std::vector<double> start = fresh.graph.flat_params().to_vector(gpu().stream());
  for (int micro : {1, 2}) {
    core::optim::LossScalerState state;
    // A loss scale of 2^40 overflows f16 gradients at once.
    const std::vector<double> after = train_f16(micro, 1, std::ldexp(1.0, 40), 1.0, &state);
    EXPECT_EQ(after, start) << micro << " micro-batches: a skipped step changes nothing";
    EXPECT_EQ(state.skipped_steps, 1);
    EXPECT_DOUBLE_EQ(state.scale, std::ldexp(1.0, 39));
  }
}

std::vector<double> train_f32_ignoring(int micro, bool whole_batch_mean) {
  Mlp m(DType::f32);
  launch::TrainingEngine engine(m.graph, launch::TrainConfig{}, nullptr);
  core::optim::LossScaler scaler(core::optim::LossScalerConfig{}, gpu().device());
  // 7 of the first 8 rows ignored, none of the last 8: micro-batch 0 of 2 counts 1 row.
  const std::vector<int> ignored = {0, 1, 2, 3, 4, 5, 7};
  for (int s = 0; s < 3; ++s) {
    const data::Batch b = gpu_batch(60 + static_cast<uint64_t>(s), ignored);
    launch::run_train_step(gpu(), m.graph, m.nodes, engine, scaler,
                           launch::step_inputs(gpu(), b, m.nodes, DType::f32, micro),
                           {.lr = 0.1, .whole_batch_mean = whole_batch_mean});
  }
  return m.graph.flat_params().to_vector(gpu().stream());
}

TEST(GpuTrainStep, WholeBatchMeansWithIgnoredLabels) {
  const std::vector<double> whole = train_f32_ignoring(1, true);
  double same = 0, per_part = 0;
  const std::vector<double> split = train_f32_ignoring(2, true);
  const std::vector<double> alone = train_f32_ignoring(2, false);
  for (size_t i = 0; i < whole.size(); ++i) {
    same = std::max(same, std::abs(whole[i] - split[i]));
    per_part = std::max(per_part, std::abs(whole[i] - alone[i]));
  }
  EXPECT_LT(same, 1e-5) << "2 micro-batches with whole-batch means";
  EXPECT_GT(per_part, 1e-3) << "per-part means weigh the lone counted row 4x";
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
