// Shard writer and reader: round trips of every record kind (raw and encoded),
// manifests, and the errors bad or vanishing shards produce.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <thread>

#include "core/error.hpp"
#include "data/image_codec.hpp"
#include "data/shard_reader.hpp"
#include "tests/core/data_test_helpers.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
using namespace cohort::data::testing;

class ShardRoundTrip : public cohort::testing::TempDirTest {};
class ShardErrors : public cohort::testing::TempDirTest {};

// Reads every sample back and compares it with the record that was written.
void expect_dense_round_trip(const std::string& dir, const DatasetSpec& spec, int64_t count,
                             bool exact_image) {
  const ShardSet set = ShardSet::open(dir);
  ASSERT_EQ(set.size(), count);
  EXPECT_EQ(set.spec(), spec);
  for (int64_t i = 0; i < count; ++i) {
    const SampleRecord want = dense_record(spec, i);
    const Sample got = set.read(i);
    EXPECT_EQ(got.index, i);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(set.sample_name(i), want.name);
    ASSERT_EQ(got.image.height, spec.height);
    ASSERT_EQ(got.image.width, spec.width);
    ASSERT_EQ(got.image.channels, spec.channels);
    if (exact_image) {
      EXPECT_EQ(got.image.pixels, want.image.pixels) << "sample " << i;
    }
    EXPECT_EQ(got.label, want.label) << "sample " << i;
    if (spec.depth_dtype == DepthDType::f32 || want.depth.empty()) {
      EXPECT_EQ(got.depth, want.depth) << "sample " << i;
    } else {
      ASSERT_EQ(got.depth.size(), want.depth.size());
      for (size_t p = 0; p < want.depth.size(); ++p)  // f16: 11 significant bits
        ASSERT_NEAR(got.depth[p], want.depth[p], want.depth[p] * 1e-3 + 1e-6) << "pixel " << p;
    }
  }
}

TEST_F(ShardRoundTrip, SegmentationRawAcrossShards) {
  // Odd sizes (chunks of odd byte counts exercise Fletcher-32's last-byte rule).
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 7, 13, ImageEncoding::raw);
  WriterOptions o;
  o.samples_per_shard = 3;
  const Manifest m = write_dense_set(dir(), spec, 8, o);
  ASSERT_EQ(m.shards.size(), 3u);
  EXPECT_EQ(m.shards[2].first_sample, 6);
  EXPECT_EQ(m.shards[2].samples, 2);
  for (size_t s = 0; s < m.shards.size(); ++s) {
    uint64_t bytes = 0;
    EXPECT_EQ(crc32_file(shard_path(dir(), m, s), &bytes), m.shards[s].crc32);
    EXPECT_EQ(bytes, m.shards[s].bytes);
  }
  expect_dense_round_trip(dir(), spec, 8, true);
}

TEST_F(ShardRoundTrip, MultitaskPngWithF32DepthUndeflated) {
  const DatasetSpec spec = dense_spec(TaskKind::multitask, 9, 11, ImageEncoding::png);
  WriterOptions o;
  o.deflate_level = 0;
  o.blob_chunk_bytes = 1024;  // PNGs span chunk boundaries
  write_dense_set(dir(), spec, 5, o);
  expect_dense_round_trip(dir(), spec, 5, true);  // PNG is lossless
}

TEST_F(ShardRoundTrip, MultitaskRawWithF16DepthDeflated) {
  const DatasetSpec spec =
      dense_spec(TaskKind::multitask, 16, 24, ImageEncoding::raw, DepthDType::f16);
  WriterOptions o;
  o.deflate_level = 6;
  write_dense_set(dir(), spec, 4, o);
  expect_dense_round_trip(dir(), spec, 4, true);
}

TEST_F(ShardRoundTrip, DepthOnlyJpeg) {
  const DatasetSpec spec = dense_spec(TaskKind::depth, 16, 16, ImageEncoding::jpeg);
  ShardSetWriter writer(dir(), spec);
  std::vector<SampleRecord> records;
  for (int64_t i = 0; i < 3; ++i) {
    SampleRecord r = dense_record(spec, i);
    // A smooth image: JPEG keeps it within a few levels.
    for (size_t p = 0; p < r.image.pixels.size(); ++p)
      r.image.pixels[p] = static_cast<uint8_t>(40 + (p / 3) % 16 * 8 + i * 10);
    records.push_back(r);
    writer.append(r);
  }
  writer.finish();
  const ShardSet set = ShardSet::open(dir());
  for (int64_t i = 0; i < 3; ++i) {
    const Sample s = set.read(i);
    EXPECT_EQ(s.depth, records[i].depth);
    EXPECT_TRUE(s.label.empty());
    double err = 0;
    for (size_t p = 0; p < s.image.pixels.size(); ++p)
      err += std::abs(int(s.image.pixels[p]) - int(records[i].image.pixels[p]));
    EXPECT_LT(err / s.image.pixels.size(), 3.0) << "mean abs JPEG error, sample " << i;
  }
}

// Classification with images of varying sizes: raw pixels in the image_bytes blob.
TEST_F(ShardRoundTrip, ClassificationVaryingSizesRawAndPng) {
  for (ImageEncoding enc : {ImageEncoding::raw, ImageEncoding::png}) {
    const std::string out = path(to_string(enc));
    DatasetSpec spec;
    spec.kind = TaskKind::classification;
    spec.image_encoding = enc;
    spec.channels = 1;
    spec.classes = numbered_classes(3);
    spec.mean = {0.5f};
    spec.std = {0.25f};
    WriterOptions o;
    o.blob_chunk_bytes = 1024;
    o.samples_per_shard = 4;
    ShardSetWriter writer(out, spec, o);
    std::vector<SampleRecord> records;
    for (int64_t i = 0; i < 10; ++i) {
      SampleRecord r;
      r.name = "img" + std::to_string(i);
      r.image = Image8{5 + i, 30 - i, 1, pattern_bytes(size_t((5 + i) * (30 - i)), uint32_t(i))};
      r.class_id = static_cast<int32_t>(i % 3);
      records.push_back(r);
      writer.append(r);
    }
    writer.finish();
    const ShardSet set = ShardSet::open(out);
    ASSERT_EQ(set.size(), 10);
    for (int64_t i = 0; i < 10; ++i) {
      EXPECT_EQ(set.class_id(i), i % 3);
      const auto shape = set.image_shape(i);
      EXPECT_EQ(shape[0], 5 + i);
      EXPECT_EQ(shape[1], 30 - i);
      const Sample s = set.read(i);
      EXPECT_EQ(s.class_id, i % 3);
      EXPECT_EQ(s.image.pixels, records[i].image.pixels) << to_string(enc) << " sample " << i;
    }
  }
}

TEST_F(ShardRoundTrip, ConcurrentFetchAndDecodeMatchSequentialReads) {
  const DatasetSpec spec = dense_spec(TaskKind::multitask, 12, 20, ImageEncoding::png);
  WriterOptions o;
  o.samples_per_shard = 5;
  write_dense_set(dir(), spec, 16, o);
  const ShardSet set = ShardSet::open(dir());
  std::vector<Sample> sequential;
  for (int64_t i = 0; i < set.size(); ++i)
    sequential.push_back(set.read(i));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      SampleBytes bytes;  // reused: fetch into an existing buffer
      for (int rep = 0; rep < 5; ++rep)
        for (int64_t i = (t + rep) % set.size(); i < set.size(); i += 3) {
          set.fetch(i, bytes);
          const Sample s = set.decode(bytes);
          if (s.image.pixels != sequential[i].image.pixels || s.label != sequential[i].label ||
              s.depth != sequential[i].depth)
            ++mismatches[t];
        }
    });
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST_F(ShardRoundTrip, ManifestRecordsTheSpecAndTheShards) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 6, ImageEncoding::raw);
  WriterOptions o;
  o.samples_per_shard = 2;
  const Manifest written = write_dense_set(dir(), spec, 5, o);
  const Manifest m = read_manifest(dir());
  EXPECT_EQ(m.spec, spec);
  EXPECT_EQ(m.sample_count, 5);
  ASSERT_EQ(m.shards.size(), 3u);
  EXPECT_EQ(m.shards[0].file, "train-00000.h5");
  for (size_t s = 0; s < 3; ++s)
    EXPECT_EQ(m.shards[s].crc32, written.shards[s].crc32);
  // Nothing but the manifest and the shards is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir())) {
    ++files;
    EXPECT_TRUE(e.path().extension() == ".h5" || e.path().filename() == "manifest.json")
        << e.path();
  }
  EXPECT_EQ(files, 4);
}

TEST_F(ShardErrors, WriterRejectsBadRecordsNamingThem) {
  const DatasetSpec spec = dense_spec(TaskKind::multitask, 4, 4, ImageEncoding::raw);
  ShardSetWriter writer(dir(), spec);
  SampleRecord r = dense_record(spec, 0);
  r.label[5] = 9;  // the table has ids 0..4
  try {
    writer.append(r);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "sample-0")) << e.what();
    EXPECT_TRUE(contains(e.what(), "label value 9 at (y=1, x=1)")) << e.what();
  }
  r = dense_record(spec, 1);
  r.depth[2] = std::nanf("");
  EXPECT_THROW(writer.append(r), Error);
  r = dense_record(spec, 2);
  r.image.width = 5;
  EXPECT_THROW(writer.append(r), Error);
}

TEST_F(ShardErrors, EmptySplitAndExistingSetAreErrors) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  {
    ShardSetWriter writer(dir(), spec);
    try {
      writer.finish();
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "empty")) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(manifest_path(dir())));
  try {
    ShardSet::open(dir());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "manifest.json")) << e.what();
  }
  write_dense_set(dir(), spec, 2);
  EXPECT_THROW({ ShardSetWriter w(dir(), spec); }, Error);  // would replace a set
  WriterOptions o;
  o.overwrite = true;
  write_dense_set(dir(), spec, 3, o);
  EXPECT_EQ(ShardSet::open(dir()).size(), 3);
}

TEST_F(ShardErrors, AbandonedWriterLeavesNoFiles) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  {
    WriterOptions o;
    o.samples_per_shard = 2;
    ShardSetWriter writer(dir(), spec, o);
    for (int i = 0; i < 3; ++i)
      writer.append(dense_record(spec, i));
  }  // destroyed without finish(): a failed conversion
  EXPECT_TRUE(fs::is_empty(dir()));
}

TEST_F(ShardErrors, MissingAndTruncatedShardsAreNamedAtOpen) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  WriterOptions o;
  o.samples_per_shard = 2;
  const Manifest m = write_dense_set(dir(), spec, 6, o);
  fs::remove(shard_path(dir(), m, 1));
  fs::resize_file(shard_path(dir(), m, 2), m.shards[2].bytes / 2);
  try {
    ShardSet::open(dir());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string text = e.what();
    EXPECT_TRUE(contains(text, shard_path(dir(), m, 1) + ": missing shard file")) << text;
    EXPECT_TRUE(contains(text, shard_path(dir(), m, 2))) << text;
    EXPECT_TRUE(contains(text, "truncated")) << text;
    EXPECT_TRUE(contains(text, "File has been truncated")) << text;  // HDF5 agrees
  }
}

TEST_F(ShardErrors, SchemaVersionMismatchIsNamed) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  const Manifest m = write_dense_set(dir(), spec, 2);
  set_int_attribute(shard_path(dir(), m, 0), "schema_version", 2);
  refresh_manifest(dir());
  try {
    ShardSet::open(dir());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard_path(dir(), m, 0))) << e.what();
    EXPECT_TRUE(contains(e.what(), "schema_version 2; this build reads version 1")) << e.what();
  }
}

TEST_F(ShardErrors, DtypeAndShapeMismatchesAreNamed) {
  const DatasetSpec spec = dense_spec(TaskKind::multitask, 4, 6, ImageEncoding::raw);
  const Manifest m = write_dense_set(dir(), spec, 3);
  const std::string shard = shard_path(dir(), m, 0);
  replace_dataset(shard, "label", H5T_STD_U16LE, {3, 4, 6});
  replace_dataset(shard, "image", H5T_STD_U8LE, {3, 6, 4, 3});
  refresh_manifest(dir());
  try {
    ShardSet::open(dir());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard + ": dataset 'label': dtype is not u8")) << e.what();
    EXPECT_TRUE(contains(e.what(), "dataset 'image': shape [3,6,4,3], expected [3,4,6,3]"))
        << e.what();
  }
}

TEST_F(ShardErrors, FlippedImageByteFailsItsChecksumAtFetch) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 8, 8, ImageEncoding::raw);
  const Manifest m = write_dense_set(dir(), spec, 4);
  const std::string shard = shard_path(dir(), m, 0);
  const std::vector<uint8_t> image2 = dense_record(spec, 2).image.pixels;
  const int64_t at = find_in_file(shard, std::vector<uint8_t>(image2.begin(), image2.begin() + 32));
  ASSERT_GE(at, 0) << "sample 2's pixels are stored as they are";
  flip_byte(shard, at + 40);
  const ShardSet set = ShardSet::open(dir());  // structure and size are unchanged
  EXPECT_NO_THROW(set.read(1));
  try {
    set.fetch(2);
    FAIL() << "expected a checksum error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard + " sample 2 (global 2, 'sample-2')")) << e.what();
    EXPECT_TRUE(contains(e.what(), "Fletcher-32")) << e.what();
  }
  OpenOptions strict;
  strict.check_crc32 = true;
  try {
    ShardSet::open(dir(), strict);
    FAIL() << "expected a CRC error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard + ": CRC32")) << e.what();
  }
}

TEST_F(ShardErrors, ShardsThatVanishOrShrinkMidRunAreNamed) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  WriterOptions o;
  o.samples_per_shard = 2;
  const Manifest m = write_dense_set(dir(), spec, 6, o);
  const ShardSet set = ShardSet::open(dir());
  EXPECT_NO_THROW(set.read(0));
  fs::remove(shard_path(dir(), m, 1));
  try {
    set.read(3);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard_path(dir(), m, 1) + " sample 1 (global 3")) << e.what();
    EXPECT_TRUE(contains(e.what(), "vanish")) << e.what();
  }
  fs::resize_file(shard_path(dir(), m, 2), 100);
  try {
    set.read(4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), shard_path(dir(), m, 2))) << e.what();
    EXPECT_TRUE(contains(e.what(), "truncated or replaced")) << e.what();
  }
  EXPECT_NO_THROW(set.read(1));  // the untouched shard still reads
}

TEST_F(ShardErrors, LabelsOutsideTheClassTableFailDecode) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  const Manifest m = write_dense_set(dir(), spec, 2);
  poke_u8(shard_path(dir(), m, 0), "label", {1, 2, 3}, 77);
  refresh_manifest(dir());
  const ShardSet set = ShardSet::open(dir());
  EXPECT_NO_THROW(set.read(0));
  try {
    set.read(1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "sample 1 (global 1, 'sample-1')")) << e.what();
    EXPECT_TRUE(contains(e.what(), "label value 77 at (y=2, x=3)")) << e.what();
  }
}

TEST_F(ShardErrors, OutOfRangeIndexIsAnError) {
  const DatasetSpec spec = dense_spec(TaskKind::segmentation, 4, 4, ImageEncoding::raw);
  write_dense_set(dir(), spec, 2);
  const ShardSet set = ShardSet::open(dir());
  EXPECT_THROW(set.fetch(2), Error);
  EXPECT_THROW(set.fetch(-1), Error);
}

}  // namespace
}  // namespace cohort::data
