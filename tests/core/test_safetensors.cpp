// safetensors import: round trips, refusal of inconsistent headers, weight layout
// conversion, and the torchvision export script read back end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io/safetensors.hpp"
#include "core/io/weight_layout.hpp"
#include "core/nn/graph.hpp"
#include "models/resnet.hpp"
#include "models/weights_export.hpp"
#include "models/weights_import.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::io {
namespace {

using cohort::testing::run_command;

namespace fs = std::filesystem;
using testing::expect_error;
using testing::random_bytes;
using testing::same_bits;

using SafetensorsTest = testing::TempDirTest;

// A safetensors file: the little-endian u64 length of `header`, the header, `data`.
void write_file(const std::string& file, const std::string& header, const std::string& data) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8)
    out.put(static_cast<char>(n & 0xff));
  out << header << data;
}

// A file with the given header text and `data_bytes` bytes of data 0, 1, 2, ...
void write_raw(const std::string& file, const std::string& header, size_t data_bytes) {
  std::string data(data_bytes, '\0');
  for (size_t i = 0; i < data_bytes; ++i)
    data[i] = static_cast<char>(i);
  write_file(file, header, data);
}

TEST_F(SafetensorsTest, RoundTripIsBitExactForEveryDtype) {
  std::map<std::string, Tensor> tensors;
  uint32_t seed = 1;
  for (DType t :
       {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::i32, DType::u8})
    tensors["layer." + std::string(dtype_name(t))] = random_bytes(Shape{3, 1, 5}, t, seed++);
  tensors["bn.num_batches_tracked"] = random_bytes(Shape{}, DType::i64, 50);
  tensors["empty"] = Tensor::empty(Shape{0}, DType::f32);

  const std::string file = path("w.safetensors");
  write_safetensors(file, tensors);
  const std::map<std::string, Tensor> back = read_safetensors(file);
  ASSERT_EQ(back.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(back.contains(name)) << name;
    EXPECT_TRUE(same_bits(back.at(name), t)) << name << ": " << back.at(name).str();
  }
}

TEST_F(SafetensorsTest, MetadataIsSkippedAndLittleEndianValuesDecode) {
  const std::string file = path("m.safetensors");
  // 1.5f little-endian is 00 00 c0 3f.
  write_file(
      file,
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      std::string("\x00\x00\xc0\x3f", 4));
  const auto back = read_safetensors(file);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back.at("x").to_vector(), std::vector<double>{1.5});
}

TEST_F(SafetensorsTest, OffsetsPastTheFileAreRefusedNamingTensorAndFile) {
  const std::string file = path("short.safetensors");
  write_raw(file,
            R"({"ok":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
            R"("conv1.weight":{"dtype":"F32","shape":[4],"data_offsets":[2,18]}})",
            10);
  expect_error([&] { read_safetensors(file); }, {"conv1.weight", file, "past the data section"});
}

TEST_F(SafetensorsTest, InconsistentHeadersAreRefused) {
  struct Case {
    const char* header;
    size_t data;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16, "span 12 bytes"},
      {R"({"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4, "'I8' is not supported"},
      {R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16, "negative"},
      {R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,0]}})", 16, "backwards"},
      {R"({"w":{"dtype":"F32","shape":[4]}})", 16, "data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16,
       "too large"},
      {R"({"w":)", 16, "not valid JSON"},
      {R"([1,2])", 16, "not a JSON object"},
  };
  for (const Case& c : cases) {
    const std::string file = path("bad.safetensors");
    write_raw(file, c.header, c.data);
    SCOPED_TRACE(c.header);
    expect_error([&] { read_safetensors(file); }, {c.expect, file});
  }

  // A header length larger than the file.
  const std::string file = path("len.safetensors");
  {
    std::ofstream out(file, std::ios::binary);
    const unsigned char length[8] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
    out.write(reinterpret_cast<const char*>(length), 8);
    out << "{}";
  }
  expect_error([&] { read_safetensors(file); }, {"does not fit"});
  EXPECT_THROW(read_safetensors(path("missing.safetensors")), Error);
}

TEST(WeightLayout, ConvWeightsMoveInputChannelsLast) {
  const int64_t O = 3, I = 2, H = 2, W = 3;
  std::vector<double> values(static_cast<size_t>(O * I * H * W));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<double>(i);
  const Tensor oihw = Tensor::from_vector(values, Shape{O, I, H, W}, DType::f32);

  const Tensor ohwi = convert_conv_weight_oihw_to_ohwi(oihw);
  ASSERT_EQ(ohwi.shape(), (Shape{O, H, W, I}));
  const float* out = ohwi.data<float>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          EXPECT_EQ(out[((o * H + h) * W + w) * I + i], values[((o * I + i) * H + h) * W + w]);

  // conv_transpose: [I, O, kh, kw] -> [I, kh, kw, O], the same move; any dtype.
  const Tensor iohw = Tensor::from_vector(values, Shape{I, O, H, W}, DType::bf16);
  const Tensor ihwo = convert_conv_transpose_weight_iohw_to_ihwo(iohw);
  ASSERT_EQ(ihwo.shape(), (Shape{I, H, W, O}));
  const std::vector<double> t = ihwo.to_vector();
  for (int64_t i = 0; i < I; ++i)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          EXPECT_EQ(t[static_cast<size_t>(((i * H + h) * W + w) * O + o)],
                    values[static_cast<size_t>(((i * O + o) * H + h) * W + w)]);

  EXPECT_THROW(convert_conv_weight_oihw_to_ohwi(Tensor::zeros(Shape{2, 3}, DType::f32)), Error);

  // And back (export): each inverse restores PyTorch's layout exactly.
  EXPECT_EQ(convert_conv_weight_ohwi_to_oihw(ohwi).shape(), oihw.shape());
  EXPECT_EQ(convert_conv_weight_ohwi_to_oihw(ohwi).to_vector(), oihw.to_vector());
  EXPECT_EQ(convert_conv_transpose_weight_ihwo_to_iohw(ihwo).to_vector(), iohw.to_vector());
  EXPECT_EQ(convert_conv_transpose_weight_ihwo_to_iohw(ihwo).dtype(), DType::bf16);
}

// export_torchvision_weights is the inverse of import_torchvision_weights: a
// ResNet-18 with trained-looking (random) weights and statistics, exported and
// imported into a fresh graph, is bitwise the same; PyTorch's layouts and names
// are in the file, with num_batches_tracked for every BatchNorm.
TEST_F(SafetensorsTest, ExportThenImportIsBitwise) {
  auto resnet18 = [](core::nn::Graph& g, uint64_t seed) {
    models::ResNetOptions o;
    o.depth = 18;
    o.num_classes = 10;
    o.in_channels = 1;
    models::add_resnet(g, g.input("image"), o);
    g.build(core::Device::cpu(), seed);
  };
  core::nn::Graph a, b;
  resnet18(a, 1);
  resnet18(b, 2);
  for (core::nn::Buffer& buf : a.buffers())  // statistics that are not the initial 0 / 1
    buf.value.copy_from(
        cohort::testing::random_tensor(buf.value.shape(), 7, 0.1, 2.0, buf.value.dtype()));
  models::ExportOptions eo;
  eo.batches_tracked = 42;
  const models::ExportReport r = models::export_torchvision_weights(a, path("r18.safetensors"), eo);
  EXPECT_EQ(r.tensors, 122) << "torchvision's state_dict: 62 parameters, 40 statistics, 20 "
                               "counters";
  const std::map<std::string, Tensor> file = read_safetensors(path("r18.safetensors"));
  EXPECT_EQ(file.at("conv1.weight").shape(), (Shape{64, 1, 7, 7}));
  EXPECT_EQ(file.at("layer1.0.bn1.num_batches_tracked").to_vector(), std::vector<double>{42});
  EXPECT_EQ(file.at("layer1.0.bn1.num_batches_tracked").rank(), 0);
  models::import_torchvision_weights(path("r18.safetensors"), b);
  const auto sa = a.state(), sb = b.state();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa)
    EXPECT_EQ(t.to_vector(), sb.at(name).to_vector()) << name;
  // A prefix keeps only its entries, without it.
  models::ExportOptions layer4;
  layer4.prefix = "layer4.";
  models::export_torchvision_weights(a, path("layer4.safetensors"), layer4);
  const std::map<std::string, Tensor> part = read_safetensors(path("layer4.safetensors"));
  EXPECT_TRUE(part.contains("0.conv1.weight"));
  EXPECT_FALSE(part.contains("conv1.weight"));
  EXPECT_THROW(models::export_torchvision_weights(a, path("x.safetensors"), {.prefix = "nope."}),
               Error);
}

std::string source_dir() {
  if (const char* env = std::getenv("COHORT_SOURCE_DIR")) return env;
  // This file is tests/core/test_safetensors.cpp under the source root.
  return fs::path(__FILE__).parent_path().parent_path().parent_path().string();
}

TEST_F(SafetensorsTest, TorchvisionExportReadsBack) {
  const std::string python = "/usr/bin/python3";
  int status = -1;
  if (fs::exists(python))
    run_command(python + " -c 'import torch, torchvision, numpy' 2>/dev/null", status);
  if (status != 0) GTEST_SKIP() << "no /usr/bin/python3 with torch, torchvision and numpy";
  const std::string script = source_dir() + "/tools/export_torchvision_safetensors.py";
  ASSERT_TRUE(fs::exists(script)) << script;

  const std::string file = path("resnet18.safetensors");
  const std::string listing =
      run_command(python + " " + script + " resnet18 " + file + " --random-seed 0 --list", status);
  ASSERT_EQ(status, 0) << listing;
  const nlohmann::json names = nlohmann::json::parse(listing);
  ASSERT_TRUE(names.is_array());

  const std::map<std::string, Tensor> tensors = read_safetensors(file);
  EXPECT_EQ(tensors.size(), names.size());
  EXPECT_EQ(tensors.size(), 122u);  // resnet18: 62 parameters + 60 batch-norm buffers
  for (const auto& name : names)
    EXPECT_TRUE(tensors.contains(name.get<std::string>())) << name;

  const Tensor& conv1 = tensors.at("conv1.weight");
  EXPECT_EQ(conv1.shape(), (Shape{64, 3, 7, 7}));
  EXPECT_EQ(conv1.dtype(), DType::f32);
  // Kaiming normal, fan_out mode: std = sqrt(2 / (64 * 7 * 7)) ~ 0.0253.
  double sum2 = 0;
  for (double v : conv1.to_vector())
    sum2 += v * v;
  EXPECT_NEAR(std::sqrt(sum2 / static_cast<double>(conv1.numel())), 0.0253, 0.0025);
  EXPECT_EQ(tensors.at("bn1.weight").to_vector(), std::vector<double>(64, 1.0));
  const Tensor& tracked = tensors.at("bn1.num_batches_tracked");
  EXPECT_EQ(tracked.dtype(), DType::i64);
  EXPECT_EQ(tracked.rank(), 0);
  EXPECT_EQ(tensors.at("fc.weight").shape(), (Shape{1000, 512}));

  const Tensor ohwi = convert_conv_weight_oihw_to_ohwi(conv1);
  EXPECT_EQ(ohwi.shape(), (Shape{64, 7, 7, 3}));
  // [o=1, i=2, h=3, w=4] lands at [1, 3, 4, 2].
  EXPECT_EQ(ohwi.data<float>()[((1 * 7 + 3) * 7 + 4) * 3 + 2],
            conv1.data<float>()[((1 * 3 + 2) * 7 + 3) * 7 + 4]);
}

}  // namespace
}  // namespace cohort::core::io
