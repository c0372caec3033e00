// Resume equivalence: training k steps, saving, and continuing gives bitwise the
// same weights as a fresh process that loads the checkpoint and continues. Also:
// a checkpoint of another architecture is refused with every difference named.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include <unistd.h>

#include "core/io/training_state.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::core::io {
namespace {

struct TinyRun {
  nn::Graph g;
  nn::NodeId loss;
  std::unique_ptr<optim::Optimizer> opt;
  Context ctx;
  explicit TinyRun(int64_t hidden = 8) {
    const nn::NodeId x = g.input("x");
    const nn::NodeId y = g.input("y");
    nn::NodeId h = g.add("fc1", std::make_unique<nn::Linear>(5, hidden), {x});
    h = g.add("relu", std::make_unique<nn::ReLU>(), {h});
    h = g.add("drop", std::make_unique<nn::Dropout>(0.3), {h});
    h = g.add("fc2", std::make_unique<nn::Linear>(hidden, 3), {h});
    loss = g.add("loss", std::make_unique<nn::CrossEntropyLoss>(), {h, y});
    g.build(Device::cpu(), 11);
    optim::OptimizerConfig c;
    c.kind = "adamw";
    c.weight_decay = 0.01;
    opt = std::make_unique<optim::Optimizer>(g, c);
    ctx.set_seed(99);
  }
  void step(int64_t i) {
    const Tensor x = cohort::testing::random_tensor(Shape{6, 5}, 1000 + i, -1, 1, DType::f32);
    const Tensor y = Tensor::from_vector({0, 1, 2, 0, 1, 2}, Shape{6}, DType::i32);
    g.forward(ctx, {{"x", x}, {"y", y}}, {.training = true});
    g.backward(ctx, {{loss, Tensor()}});
    opt->step(ctx, 1e-2);
  }
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (name + "-" + std::to_string(::getpid()) + ".h5"))
      .string();
}

TEST(TrainingCheckpoint, ResumeContinuesBitwiseIdentically) {
  const std::string path = temp_path("cohort-resume");
  TinyRun a;
  for (int64_t i = 0; i < 3; ++i)
    a.step(i);
  save_training_checkpoint(path, a.g, *a.opt, nullptr, a.ctx, {3, 0, 18, "model: tiny"});
  for (int64_t i = 3; i < 6; ++i)
    a.step(i);

  TinyRun b;  // a fresh process, in effect
  const TrainingProgress p = load_training_checkpoint(path, b.g, *b.opt, nullptr, b.ctx);
  EXPECT_EQ(p.step, 3);
  EXPECT_EQ(p.sample_in_epoch, 18);
  EXPECT_EQ(p.config, "model: tiny");
  EXPECT_EQ(b.opt->steps(), 3);
  EXPECT_EQ(b.ctx.rng_offset(), a.ctx.rng_offset() - 3 * 6 * 8) << "dropout counters restored";
  for (int64_t i = 3; i < 6; ++i)
    b.step(i);
  EXPECT_EQ(a.g.flat_params().to_vector(), b.g.flat_params().to_vector());
  std::filesystem::remove(path);
}

TEST(TrainingCheckpoint, AnotherArchitectureIsRefusedWithEveryDifference) {
  const std::string path = temp_path("cohort-mismatch");
  TinyRun a(8);
  a.step(0);
  save_training_checkpoint(path, a.g, *a.opt, nullptr, a.ctx, {});
  TinyRun b(4);  // fc1 and fc2 have other shapes
  const std::vector<double> before = b.g.flat_params().to_vector();
  try {
    load_training_checkpoint(path, b.g, *b.opt, nullptr, b.ctx);
    FAIL() << "expected a mismatch error";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const char* name : {"model/fc1.weight", "model/fc1.bias", "model/fc2.weight",
                             "optim/exp_avg/fc1.weight", "optim/exp_avg_sq/fc2.weight"})
      EXPECT_NE(m.find(name), std::string::npos) << name << " missing from: " << m;
  }
  EXPECT_EQ(b.g.flat_params().to_vector(), before) << "nothing may be loaded on a mismatch";
  std::filesystem::remove(path);
}

TEST(TrainingCheckpoint, AFailedLoadChangesNothing) {
  const std::string path = temp_path("cohort-partial");
  TinyRun a;
  a.step(0);
  save_training_checkpoint(path, a.g, *a.opt, nullptr, a.ctx, {1, 0, 6, ""});
  TinyRun b;
  optim::LossScalerConfig fp16;
  fp16.enabled = true;
  optim::LossScaler scaler(fp16, Device::cpu());
  const std::vector<double> before = b.g.flat_params().to_vector();
  const uint64_t offset_before = b.ctx.rng_offset();
  EXPECT_THROW(load_training_checkpoint(path, b.g, *b.opt, &scaler, b.ctx), Error);
  EXPECT_EQ(b.g.flat_params().to_vector(), before) << "parameters changed by a refused load";
  EXPECT_EQ(b.opt->steps(), 0);
  EXPECT_EQ(b.ctx.rng_offset(), offset_before);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cohort::core::io
