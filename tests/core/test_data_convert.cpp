// Converters other than Cityscapes (Fashion-MNIST, ImageFolder, synthetic scenes),
// the `cohort convert` command line, and shards opened by h5py.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "data/cityscapes_labels.hpp"
#include "data/convert.hpp"
#include "data/idx.hpp"
#include "data/shard_reader.hpp"
#include "data/synthetic_scenes.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using namespace cohort::data::testing;

class ConvertFashionMnist : public cohort::testing::TempDirTest {};
class ConvertImageFolder : public cohort::testing::TempDirTest {};
class ConvertSynthetic : public cohort::testing::TempDirTest {};
class ConvertCli : public cohort::testing::TempDirTest {};
class ShardH5py : public cohort::testing::TempDirTest {};

TEST_F(ConvertFashionMnist, CountsAndBalancedClassesFromTheRealPackage) {
  ASSERT_TRUE(fs::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz"))
      << "apt-get install dataset-fashion-mnist (tools/install-deps.sh)";
  const ImageClassificationSet idx = load_fashion_mnist(kFashionMnistDir, "train");
  for (const char* split : {"train", "test"}) {
    FashionMnistOptions o;
    o.split = split;
    o.out_dir = path(split);
    const Manifest m = convert_fashion_mnist(o);
    const ShardSet set = ShardSet::open(o.out_dir);
    const int64_t expected = std::string(split) == "train" ? 60000 : 10000;
    ASSERT_EQ(set.size(), expected);
    EXPECT_EQ(m.spec.height, 28);
    EXPECT_EQ(m.spec.channels, 1);
    EXPECT_EQ(m.spec.classes[9].name, "Ankle boot");
    EXPECT_NEAR(m.spec.mean[0], 0.2860, 1e-3);  // the published training statistics
    EXPECT_NEAR(m.spec.std[0], 0.3530, 1e-3);
    std::array<int64_t, 10> per_class{};
    for (int64_t i = 0; i < set.size(); ++i)
      ++per_class[static_cast<size_t>(set.class_id(i))];
    for (int64_t c : per_class)
      EXPECT_EQ(c, expected / 10);
    if (std::string(split) == "train")
      for (int64_t i : {int64_t{0}, int64_t{12345}, int64_t{59999}}) {
        const Sample s = set.read(i);
        EXPECT_EQ(s.class_id, idx.labels[i]);
        EXPECT_TRUE(
            std::equal(s.image.pixels.begin(), s.image.pixels.end(), idx.images.begin() + i * 784))
            << "image " << i;
      }
  }
}

TEST_F(ConvertImageFolder, SortedClassesMixedFormatsAndResize) {
  const fs::path root = path("tree");
  for (const char* c : {"zebra", "cat", "dog"})
    fs::create_directories(root / c);
  auto rgb = [](int64_t h, int64_t w, uint32_t seed) {
    return Image8{h, w, 3, pattern_bytes(size_t(h * w * 3), seed)};
  };
  write_file_bytes((root / "cat" / "b.png").string(), encode_png(rgb(20, 30, 1)));
  write_file_bytes((root / "cat" / "a.PNG").string(), encode_png(rgb(30, 20, 2)));
  const std::vector<uint8_t> dog_jpeg = encode_jpeg(rgb(24, 24, 3), 90);
  write_file_bytes((root / "dog" / "x.jpg").string(), dog_jpeg);
  write_file_bytes((root / "dog" / "grey.jpeg").string(),
                   encode_jpeg(Image8{16, 40, 1, pattern_bytes(640, 4)}, 90));
  write_file_bytes((root / "zebra" / "z.png").string(),
                   encode_png(Image8{8, 8, 1, pattern_bytes(64, 5)}));
  std::ofstream(root / "zebra" / "README.txt") << "not an image";
  write_file_bytes((root / "zebra" / ".hidden.png").string(), {1, 2, 3});

  ImageFolderOptions o;
  o.root = root.string();
  o.out_dir = path("jpeg");
  o.verify = true;
  const Manifest m = convert_imagefolder(o);
  ASSERT_EQ(m.sample_count, 5);
  ASSERT_EQ(m.spec.classes.size(), 3u);
  EXPECT_EQ(m.spec.classes[0].name, "cat");
  EXPECT_EQ(m.spec.classes[2].name, "zebra");
  EXPECT_EQ(m.spec.height, 0) << "sizes vary";
  const ShardSet set = ShardSet::open(o.out_dir);
  const std::vector<std::string> names = {"cat/a.PNG", "cat/b.png", "dog/grey.jpeg", "dog/x.jpg",
                                          "zebra/z.png"};
  const std::vector<int32_t> ids = {0, 0, 1, 1, 2};
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(set.sample_name(i), names[i]);
    EXPECT_EQ(set.class_id(i), ids[i]);
    EXPECT_EQ(set.read(i).image.channels, 3);
  }
  EXPECT_EQ(set.image_shape(0), (std::array<int64_t, 3>{30, 20, 3}));
  EXPECT_EQ(set.image_shape(2), (std::array<int64_t, 3>{16, 40, 3}));
  EXPECT_EQ(set.fetch(3).image, dog_jpeg) << "a JPEG source is stored verbatim";

  o.out_dir = path("resized");
  o.resize_shorter = 12;
  o.encoding = ImageEncoding::raw;
  convert_imagefolder(o);
  const ShardSet small = ShardSet::open(o.out_dir);
  for (int64_t i = 0; i < 5; ++i) {
    const auto shape = small.image_shape(i);
    EXPECT_EQ(std::min(shape[0], shape[1]), 12) << names[i];
  }
  EXPECT_EQ(small.image_shape(2), (std::array<int64_t, 3>{12, 30, 3}));

  // A corrupt image and an empty class folder: both in one error.
  write_file_bytes((root / "dog" / "broken.jpg").string(), {0xff, 0xd8, 0xff, 0x00, 0x01});
  fs::create_directories(root / "empty");
  o.out_dir = path("bad");
  try {
    convert_imagefolder(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), (root / "dog" / "broken.jpg").string() + ": cannot decode JPEG"))
        << e.what();
    EXPECT_TRUE(contains(e.what(), (root / "empty").string() + ": class folder holds no"))
        << e.what();
  }
}

TEST_F(ConvertSynthetic, DeterministicScenesWithConsistentLabelsAndDepth) {
  SyntheticScenesOptions o;
  o.count = 6;
  o.width = 96;
  o.height = 48;
  o.seed = 3;
  o.out_dir = path("a");
  const Manifest a = convert_synthetic_scenes(o);
  o.out_dir = path("b");
  o.threads = 1;
  const Manifest b = convert_synthetic_scenes(o);
  ASSERT_EQ(a.shards.size(), b.shards.size());
  EXPECT_EQ(a.shards[0].crc32, b.shards[0].crc32) << "same seed, same bytes, any thread count";
  o.split = "val";
  o.out_dir = path("val");
  EXPECT_NE(convert_synthetic_scenes(o).shards[0].crc32, a.shards[0].crc32);

  const ShardSet set = ShardSet::open(path("a"));
  EXPECT_EQ(set.spec().classes, cityscapes_train_classes());
  std::array<int64_t, 19> seen{};
  for (int64_t i = 0; i < set.size(); ++i) {
    const Sample s = set.read(i);
    const SyntheticScene again = generate_scene(96, 48, synthetic_split_seed(3, "train"), i);
    EXPECT_EQ(s.image.pixels, again.image.pixels);
    for (size_t p = 0; p < s.label.size(); ++p) {
      ASSERT_LT(s.label[p], 19);
      ++seen[s.label[p]];
      ASSERT_EQ(s.label[p] == 10, s.depth[p] == 0.0f) << "sky, and only sky, has no depth";
    }
    // Down the middle column the road comes nearer row by row.
    float last = 1e30f;
    for (int64_t y = 0; y < 48; ++y) {
      const size_t p = static_cast<size_t>(y * 96 + 48);
      if (s.label[p] != 0) continue;
      EXPECT_LE(s.depth[p], last) << "scene " << i << " row " << y;
      last = s.depth[p];
    }
  }
  for (int cls : {0, 1, 2, 10})
    EXPECT_GT(seen[cls], 0) << "class " << cls;
}

TEST_F(ConvertCli, ConvertVerifyAndUsageErrors) {
  const std::vector<std::string> args = {
      "synthetic-scenes", "--out",      dir(),      "--count",  "3",
      "--width",          "32",         "--height", "16",       "--kind",
      "segmentation",     "--encoding", "png",      "--verify", "--quiet"};
  ASSERT_EQ(run_convert(args), 0);
  EXPECT_EQ(ShardSet::open(dir()).spec().image_encoding, ImageEncoding::png);
  EXPECT_EQ(run_convert(args), 1) << "refuses to replace an existing set";
  std::vector<std::string> again = args;
  again.push_back("--overwrite");
  EXPECT_EQ(run_convert(again), 0);
  EXPECT_EQ(run_convert({"verify", dir()}), 0);
  EXPECT_EQ(
      run_convert({"synthetic-scenes", "--out", path("x"), "--kind", "classification", "--quiet"}),
      1);
  EXPECT_EQ(run_convert({"synthetic-scenes", "--nonsense"}), 2);
  EXPECT_EQ(run_convert({"no-such-kind"}), 2);
  EXPECT_EQ(run_convert({"cityscapes", "--help"}), 0);
}

// ---- h5py: the documented names, shapes and dtypes, read by Python ----------

bool have_h5py() {
  return std::system("/usr/bin/python3 -c 'import h5py, numpy' >/dev/null 2>&1") == 0;
}

nlohmann::json run_python(const std::string& script_path, const std::string& script,
                          const std::string& arg) {
  std::ofstream(script_path) << script;
  const std::string command = "/usr/bin/python3 " + script_path + " " + arg + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  while (pipe != nullptr && fgets(buffer, sizeof(buffer), pipe) != nullptr)
    out += buffer;
  const int rc = pipe != nullptr ? pclose(pipe) : -1;
  EXPECT_EQ(rc, 0) << out;
  try {
    return nlohmann::json::parse(out);
  } catch (const std::exception&) {
    ADD_FAILURE() << "python printed: " << out;
    return {};
  }
}

constexpr const char* kDenseScript = R"(
import sys, json, h5py, numpy as np
def s(x): return x.decode() if isinstance(x, bytes) else str(x)
f = h5py.File(sys.argv[1], 'r')
r = {k: s(f.attrs[k]) for k in ('format', 'kind', 'split', 'image_encoding', 'depth_dtype')}
r['schema_version'] = int(f.attrs['schema_version'])
r['names'] = sorted(f.keys())
r['image'] = [list(f['image'].shape), str(f['image'].dtype), list(f['image'].chunks)]
r['label'] = [list(f['label'].shape), str(f['label'].dtype), list(f['label'].chunks)]
r['depth'] = [list(f['depth'].shape), str(f['depth'].dtype), list(f['depth'].chunks)]
r['fletcher32'] = all(f[k].fletcher32 for k in ('image', 'label', 'depth', 'sample_name'))
r['label_compression'] = f['label'].compression
r['class_names'] = [s(x) for x in f.attrs['class_names']]
r['class_ids'] = [int(x) for x in f.attrs['class_ids']]
r['mean'] = [float(x) for x in f.attrs['mean']]
r['ignore_label'] = int(f.attrs['ignore_label'])
r['image_sum'] = int(f['image'][1].astype(np.int64).sum())
r['label_sum'] = int(f['label'][1].astype(np.int64).sum())
r['depth_sum'] = float(f['depth'][1].astype(np.float64).sum())
r['sample_name'] = [s(x) for x in f['sample_name'][:]]
print(json.dumps(r))
)";

constexpr const char* kBlobScript = R"(
import sys, io, json, h5py, numpy as np
f = h5py.File(sys.argv[1], 'r')
r = {'names': sorted(f.keys())}
for k in ('image_bytes', 'image_offsets', 'image_shapes', 'class_id'):
    r[k] = [list(f[k].shape), str(f[k].dtype)]
o = f['image_offsets'][:]
data = f['image_bytes'][int(o[2]):int(o[3])].tobytes()
r['png_signature'] = data[:4] == b'\x89PNG'
try:
    from PIL import Image
    r['decoded_shape'] = list(np.array(Image.open(io.BytesIO(data))).shape)
except ImportError:
    pass
r['class_id'] = [int(x) for x in f['class_id'][:]]
r['encoding'] = f.attrs['image_encoding'].decode()
print(json.dumps(r))
)";

TEST_F(ShardH5py, DenseShardsHaveTheDocumentedLayout) {
  if (!have_h5py()) GTEST_SKIP() << "/usr/bin/python3 has no h5py (apt-get install python3-h5py)";
  SyntheticScenesOptions o;
  o.count = 3;
  o.width = 40;
  o.height = 24;
  o.depth_dtype = DepthDType::f16;
  o.out_dir = dir();
  const Manifest m = convert_synthetic_scenes(o);
  const nlohmann::json r = run_python(path("dense.py"), kDenseScript, shard_path(dir(), m, 0));
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["format"], "cohort-shard");
  EXPECT_EQ(r["schema_version"], 1);
  EXPECT_EQ(r["kind"], "multitask");
  EXPECT_EQ(r["image_encoding"], "raw");
  EXPECT_EQ(r["depth_dtype"], "f16");
  EXPECT_EQ(r["names"], nlohmann::json({"depth", "image", "label", "sample_name"}));
  EXPECT_EQ(r["image"], nlohmann::json::parse(R"([[3,24,40,3],"uint8",[1,24,40,3]])"));
  EXPECT_EQ(r["label"], nlohmann::json::parse(R"([[3,24,40],"uint8",[1,24,40]])"));
  EXPECT_EQ(r["depth"], nlohmann::json::parse(R"([[3,24,40],"float16",[1,24,40]])"));
  EXPECT_EQ(r["fletcher32"], true);
  EXPECT_EQ(r["label_compression"], "gzip");
  EXPECT_EQ(r["class_names"].size(), 19u);
  EXPECT_EQ(r["class_names"][0], "road");
  EXPECT_EQ(r["class_ids"][18], 18);
  EXPECT_EQ(r["ignore_label"], 255);
  EXPECT_EQ(r["sample_name"], nlohmann::json({"scene-000000", "scene-000001", "scene-000002"}));
  // Python's reading of sample 1 agrees with ours.
  const Sample s = ShardSet::open(dir()).read(1);
  int64_t image_sum = 0, label_sum = 0;
  double depth_sum = 0;
  for (uint8_t v : s.image.pixels)
    image_sum += v;
  for (uint8_t v : s.label)
    label_sum += v;
  for (float v : s.depth)
    depth_sum += v;
  EXPECT_EQ(r["image_sum"], image_sum);
  EXPECT_EQ(r["label_sum"], label_sum);
  EXPECT_NEAR(r["depth_sum"].get<double>(), depth_sum, 1e-6 * depth_sum);
}

TEST_F(ShardH5py, EncodedShardsHaveTheDocumentedLayout) {
  if (!have_h5py()) GTEST_SKIP() << "/usr/bin/python3 has no h5py (apt-get install python3-h5py)";
  DatasetSpec spec;
  spec.kind = TaskKind::classification;
  spec.image_encoding = ImageEncoding::png;
  spec.classes = numbered_classes(4);
  spec.mean = {0.5f, 0.5f, 0.5f};
  spec.std = {0.5f, 0.5f, 0.5f};
  ShardSetWriter w(dir(), spec);
  for (int i = 0; i < 5; ++i) {
    SampleRecord r;
    r.name = "p" + std::to_string(i);
    r.image = Image8{10 + i, 7, 3, pattern_bytes(size_t((10 + i) * 21), uint32_t(i))};
    r.class_id = 3 - i % 4;
    w.append(r);
  }
  const Manifest m = w.finish();
  const nlohmann::json r = run_python(path("blob.py"), kBlobScript, shard_path(dir(), m, 0));
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["names"], nlohmann::json({"class_id", "image_bytes", "image_offsets", "image_shapes",
                                        "sample_name"}));
  EXPECT_EQ(r["image_offsets"], nlohmann::json::parse(R"([[6],"uint64"])"));
  EXPECT_EQ(r["image_shapes"], nlohmann::json::parse(R"([[5,3],"int32"])"));
  EXPECT_EQ(r["class_id"], nlohmann::json({3, 2, 1, 0, 3}));
  EXPECT_EQ(r["encoding"], "png");
  EXPECT_EQ(r["png_signature"], true);
  if (r.contains("decoded_shape")) {  // when PIL is installed
    EXPECT_EQ(r["decoded_shape"], nlohmann::json({12, 7, 3}));
  }
}

}  // namespace
}  // namespace cohort::data
