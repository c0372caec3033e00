// Measurements behind docs/SHARD_FORMAT.md's "raw vs encoded" table. Disabled in the
// unit suite (they take ~30 s); run with
//   cohort_unit_tests --gtest_also_run_disabled_tests --gtest_filter='DataBench*'
// COHORT_BENCH_OUT=<dir> also writes preview PNGs of a synthetic scene there.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <png.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "data/checksum.hpp"
#include "data/convert.hpp"
#include "data/image_codec.hpp"
#include "data/image_resize.hpp"
#include "data/shard_reader.hpp"
#include "data/synthetic_scenes.hpp"
#include "tests/support/temp_dir.hpp"

namespace cohort::data {
namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TEST(DataBench, DISABLED_RawVersusEncodedAt2048x1024) {
  cohort::testing::TempDir tmp("cohort-bench");
  const int64_t count = 8;
  // Per sample, one core: stored image bytes, encoding time (conversion), fetch (raw
  // chunk copies + Fletcher-32), image decode alone, and the whole decode() (image +
  // inflating and checking label and depth).
  std::printf("%-6s %14s %10s %10s %14s %12s\n", "image", "image MiB", "encode ms", "fetch ms",
              "img decode ms", "decode() ms");
  std::vector<SyntheticScene> scenes;
  for (int64_t i = 0; i < 4; ++i)
    scenes.push_back(generate_scene(2048, 1024, 1, i));
  for (ImageEncoding enc : {ImageEncoding::raw, ImageEncoding::png, ImageEncoding::jpeg}) {
    double encode = 0;
    for (const SyntheticScene& sc : scenes) {
      const double a = now_ms();
      if (enc == ImageEncoding::png) encode_png(sc.image, 3);
      if (enc == ImageEncoding::jpeg) encode_jpeg(sc.image, 95);
      encode += now_ms() - a;
    }
    SyntheticScenesOptions o;
    o.out_dir = tmp.file(to_string(enc));
    o.count = count;
    o.width = 2048;
    o.height = 1024;
    o.encoding = enc;
    convert_synthetic_scenes(o);
    const ShardSet set = ShardSet::open(o.out_dir);
    double fetch = 0, image_decode = 0, decode = 0, image_bytes = 0;
    for (int rep = 0; rep < 3; ++rep)
      for (int64_t i = 0; i < count; ++i) {
        const double a = now_ms();
        SampleBytes b = set.fetch(i);
        const double c = now_ms();
        image_bytes += static_cast<double>(b.image.size());
        if (enc != ImageEncoding::raw) decode_image(b.image.data(), b.image.size(), 3, "bench");
        const double d = now_ms();
        const Sample s = set.decode(std::move(b));
        decode += now_ms() - d;
        image_decode += d - c;
        fetch += c - a;
        ASSERT_EQ(s.image.width, 2048);
      }
    std::printf("%-6s %14.2f %10.1f %10.2f %14.2f %12.2f\n", to_string(enc),
                image_bytes / 1048576.0 / (3 * count), encode / scenes.size(), fetch / (3 * count),
                image_decode / (3 * count), decode / (3 * count));
  }
  // Label and depth alone, by deflate level and depth dtype.
  for (int level : {0, 1, 6})
    for (DepthDType dt : {DepthDType::f32, DepthDType::f16}) {
      SyntheticScenesOptions o;
      o.out_dir = tmp.file(fmt::format("targets-{}-{}", level, to_string(dt)));
      o.count = 4;
      o.width = 2048;
      o.height = 1024;
      o.encoding = ImageEncoding::png;
      o.depth_dtype = dt;
      o.writer.deflate_level = level;
      convert_synthetic_scenes(o);
      const ShardSet set = ShardSet::open(o.out_dir);
      double label = 0, depth = 0;
      for (int64_t i = 0; i < o.count; ++i) {
        const SampleBytes b = set.fetch(i);
        label += static_cast<double>(b.label.size());
        depth += static_cast<double>(b.depth.size());
      }
      std::printf("deflate %d depth %s: label %.3f MiB, depth %.3f MiB per sample\n", level,
                  to_string(dt), label / 1048576.0 / o.count, depth / 1048576.0 / o.count);
    }
}

// How long HDF5's global lock is held per 2048x1024x3 raw sample: H5Dread_chunk (what
// fetch() does: copy the stored bytes) against H5Dread (HDF5 runs Fletcher-32 inside).
TEST(DataBench, DISABLED_LockHeldPerRawSample) {
  cohort::testing::TempDir tmp("cohort-bench");
  SyntheticScenesOptions o;
  o.out_dir = tmp.file("raw");
  o.count = 8;
  o.width = 2048;
  o.height = 1024;
  o.kind = TaskKind::segmentation;
  const Manifest m = convert_synthetic_scenes(o);
  const std::string path = o.out_dir + "/" + m.shards[0].file;
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "image", H5P_DEFAULT);
  std::vector<uint8_t> buffer(2048 * 1024 * 3 + 4);
  double raw_ms = 0, filtered_ms = 0;
  const hid_t file_space = H5Dget_space(d);
  const hsize_t count[4] = {1, 1024, 2048, 3};
  const hid_t mem_space = H5Screate_simple(4, count, nullptr);
  for (int rep = 0; rep < 3; ++rep)
    for (hsize_t i = 0; i < 8; ++i) {
      hsize_t start[4] = {i, 0, 0, 0};
      uint32_t mask = 0;
      double a = now_ms();
      ASSERT_GE(H5Dread_chunk(d, H5P_DEFAULT, start, &mask, buffer.data()), 0);
      raw_ms += now_ms() - a;
      H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, count, nullptr);
      a = now_ms();
      ASSERT_GE(H5Dread(d, H5T_NATIVE_UINT8, mem_space, file_space, H5P_DEFAULT, buffer.data()), 0);
      filtered_ms += now_ms() - a;
    }
  std::printf("lock held per raw sample: H5Dread_chunk %.2f ms, H5Dread %.2f ms\n", raw_ms / 24,
              filtered_ms / 24);
  H5Sclose(mem_space);
  H5Sclose(file_space);
  H5Dclose(d);
  H5Fclose(f);
}

// The Fletcher-32 check the reader runs over every raw chunk it fetches
// (data/checksum.cpp), on a 2048x1024x3 image's 6 MiB.
TEST(DataBench, DISABLED_Fletcher32PerRawChunk) {
  std::vector<uint8_t> bytes(2048 * 1024 * 3);
  uint32_t x = 1;
  for (uint8_t& b : bytes) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  double best = 1e30;
  uint32_t sum = 0;
  for (int rep = 0; rep < 20; ++rep) {
    const double a = now_ms();
    sum = hdf5_fletcher32(bytes.data(), bytes.size());
    best = std::min(best, now_ms() - a);
  }
  std::printf("fletcher32 over 6 MiB: best of 20 %.3f ms (%.1f GB/s) [%08x]\n", best,
              bytes.size() / best / 1e6, sum);
}

// What PNG row filters cost the loader's decoder: a photograph (any JPEG/PNG in
// COHORT_BENCH_IMAGE, e.g. opencv-doc's examples/data/leuvenA.jpg) resized to
// 2048x1024, encoded at zlib level 3 with libpng's adaptive choice and with the
// Sub/Up filters encode_png uses; bytes and best-of-5 decode_image time.
namespace png_bench {
void write(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void flush(png_structp) {}
std::vector<uint8_t> encode(const Image8& img, int filters) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, &write, &flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height),
               8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 3);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, filters);
  png_write_info(png, info);
  for (int64_t y = 0; y < img.height; ++y)
    png_write_row(png, img.pixels.data() + y * img.width * 3);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}
}  // namespace png_bench

TEST(DataBench, DISABLED_PngRowFilterDecodeCost) {
  const char* path = std::getenv("COHORT_BENCH_IMAGE");
  if (path == nullptr) GTEST_SKIP() << "set COHORT_BENCH_IMAGE=<a photograph>";
  const Image8 photo = resize_image(read_image_file(path, 3), 1024, 2048);
  for (const auto& [name, filters] :
       {std::pair<const char*, int>{"adaptive (libpng default)", PNG_ALL_FILTERS},
        {"sub|up (encode_png)", PNG_FILTER_SUB | PNG_FILTER_UP}}) {
    const std::vector<uint8_t> png = png_bench::encode(photo, filters);
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      const double a = now_ms();
      const Image8 back = decode_image(png.data(), png.size(), 3, "bench");
      best = std::min(best, now_ms() - a);
      ASSERT_EQ(back.pixels, photo.pixels);
    }
    std::printf("%-26s %6.2f MB  decode %6.2f ms\n", name, png.size() / 1e6, best);
  }
}

TEST(DataBench, DISABLED_SyntheticScenePreview) {
  const char* out = std::getenv("COHORT_BENCH_OUT");
  if (out == nullptr) GTEST_SKIP() << "set COHORT_BENCH_OUT=<dir>";
  for (int64_t i = 0; i < 3; ++i) {
    const SyntheticScene s = generate_scene(512, 256, 0, i);
    write_file_bytes(fmt::format("{}/scene{}.png", out, i), encode_png(s.image));
    Image8 label{256, 512, 1, s.label};
    for (uint8_t& v : label.pixels)
      v = static_cast<uint8_t>(v * 13);
    write_file_bytes(fmt::format("{}/label{}.png", out, i), encode_png(label));
    Image8 depth{256, 512, 1, std::vector<uint8_t>(s.depth.size())};
    for (size_t p = 0; p < s.depth.size(); ++p)
      depth.pixels[p] =
          s.depth[p] <= 0 ? 0 : static_cast<uint8_t>(std::min(255.0, 2550.0 / s.depth[p]));
    write_file_bytes(fmt::format("{}/depth{}.png", out, i), encode_png(depth));
  }
}

}  // namespace
}  // namespace cohort::data
