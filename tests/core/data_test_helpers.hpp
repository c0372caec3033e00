#pragma once
// Helpers shared by the tests of data/ (test_data_*.cpp): small shard sets, ways to
// damage them on purpose, and file utilities.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "data/checksum.hpp"
#include "data/manifest.hpp"
#include "data/shard_writer.hpp"

namespace cohort::data::testing {

// The row filter types (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth) a non-interlaced
// PNG of `bytes_per_row` bytes per row uses: its IDAT chunks inflated, then the
// first byte of every row. Read independently of libpng.
inline std::set<int> png_row_filters(const std::vector<uint8_t>& png, size_t bytes_per_row,
                                     size_t rows) {
  std::vector<uint8_t> idat;
  for (size_t at = 8; at + 12 <= png.size();) {
    const size_t length = (size_t{png[at]} << 24) | (size_t{png[at + 1]} << 16) |
                          (size_t{png[at + 2]} << 8) | size_t{png[at + 3]};
    const std::string type(png.begin() + static_cast<std::ptrdiff_t>(at + 4),
                           png.begin() + static_cast<std::ptrdiff_t>(at + 8));
    if (type == "IDAT")
      idat.insert(idat.end(), png.begin() + static_cast<std::ptrdiff_t>(at + 8),
                  png.begin() + static_cast<std::ptrdiff_t>(at + 8 + length));
    at += 12 + length;
  }
  std::vector<uint8_t> raw(rows * (bytes_per_row + 1));
  uLongf size = static_cast<uLongf>(raw.size());
  EXPECT_EQ(uncompress(raw.data(), &size, idat.data(), static_cast<uLong>(idat.size())), Z_OK);
  EXPECT_EQ(size, raw.size());
  std::set<int> filters;
  for (size_t r = 0; r < rows; ++r)
    filters.insert(raw[r * (bytes_per_row + 1)]);
  return filters;
}

// Distinct, reproducible bytes (a small LCG): images whose every sample differs.
inline std::vector<uint8_t> pattern_bytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> out(n);
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

inline std::vector<ClassEntry> numbered_classes(int k) {
  std::vector<ClassEntry> classes;
  for (int i = 0; i < k; ++i)
    classes.push_back(ClassEntry{i, "class" + std::to_string(i)});
  return classes;
}

inline DatasetSpec dense_spec(TaskKind kind, int64_t h, int64_t w, ImageEncoding enc,
                              DepthDType depth = DepthDType::f32) {
  DatasetSpec s;
  s.kind = kind;
  s.split = "train";
  s.image_encoding = enc;
  s.channels = 3;
  s.height = h;
  s.width = w;
  if (kind != TaskKind::depth) s.classes = numbered_classes(5);
  s.mean = {0.5f, 0.4f, 0.3f};
  s.std = {0.2f, 0.25f, 0.3f};
  s.depth_dtype = depth;
  s.source = "test";
  return s;
}

// Record `i` of a dense set: patterned image, labels cycling through 0..4 and 255,
// depth i + pixel/8 with every 7th pixel invalid (0).
inline SampleRecord dense_record(const DatasetSpec& s, int64_t i) {
  SampleRecord r;
  r.name = "sample-" + std::to_string(i);
  r.image = Image8{s.height, s.width, s.channels,
                   pattern_bytes(static_cast<size_t>(s.height * s.width * s.channels),
                                 static_cast<uint32_t>(i + 1))};
  const size_t pixels = static_cast<size_t>(s.height * s.width);
  if (has_label_map(s.kind))
    for (size_t p = 0; p < pixels; ++p)
      r.label.push_back((p + i) % 6 == 5 ? 255 : static_cast<uint8_t>((p + i) % 6));
  if (has_depth(s.kind))
    for (size_t p = 0; p < pixels; ++p)
      r.depth.push_back(p % 7 == 3 ? 0.0f : static_cast<float>(i) + static_cast<float>(p) / 8.0f);
  return r;
}

// Writes `count` dense records; returns the manifest.
inline Manifest write_dense_set(const std::string& dir, const DatasetSpec& spec, int64_t count,
                                WriterOptions options = {}) {
  ShardSetWriter writer(dir, spec, options);
  for (int64_t i = 0; i < count; ++i)
    writer.append(dense_record(spec, i));
  return writer.finish();
}

inline std::string shard_path(const std::string& dir, const Manifest& m, size_t shard) {
  return (std::filesystem::path(dir) / m.shards[shard].file).string();
}

// Recomputes the size and CRC32 of every shard in the manifest: lets a test alter a
// shard's structure and see the structural check, not the size/CRC check, fire.
inline void refresh_manifest(const std::string& dir) {
  Manifest m = read_manifest(dir);
  for (ShardEntry& e : m.shards)
    e.crc32 = crc32_file((std::filesystem::path(dir) / e.file).string(), &e.bytes);
  write_manifest(dir, m);
}

inline std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void put_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Offset of `needle` in the file, or -1.
inline int64_t find_in_file(const std::string& path, const std::vector<uint8_t>& needle) {
  const std::vector<uint8_t> hay = file_bytes(path);
  const auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end());
  return it == hay.end() ? -1 : static_cast<int64_t>(it - hay.begin());
}

inline void flip_byte(const std::string& path, int64_t offset) {
  std::vector<uint8_t> bytes = file_bytes(path);
  bytes.at(static_cast<size_t>(offset)) ^= 0x5a;
  put_file_bytes(path, bytes);
}

// Overwrites an integer attribute of the file's root in place.
inline void set_int_attribute(const std::string& path, const char* name, int64_t value) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  ASSERT_GE(a, 0);
  ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, &value), 0);
  H5Aclose(a);
  H5Fclose(f);
}

// Writes one u8 value into a dataset at `coords` (HDF5 recomputes the chunk checksum,
// so only value checks can notice).
inline void poke_u8(const std::string& path, const char* dataset, std::vector<hsize_t> coords,
                    uint8_t value) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  const hid_t space = H5Dget_space(d);
  const hsize_t one = 1;
  ASSERT_GE(H5Sselect_elements(space, H5S_SELECT_SET, 1, coords.data()), 0);
  const hid_t mem = H5Screate_simple(1, &one, nullptr);
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, &value), 0);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
}

// Replaces a dataset by one of another type/shape (contiguous, zero-filled).
inline void replace_dataset(const std::string& path, const char* dataset, hid_t type,
                            const std::vector<hsize_t>& dims) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  ASSERT_GE(H5Ldelete(f, dataset, H5P_DEFAULT), 0);
  const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t d = H5Dcreate2(f, dataset, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  H5Dclose(d);
  H5Sclose(space);
  H5Fclose(f);
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace cohort::data::testing
