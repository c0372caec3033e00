#include "data/shard_writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "data/checksum.hpp"
#include "data/shard_hdf5.hpp"

namespace cohort::data {
namespace {

namespace fs = std::filesystem;
namespace h5 = cohort::core::io::h5;

constexpr size_t kFlushBytes = size_t{32} << 20;  // pending bytes written per H5Dwrite
constexpr float kHalfMax = 65504.0f;

std::string shard_prefix(const std::string& split) {
  std::string prefix;
  for (char c : split)
    prefix += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return prefix.empty() ? std::string("shard") : prefix;
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  COHORT_CHECK(fd >= 0, fmt::format("{}: cannot reopen to sync: {}", path, std::strerror(errno)));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  COHORT_CHECK(ok, fmt::format("{}: fsync failed: {}", path, std::strerror(err)));
}

size_t stored_image_bytes(const DatasetSpec& spec, const SampleRecord& r) {
  return spec.image_encoding == ImageEncoding::raw ? r.image.bytes() : r.encoded.size();
}

struct OpenShard {
  int64_t index = 0, first_sample = 0;
  std::string final_path, partial_path;
  h5::File file;
  h5::Dataset image, blob, label, depth;
  int64_t count = 0;    // samples appended (written + pending)
  int64_t written = 0;  // rows already in the per-sample datasets
  uint64_t blob_written = 0;
  std::vector<uint64_t> offsets{0};
  std::vector<int32_t> shapes;  // (H, W, C) per sample
  std::vector<int32_t> class_ids;
  std::vector<std::string> names;
  std::vector<SampleRecord> pending;
  size_t pending_bytes = 0;
};

}  // namespace

struct ShardSetWriter::Impl {
  std::string dir;
  DatasetSpec spec;
  WriterOptions options;
  std::array<bool, 256> allowed{};
  int64_t samples_per_shard = 0;
  int64_t total = 0;
  std::vector<ShardEntry> done;
  std::vector<std::string> created;  // completed shard files, removed if never finished
  std::unique_ptr<OpenShard> current;
  bool finished = false;

  void open_shard();
  void flush();
  void close_shard();
};

void ShardSetWriter::Impl::open_shard() {
  auto s = std::make_unique<OpenShard>();
  s->index = static_cast<int64_t>(done.size());
  s->first_sample = total;
  s->final_path =
      (fs::path(dir) / fmt::format("{}-{:05d}.h5", shard_prefix(spec.split), s->index)).string();
  s->partial_path = s->final_path + ".partial";
  // The root group carries no modification time either (see create_chunked).
  h5::PropList fcpl(COHORT_H5(H5Pcreate(H5P_FILE_CREATE)));
  COHORT_H5(H5Pset_obj_track_times(fcpl.get(), false));
  s->file = h5::File(
      COHORT_H5(H5Fcreate(s->partial_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT)));
  const hid_t f = s->file.get();
  const hsize_t H = static_cast<hsize_t>(spec.height), W = static_cast<hsize_t>(spec.width),
                C = static_cast<hsize_t>(spec.channels);
  if (spec.uses_image_blob()) {
    const hsize_t chunk = static_cast<hsize_t>(options.blob_chunk_bytes);
    s->blob = h5x::create_chunked(f, ds::image_bytes, H5T_STD_U8LE, {}, 0, {chunk});
  } else {
    s->image = h5x::create_chunked(f, ds::image, H5T_STD_U8LE, {H, W, C}, 0);
  }
  if (has_label_map(spec.kind))
    s->label = h5x::create_chunked(f, ds::label, H5T_STD_U8LE, {H, W}, options.deflate_level);
  if (has_depth(spec.kind)) {
    h5::Datatype type = h5x::depth_type(spec.depth_dtype);
    s->depth = h5x::create_chunked(f, ds::depth, type.get(), {H, W}, options.deflate_level);
  }
  current = std::move(s);
}

void ShardSetWriter::Impl::flush() {
  OpenShard& s = *current;
  const hsize_t k = s.pending.size();
  if (k == 0) return;
  std::vector<uint8_t> staging;
  if (spec.uses_image_blob()) {
    for (const SampleRecord& r : s.pending) {
      const std::vector<uint8_t>& bytes =
          spec.image_encoding == ImageEncoding::raw ? r.image.pixels : r.encoded;
      staging.insert(staging.end(), bytes.begin(), bytes.end());
    }
    h5x::append_rows(s.blob.get(), H5T_NATIVE_UINT8, s.blob_written, staging.size(),
                     staging.data());
    s.blob_written += staging.size();
  } else {
    staging.clear();
    for (const SampleRecord& r : s.pending)
      staging.insert(staging.end(), r.image.pixels.begin(), r.image.pixels.end());
    h5x::append_rows(s.image.get(), H5T_NATIVE_UINT8, s.written, k, staging.data());
  }
  if (s.label) {
    staging.clear();
    for (const SampleRecord& r : s.pending)
      staging.insert(staging.end(), r.label.begin(), r.label.end());
    h5x::append_rows(s.label.get(), H5T_NATIVE_UINT8, s.written, k, staging.data());
  }
  if (s.depth) {
    h5::Datatype type = h5x::depth_type(spec.depth_dtype);
    if (spec.depth_dtype == DepthDType::f32) {
      std::vector<float> values;
      for (const SampleRecord& r : s.pending)
        values.insert(values.end(), r.depth.begin(), r.depth.end());
      h5x::append_rows(s.depth.get(), type.get(), s.written, k, values.data());
    } else {
      std::vector<uint16_t> values;
      for (const SampleRecord& r : s.pending)
        for (float d : r.depth)  // beyond f16's range: stored as invalid (documented)
          values.push_back(core::Half::from_float(d > kHalfMax ? 0.0f : d));
      h5x::append_rows(s.depth.get(), type.get(), s.written, k, values.data());
    }
  }
  s.written += static_cast<int64_t>(k);
  s.pending.clear();
  s.pending_bytes = 0;
}

void ShardSetWriter::Impl::close_shard() {
  flush();
  OpenShard& s = *current;
  const hid_t f = s.file.get();
  const hsize_t n = static_cast<hsize_t>(s.count);
  if (spec.uses_image_blob()) {
    h5x::write_small(f, ds::image_offsets, H5T_STD_U64LE, {n + 1}, s.offsets.data());
    h5x::write_small(f, ds::image_shapes, H5T_STD_I32LE, {n, 3}, s.shapes.data());
  }
  if (has_class_id(spec.kind))
    h5x::write_small(f, ds::class_id, H5T_STD_I32LE, {n}, s.class_ids.data());
  size_t width = 1;
  for (const std::string& name : s.names)
    width = std::max(width, name.size());
  std::vector<char> packed(s.names.size() * width, '\0');
  for (size_t i = 0; i < s.names.size(); ++i)
    std::memcpy(packed.data() + i * width, s.names[i].data(), s.names[i].size());
  h5::Datatype name_type = h5::string_type(width);
  h5x::write_small(f, ds::sample_name, name_type.get(), {n}, packed.data());

  h5::write_string_attribute(f, "format", kShardFormatName);
  h5::write_int64_attribute(f, "schema_version", kShardSchemaVersion);
  h5x::write_spec_attributes(f, spec);
  h5::write_int64_attribute(f, "shard_index", s.index);
  h5::write_int64_attribute(f, "first_sample", s.first_sample);
  h5::write_int64_attribute(f, "sample_count", s.count);
  h5::write_string_attribute(f, "created_by", options.created_by);

  COHORT_H5_CLOSE(s.image);
  COHORT_H5_CLOSE(s.blob);
  COHORT_H5_CLOSE(s.label);
  COHORT_H5_CLOSE(s.depth);
  COHORT_H5_CLOSE(s.file);
  fsync_path(s.partial_path);
  COHORT_CHECK(std::rename(s.partial_path.c_str(), s.final_path.c_str()) == 0,
               fmt::format("{}: cannot rename to {}: {}", s.partial_path, s.final_path,
                           std::strerror(errno)));
  created.push_back(s.final_path);
  ShardEntry entry;
  entry.file = fs::path(s.final_path).filename().string();
  entry.first_sample = s.first_sample;
  entry.samples = s.count;
  entry.crc32 = crc32_file(s.final_path, &entry.bytes);
  done.push_back(entry);
  current.reset();
}

ShardSetWriter::ShardSetWriter(std::string dir, DatasetSpec spec, WriterOptions options)
    : m_impl(std::make_unique<Impl>()) {
  Impl& m = *m_impl;
  m.dir = std::move(dir);
  m.spec = std::move(spec);
  m.options = options;
  m.spec.validate(fmt::format("shard set {}", m.dir));
  COHORT_CHECK(options.deflate_level >= 0 && options.deflate_level <= 9,
               fmt::format("shard writer: deflate level {} not in 0..9", options.deflate_level));
  COHORT_CHECK(options.blob_chunk_bytes >= 1024 && options.blob_chunk_bytes <= (int64_t{1} << 30),
               fmt::format("shard writer: blob chunk of {} bytes (1 KiB .. 1 GiB)",
                           options.blob_chunk_bytes));
  COHORT_CHECK(options.samples_per_shard >= 0 && options.shard_bytes > 0,
               "shard writer: samples_per_shard must be >= 0 and shard_bytes > 0");
  m.allowed = allowed_label_values(m.spec);
  std::error_code ec;
  fs::create_directories(m.dir, ec);
  COHORT_CHECK(!ec && fs::is_directory(m.dir),
               fmt::format("{}: cannot create the output directory: {}", m.dir, ec.message()));
  const std::string manifest = manifest_path(m.dir);
  if (fs::exists(manifest)) {
    COHORT_CHECK(options.overwrite,
                 fmt::format("{} already holds a shard set ({}); pass --overwrite to replace it",
                             m.dir, manifest));
    // Remove the manifest first: from here on the directory never claims to hold a
    // set until the new one is complete.
    std::vector<std::string> old_files;
    try {
      for (const ShardEntry& e : read_manifest(m.dir).shards)
        old_files.push_back(e.file);
    } catch (const Error&) {  // an unreadable old manifest: its shards are overwritten by name
    }
    fs::remove(manifest, ec);
    COHORT_CHECK(!ec, fmt::format("{}: cannot remove: {}", manifest, ec.message()));
    for (const std::string& f : old_files)
      fs::remove(fs::path(m.dir) / f, ec);
  }
}

ShardSetWriter::~ShardSetWriter() {
  Impl& m = *m_impl;
  if (m.finished) return;
  std::error_code ec;
  if (m.current) {
    const std::string partial = m.current->partial_path;
    m.current.reset();  // closes the HDF5 handles (errors reported, not thrown)
    fs::remove(partial, ec);
  }
  for (const std::string& f : m.created)
    fs::remove(f, ec);
}

const DatasetSpec& ShardSetWriter::spec() const {
  return m_impl->spec;
}
int64_t ShardSetWriter::count() const {
  return m_impl->total;
}

void ShardSetWriter::prepare(SampleRecord& r) const {
  const Impl& m = *m_impl;
  const DatasetSpec& spec = m.spec;
  const std::string who = r.name.empty() ? std::string("sample") : r.name;
  const Image8& img = r.image;
  COHORT_CHECK(
      img.channels == spec.channels,
      fmt::format("{}: image has {} channels, the set has {}", who, img.channels, spec.channels));
  COHORT_CHECK(img.height > 0 && img.width > 0,
               fmt::format("{}: empty image ({}x{})", who, img.height, img.width));
  if (spec.fixed_size())
    COHORT_CHECK(img.height == spec.height && img.width == spec.width,
                 fmt::format("{}: image is {}x{} (HxW), every image of this set is {}x{}", who,
                             img.height, img.width, spec.height, spec.width));
  const bool need_pixels = spec.image_encoding == ImageEncoding::raw || r.encoded.empty();
  if (need_pixels || !img.pixels.empty())
    COHORT_CHECK(img.pixels.size() == img.bytes(),
                 fmt::format("{}: {} pixel bytes for a {}x{}x{} image", who, img.pixels.size(),
                             img.height, img.width, img.channels));
  if (spec.image_encoding != ImageEncoding::raw) {
    if (r.encoded.empty()) {
      r.encoded = spec.image_encoding == ImageEncoding::png
                      ? encode_png(img, m.options.png_level)
                      : encode_jpeg(img, m.options.jpeg_quality);
    } else {
      const auto format = sniff_image_format(r.encoded.data(), r.encoded.size());
      const ImageFileFormat want =
          spec.image_encoding == ImageEncoding::png ? ImageFileFormat::png : ImageFileFormat::jpeg;
      COHORT_CHECK(format == want,
                   fmt::format("{}: stored bytes are not a {} file", who, to_string(want)));
    }
  }
  const size_t pixels = static_cast<size_t>(img.height * img.width);
  if (has_label_map(spec.kind)) {
    COHORT_CHECK(r.label.size() == pixels,
                 fmt::format("{}: label map has {} values for a {}x{} image", who, r.label.size(),
                             img.height, img.width));
    for (size_t i = 0; i < pixels; ++i)
      COHORT_CHECK(m.allowed[r.label[i]],
                   fmt::format("{}: label value {} at (y={}, x={}) is not a class id (0..{}) or "
                               "{} (ignore)",
                               who, r.label[i], i / img.width, i % img.width,
                               spec.classes.size() - 1, kIgnoreLabel));
  } else {
    COHORT_CHECK(r.label.empty(),
                 fmt::format("{}: a {} set stores no label map", who, to_string(spec.kind)));
  }
  if (has_depth(spec.kind)) {
    COHORT_CHECK(r.depth.size() == pixels,
                 fmt::format("{}: depth map has {} values for a {}x{} image", who, r.depth.size(),
                             img.height, img.width));
    for (size_t i = 0; i < pixels; ++i)
      COHORT_CHECK(std::isfinite(r.depth[i]) && r.depth[i] >= 0,
                   fmt::format("{}: depth {} at (y={}, x={}) is not a finite value >= 0 (0 marks "
                               "invalid pixels)",
                               who, r.depth[i], i / img.width, i % img.width));
  } else {
    COHORT_CHECK(r.depth.empty(),
                 fmt::format("{}: a {} set stores no depth", who, to_string(spec.kind)));
  }
  if (has_class_id(spec.kind))
    COHORT_CHECK(r.class_id >= 0 && r.class_id < static_cast<int32_t>(spec.classes.size()),
                 fmt::format("{}: class id {} is not in the class table (0..{})", who, r.class_id,
                             spec.classes.size() - 1));
  r.prepared = true;
}

void ShardSetWriter::append(SampleRecord r) {
  Impl& m = *m_impl;
  COHORT_CHECK(!m.finished, "shard writer: append after finish");
  if (!r.prepared) prepare(r);
  if (m.spec.image_encoding != ImageEncoding::raw) {
    r.image.pixels.clear();  // only the encoded bytes are stored
    r.image.pixels.shrink_to_fit();
  }
  const size_t image_bytes = stored_image_bytes(m.spec, r);
  const size_t target_bytes = image_bytes + r.label.size() +
                              r.depth.size() * (m.spec.depth_dtype == DepthDType::f32 ? 4 : 2);
  if (m.samples_per_shard == 0)
    m.samples_per_shard =
        m.options.samples_per_shard > 0
            ? m.options.samples_per_shard
            : std::max<int64_t>(1, m.options.shard_bytes / std::max<int64_t>(1, target_bytes));
  if (!m.current) m.open_shard();
  OpenShard& s = *m.current;
  s.offsets.push_back(s.offsets.back() + image_bytes);
  s.shapes.insert(s.shapes.end(),
                  {static_cast<int32_t>(r.image.height), static_cast<int32_t>(r.image.width),
                   static_cast<int32_t>(r.image.channels)});
  s.class_ids.push_back(r.class_id);
  s.names.push_back(r.name);
  s.pending_bytes += target_bytes;
  s.pending.push_back(std::move(r));
  ++s.count;
  ++m.total;
  if (s.pending_bytes >= kFlushBytes) m.flush();
  if (s.count == m.samples_per_shard) m.close_shard();
}

Manifest ShardSetWriter::finish() {
  Impl& m = *m_impl;
  COHORT_CHECK(!m.finished, "shard writer: finish called twice");
  if (m.current) m.close_shard();
  COHORT_CHECK(m.total > 0, fmt::format("{}: no samples to write: the split '{}' is empty", m.dir,
                                        m.spec.split));
  Manifest manifest;
  manifest.spec = m.spec;
  manifest.sample_count = m.total;
  manifest.shards = m.done;
  manifest.created_by = m.options.created_by;
  write_manifest(m.dir, manifest);
  m.finished = true;
  return manifest;
}

}  // namespace cohort::data
