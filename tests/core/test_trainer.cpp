// `cohort train` on one process: the config (file, overrides, errors that name
// the key), and the run on real Fashion-MNIST shards: an interrupted and resumed
// run ends bitwise equal to one that never stopped (model, optimizer state, step),
// a stop signal checkpoints at a step boundary and the next run continues there.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "data/convert.hpp"
#include "launch/train_config.hpp"
#include "launch/trainer.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::launch {
namespace {

const std::string kFashionMnist = "/usr/share/datasets/fashion-mnist";

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainConfig, FileThenOverridesAndTheResolvedYamlRoundTrips) {
  cohort::testing::TempDir dir;
  write_file(dir.file("c.yaml"),
             "run:\n  seed: 7\n  out_dir: /tmp/x\ndata:\n  train: shards/a\n  batch: 32\n"
             "optimizer:\n  kind: adamw\n  lr: 1e-3\n");
  const TrainConfig c =
      load_train_config(dir.file("c.yaml"), {"data.batch=128", "optimizer.nesterov=false"});
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.out_dir, "/tmp/x");
  EXPECT_EQ(c.batch, 128) << "an override wins over the file";
  EXPECT_EQ(c.optimizer, "adamw");
  EXPECT_DOUBLE_EQ(c.lr, 1e-3);
  EXPECT_FALSE(c.nesterov);
  EXPECT_EQ(c.momentum, TrainConfig{}.momentum) << "unset keys keep their defaults";

  write_file(dir.file("resolved.yaml"), to_yaml(c));
  const TrainConfig again = load_train_config(dir.file("resolved.yaml"), {});
  EXPECT_EQ(to_yaml(again), to_yaml(c));
}

TEST(TrainConfig, MistakesAreErrorsNamingTheKeyAndWhereItCameFrom) {
  cohort::testing::TempDir dir;
  write_file(dir.file("typo.yaml"), "data:\n  train: s\n  bacth: 32\n");
  const std::string typo = error_of([&] { load_train_config(dir.file("typo.yaml"), {}); });
  EXPECT_NE(typo.find("data.bacth"), std::string::npos) << typo;
  EXPECT_NE(typo.find("typo.yaml"), std::string::npos) << typo;
  EXPECT_NE(typo.find("batch"), std::string::npos) << "known keys are listed: " << typo;

  const std::string section = error_of([] { load_train_config("", {"dat.train=s"}); });
  EXPECT_NE(section.find("unknown section 'dat'"), std::string::npos) << section;
  const std::string number = error_of([] {
    load_train_config("", {"data.train=s", "data.batch=lots"});
  });
  EXPECT_NE(number.find("'lots' is not a valid number"), std::string::npos) << number;
  EXPECT_NE(number.find("--set data.batch=lots"), std::string::npos) << number;
  const std::string range = error_of([] {
    load_train_config("", {"data.train=s", "parallel.zero_stage=4"});
  });
  EXPECT_NE(range.find("parallel.zero_stage"), std::string::npos) << range;
  const std::string choice = error_of([] {
    load_train_config("", {"data.train=s", "optimizer.kind=lamb"});
  });
  EXPECT_NE(choice.find("sgd, adamw"), std::string::npos) << choice;
  EXPECT_NE(error_of([] { load_train_config("", {}); }).find("data.train"), std::string::npos)
      << "the training set is required";
  EXPECT_NE(error_of([] {
              load_train_config("", {"data.train=s", "oops"});
            }).find("section.key=value"),
            std::string::npos);
}

// Real Fashion-MNIST converted once for the training tests of this file.
class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kFashionMnist + "/train-images-idx3-ubyte.gz")) return;
    s_dir = std::make_unique<cohort::testing::TempDir>("cohort-trainer");
    const std::string out = s_dir->file("fmnist-train");
    ASSERT_EQ(data::run_convert({"fashion-mnist", "--dir", kFashionMnist, "--split", "train",
                                 "--out", out, "--quiet"}),
              0);
  }
  static void TearDownTestSuite() { s_dir.reset(); }
  void SetUp() override {
    if (!s_dir)
      GTEST_SKIP() << kFashionMnist << " is missing: apt-get install dataset-fashion-mnist";
  }

  TrainConfig config(const std::string& run) const {
    TrainConfig c;
    c.train_shards = s_dir->file("fmnist-train");
    c.out_dir = (m_runs.path() / run).string();
    c.batch = 32;
    c.threads = 2;
    c.max_steps = 12;
    c.warmup_steps = 2;
    c.log_every = 4;
    return c;
  }

  static std::unique_ptr<cohort::testing::TempDir> s_dir;
  cohort::testing::TempDir m_runs{"cohort-runs"};
};
std::unique_ptr<cohort::testing::TempDir> TrainerTest::s_dir;

// Model and optimizer tensors of two checkpoints must be bitwise equal.
void expect_same_training_state(const std::string& a_path, const std::string& b_path) {
  const core::io::CheckpointData a = core::io::read_checkpoint(a_path);
  const core::io::CheckpointData b = core::io::read_checkpoint(b_path);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_EQ(t.to_vector(), b.tensors.at(name).to_vector()) << name;
  }
  for (const char* key : {"step", "epoch", "sample_in_epoch", "optimizer_steps", "rng_offset"})
    EXPECT_EQ(a.integers.at(key), b.integers.at(key)) << key;
}

TEST_F(TrainerTest, AStoppedAndResumedRunEndsBitwiseEqualToAnUninterruptedOne) {
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  EXPECT_EQ(straight.steps, 12);
  EXPECT_FALSE(straight.stopped);
  EXPECT_FALSE(straight.resumed);

  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 5;  // as if signalled after 5 steps
  const TrainResult first = run_training(sliced, core::Device::cpu());
  EXPECT_TRUE(first.stopped);
  EXPECT_EQ(first.steps, 5);
  const TrainResult second = run_training(sliced, core::Device::cpu());
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(second.stopped);
  EXPECT_EQ(second.steps, 10);
  const TrainResult third = run_training(sliced, core::Device::cpu());
  EXPECT_FALSE(third.stopped);
  EXPECT_EQ(third.steps, 12);
  EXPECT_EQ(third.steps_this_run, 2);
  expect_same_training_state(straight.checkpoint, third.checkpoint);

  // A finished run resumed again has nothing left to do and changes nothing.
  const TrainResult done = run_training(sliced, core::Device::cpu());
  EXPECT_EQ(done.steps_this_run, 0);
  expect_same_training_state(straight.checkpoint, done.checkpoint);
  // Metrics were appended by every invocation, one JSON object per line.
  std::ifstream metrics((std::filesystem::path(sliced.out_dir) / "metrics.jsonl").string());
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    ++lines;
    EXPECT_EQ(line.front(), '{');
    EXPECT_NE(line.find("\"step\""), std::string::npos) << line;
  }
  EXPECT_GE(lines, 3);
}

TEST_F(TrainerTest, ASignalStopsAtAStepBoundaryWithACheckpointAndTheNextRunContinues) {
  TrainConfig c = config("signal");
  c.max_steps = 100000;  // far more than can run before the signal
  std::thread signaller([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::raise(SIGUSR1);
  });
  const TrainResult stopped = run_training(c, core::Device::cpu());
  signaller.join();
  ASSERT_TRUE(stopped.stopped);
  EXPECT_LT(stopped.steps, 100000);
  ASSERT_TRUE(std::filesystem::exists(stopped.checkpoint));
  EXPECT_EQ(core::io::read_checkpoint(stopped.checkpoint).integers.at("step"), stopped.steps);

  c.stop_after_steps = 2;
  const TrainResult next = run_training(c, core::Device::cpu());
  EXPECT_TRUE(next.resumed);
  EXPECT_EQ(next.steps, stopped.steps + 2);
}

// Synthetic street scenes (96x48; 6 train, 2 val) of `kind` in `dir`, and a small
// DeepLabV3+ run on them (batch 2: the image-pooling BatchNorm needs two samples).
void convert_scenes(const cohort::testing::TempDir& dir, const std::string& kind) {
  for (const char* split : {"train", "val"})
    ASSERT_EQ(data::run_convert({"synthetic-scenes", "--kind", kind, "--split", split, "--count",
                                 split == std::string("train") ? "6" : "2", "--width", "96",
                                 "--height", "48", "--out", dir.file(split), "--quiet"}),
              0);
}

TrainConfig deeplab_config(const cohort::testing::TempDir& dir, const std::string& run) {
  TrainConfig c;
  c.model = "deeplabv3plus";
  c.num_classes = 19;
  c.train_shards = dir.file("train");
  c.eval_shards = dir.file("val");
  c.out_dir = dir.file(run);
  c.batch = 2;
  c.crop_height = 48;
  c.crop_width = 48;
  c.threads = 2;
  c.max_steps = 3;
  c.warmup_steps = 0;
  c.lr = 0.01;
  return c;
}

// The segmentation workload's model on synthetic street scenes (random scale,
// crop and flip): it trains, evaluates mid-run and at the end (mIoU), and resumes
// bitwise.
TEST(TrainerSegmentation, DeepLabResumesBitwiseAndReportsMiou) {
  cohort::testing::TempDir dir("cohort-seg");
  convert_scenes(dir, "segmentation");
  auto config = [&](const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.eval_every = 2;  // also mid-run: evaluation must not disturb training
    return c;
  };
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  std::ifstream metrics(dir.file("straight") + "/metrics.jsonl");
  int evals = 0;
  for (std::string line; std::getline(metrics, line);)
    evals += line.find("eval_miou") != std::string::npos ? 1 : 0;
  EXPECT_EQ(evals, 2) << "at step 2 and at the end";
  EXPECT_EQ(straight.steps, 3);
  EXPECT_GE(straight.eval_miou, 0.0);
  EXPECT_LE(straight.eval_miou, 1.0);
  EXPECT_GT(straight.eval_accuracy, 0.0) << "pixel accuracy";
  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 2;
  EXPECT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  const TrainResult resumed = run_training(sliced, core::Device::cpu());
  EXPECT_EQ(resumed.steps, 3);
  expect_same_training_state(straight.checkpoint, resumed.checkpoint);
  EXPECT_EQ(resumed.eval_miou, straight.eval_miou);

  TrainConfig wrong = config("wrong");
  wrong.num_classes = 10;
  EXPECT_NE(error_of([&] { run_training(wrong, core::Device::cpu()); }).find("19 classes"),
            std::string::npos);
}

// Fine-tuning: a ResNet's backbone (all but fc) stays bitwise unchanged while
// frozen, trains after the unfreeze step, and a run resumed across the boundary
// ends bitwise equal to an uninterrupted one.
TEST_F(TrainerTest, FineTuningFreezesTheBackboneThenTrainsItAndResumesAcrossTheSwitch) {
  auto finetune = [&](const std::string& run) {
    TrainConfig c = config(run);
    c.model = "resnet";
    c.depth = 18;
    c.batch = 16;
    c.max_steps = 5;
    c.freeze_backbone_steps = 3;
    c.lr = 0.01;
    return c;
  };
  auto state_at = [](const std::string& checkpoint) {
    return core::io::read_checkpoint(checkpoint).tensors;
  };
  TrainConfig probe = finetune("probe");
  probe.stop_after_steps = 1;
  const auto step1 = state_at(run_training(probe, core::Device::cpu()).checkpoint);
  probe.stop_after_steps = 2;
  const auto step3 = state_at(run_training(probe, core::Device::cpu()).checkpoint);
  const auto step5 = state_at(run_training(probe, core::Device::cpu()).checkpoint);
  for (const char* name :
       {"model/conv1.weight", "model/layer4.1.conv2.weight", "model/bn1.weight"}) {
    EXPECT_EQ(step1.at(name).to_vector(), step3.at(name).to_vector()) << name << " while frozen";
    EXPECT_NE(step3.at(name).to_vector(), step5.at(name).to_vector()) << name << " after unfreeze";
  }
  EXPECT_NE(step1.at("model/fc.weight").to_vector(), step3.at("model/fc.weight").to_vector())
      << "the head trains while the backbone is frozen";

  const TrainResult straight = run_training(finetune("straight"), core::Device::cpu());
  EXPECT_EQ(straight.steps, 5);
  expect_same_training_state(straight.checkpoint,
                             (std::filesystem::path(probe.out_dir) / "checkpoint.h5").string());
}

// The multi-task workload: DeepLabV3+ with a depth head on street scenes that
// carry labels and depth, the two losses balanced by learned uncertainty. The
// balancing weights train, evaluation reports depth errors as well as mIoU, and
// a resumed run is bitwise equal to an uninterrupted one.
TEST(TrainerMultiTask, SegmentationAndDepthBalancedResumeBitwise) {
  cohort::testing::TempDir dir("cohort-mt");
  convert_scenes(dir, "multitask");
  auto config = [&](const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.depth_head = true;
    return c;
  };
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  EXPECT_EQ(straight.steps, 3);
  std::ifstream metrics(dir.file("straight") + "/metrics.jsonl");
  std::string first;
  std::getline(metrics, first);
  EXPECT_NE(first.find("\"seg_loss\""), std::string::npos) << first;
  EXPECT_NE(first.find("\"depth_loss\""), std::string::npos) << first;
  EXPECT_GE(straight.eval_miou, 0.0);
  EXPECT_GE(straight.eval_depth_abs_rel, 0.0);
  EXPECT_GE(straight.eval_depth_rmse, 0.0);
  const auto state = core::io::read_checkpoint(straight.checkpoint).tensors;
  ASSERT_TRUE(state.count("model/loss.log_vars"));
  const std::vector<double> log_vars = state.at("model/loss.log_vars").to_vector();
  ASSERT_EQ(log_vars.size(), 2u);
  EXPECT_NE(log_vars[0], 0.0) << "the balancing weights train";
  EXPECT_NE(log_vars[1], 0.0);
  EXPECT_TRUE(state.count("model/depth_head.weight"));

  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 2;
  EXPECT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  const TrainResult resumed = run_training(sliced, core::Device::cpu());
  EXPECT_EQ(resumed.steps, 3);
  expect_same_training_state(straight.checkpoint, resumed.checkpoint);

  TrainConfig seg_only = config("seg-only-shards");
  seg_only.train_shards = dir.file("missing-depth");
  ASSERT_EQ(
      data::run_convert({"synthetic-scenes", "--kind", "segmentation", "--count", "2", "--width",
                         "96", "--height", "48", "--out", seg_only.train_shards, "--quiet"}),
      0);
  EXPECT_NE(error_of([&] { run_training(seg_only, core::Device::cpu()); }).find("multitask"),
            std::string::npos);
}

TEST_F(TrainerTest, BadRunSettingsAreRefusedBeforeTraining) {
  TrainConfig c = config("bad");
  c.zero_stage = 2;
  EXPECT_NE(error_of([&] { run_training(c, core::Device::cpu()); }).find("needs ranks"),
            std::string::npos);
  c = config("bad2");
  c.train_shards = m_runs.file("does-not-exist");
  EXPECT_NE(error_of([&] { run_training(c, core::Device::cpu()); }).find("does-not-exist"),
            std::string::npos);
}

}  // namespace
}  // namespace cohort::launch
