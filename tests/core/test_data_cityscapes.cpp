// The Cityscapes converter on a tree this test builds in the real layout, with real
// PNG files (8-bit label ids including ignored ones, 16-bit disparity with zeros)
// and camera JSON; train ids and depth are checked pixel by pixel against a
// computation written here from the published table and formula.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "data/convert.hpp"
#include "data/image_codec.hpp"
#include "data/shard_reader.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using namespace cohort::data::testing;

// trainId of label ids 0..33 (Cityscapes' labels.py); anything else is ignored.
constexpr int kTrainIdOfId[34] = {255, 255, 255, 255, 255, 255, 255, 0,  1,  255, 255, 2,
                                  3,   4,   255, 255, 255, 5,   255, 6,  7,  8,   9,   10,
                                  11,  12,  13,  14,  15,  255, 255, 16, 17, 18};

constexpr int64_t kW = 40, kH = 24;

struct FrameFiles {
  std::string city, stem;
  Image8 image;
  Image8 label_ids;
  Image16 disparity;
  double baseline = 0, fx = 0;
};

class ConvertCityscapes : public cohort::testing::TempDirTest {
 protected:
  std::string root() const { return path("cityscapes"); }

  std::string file(const std::string& type, const std::string& split, const FrameFiles& f,
                   const std::string& suffix) const {
    return (fs::path(root()) / type / split / f.city / (f.stem + suffix)).string();
  }

  // Writes one frame: image, labelIds (under `annotation`), disparity, camera.
  FrameFiles make_frame(const std::string& split, const std::string& annotation,
                        const std::string& city, int seq, int k) {
    FrameFiles f;
    f.city = city;
    f.stem = fmt::format("{}_{:06d}_{:06d}", city, seq, 19);
    f.image = Image8{kH, kW, 3, pattern_bytes(kH * kW * 3, static_cast<uint32_t>(k + 7))};
    f.label_ids = Image8{kH, kW, 1, std::vector<uint8_t>(kH * kW)};
    f.disparity = Image16{kH, kW, std::vector<uint16_t>(kH * kW)};
    for (int64_t y = 0; y < kH; ++y)
      for (int64_t x = 0; x < kW; ++x) {
        const size_t p = static_cast<size_t>(y * kW + x);
        f.label_ids.pixels[p] = static_cast<uint8_t>((x * 5 + y * 3 + k) % 40);  // ids 34..39 too
        const uint32_t v = (static_cast<uint32_t>(x) * 997u + static_cast<uint32_t>(y) * 131u +
                            static_cast<uint32_t>(k) * 7u) %
                           30000u;
        f.disparity.pixels[p] = (x + y) % 9 == 0 ? 0 : (x + y) % 13 == 0 ? 1 : uint16_t(v + 2);
      }
    f.baseline = 0.2 + 0.01 * k;
    f.fx = 2000.0 + 100.0 * k;
    for (const char* type : {"leftImg8bit", annotation.c_str(), "disparity", "camera"})
      fs::create_directories(fs::path(root()) / type / split / city);
    write_file_bytes(file("leftImg8bit", split, f, "_leftImg8bit.png"), encode_png(f.image));
    write_file_bytes(file(annotation, split, f, "_" + annotation + "_labelIds.png"),
                     encode_png(f.label_ids));
    write_file_bytes(file("disparity", split, f, "_disparity.png"), encode_png16(f.disparity));
    std::ofstream(file("camera", split, f, "_camera.json"))
        << fmt::format(R"({{"extrinsic": {{"baseline": {}, "pitch": 0.038, "roll": 0.0, "x": 1.7,
 "y": 0.1, "yaw": -0.0195, "z": 1.18}}, "intrinsic": {{"fx": {}, "fy": {}, "u0": 20.0,
 "v0": 12.0}}}})",
                       f.baseline, f.fx, f.fx);
    return f;
  }

  std::vector<FrameFiles> make_tree(const std::string& split, const std::string& annotation) {
    // Created out of order: the converter sorts by path.
    std::vector<FrameFiles> frames;
    frames.push_back(make_frame(split, annotation, "bochum", 0, 0));
    frames.push_back(make_frame(split, annotation, "aachen", 1, 1));
    frames.push_back(make_frame(split, annotation, "aachen", 0, 2));
    std::sort(frames.begin(), frames.end(),
              [](const FrameFiles& a, const FrameFiles& b) { return a.stem < b.stem; });
    return frames;
  }
};

TEST_F(ConvertCityscapes, TrainIdsAndDepthMatchAnIndependentComputation) {
  const std::vector<FrameFiles> frames = make_tree("train", "gtFine");
  for (ImageEncoding enc : {ImageEncoding::png, ImageEncoding::raw}) {
    CityscapesOptions o;
    o.root = root();
    o.split = "train";
    o.kind = TaskKind::multitask;
    o.encoding = enc;
    o.out_dir = path(std::string("out-") + to_string(enc));
    o.threads = 2;
    o.verify = true;
    const Manifest m = convert_cityscapes(o);
    EXPECT_EQ(m.sample_count, 3);
    const ShardSet set = ShardSet::open(o.out_dir);
    EXPECT_EQ(set.spec().classes.size(), 19u);
    EXPECT_EQ(set.spec().classes[13].name, "car");
    for (int64_t i = 0; i < 3; ++i) {
      const FrameFiles& f = frames[i];
      const Sample s = set.read(i);
      EXPECT_EQ(s.name, f.stem);
      EXPECT_EQ(s.image.pixels, f.image.pixels) << f.stem;
      int ignored = 0, invalid = 0;
      for (size_t p = 0; p < static_cast<size_t>(kW * kH); ++p) {
        const int id = f.label_ids.pixels[p];
        const int want_train = id < 34 ? kTrainIdOfId[id] : 255;
        ASSERT_EQ(s.label[p], want_train) << f.stem << " pixel " << p << " id " << id;
        ignored += want_train == 255;
        const uint16_t d = f.disparity.pixels[p];
        if (d <= 1) {  // 0: no measurement; 1: disparity 0, infinitely far
          ASSERT_EQ(s.depth[p], 0.0f) << f.stem << " pixel " << p;
          ++invalid;
        } else {
          const double disparity_px = (d - 1) / 256.0;
          const double depth_m = f.baseline * f.fx / disparity_px;
          ASSERT_NEAR(s.depth[p], depth_m, depth_m * 1e-6) << f.stem << " pixel " << p;
        }
      }
      EXPECT_GT(ignored, 0);
      EXPECT_GT(invalid, 0);
    }
  }
  // PNG sets hold the frames re-encoded losslessly with the fast row filters ...
  const std::vector<uint8_t> source =
      file_bytes(file("leftImg8bit", "train", frames[0], "_leftImg8bit.png"));
  const Image8 source_pixels = decode_image(source.data(), source.size(), 3, "source");
  const ShardSet png = ShardSet::open(path("out-png"));
  const std::vector<uint8_t> stored = png.fetch(0).image;
  EXPECT_NE(stored, source);
  EXPECT_EQ(decode_image(stored.data(), stored.size(), 3, "stored").pixels, source_pixels.pixels);
  for (int f : png_row_filters(stored, static_cast<size_t>(source_pixels.width * 3),
                               static_cast<size_t>(source_pixels.height)))
    EXPECT_TRUE(f == 1 || f == 2) << "row filter " << f;
  // ... or, with keep_png, the source files verbatim.
  CityscapesOptions keep;
  keep.root = root();
  keep.split = "train";
  keep.keep_png = true;
  keep.out_dir = path("out-png-kept");
  convert_cityscapes(keep);
  EXPECT_EQ(ShardSet::open(path("out-png-kept")).fetch(0).image, source);
}

TEST_F(ConvertCityscapes, AnySplitAndCoarseAnnotations) {
  const std::vector<FrameFiles> frames = make_tree("val", "gtCoarse");
  CityscapesOptions o;
  o.root = root();
  o.split = "val";
  o.annotation = "gtCoarse";
  o.out_dir = path("val");
  o.limit = 2;
  const Manifest m = convert_cityscapes(o);
  EXPECT_EQ(m.sample_count, 2);
  EXPECT_EQ(m.spec.kind, TaskKind::segmentation);
  EXPECT_EQ(m.spec.split, "val");
  const ShardSet set = ShardSet::open(o.out_dir);
  EXPECT_EQ(set.sample_name(1), frames[1].stem);
  EXPECT_TRUE(set.read(0).depth.empty());
}

TEST_F(ConvertCityscapes, EveryBadFileIsListedInOneErrorAndNothingIsWritten) {
  const std::vector<FrameFiles> frames = make_tree("train", "gtFine");
  const std::string missing_label = file("gtFine", "train", frames[0], "_gtFine_labelIds.png");
  fs::remove(missing_label);
  const std::string small_disp = file("disparity", "train", frames[1], "_disparity.png");
  write_file_bytes(small_disp,
                   encode_png16(Image16{kH, kW - 1, std::vector<uint16_t>((kW - 1) * kH, 5)}));
  const std::string missing_camera = file("camera", "train", frames[2], "_camera.json");
  fs::remove(missing_camera);
  CityscapesOptions o;
  o.root = root();
  o.kind = TaskKind::multitask;
  o.out_dir = path("out");
  try {
    convert_cityscapes(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_TRUE(contains(text, missing_label + ": missing label file")) << text;
    EXPECT_TRUE(contains(text, small_disp + ": the disparity map is 39x24 (WxH) but the image"))
        << text;
    EXPECT_TRUE(contains(text, missing_camera + ": missing camera file")) << text;
    EXPECT_TRUE(contains(text, "(3 problem(s))")) << text;
  }
  EXPECT_FALSE(fs::exists(manifest_path(o.out_dir)));
}

TEST_F(ConvertCityscapes, MissingFoldersAndEmptySplitsAreClear) {
  make_tree("train", "gtFine");
  CityscapesOptions o;
  o.root = root();
  o.out_dir = path("out");
  o.annotation = "gtCoarse";  // not in the tree
  try {
    convert_cityscapes(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(
        e.what(), (fs::path(root()) / "gtCoarse" / "train").string() + ": missing directory"))
        << e.what();
  }
  o.annotation = "gtFine";
  CityscapesOptions kept = o;  // keeping source PNGs makes no sense for raw storage
  kept.keep_png = true;
  kept.encoding = ImageEncoding::raw;
  try {
    convert_cityscapes(kept);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "--keep-png")) << e.what();
    EXPECT_TRUE(contains(e.what(), "raw")) << e.what();
  }
  o.split = "test";
  EXPECT_THROW(convert_cityscapes(o), Error);  // no leftImg8bit/test
  fs::create_directories(fs::path(root()) / "leftImg8bit" / "test" / "berlin");
  try {
    convert_cityscapes(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "the split 'test' is empty")) << e.what();
  }
}

}  // namespace
}  // namespace cohort::data
