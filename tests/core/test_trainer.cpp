// `cohort train` on one process: the config (file, overrides, errors that name
// the key), and the run on real Fashion-MNIST shards: an interrupted and resumed
// run ends bitwise equal to one that never stopped (model, optimizer state, step),
// a stop signal checkpoints at a step boundary and the next run continues there.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "core/io/safetensors.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"
#include "core/ops/ops.hpp"
#include "data/convert.hpp"
#include "launch/checkpoint_history.hpp"
#include "launch/doctor.hpp"
#include "launch/export_command.hpp"
#include "launch/train_config.hpp"
#include "launch/trainer.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::launch {
namespace {

const std::string kFashionMnist = "/usr/share/datasets/fashion-mnist";

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

using cohort::testing::error_of;

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

// The data-parallel settings of issue-level knobs reach the config: bucket size,
// bf16 gradient communication (stages 0/1 only), SyncBatchNorm, stage-3 prefetch.
TEST(TrainConfig, ParallelSettingsParseAndMistakesAreNamed) {
  const TrainConfig c = load_train_config(
      "", {"data.train=s", "parallel.bucket_mib=50", "parallel.bf16_gradients=true",
           "parallel.sync_batch_norm=false", "parallel.prefetch_mib=64"});
  EXPECT_DOUBLE_EQ(c.bucket_mib, 50);
  EXPECT_TRUE(c.bf16_gradients);
  EXPECT_FALSE(c.sync_batch_norm);
  EXPECT_DOUBLE_EQ(c.prefetch_mib, 64);
  EXPECT_NE(to_yaml(c).find("prefetch_mib: 64"), std::string::npos) << to_yaml(c);
  const std::string bf16 = error_of([] {
    load_train_config("",
                      {"data.train=s", "parallel.bf16_gradients=true", "parallel.zero_stage=2"});
  });
  EXPECT_NE(bf16.find("parallel.bf16_gradients is for zero_stage 0 and 1"), std::string::npos)
      << bf16;
  const std::string bucket = error_of([] {
    load_train_config("", {"data.train=s", "parallel.bucket_mib=0"});
  });
  EXPECT_NE(bucket.find("parallel.bucket_mib"), std::string::npos) << bucket;
}

TEST(TrainConfig, DepthScaleParsesIsCheckedAndTravelsInCheckpoints) {
  const std::vector<std::string> mt{"data.train=s", "model.kind=deeplabv3plus",
                                    "model.depth_head=true"};
  EXPECT_EQ(load_train_config("", mt).depth_scale, 1.0) << "metres, as before the key";
  std::vector<std::string> five = mt;
  five.push_back("model.depth_scale=5");
  const TrainConfig c = load_train_config("", five);
  EXPECT_EQ(c.depth_scale, 5);
  EXPECT_EQ(checkpoint_train_config({{"config", to_yaml(c)}}, "c.h5", "eval", {}).depth_scale, 5);
  for (const char* bad : {"model.depth_scale=0", "model.depth_scale=-2"}) {
    std::vector<std::string> o = mt;
    o.push_back(bad);
    const std::string message = error_of([&] { load_train_config("", o); });
    EXPECT_NE(message.find("model.depth_scale must be a positive number of metres"),
              std::string::npos)
        << bad << ": " << message;
  }
  const std::string unused = error_of([] {
    load_train_config("", {"data.train=s", "model.kind=deeplabv3plus", "model.depth_scale=5"});
  });
  EXPECT_NE(unused.find("model.depth_scale is set but only used with model.depth_head"),
            std::string::npos)
      << unused;
}

TEST(TrainConfig, DeterministicParsesRoundTripsAndBadValuesAreNamed) {
  EXPECT_FALSE(load_train_config("", {"data.train=s"}).deterministic);
  const TrainConfig c = load_train_config("", {"data.train=s", "run.deterministic=true"});
  EXPECT_TRUE(c.deterministic);
  EXPECT_NE(to_yaml(c).find("deterministic: true"), std::string::npos) << to_yaml(c);
  const std::string bad = error_of([] {
    load_train_config("", {"data.train=s", "run.deterministic=sometimes"});
  });
  EXPECT_NE(bad.find("run.deterministic"), std::string::npos) << bad;
}

TEST(TrainConfig, AccumulationAndClippingParseAndMistakesAreNamed) {
  const TrainConfig c = load_train_config(
      "",
      {"data.train=s", "data.batch=64", "data.micro_batches=4", "optimizer.grad_clip_norm=1.5"});
  EXPECT_EQ(c.micro_batches, 4);
  EXPECT_DOUBLE_EQ(c.grad_clip_norm, 1.5);
  const TrainConfig again = parse_train_config(to_yaml(c), "resolved");
  EXPECT_EQ(again.micro_batches, 4);
  EXPECT_DOUBLE_EQ(again.grad_clip_norm, 1.5);
  const std::string split = error_of([] {
    load_train_config("", {"data.train=s", "data.batch=10", "data.micro_batches=4"});
  });
  EXPECT_NE(split.find("data.micro_batches"), std::string::npos) << split;
  const std::string clip = error_of([] {
    load_train_config("", {"data.train=s", "optimizer.grad_clip_norm=-1"});
  });
  EXPECT_NE(clip.find("optimizer.grad_clip_norm"), std::string::npos) << clip;
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
// a resumed run is bitwise equal to an uninterrupted one. With model.depth_scale
// the head works in units of it; exported for PyTorch, it predicts metres.
TEST(TrainerMultiTask, SegmentationAndDepthBalancedResumeBitwise) {
  cohort::testing::TempDir dir("cohort-mt");
  convert_scenes(dir, "multitask");
  auto config = [&](const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.depth_head = true;
    c.depth_scale = 4;
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
  const std::string exported = dir.file("model.safetensors");
  run_export({.checkpoint = straight.checkpoint, .out = exported});
  const auto tensors = core::io::read_safetensors(exported);
  for (const char* name : {"depth_head.weight", "depth_head.bias"}) {
    const std::vector<double> head = state.at(std::string("model/") + name).to_vector();
    const std::vector<double> out = tensors.at(name).to_vector();
    ASSERT_EQ(out.size(), head.size()) << name;
    for (size_t i = 0; i < head.size(); ++i)
      ASSERT_EQ(out[i], head[i] * 4) << name << "[" << i << "]: exported in metres";
  }

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

// Gradient accumulation and clipping through `cohort train`: the run stops and
// resumes bitwise like any other, and the settings change the result.
TEST_F(TrainerTest, MicroBatchesAndClippingTrainAndResumeBitwise) {
  TrainConfig c = config("micro-straight");
  c.micro_batches = 4;
  c.grad_clip_norm = 0.5;
  const TrainResult straight = run_training(c, core::Device::cpu());
  EXPECT_EQ(straight.steps, 12);
  EXPECT_TRUE(std::isfinite(straight.final_loss));

  TrainConfig sliced = c;
  sliced.out_dir = (m_runs.path() / "micro-sliced").string();
  sliced.stop_after_steps = 7;
  EXPECT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  const TrainResult rest = run_training(sliced, core::Device::cpu());
  EXPECT_TRUE(rest.resumed);
  EXPECT_EQ(rest.steps, 12);
  expect_same_training_state(straight.checkpoint, rest.checkpoint);

  // Without clipping the same micro-batches give other weights.
  TrainConfig unclipped = c;
  unclipped.out_dir = (m_runs.path() / "micro-unclipped").string();
  unclipped.grad_clip_norm = 0;
  const TrainResult free = run_training(unclipped, core::Device::cpu());
  const auto a = core::io::read_checkpoint(straight.checkpoint).tensors.at("model/fc2.weight");
  const auto b = core::io::read_checkpoint(free.checkpoint).tensors.at("model/fc2.weight");
  EXPECT_NE(a.to_vector(), b.to_vector());
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

// ---- multi-task loss balancing: loss.balancing fixed and dwa ------------------------

TEST(TrainConfig, LossBalancingKeysParseRoundTripAndUnusedOnesAreErrors) {
  cohort::testing::TempDir dir;
  const std::string base =
      "model:\n  kind: deeplabv3plus\n  num_classes: 19\n  depth_head: true\ndata:\n  train: s\n";
  write_file(dir.file("fixed.yaml"), base + "loss:\n  balancing: fixed\n  weights: [1, 0.5]\n");
  const TrainConfig c = load_train_config(dir.file("fixed.yaml"), {});
  EXPECT_EQ(c.loss_balancing, "fixed");
  EXPECT_EQ(c.loss_weights, (std::vector<double>{1, 0.5}));
  EXPECT_EQ(TrainConfig{}.loss_balancing, "uncertainty") << "today's behaviour by default";
  // Comma text in the file and on the command line (brackets optional).
  write_file(dir.file("text.yaml"), base + "loss:\n  balancing: fixed\n  weights: 2, 0.25\n");
  EXPECT_EQ(load_train_config(dir.file("text.yaml"), {}).loss_weights,
            (std::vector<double>{2, 0.25}));
  EXPECT_EQ(load_train_config(dir.file("fixed.yaml"), {"loss.weights=1,0"}).loss_weights,
            (std::vector<double>{1, 0}));
  EXPECT_EQ(load_train_config(dir.file("fixed.yaml"), {"loss.weights=[3, 1e-3]"}).loss_weights,
            (std::vector<double>{3, 1e-3}));

  // The resolved YAML writes the weights as a list and reads back the same.
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("weights: [1, 0.5]"), std::string::npos) << yaml;
  EXPECT_EQ(to_yaml(parse_train_config(yaml, "resolved")), yaml);
  const TrainConfig d = load_train_config(
      dir.file("fixed.yaml"), {"loss.balancing=dwa", "loss.weights=", "loss.dwa_temperature=0.5"});
  EXPECT_EQ(d.loss_balancing, "dwa");
  EXPECT_TRUE(d.loss_weights.empty());
  EXPECT_EQ(d.dwa_temperature, 0.5);
  EXPECT_EQ(to_yaml(parse_train_config(to_yaml(d), "resolved")), to_yaml(d));
  EXPECT_NE(to_yaml(d).find("\n  weights: []"), std::string::npos) << to_yaml(d);

  // Each mistake names the key.
  auto error_with = [&](std::vector<std::string> overrides) {
    return error_of([&] { load_train_config(dir.file("fixed.yaml"), overrides); });
  };
  const std::string count = error_with({"loss.weights=1,2,3"});
  EXPECT_NE(count.find("loss.weights"), std::string::npos) << count;
  EXPECT_NE(count.find("one weight per task loss"), std::string::npos) << count;
  const std::string method = error_with({"loss.balancing=mgda"});
  EXPECT_NE(method.find("loss.balancing"), std::string::npos) << method;
  EXPECT_NE(method.find("uncertainty, fixed, dwa, pcgrad, gradnorm"), std::string::npos) << method;
  // pcgrad and gradnorm: their own keys, one backward per task from one forward.
  const TrainConfig g =
      load_train_config(dir.file("fixed.yaml"),
                        {"loss.balancing=gradnorm", "loss.weights=", "loss.gradnorm_alpha=0.5",
                         "loss.gradnorm_lr=0.01", "loss.gradnorm_layer=decoder.conv2"});
  EXPECT_EQ(g.gradnorm_alpha, 0.5);
  EXPECT_EQ(g.gradnorm_lr, 0.01);
  EXPECT_EQ(g.gradnorm_layer, "decoder.conv2");
  EXPECT_EQ(to_yaml(parse_train_config(to_yaml(g), "resolved")), to_yaml(g));
  EXPECT_EQ(load_train_config(dir.file("fixed.yaml"), {"loss.balancing=pcgrad"}).loss_weights,
            (std::vector<double>{1, 0.5}))
      << "pcgrad takes fixed weights";
  const std::string alpha = error_with({"loss.gradnorm_alpha=2"});
  EXPECT_NE(alpha.find("loss.gradnorm_alpha is set but only used with loss.balancing gradnorm"),
            std::string::npos)
      << alpha;
  EXPECT_NE(error_with({"loss.balancing=gradnorm", "loss.weights=", "loss.gradnorm_lr=0"})
                .find("loss.gradnorm_lr must be > 0"),
            std::string::npos);
  const std::string micro =
      error_with({"loss.balancing=pcgrad", "data.batch=4", "data.micro_batches=2"});
  EXPECT_NE(micro.find("data.micro_batches must be 1"), std::string::npos) << micro;
  for (const char* key : {"loss.balancing=fixed", "loss.weights=1", "loss.dwa_temperature=3"}) {
    const std::string single = error_of([&] { load_train_config("", {"data.train=s", key}); });
    EXPECT_NE(single.find(std::string(key).substr(0, std::string(key).find('='))),
              std::string::npos)
        << single;
    EXPECT_NE(single.find("model.depth_head"), std::string::npos) << single;
  }
  const std::string unused = error_with({"loss.balancing=dwa"});
  EXPECT_NE(unused.find("loss.weights"), std::string::npos) << unused;
  EXPECT_NE(unused.find("loss.balancing fixed"), std::string::npos) << unused;
  EXPECT_NE(error_with({"loss.dwa_temperature=3"}).find("loss.dwa_temperature"), std::string::npos);
  const std::string number = error_with({"loss.weights=1,x"});
  EXPECT_NE(number.find("'x' is not a valid number"), std::string::npos) << number;
  EXPECT_NE(number.find("--set loss.weights=1,x"), std::string::npos) << number;
  EXPECT_NE(error_with({"loss.weights=1,,2"}).find("empty element"), std::string::npos);
  EXPECT_NE(error_with({"loss.weights=1,-1"}).find(">= 0"), std::string::npos);
  EXPECT_NE(error_with({"loss.weights=0,0"}).find("all 0"), std::string::npos);
  EXPECT_NE(error_with({"loss.balancing=dwa", "loss.weights=", "loss.dwa_temperature=0"})
                .find("loss.dwa_temperature must be > 0"),
            std::string::npos);
  write_file(dir.file("map.yaml"), base + "loss:\n  balancing: fixed\n  weights: {a: 1}\n");
  const std::string map = error_of([&] { load_train_config(dir.file("map.yaml"), {}); });
  EXPECT_NE(map.find("loss.weights must be a list"), std::string::npos) << map;

  // A TrainConfig made in code skips validation; the model refuses it instead.
  TrainConfig code;
  code.loss_balancing = "dwa";
  core::nn::Graph graph;
  EXPECT_NE(error_of([&] { add_model(graph, code, 3); }).find("model.depth_head"),
            std::string::npos);
}

// Classification has no ignore label: with more than 255 classes (ImageNet's
// 1000), class 255 counts like any other, in the small CNN and in ResNet.
TEST(ModelSetup, ClassificationCountsClass255) {
  for (const char* kind : {"small_cnn", "resnet"}) {
    SCOPED_TRACE(kind);
    TrainConfig c;
    c.model = kind;
    c.num_classes = 300;
    c.depth = 18;
    core::nn::Graph graph;
    const ModelNodes nodes = add_model(graph, c, 1);
    graph.build(core::Device::cpu(), 3);
    core::Context ctx;
    const core::Tensor image =
        cohort::testing::random_tensor(core::Shape{2, 28, 28, 1}, 5, -1, 1, core::DType::f32);
    const core::Tensor label =
        core::Tensor::from_vector({255, 7}, core::Shape{2}, core::DType::i32);
    graph.forward(ctx, {{"image", image}, {"label", label}}, {.training = false},
                  {nodes.logits, nodes.loss});
    const core::Tensor& logits = graph.output(nodes.logits);
    const double loss = graph.output(nodes.loss).item();
    EXPECT_NEAR(loss, core::ops::softmax_cross_entropy(ctx, logits, label, {}, -1).item(), 1e-6);
    EXPECT_GT(std::abs(loss - core::ops::softmax_cross_entropy(ctx, logits, label, {}, 255).item()),
              1e-4)
        << "class 255 was ignored";
  }
}

// loss.class_weights reach every model's cross entropy (PyTorch's `weight`: the
// weighted mean over counted labels), and bad weight lists are errors.
TEST(ModelSetup, ClassWeightsWeighTheCrossEntropy) {
  for (const char* kind : {"small_cnn", "resnet", "deeplabv3plus"}) {
    SCOPED_TRACE(kind);
    TrainConfig c;
    c.model = kind;
    c.num_classes = 4;
    c.depth = std::string(kind) == "resnet" ? 18 : 50;
    c.class_weights = {0.5, 2.0, 1.0, 3.0};
    core::nn::Graph graph;
    const ModelNodes nodes = add_model(graph, c, 1);
    graph.build(core::Device::cpu(), 3);
    core::Context ctx;
    const int64_t side = nodes.dense ? 32 : 28;
    const core::Tensor image =
        cohort::testing::random_tensor(core::Shape{2, side, side, 1}, 5, -1, 1, core::DType::f32);
    std::vector<double> ids(nodes.dense ? static_cast<size_t>(2 * side * side) : 2);
    for (size_t i = 0; i < ids.size(); ++i)
      ids[i] = static_cast<double>(i % 4);
    const core::Tensor label =
        nodes.dense ? core::Tensor::from_vector(ids, core::Shape{2, side, side}, core::DType::u8)
                    : core::Tensor::from_vector(ids, core::Shape{2}, core::DType::i32);
    graph.forward(ctx, {{"image", image}, {"label", label}}, {.training = false},
                  {nodes.logits, nodes.loss});
    const core::Tensor weights = core::Tensor::from_vector(c.class_weights, core::Shape{4});
    const double expected =
        core::ops::softmax_cross_entropy(ctx, graph.output(nodes.logits), label,
                                         weights.cast_cpu(core::DType::f32), nodes.dense ? 255 : -1)
            .item();
    EXPECT_NEAR(graph.output(nodes.loss).item(), expected, 1e-5 * std::abs(expected));
    EXPECT_GT(
        std::abs(expected - core::ops::softmax_cross_entropy(ctx, graph.output(nodes.logits), label,
                                                             {}, nodes.dense ? 255 : -1)
                                .item()),
        1e-4)
        << "the weights change the loss";
  }
  auto error_with = [](std::vector<std::string> sets) {
    sets.insert(sets.begin(), {"data.train=t", "model.num_classes=3"});
    return error_of([&] { load_train_config("", sets); });
  };
  EXPECT_NE(error_with({"loss.class_weights=1,2"}).find("one weight per class"), std::string::npos);
  EXPECT_NE(error_with({"loss.class_weights=1,-2,1"}).find(">= 0"), std::string::npos);
  EXPECT_NE(error_with({"loss.class_weights=0,0,0"}).find("all 0"), std::string::npos);
  EXPECT_EQ(
      load_train_config("", {"data.train=t", "model.num_classes=3", "loss.class_weights=1,2.5,0"})
          .class_weights,
      (std::vector<double>{1, 2.5, 0}));
}

// `cohort doctor` alone: the build, the libraries it runs on, no ranks, and a
// passing report (exit status 0).
TEST(Doctor, AloneReportsTheLibrariesAndPasses) {
  ::testing::internal::CaptureStdout();
  const int status = run_doctor(core::Device::cpu());
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(status, 0) << out;
  for (const char* line : {"build:    cohort ", "MPI:      ", "HDF5:     1.", "BLAS:     ",
                           "ranks:    1 (not started by a launcher)", "every check passed"})
    EXPECT_NE(out.find(line), std::string::npos) << line << " in\n" << out;
}

// The number after "key": in a metrics line, or the numbers of its [list].
double json_value(const std::string& line, const std::string& key) {
  const size_t at = line.find("\"" + key + "\": ");
  EXPECT_NE(at, std::string::npos) << key << " in " << line;
  return at == std::string::npos ? NAN : std::stod(line.substr(at + key.size() + 4));
}
std::vector<double> json_list(const std::string& line, const std::string& key) {
  size_t at = line.find("\"" + key + "\": [");
  std::vector<double> values;
  if (at == std::string::npos) return values;
  at += key.size() + 5;
  const std::string body = line.substr(at, line.find(']', at) - at);
  for (size_t start = 0; start < body.size();) {
    const size_t comma = std::min(body.find(',', start), body.size());
    values.push_back(std::stod(body.substr(start, comma - start)));
    start = comma + 1;
  }
  return values;
}

// Fixed weights 1, 0: the loss is the segmentation loss exactly and the depth
// loss sends no gradient, so everything a segmentation-only model has (backbone,
// decoder, classifier, BatchNorm statistics, optimizer state) trains bitwise equal
// to that model on the same data.
TEST(TrainerMultiTask, FixedWeightsOneZeroTrainLikeSegmentationAlone) {
  cohort::testing::TempDir dir("cohort-fixed");
  convert_scenes(dir, "multitask");
  TrainConfig seg = deeplab_config(dir, "seg");
  seg.eval_shards.clear();
  TrainConfig fixed = seg;
  fixed.out_dir = dir.file("fixed");
  fixed.depth_head = true;
  fixed.loss_balancing = "fixed";
  fixed.loss_weights = {1, 0};
  const auto a = core::io::read_checkpoint(run_training(seg, core::Device::cpu()).checkpoint);
  const auto b = core::io::read_checkpoint(run_training(fixed, core::Device::cpu()).checkpoint);
  int compared = 0;
  for (const auto& [name, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_EQ(t.to_vector(), b.tensors.at(name).to_vector()) << name;
    ++compared;
  }
  EXPECT_GT(compared, 300);
  EXPECT_TRUE(b.tensors.count("model/depth_head.weight"));
  EXPECT_FALSE(b.tensors.count("model/loss.log_vars")) << "fixed weights are not trained";
}

// Dynamic Weight Average on 4 short epochs (6 scenes, batch 2: 3 steps each):
// weights 1 in epochs 0 and 1, then each epoch's weights follow the formula from
// the two epochs before (means from the logged task losses), the logged total is
// the weighted sum with them, the checkpoint holds the statistics the last weights
// came from, and a run stopped at an epoch boundary and mid-epoch, then resumed,
// ends bitwise equal to an uninterrupted one (weights and sums included).
TEST(TrainerMultiTask, DwaWeightsFollowTheEpochMeansAndResumeBitwise) {
  cohort::testing::TempDir dir("cohort-dwa");
  convert_scenes(dir, "multitask");
  auto config = [&](const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.depth_head = true;
    c.loss_balancing = "dwa";
    c.eval_shards.clear();
    c.epochs = 4;
    c.max_steps = 0;
    c.log_every = 1;
    return c;
  };
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  ASSERT_EQ(straight.steps, 12);

  std::vector<std::array<double, 3>> step_losses;  // seg, depth, total per step
  std::map<int, std::vector<double>> weights;      // by the epoch (0-based) they are for
  std::ifstream metrics(dir.file("straight") + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    if (line.find("loss_weights") != std::string::npos)
      weights[static_cast<int>(json_value(line, "epoch"))] = json_list(line, "loss_weights");
    else
      step_losses.push_back(
          {json_value(line, "seg_loss"), json_value(line, "depth_loss"), json_value(line, "loss")});
  }
  ASSERT_EQ(step_losses.size(), 12u);
  ASSERT_EQ(weights.size(), 4u);
  auto mean = [&](int epoch, int task) {
    double sum = 0;
    for (int s = 3 * epoch; s < 3 * epoch + 3; ++s)
      sum += step_losses[s][task];
    return sum / 3;
  };
  EXPECT_EQ(weights[1], (std::vector<double>{1, 1})) << "lambda = 1 for the first two epochs";
  for (int e = 2; e <= 4; ++e) {
    const std::vector<double> hand = core::nn::dwa_weights({mean(e - 1, 0), mean(e - 1, 1)},
                                                           {mean(e - 2, 0), mean(e - 2, 1)}, 2.0);
    ASSERT_EQ(weights[e].size(), 2u);
    for (int k = 0; k < 2; ++k)
      EXPECT_NEAR(weights[e][k], hand[k], 1e-4) << "epoch " << e << " task " << k;
  }
  for (int s = 0; s < 12; ++s) {
    const std::vector<double> w = s < 6 ? std::vector<double>{1, 1} : weights[s / 3];
    const auto& l = step_losses[s];
    EXPECT_NEAR(l[2], w[0] * l[0] + w[1] * l[1], 1e-4 * std::max(1.0, std::abs(l[2])))
        << "step " << s + 1;
  }

  const auto state = core::io::read_checkpoint(straight.checkpoint).tensors;
  const std::vector<double> stats = state.at("model/loss.dwa_stats").to_vector();
  const std::vector<double> final_weights = state.at("model/loss.weights").to_vector();
  ASSERT_EQ(stats.size(), 9u);
  EXPECT_EQ(stats[2], 0.0) << "the next epoch's sums start empty";
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(stats[3 + k], mean(3, k), 1e-4 * mean(3, k)) << "row 1: epoch 3's means";
    EXPECT_NEAR(stats[6 + k], mean(2, k), 1e-4 * mean(2, k)) << "row 2: epoch 2's means";
  }
  EXPECT_EQ(stats[5], 3.0);
  EXPECT_EQ(stats[8], 3.0);
  const std::vector<double> hand =
      core::nn::dwa_weights({stats[3], stats[4]}, {stats[6], stats[7]}, 2.0);
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(final_weights[k], hand[k], 1e-6);
    EXPECT_NE(final_weights[k], 1.0) << "DWA moved the weights";
  }

  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 3;  // stops right after epoch 0's boundary
  const TrainResult first = run_training(sliced, core::Device::cpu());
  EXPECT_TRUE(first.stopped);
  EXPECT_EQ(first.steps, 3);
  sliced.stop_after_steps = 4;  // step 7: in the middle of epoch 2
  EXPECT_EQ(run_training(sliced, core::Device::cpu()).steps, 7);
  sliced.stop_after_steps = 0;
  const TrainResult resumed = run_training(sliced, core::Device::cpu());
  EXPECT_EQ(resumed.steps, 12);
  EXPECT_EQ(resumed.steps_this_run, 5);
  expect_same_training_state(straight.checkpoint, resumed.checkpoint);
}

// loss.balancing pcgrad and gradnorm on the multi-task DeepLab: both train
// (PCGrad: different from the plain weighted sum), GradNorm logs weights that
// move and sum to 2 and keeps its state in the checkpoint, and a run stopped
// and resumed ends bitwise equal to an uninterrupted one (GradNorm's L(0), Adam
// moments and weights included).
TEST(TrainerMultiTask, PcGradAndGradNormTrainAndResumeBitwise) {
  cohort::testing::TempDir dir("cohort-taskgrad");
  convert_scenes(dir, "multitask");
  auto config = [&](const std::string& balancing, const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.depth_head = true;
    c.loss_balancing = balancing;
    c.eval_shards.clear();
    c.log_every = 1;
    return c;
  };
  const TrainResult fixed = run_training(config("fixed", "fixed"), core::Device::cpu());
  for (const std::string balancing : {"pcgrad", "gradnorm"}) {
    SCOPED_TRACE(balancing);
    const TrainResult straight = run_training(config(balancing, balancing), core::Device::cpu());
    ASSERT_EQ(straight.steps, 3);
    EXPECT_TRUE(std::isfinite(straight.final_loss));
    const auto state = core::io::read_checkpoint(straight.checkpoint).tensors;
    const auto plain = core::io::read_checkpoint(fixed.checkpoint).tensors;
    EXPECT_NE(state.at("model/backbone.conv1.weight").to_vector(),
              plain.at("model/backbone.conv1.weight").to_vector())
        << "the same steps as the plain weighted sum";
    if (balancing == "gradnorm") {
      std::ifstream metrics(dir.file(balancing) + "/metrics.jsonl");
      int lines = 0;
      for (std::string line; std::getline(metrics, line); ++lines) {
        const std::vector<double> w = json_list(line, "loss_weights");
        ASSERT_EQ(w.size(), 2u) << line;
        EXPECT_NEAR(w[0] + w[1], 2.0, 1e-5) << line;
        EXPECT_NE(w[0], 1.0) << line;
      }
      EXPECT_EQ(lines, 3);
      const std::vector<double> gn = state.at("model/loss.gradnorm").to_vector();
      ASSERT_EQ(gn.size(), 8u);
      EXPECT_GT(gn[0], 0.0) << "L(0) kept";
      EXPECT_EQ(gn[6], 3.0) << "three updates counted";
    }
    TrainConfig sliced = config(balancing, balancing + "-sliced");
    sliced.stop_after_steps = 2;
    EXPECT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
    sliced.stop_after_steps = 0;
    const TrainResult resumed = run_training(sliced, core::Device::cpu());
    EXPECT_EQ(resumed.steps, 3);
    expect_same_training_state(straight.checkpoint, resumed.checkpoint);
  }
}

// checkpoint.keep_best: checkpoint-best.h5 holds the state at the best mIoU of
// the evaluations (after every step here), best.json says which step and value,
// pruning (keep_last 1) leaves both alone, and a run stopped and resumed keeps
// the same record as one that never stopped (best.json is continued, not
// restarted: a better record from before the stop is never replaced). Metrics the model does not
// report, or no eval set, are errors.
TEST(TrainerSegmentation, KeepsTheCheckpointOfTheBestEvaluation) {
  cohort::testing::TempDir dir("cohort-best");
  convert_scenes(dir, "segmentation");
  auto config = [&](const std::string& run) {
    TrainConfig c = deeplab_config(dir, run);
    c.max_steps = 4;
    c.epochs = 2;  // 3 steps an epoch
    c.eval_every = 1;
    c.lr = 0.05;
    c.keep_last = 1;
    c.keep_best = "eval_miou";
    return c;
  };
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  // The best of the logged evaluations (a tie keeps the earlier step).
  std::ifstream metrics(dir.file("straight") + "/metrics.jsonl");
  int64_t best_step = -1;
  double best_miou = -1;
  int evals = 0;
  for (std::string line; std::getline(metrics, line);) {
    if (line.find("eval_miou") == std::string::npos) continue;
    ++evals;
    const double miou = json_value(line, "eval_miou");
    if (miou > best_miou) {
      best_miou = miou;
      best_step = static_cast<int64_t>(json_value(line, "step"));
    }
  }
  ASSERT_EQ(evals, 4) << "after steps 1, 2, 3 and at the end";
  const std::string best_path = dir.file("straight") + "/checkpoint-best.h5";
  ASSERT_TRUE(std::filesystem::exists(best_path));
  EXPECT_EQ(core::io::read_checkpoint(best_path).integers.at("step"), best_step);
  const BestEvaluation record = read_best_evaluation(dir.file("straight"), "eval_miou");
  ASSERT_TRUE(record.found);
  EXPECT_EQ(record.step, best_step);
  EXPECT_NEAR(record.value, best_miou, 1e-5 * best_miou + 1e-9);
  EXPECT_FALSE(read_best_evaluation(dir.file("straight"), "eval_pixel_accuracy").found)
      << "a record of another metric is no record";
  EXPECT_TRUE(std::filesystem::exists(straight.checkpoint)) << "keep_last 1 kept the newest";

  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 2;
  EXPECT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  run_training(sliced, core::Device::cpu());
  const BestEvaluation resumed = read_best_evaluation(dir.file("sliced"), "eval_miou");
  EXPECT_EQ(resumed.step, record.step);
  EXPECT_EQ(resumed.value, record.value);
  expect_same_training_state(best_path, dir.file("sliced") + "/checkpoint-best.h5");
  // The record is continued: one better than anything this run reaches (as if
  // from before the stop) is never replaced.
  TrainConfig recorded = config("recorded");
  recorded.stop_after_steps = 2;
  EXPECT_TRUE(run_training(recorded, core::Device::cpu()).stopped);
  write_best_evaluation(recorded.out_dir, "eval_miou", 1, 0.99);
  run_training(recorded, core::Device::cpu());
  const BestEvaluation kept = read_best_evaluation(recorded.out_dir, "eval_miou");
  EXPECT_EQ(kept.step, 1);
  EXPECT_EQ(kept.value, 0.99);
  EXPECT_EQ(core::io::read_checkpoint(recorded.out_dir + "/checkpoint-best.h5").integers.at("step"),
            2)
      << "written before the stop, not after";

  for (const auto& [keep, eval, expected] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"eval_accuracy", "val", "not a metric that model.kind deeplabv3plus reports"},
           {"eval_depth_rmse", "val", "not a metric that"},
           {"eval_miou", "", "needs an evaluation set (data.eval)"},
           {"miou", "val", "checkpoint.keep_best"}}) {
    const std::string message = error_of([&, &keep = keep, &eval = eval] {
      load_train_config("", {"model.kind=deeplabv3plus", "data.train=t", "data.eval=" + eval,
                             "checkpoint.keep_best=" + keep});
    });
    EXPECT_NE(message.find(expected), std::string::npos) << keep << ": " << message;
  }
}

}  // namespace
}  // namespace cohort::launch
