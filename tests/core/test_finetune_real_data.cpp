// Fine-tuning on real data, end to end, and model.pretrained from a cohort
// checkpoint.
//
// The workload: a ResNet-18 trained briefly on OpenCV's 5000 real handwritten
// digits (opencv-doc) is fine-tuned, with a new fc head and a frozen-then-trained
// backbone, on scikit-learn's 1797 real 8x8 handwritten digits (python3-sklearn),
// both as 28x28 grey images; its held-out accuracy must clear a measured bar and
// beat the same ResNet trained from scratch with the same step budget.
//
// Why OpenCV's digits and not Fashion-MNIST as the source: measured on this
// pipeline, Fashion-MNIST pretraining does not help on sklearn's digits at any
// budget tried. A linear probe on its features (frozen backbone, 40 steps) reaches
// 85.8% against 87.2% on a random backbone's, and fine-tuning stays at or below
// scratch: 20 steps 74.7% vs 79.1%, 40 steps 90.5% vs 97.2%, 100-image subset
// 79.4% vs 80.8% (best learning rate of each; source models at 76-88% on
// Fashion-MNIST). OpenCV's digits give a 92.8% linear probe and the margin below.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "core/io/safetensors.hpp"
#include "core/io/training_state.hpp"
#include "core/nn/graph.hpp"
#include "data/convert.hpp"
#include "launch/checkpoint_history.hpp"
#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"
#include "launch/trainer.hpp"
#include "models/weights_import.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::launch {
namespace {

using cohort::testing::run_command;

namespace fs = std::filesystem;
using cohort::testing::error_of;
using core::Tensor;

std::string source_dir() {
  if (const char* env = std::getenv("COHORT_SOURCE_DIR")) return env;
  // This file is tests/core/test_finetune_real_data.cpp under the source root.
  return fs::path(__FILE__).parent_path().parent_path().parent_path().string();
}

// ---- model.pretrained from a cohort checkpoint ---------------------------------------

// A built graph of `kind` (resnet | deeplabv3plus) on grey images.
std::unique_ptr<core::nn::Graph> model(const std::string& kind, int depth, int classes,
                                       uint64_t seed, int in_channels = 1) {
  TrainConfig c;
  c.model = kind;
  c.depth = depth;
  c.num_classes = classes;
  auto graph = std::make_unique<core::nn::Graph>();
  add_model(*graph, c, in_channels);
  graph->build(core::Device::cpu(), seed, core::DType::f32);
  return graph;
}

// The graph's state as `cohort train` stores it: checkpoint-<step>.h5 (with an
// optimizer entry, as a real one has) and checkpoint.h5 linking it. Returns the link.
std::string write_run_checkpoint(const core::nn::Graph& graph, const std::string& dir,
                                 int64_t step) {
  fs::create_directories(dir);
  core::io::TrainingSnapshot s;
  s.model = graph.state();
  s.optimizer.emplace("momentum/fc.weight", graph.state().at("fc.weight"));
  s.optimizer_kind = "sgd";
  s.progress.step = step;
  const std::string file = fmt::format("checkpoint-{:08d}.h5", step);
  core::io::write_training_snapshot((fs::path(dir) / file).string(), s,
                                    core::Context(core::Device::cpu()));
  const fs::path link = fs::path(dir) / "checkpoint.h5";
  fs::create_symlink(file, link);
  return link.string();
}

std::vector<double> values(const core::nn::Graph& g, const std::string& name) {
  return g.state().at(name).to_vector();
}

models::ImportOptions backbone_of(const std::string& graph_prefix) {
  models::ImportOptions o;
  o.graph_prefix = graph_prefix;
  o.ignore_file_prefixes = {"fc."};
  return o;
}

TEST(PretrainedCheckpoint, AResNetTakesTheBackboneButNotTheHeadThroughTheSymlink) {
  cohort::testing::TempDir dir("cohort-pretrained");
  const auto source = model("resnet", 18, 10, 1);
  const std::string link = write_run_checkpoint(*source, dir.file("run"), 7);
  EXPECT_EQ(models::detect_weights_format(link), models::WeightsFormat::cohort_checkpoint);

  const auto target = model("resnet", 18, 5, 2);  // another head: 5 classes
  const std::vector<double> head = values(*target, "fc.weight");
  ASSERT_NE(values(*target, "layer3.1.conv2.weight"), values(*source, "layer3.1.conv2.weight"));
  const models::ImportReport r = models::import_pretrained_weights(link, *target, backbone_of(""));
  EXPECT_EQ(r.loaded, static_cast<int>(source->state().size()) - 2);
  EXPECT_EQ(r.ignored, (std::vector<std::string>{"fc.bias", "fc.weight"}));
  EXPECT_NE(r.format.find("cohort checkpoint at step 7"), std::string::npos) << r.format;
  for (const char* name :
       {"conv1.weight", "bn1.running_var", "layer3.1.conv2.weight", "layer2.0.downsample.1.bias"})
    EXPECT_EQ(values(*target, name), values(*source, name)) << name;
  EXPECT_EQ(values(*target, "fc.weight"), head) << "the new head keeps its initialisation";
}

TEST(PretrainedCheckpoint, EveryMismatchIsNamedAndNothingIsLoaded) {
  cohort::testing::TempDir dir("cohort-pretrained");
  const std::string link = write_run_checkpoint(*model("resnet", 18, 10, 1), dir.file("run"), 3);

  const auto deeper = model("resnet", 34, 10, 2);  // layer1 has 3 blocks, not 2
  const std::vector<double> before = values(*deeper, "conv1.weight");
  const std::string missing =
      error_of([&] { models::import_pretrained_weights(link, *deeper, backbone_of("")); });
  EXPECT_NE(missing.find("nothing loaded"), std::string::npos) << missing;
  EXPECT_NE(missing.find("missing: 'model/layer1.2.conv1.weight'"), std::string::npos) << missing;
  EXPECT_NE(missing.find("missing: 'model/layer4.2.bn2.running_mean'"), std::string::npos);
  EXPECT_EQ(values(*deeper, "conv1.weight"), before) << "nothing is written on an error";

  const auto rgb = model("resnet", 18, 10, 2, 3);  // conv1 reads 3 channels
  const std::string shape =
      error_of([&] { models::import_pretrained_weights(link, *rgb, backbone_of("")); });
  EXPECT_NE(shape.find("shape mismatch: 'model/conv1.weight'"), std::string::npos) << shape;
  EXPECT_NE(shape.find(link), std::string::npos) << "the file is named: " << shape;
  EXPECT_EQ(shape.find("layer1"), std::string::npos) << "only the mismatch: " << shape;

  const auto other = model("small_cnn", 18, 10, 2);
  const std::string unexpected =
      error_of([&] { models::import_pretrained_weights(link, *other, backbone_of("")); });
  EXPECT_NE(unexpected.find("unexpected: 'model/layer1.0.conv1.weight'"), std::string::npos)
      << unexpected;
}

TEST(PretrainedCheckpoint, DeepLabTakesAResNetCheckpointUnderBackbone) {
  cohort::testing::TempDir dir("cohort-pretrained");
  const auto source = model("resnet", 50, 10, 1);
  const std::string link = write_run_checkpoint(*source, dir.file("run"), 5);
  const auto deeplab = model("deeplabv3plus", 50, 19, 2);
  const std::vector<double> aspp = values(*deeplab, "aspp.project.0.weight");
  const models::ImportReport r =
      models::import_pretrained_weights(link, *deeplab, backbone_of("backbone."));
  EXPECT_EQ(r.loaded, static_cast<int>(source->state().size()) - 2);
  for (const char* name : {"conv1.weight", "layer4.2.conv3.weight", "layer1.0.bn1.running_mean"})
    EXPECT_EQ(values(*deeplab, std::string("backbone.") + name), values(*source, name)) << name;
  EXPECT_EQ(values(*deeplab, "aspp.project.0.weight"), aspp) << "the decoder is not touched";
}

TEST(PretrainedCheckpoint, AFileOfNeitherFormatIsAClearError) {
  cohort::testing::TempDir dir("cohort-pretrained");
  std::ofstream(dir.file("weights.pth")) << "PK\x03\x04 a zip archive, as torch.save writes";
  for (const std::string& path : {dir.file("weights.pth"), dir.file("absent.h5")}) {
    const std::string e = error_of([&] { models::detect_weights_format(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("cohort checkpoint"), std::string::npos) << e;
  }
  EXPECT_NE(error_of([&] {
              models::detect_weights_format(dir.file("weights.pth"));
            }).find("neither safetensors nor HDF5"),
            std::string::npos);
  // The content decides, not the name: safetensors under an .h5 name still is one.
  core::io::write_safetensors(dir.file("named.h5"),
                              {{"fc.bias", Tensor::zeros(core::Shape{4}, core::DType::f32)}});
  EXPECT_EQ(models::detect_weights_format(dir.file("named.h5")),
            models::WeightsFormat::safetensors);
}

// ---- the workload on real data ------------------------------------------------------

// Learning rates of the fine-tuning and scratch runs, each the best of {0.005, 0.01,
// 0.02} for 20 steps measured on this pipeline (seeds 0 and 1): scratch 79.1/78.8%
// at 0.005 (0.01: 61.8/52.4%, 0.02: 13.4/32.9%); fine-tuning 92.5/90.0% at 0.02
// (0.01: 89.4/89.4%, 0.005: 84.7/87.2%). Scratch is thus given its best rate.
constexpr double kFineTuneLr = 0.02, kScratchLr = 0.005;
constexpr int64_t kPretrainSteps = 300, kFineTuneSteps = 20, kFrozenSteps = 10;

class FineTuneRealData : public ::testing::Test {
 protected:
  // Writes <out>/train (and test) with a tools/*_digits_to_imagefolder.py script;
  // false with `why` set when its data is not on this machine.
  bool image_folder(const std::string& tool, const std::string& out, std::string& why) {
    int status = -1;
    const std::string text =
        run_command(fmt::format("/usr/bin/python3 {}/tools/{} --out {}", source_dir(), tool, out),
                    status, /*merge_stderr=*/true);
    if (status == 3) {
      why = text.substr(0, text.find_last_not_of(" \n") + 1);  // names the fix
      return false;
    }
    EXPECT_EQ(status, 0) << tool << ": " << text;
    return status == 0;
  }

  // cohort convert imagefolder: grey 28x28, as Fashion-MNIST-sized pretraining images.
  std::string shards(const std::string& root, const std::string& split) {
    const std::string out = m_dir.file(fs::path(root).filename().string() + "-" + split);
    EXPECT_EQ(data::run_convert({"imagefolder", "--root", root + "/" + split, "--split", split,
                                 "--out", out, "--channels", "1", "--resize-shorter", "28",
                                 "--encoding", "raw", "--quiet"}),
              0);
    return out;
  }

  TrainConfig resnet18(const std::string& train, const std::string& run) const {
    TrainConfig c;
    c.model = "resnet";
    c.depth = 18;
    c.num_classes = 10;
    c.train_shards = train;
    c.out_dir = m_dir.file(run);
    c.device = "cpu";
    c.seed = 0;
    c.batch = 32;
    c.threads = 2;
    c.epochs = 100;  // max_steps ends every run
    c.log_every = 100;
    return c;
  }

  cohort::testing::TempDir m_dir{"cohort-finetune"};
};

TEST_F(FineTuneRealData, HandwrittenDigitsPretrainingBeatsScratchOnSklearnDigits) {
  int status = -1;
  run_command("/usr/bin/python3 -c 'import numpy, PIL'", status, /*merge_stderr=*/true);
  if (status != 0) GTEST_SKIP() << "no /usr/bin/python3 with numpy and PIL (python3-pil)";
  std::string why;
  if (!image_folder("opencv_digits_to_imagefolder.py", m_dir.file("opencv-digits"), why) ||
      !image_folder("sklearn_digits_to_imagefolder.py", m_dir.file("sklearn-digits"), why)) {
    if (!why.empty()) GTEST_SKIP() << why;
    return;  // the script failed: reported above
  }
  const std::string source = shards(m_dir.file("opencv-digits"), "train");
  const std::string digits_train = shards(m_dir.file("sklearn-digits"), "train");
  const std::string digits_test = shards(m_dir.file("sklearn-digits"), "test");

  // Source model: 300 steps of 32 (about two epochs of the 5000 digits).
  TrainConfig pre = resnet18(source, "pretrain");
  pre.max_steps = kPretrainSteps;
  pre.warmup_steps = 30;
  pre.lr = 0.02;
  const TrainResult pretrained = run_training(pre, core::Device::cpu());
  ASSERT_EQ(pretrained.steps, kPretrainSteps);
  const std::string pretrained_link = (fs::path(pre.out_dir) / "checkpoint.h5").string();
  ASSERT_TRUE(fs::is_symlink(pretrained_link));

  // Fine-tuning: new head, backbone frozen for the first 10 of 20 steps; checkpoints
  // at the switch and at the end.
  TrainConfig ft = resnet18(digits_train, "finetune");
  ft.eval_shards = digits_test;
  ft.pretrained = pretrained_link;
  ft.freeze_backbone_steps = kFrozenSteps;
  ft.max_steps = kFineTuneSteps;
  ft.warmup_steps = 2;
  ft.lr = kFineTuneLr;
  ft.checkpoint_every = kFrozenSteps;
  const TrainResult tuned = run_training(ft, core::Device::cpu());

  TrainConfig scratch = resnet18(digits_train, "scratch");
  scratch.eval_shards = digits_test;
  scratch.max_steps = kFineTuneSteps;
  scratch.warmup_steps = 2;
  scratch.lr = kScratchLr;
  const TrainResult from_scratch = run_training(scratch, core::Device::cpu());

  // Measured on this machine (2 cores) on the 359 held-out digits, seed 0 (this
  // test, deterministic): fine-tuned 92.48%, scratch 79.11%. Fine-tuning/scratch
  // seeds 0-4: 92.48/79.11, 89.97/78.83, 88.86/82.73, 90.81/80.50, 88.58/76.88%;
  // a source model of seed 1 gives 89.69%. The bars (88%, 5 points) hold for all
  // of them and leave seed 0 4.5 and 8.4 points.
  EXPECT_GE(tuned.eval_accuracy, 0.88);
  EXPECT_GE(tuned.eval_accuracy - from_scratch.eval_accuracy, 0.05)
      << "fine-tuned " << tuned.eval_accuracy << " vs scratch " << from_scratch.eval_accuracy;
  std::printf("sklearn digits held out: fine-tuned %.2f%%, scratch %.2f%%\n",
              100 * tuned.eval_accuracy, 100 * from_scratch.eval_accuracy);

  // The backbone was loaded and frozen (bitwise the pretrained one at the switch),
  // then trained; the head trained throughout.
  const auto state = [](const std::string& path) {
    return core::io::read_checkpoint(path).tensors;
  };
  const auto source_state = state(pretrained_link);
  const auto at_switch = state(checkpoint_path(ft.out_dir, kFrozenSteps));
  const auto at_end = state(tuned.checkpoint);
  for (const char* name :
       {"model/conv1.weight", "model/bn1.weight", "model/layer2.0.downsample.0.weight",
        "model/layer4.1.conv2.weight", "model/layer4.1.bn2.bias"}) {
    EXPECT_EQ(at_switch.at(name).to_vector(), source_state.at(name).to_vector())
        << name << " while frozen";
    EXPECT_NE(at_end.at(name).to_vector(), at_switch.at(name).to_vector())
        << name << " after the unfreeze";
  }
  EXPECT_NE(at_switch.at("model/fc.weight").to_vector(), at_end.at("model/fc.weight").to_vector());
}

}  // namespace
}  // namespace cohort::launch
