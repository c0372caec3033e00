// Checkpoint I/O: bit-exact round trips, atomic writes, refusal of damaged files,
// load_tensors' single combined report, listing/pruning and fallback past damage.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/io/checkpoint.hpp"
#include "core/io/hdf5_handles.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::io {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::expect_error;
using testing::random_bytes;
using testing::same_bits;

using CheckpointTest = testing::TempDirTest;

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

CheckpointData small_checkpoint(int64_t step) {
  CheckpointData d;
  d.tensors["model/fc.weight"] = random_bytes(Shape{4, 3}, DType::f32, static_cast<uint32_t>(step));
  d.integers["step"] = step;
  return d;
}

std::string fmt_step(int step) {
  return "ckpt-" + std::to_string(step) + ".h5";
}

TEST_F(CheckpointTest, RoundTripIsBitExactForEveryDtypeAndKind) {
  CheckpointData d;
  const DType dtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                          DType::i32, DType::i64, DType::u8};
  uint32_t seed = 1;
  for (DType t : dtypes) {
    const std::string name(dtype_name(t));
    d.tensors["model/layer1.0.conv1." + name] = random_bytes(Shape{3, 2, 5}, t, seed++);
    d.tensors["optim/state/deep/" + name] = random_bytes(Shape{7}, t, seed++);
  }
  d.tensors["scalar"] = random_bytes(Shape{}, DType::i64, 99);  // rank 0 (num_batches_tracked)
  d.tensors["empty"] = Tensor::empty(Shape{0, 3}, DType::f32);
  d.strings["config"] = "model: resnet50\noptimizer:\n  lr: 0.1\n";
  d.strings["empty"] = "";
  d.strings["with/nul"] = std::string("a\0b", 3);
  d.integers["step"] = 123456789012345;
  d.integers["min"] = std::numeric_limits<int64_t>::min();
  d.integers["rng/offset"] = -1;
  d.reals["loss_scale"] = 65536.0;
  d.reals["negative_zero"] = -0.0;
  d.reals["nan"] = std::numeric_limits<double>::quiet_NaN();

  const std::string file = path("ckpt-1.h5");
  write_checkpoint(file, d);
  CheckpointData r = read_checkpoint(file);

  ASSERT_EQ(r.tensors.size(), d.tensors.size());
  for (const auto& [name, t] : d.tensors) {
    ASSERT_TRUE(r.tensors.contains(name)) << name;
    EXPECT_TRUE(same_bits(r.tensors.at(name), t)) << name << ": " << r.tensors.at(name).str();
  }
  EXPECT_EQ(r.strings, d.strings);
  EXPECT_EQ(r.integers, d.integers);
  ASSERT_EQ(r.reals.size(), d.reals.size());
  for (const auto& [name, v] : d.reals) {
    uint64_t a, b;
    std::memcpy(&a, &v, 8);
    std::memcpy(&b, &r.reals.at(name), 8);
    EXPECT_EQ(a, b) << name;
  }

  // '/' in names made nested groups, and the temporary file is gone.
  h5::File f(COHORT_H5(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)));
  h5::Group model(COHORT_H5(H5Gopen2(f.get(), "/tensors/model", H5P_DEFAULT)));
  EXPECT_GT(COHORT_H5(H5Lexists(model.get(), "layer1.0.conv1.f32", H5P_DEFAULT)), 0);
  EXPECT_EQ(
      h5::read_string_attribute(
          h5::Dataset(COHORT_H5(H5Dopen2(model.get(), "layer1.0.conv1.bf16", H5P_DEFAULT))).get(),
          "dtype"),
      "bf16");
  for (const auto& entry : fs::directory_iterator(dir_path()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
}

TEST_F(CheckpointTest, TruncatedFileIsRefusedNamingTheFile) {
  const std::string good = path("ckpt-1.h5");
  CheckpointData d = small_checkpoint(1);
  d.tensors["big"] = random_bytes(Shape{4096}, DType::f32, 5);
  write_checkpoint(good, d);
  std::vector<char> bytes = read_bytes(good);
  bytes.resize(bytes.size() / 2);
  const std::string cut = path("cut-1.h5");
  write_bytes(cut, bytes);

  expect_error([&] { read_checkpoint(cut); }, {cut});
}

TEST_F(CheckpointTest, NonHdf5FileIsRefused) {
  const std::string file = path("ckpt-1.h5");
  write_bytes(file, std::vector<char>(1000, 'x'));
  expect_error([&] { read_checkpoint(file); }, {file, "not an HDF5 file"});
}

TEST_F(CheckpointTest, FlippedDataByteIsRefusedNamingTheTensor) {
  const std::string file = path("ckpt-1.h5");
  CheckpointData d = small_checkpoint(1);
  d.tensors["model/layer2.bias"] = random_bytes(Shape{64}, DType::f32, 8);
  write_checkpoint(file, d);

  haddr_t offset;
  {
    h5::File f(COHORT_H5(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)));
    h5::Dataset ds(COHORT_H5(H5Dopen2(f.get(), "/tensors/model/layer2.bias", H5P_DEFAULT)));
    offset = H5Dget_offset(ds.get());
    ASSERT_NE(offset, HADDR_UNDEF);
  }
  std::vector<char> bytes = read_bytes(file);
  ASSERT_LT(offset + 100, bytes.size());
  bytes[offset + 100] ^= 0x10;
  write_bytes(file, bytes);

  expect_error([&] { read_checkpoint(file); }, {"/tensors/model/layer2.bias", "checksum", file});
}

// Builds a file with the checkpoint's root attributes as given, bypassing the writer.
void write_fake(const std::string& file, bool complete, int64_t version) {
  h5::File f(COHORT_H5(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
  for (const char* g : {"tensors", "strings", "integers", "reals"})
    h5::Group(COHORT_H5(H5Gcreate2(f.get(), g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  h5::write_string_attribute(f.get(), "format", "cohort-checkpoint");
  h5::write_int64_attribute(f.get(), "format_version", version);
  if (complete) h5::write_int64_attribute(f.get(), "complete", 1);
}

TEST_F(CheckpointTest, IncompleteOrWrongVersionIsRefused) {
  const std::string incomplete = path("incomplete-1.h5");
  write_fake(incomplete, /*complete=*/false, checkpoint_format_version);
  expect_error([&] { read_checkpoint(incomplete); }, {incomplete, "incomplete"});

  const std::string future = path("future-1.h5");
  write_fake(future, /*complete=*/true, checkpoint_format_version + 1);
  expect_error([&] { read_checkpoint(future); }, {future, "format version 2"});

  // The fake with the right attributes reads as an empty checkpoint: the refusals
  // above are about the attributes, not about the faking.
  const std::string fine = path("fine-1.h5");
  write_fake(fine, /*complete=*/true, checkpoint_format_version);
  EXPECT_TRUE(read_checkpoint(fine).tensors.empty());
}

TEST_F(CheckpointTest, LeftoverTemporaryFileIsNeverPicked) {
  write_checkpoint(path("ckpt-100.h5"), small_checkpoint(100));
  // A crash between writing and renaming leaves a (possibly complete) temporary file
  // of a later step; it must never be taken for a checkpoint.
  write_checkpoint(path("ckpt-200.h5"), small_checkpoint(200));
  fs::rename(path("ckpt-200.h5"), path("ckpt-200.h5.tmp-4242"));
  write_bytes(path("ckpt-300.h5.tmp-77"), std::vector<char>(10, 'x'));

  EXPECT_EQ(list_checkpoints(dir(), "ckpt"), std::vector<std::string>{path("ckpt-100.h5")});
  const std::optional<std::string> latest = latest_good_checkpoint(dir(), "ckpt");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(*latest, path("ckpt-100.h5"));
}

TEST_F(CheckpointTest, PreviousCheckpointSurvivesFailedWrites) {
  const std::string file = path("ckpt-1.h5");
  write_checkpoint(file, small_checkpoint(1));

  // A write that fails half-way (the second tensor's name is invalid) over the same path.
  CheckpointData bad = small_checkpoint(2);
  bad.tensors["model//broken"] = random_bytes(Shape{2}, DType::f32, 3);
  expect_error([&] { write_checkpoint(file, bad); }, {"model//broken", file});

  // A crashed write of the next step: a torn temporary file, never renamed.
  std::vector<char> torn = read_bytes(file);
  torn.resize(torn.size() / 3);
  write_bytes(path("ckpt-2.h5.tmp-12345"), torn);

  EXPECT_EQ(read_checkpoint(file).integers.at("step"), 1);
  EXPECT_EQ(latest_good_checkpoint(dir(), "ckpt"), file);
  // The failed write cleaned up its own temporary file.
  EXPECT_FALSE(fs::exists(file + ".tmp-" + std::to_string(::getpid())));
}

TEST_F(CheckpointTest, LatestGoodFallsBackPastDamagedAndReportsThem) {
  for (int step : {1, 2, 3})
    write_checkpoint(path(fmt_step(step)), small_checkpoint(step));
  std::vector<char> bytes = read_bytes(path("ckpt-3.h5"));
  bytes.resize(bytes.size() / 2);
  write_bytes(path("ckpt-3.h5"), bytes);
  write_bytes(path("ckpt-2.h5"), std::vector<char>(4096, 0));

  ::testing::internal::CaptureStderr();
  const std::optional<std::string> latest = latest_good_checkpoint(dir(), "ckpt");
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(*latest, path("ckpt-1.h5"));
  EXPECT_NE(err.find("ckpt-3.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("ckpt-2.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("not an HDF5 file"), std::string::npos) << err;

  fs::remove(path("ckpt-1.h5"));
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(latest_good_checkpoint(dir(), "ckpt").has_value());
  ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(latest_good_checkpoint(path("no-such-dir"), "ckpt").has_value());
}

TEST_F(CheckpointTest, LoadTensorsReportsEveryProblemInOneMessage) {
  CheckpointData d;
  d.tensors["model/ok"] = Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  d.tensors["model/wrong_shape"] = Tensor::zeros(Shape{4}, DType::f32);
  d.tensors["model/wrong_dtype"] = Tensor::zeros(Shape{4}, DType::f16);
  d.tensors["model/extra"] = Tensor::zeros(Shape{1}, DType::f32);
  d.tensors["optim/model_lookalike"] = Tensor::zeros(Shape{1}, DType::f32);

  std::map<std::string, Tensor> targets;
  targets["ok"] = Tensor::zeros(Shape{2, 3}, DType::f32);
  targets["wrong_shape"] = Tensor::zeros(Shape{5}, DType::f32);
  targets["wrong_dtype"] = Tensor::zeros(Shape{4}, DType::f32);
  targets["absent"] = Tensor::zeros(Shape{2}, DType::bf16);

  const std::string message = error_of([&] { load_tensors(d, "model/", targets); });
  EXPECT_NE(message.find("4 problems"), std::string::npos) << message;
  EXPECT_NE(message.find("missing: 'model/absent' (model expects bf16[2])"), std::string::npos)
      << message;
  EXPECT_NE(message.find("unexpected: 'model/extra' (f32[1])"), std::string::npos) << message;
  EXPECT_NE(message.find("shape mismatch: 'model/wrong_shape': checkpoint f32[4] vs model f32[5]"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("dtype mismatch: 'model/wrong_dtype': checkpoint f16[4] vs model f32[4]"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("optim/"), std::string::npos) << "outside the prefix: " << message;
  // One problem per line.
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 4) << message;
  // Nothing was copied, not even the entry that matched.
  EXPECT_EQ(targets["ok"].to_vector(), std::vector<double>(6, 0.0));

  // Non-strict: extras are fine; the matching entries are copied.
  std::map<std::string, Tensor> good{{"ok", targets["ok"]}};
  load_tensors(d, "model/", good, /*strict=*/false);
  EXPECT_EQ(targets["ok"].to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  // Strict with the same targets names the extras.
  const std::string strict = error_of([&] { load_tensors(d, "model/", good); });
  EXPECT_NE(strict.find("unexpected: 'model/wrong_shape'"), std::string::npos) << strict;
}

TEST_F(CheckpointTest, ListAndPruneOrderByStepNumerically) {
  for (int step : {1, 2, 10, 20, 100})
    write_checkpoint(path(fmt_step(step)), small_checkpoint(step));
  for (const char* other : {"ckpt-abc.h5", "ckpt-5.h5.bak", "other-7.h5", "ckpt-.h5"})
    write_bytes(path(other), std::vector<char>(1, 'x'));
  write_bytes(path("ckpt-500.h5.tmp-1"), std::vector<char>(1, 'x'));

  EXPECT_EQ(list_checkpoints(dir(), "ckpt"),
            (std::vector<std::string>{path("ckpt-100.h5"), path("ckpt-20.h5"), path("ckpt-10.h5"),
                                      path("ckpt-2.h5"), path("ckpt-1.h5")}));
  prune_checkpoints(dir(), "ckpt", 2);
  EXPECT_EQ(list_checkpoints(dir(), "ckpt"),
            (std::vector<std::string>{path("ckpt-100.h5"), path("ckpt-20.h5")}));
  EXPECT_EQ(read_checkpoint(path("ckpt-20.h5")).integers.at("step"), 20);
  // Files that are not checkpoints of this stem are left alone.
  for (const char* other :
       {"ckpt-abc.h5", "ckpt-5.h5.bak", "other-7.h5", "ckpt-.h5", "ckpt-500.h5.tmp-1"})
    EXPECT_TRUE(fs::exists(path(other))) << other;
  EXPECT_THROW(prune_checkpoints(dir(), "ckpt", 0), Error);
  EXPECT_TRUE(list_checkpoints(path("missing"), "ckpt").empty());
}

TEST_F(CheckpointTest, NameThatIsBothTensorAndGroupIsRejected) {
  CheckpointData d;
  d.tensors["a"] = Tensor::zeros(Shape{1}, DType::f32);
  d.tensors["a/b"] = Tensor::zeros(Shape{1}, DType::f32);
  const std::string file = path("ckpt-1.h5");
  expect_error([&] { write_checkpoint(file, d); }, {"'a/b'"});
  EXPECT_FALSE(fs::exists(file));
  EXPECT_TRUE(fs::is_empty(dir_path())) << "the temporary file was left behind";
}

TEST_F(CheckpointTest, Hdf5FailureCarriesCallLocationAndLibraryMessageQuietly) {
  const std::string file = path("plain.h5");
  h5::File f(COHORT_H5(H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
  ::testing::internal::CaptureStderr();
  const std::string message =
      error_of([&] { h5::Group g(COHORT_H5(H5Gopen2(f.get(), "no_such_group", H5P_DEFAULT))); });
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(message.find("HDF5 error"), std::string::npos) << message;
  EXPECT_NE(message.find("H5Gopen2(f.get(), \"no_such_group\", H5P_DEFAULT)"), std::string::npos)
      << message;
  EXPECT_NE(message.find("test_checkpoint.cpp:"), std::string::npos) << message;
  // HDF5's own stack: the API function and its description.
  EXPECT_NE(message.find("H5Gopen2(): unable to open group"), std::string::npos) << message;
  EXPECT_TRUE(err.empty()) << "HDF5 printed to stderr: " << err;
}

}  // namespace
}  // namespace cohort::core::io
