// `cohort convert verify`: every kind of damage is reported with its file and sample.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/convert.hpp"
#include "data/verify.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using namespace cohort::data::testing;

class ShardVerify : public cohort::testing::TempDirTest {
 protected:
  // 6 samples of 8x8 in shards of 2, multitask, raw images.
  Manifest make_set() {
    spec = dense_spec(TaskKind::multitask, 8, 8, ImageEncoding::raw);
    WriterOptions o;
    o.samples_per_shard = 2;
    return write_dense_set(dir(), spec, 6, o);
  }
  bool reported(const VerifyReport& r, const std::string& a, const std::string& b = "") {
    for (const std::string& p : r.problems)
      if (contains(p, a) && contains(p, b)) return true;
    return false;
  }
  DatasetSpec spec;
};

TEST_F(ShardVerify, CleanSetPasses) {
  make_set();
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(r.ok()) << r.text();
  EXPECT_EQ(r.shards, 3);
  EXPECT_EQ(r.samples_checked, 6);
}

TEST_F(ShardVerify, TruncatedShard) {
  const Manifest m = make_set();
  fs::resize_file(shard_path(dir(), m, 1), m.shards[1].bytes - 100);
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 1), "truncated")) << r.text();
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 1), "CRC32")) << r.text();
  EXPECT_EQ(r.samples_checked, 4) << "the other shards' samples are still checked";
}

TEST_F(ShardVerify, FlippedByteInsideImageData) {
  const Manifest m = make_set();
  const std::string shard = shard_path(dir(), m, 1);
  const std::vector<uint8_t> image3 = dense_record(spec, 3).image.pixels;
  const int64_t at = find_in_file(shard, std::vector<uint8_t>(image3.begin(), image3.begin() + 32));
  ASSERT_GE(at, 0);
  flip_byte(shard, at + 100);
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(reported(r, shard + ": CRC32")) << r.text();
  EXPECT_TRUE(reported(r, shard + " sample 1 (global 3, 'sample-3')", "Fletcher-32")) << r.text();
  EXPECT_EQ(r.problem_count, 2) << r.text();
}

TEST_F(ShardVerify, WrongSchemaVersion) {
  const Manifest m = make_set();
  set_int_attribute(shard_path(dir(), m, 2), "schema_version", 7);
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 2), "schema_version 7")) << r.text();
}

TEST_F(ShardVerify, ManifestFromAnotherSchemaVersion) {
  make_set();
  std::string text;
  {
    std::vector<uint8_t> b = file_bytes(manifest_path(dir()));
    text.assign(b.begin(), b.end());
  }
  const size_t at = text.find("\"schema_version\": 1");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 19, "\"schema_version\": 2");
  put_file_bytes(manifest_path(dir()), std::vector<uint8_t>(text.begin(), text.end()));
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(reported(r, manifest_path(dir()), "schema_version 2")) << r.text();
}

TEST_F(ShardVerify, LabelOutsideTheClassTable) {
  const Manifest m = make_set();
  poke_u8(shard_path(dir(), m, 2), "label", {1, 4, 5}, 42);  // sample 5 = shard 2, local 1
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 2) + " sample 1 (global 5, 'sample-5')",
                       "label value 42 at (y=4, x=5)"))
      << r.text();
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 2) + ": CRC32")) << r.text();
}

TEST_F(ShardVerify, ClassIdOutsideTheTable) {
  DatasetSpec s;
  s.kind = TaskKind::classification;
  s.channels = 1;
  s.height = s.width = 4;
  s.classes = numbered_classes(2);
  s.mean = {0.5f};
  s.std = {0.5f};
  ShardSetWriter w(dir(), s);
  for (int i = 0; i < 3; ++i) {
    SampleRecord r;
    r.name = "c" + std::to_string(i);
    r.image = Image8{4, 4, 1, pattern_bytes(16, uint32_t(i))};
    r.class_id = i % 2;
    w.append(r);
  }
  const Manifest m = w.finish();
  // class_id is i32: poke its lowest byte (little-endian) to 9.
  poke_u8(shard_path(dir(), m, 0), "class_id", {1}, 0);  // sanity: u8 writes convert to i32
  {
    const hid_t f = H5Fopen(shard_path(dir(), m, 0).c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, "class_id", H5P_DEFAULT);
    const int32_t ids[3] = {0, 9, 1};
    ASSERT_GE(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids), 0);
    H5Dclose(d);
    H5Fclose(f);
  }
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(reported(r, "sample 1 (global 1, 'c1')", "class id 9 is not in the class table"))
      << r.text();
}

TEST_F(ShardVerify, MissingShardAndCommandLine) {
  const Manifest m = make_set();
  EXPECT_EQ(run_convert({"verify", dir()}), 0);
  fs::remove(shard_path(dir(), m, 0));
  const VerifyReport r = verify_shard_set(dir());
  EXPECT_TRUE(reported(r, shard_path(dir(), m, 0), "missing shard file")) << r.text();
  EXPECT_EQ(r.samples_checked, 4);
  EXPECT_EQ(run_convert({"verify", dir()}), 1);
  EXPECT_EQ(run_convert({"verify", dir(), "--bogus"}), 2);
}

}  // namespace
}  // namespace cohort::data
