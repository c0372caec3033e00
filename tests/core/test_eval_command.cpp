// `cohort eval`: a checkpoint evaluated on its own gives the trainer's scores, its
// prediction PNGs score the same when counted independently, and what cannot work
// is refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "data/cityscapes_labels.hpp"
#include "data/convert.hpp"
#include "data/image_codec.hpp"
#include "data/shard_reader.hpp"
#include "launch/eval_command.hpp"
#include "launch/trainer.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::launch {
namespace {

using cohort::testing::error_of;

// A small DeepLabV3+ trained for 3 steps on synthetic street scenes (96x48).
class EvalCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new cohort::testing::TempDir("cohort-eval");
    for (const char* split : {"train", "val"})
      ASSERT_EQ(data::run_convert({"synthetic-scenes", "--kind", "segmentation", "--split", split,
                                   "--count", split == std::string("train") ? "6" : "3", "--width",
                                   "96", "--height", "48", "--out", dir->file(split), "--quiet"}),
                0);
    TrainConfig c;
    c.model = "deeplabv3plus";
    c.num_classes = 19;
    c.train_shards = dir->file("train");
    c.eval_shards = dir->file("val");
    c.out_dir = dir->file("run");
    c.batch = 2;
    c.crop_height = 48;
    c.crop_width = 48;
    c.threads = 2;
    c.max_steps = 3;
    c.warmup_steps = 0;
    c.lr = 0.01;
    trained = new TrainResult(run_training(c, core::Device::cpu()));
  }
  static void TearDownTestSuite() {
    delete trained;
    delete dir;
  }
  static cohort::testing::TempDir* dir;
  static TrainResult* trained;
};
cohort::testing::TempDir* EvalCommand::dir = nullptr;
TrainResult* EvalCommand::trained = nullptr;

TEST_F(EvalCommand, RebuildsTheModelFromTheCheckpointAndScoresAsTheTrainerDid) {
  EvalCommandOptions o;
  o.checkpoint = trained->checkpoint;
  o.verbose = false;
  const EvalResult r = run_checkpoint_eval(o, core::Device::cpu());
  EXPECT_EQ(r.samples, 3);
  EXPECT_EQ(r.miou, trained->eval_miou) << "same weights, same images, same counts";
  EXPECT_EQ(r.accuracy, trained->eval_accuracy);
  ASSERT_EQ(r.class_iou.size(), 19u);
  // Other loader settings do not change the scores (each image once, whole).
  o.overrides = {"data.batch=1", "data.threads=1"};
  EXPECT_EQ(run_checkpoint_eval(o, core::Device::cpu()).miou, r.miou);
}

// A checkpoint of a bf16 run (trained on GPUs) evaluates on the CPU in f32: its
// weights are f32 masters, so the scores are those of the same weights in f32.
TEST_F(EvalCommand, ABf16RunsCheckpointEvaluatesOnTheCpu) {
  core::io::CheckpointData data = core::io::read_checkpoint(trained->checkpoint);
  std::string& config = data.strings.at("config");
  const size_t at = config.find("dtype: f32");
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, std::string("dtype: f32").size(), "dtype: bf16");
  const std::string bf16 = dir->file("bf16-run.h5");
  core::io::write_checkpoint(bf16, data);
  EvalCommandOptions o;
  o.checkpoint = bf16;
  o.verbose = false;
  EXPECT_EQ(run_checkpoint_eval(o, core::Device::cpu()).miou, trained->eval_miou);
}

// The PNGs hold Cityscapes label ids (the set has Cityscapes' classes); mapped back
// to train ids and counted against the shard labels here, independently of the
// evaluator, they give its per-class IoU exactly.
TEST_F(EvalCommand, PredictionFilesScoreLikeTheEvaluator) {
  EvalCommandOptions o;
  o.checkpoint = trained->checkpoint;
  o.predictions = dir->file("predictions");
  o.json = dir->file("scores.json");
  o.verbose = false;
  const EvalResult r = run_checkpoint_eval(o, core::Device::cpu());
  EXPECT_EQ(r.predictions_written, 3);
  const data::ShardSet val = data::ShardSet::open(dir->file("val"));
  const std::array<uint8_t, 256> train_id = data::cityscapes_id_to_train_id();
  std::vector<int64_t> confusion(19 * 19, 0);
  for (int64_t i = 0; i < val.size(); ++i) {
    const data::Sample s = val.read(i);
    const std::string path = o.predictions + "/" + s.name + "_pred_labelIds.png";
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    std::ifstream f(path, std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), {});
    const data::Image8 png = data::decode_png_label(bytes.data(), bytes.size(), path);
    ASSERT_EQ(png.height, s.image.height);
    ASSERT_EQ(png.width, s.image.width) << "predictions are full size";
    for (size_t p = 0; p < s.label.size(); ++p) {
      ASSERT_NE(train_id[png.pixels[p]], 255)
          << "pixel " << p << " holds label id " << int(png.pixels[p]) << ", not a class";
      if (s.label[p] != 255) ++confusion[s.label[p] * 19 + train_id[png.pixels[p]]];
    }
  }
  EXPECT_EQ(confusion, r.confusion);
  for (int c = 0; c < 19; ++c) {
    int64_t row = 0, col = 0;
    for (int j = 0; j < 19; ++j) {
      row += confusion[c * 19 + j];
      col += confusion[j * 19 + c];
    }
    const int64_t tp = confusion[c * 19 + c], denom = row + col - tp;
    if (denom == 0) {
      EXPECT_TRUE(std::isnan(r.class_iou[c])) << "class " << c;
    } else {
      EXPECT_DOUBLE_EQ(r.class_iou[c], double(tp) / double(denom)) << "class " << c;
    }
  }
  std::ifstream json(o.json);
  std::stringstream text;
  text << json.rdbuf();
  EXPECT_NE(text.str().find("\"miou\": "), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("\"road\": "), std::string::npos) << text.str();
  for (const auto& e : std::filesystem::directory_iterator(o.predictions))
    EXPECT_EQ(e.path().extension(), ".png") << "no partial files left: " << e.path();

  // train ids on request.
  o.format = "train-ids";
  o.predictions = dir->file("predictions-train-ids");
  o.json.clear();
  run_checkpoint_eval(o, core::Device::cpu());
  EXPECT_TRUE(
      std::filesystem::exists(o.predictions + "/" + val.sample_name(0) + "_pred_trainIds.png"));
}

TEST_F(EvalCommand, RefusesWhatCannotWorkByName) {
  EvalCommandOptions o;
  o.checkpoint = trained->checkpoint;
  o.verbose = false;
  o.overrides = {"model.num_classes=10"};
  EXPECT_NE(error_of([&] {
              run_checkpoint_eval(o, core::Device::cpu());
            }).find("model.num_classes=10 would change the network"),
            std::string::npos);
  o.overrides = {"data.eval_crop=center"};
  o.predictions = dir->file("cropped");
  EXPECT_NE(
      error_of([&] { run_checkpoint_eval(o, core::Device::cpu()); }).find("data.eval_crop=full"),
      std::string::npos);
  o.overrides.clear();
  o.format = "labelIds";
  EXPECT_NE(
      error_of([&] { run_checkpoint_eval(o, core::Device::cpu()); }).find("--format labelIds"),
      std::string::npos);
  o.format = "auto";
  o.predictions.clear();
  o.shards = dir->file("no-such-set");
  EXPECT_NE(error_of([&] { run_checkpoint_eval(o, core::Device::cpu()); }).find("no-such-set"),
            std::string::npos);
  o.shards.clear();
  o.checkpoint = dir->file("missing.h5");
  EXPECT_NE(error_of([&] { run_checkpoint_eval(o, core::Device::cpu()); }).find("missing.h5"),
            std::string::npos);
}

}  // namespace
}  // namespace cohort::launch
