#include "data/shard_reader.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "data/checksum.hpp"
#include "data/shard_hdf5.hpp"
#include "data/shard_index.hpp"

namespace cohort::data {

static_assert(std::endian::native == std::endian::little,
              "the shard reader assumes a little-endian host (shards are little-endian)");

namespace detail {
namespace {

namespace fs = std::filesystem;
namespace h5 = cohort::core::io::h5;

// Collects problems of one shard, each line prefixed with the file's path.
struct ProblemSink {
  const std::string& path;
  std::vector<std::string>& lines;
  void add(const std::string& text) const { lines.push_back(fmt::format("{}: {}", path, text)); }
  // Runs `fn`; a cohort::Error becomes a problem "<what>: <message>". Returns success.
  bool guard(const std::string& what, const std::function<void()>& fn) const {
    try {
      fn();
      return true;
    } catch (const Error& e) {
      add(fmt::format("{}: {}", what, plain_message(e.what())));
      return false;
    }
  }
};

std::string spec_differences(const DatasetSpec& file, const DatasetSpec& manifest) {
  std::vector<std::string> diffs;
  auto differ = [&](const char* field, const std::string& a, const std::string& b) {
    if (a != b)
      diffs.push_back(fmt::format("{} is '{}' here but '{}' in the manifest", field, a, b));
  };
  differ("kind", to_string(file.kind), to_string(manifest.kind));
  differ("split", file.split, manifest.split);
  differ("image_encoding", to_string(file.image_encoding), to_string(manifest.image_encoding));
  differ("image_channels", std::to_string(file.channels), std::to_string(manifest.channels));
  differ("image_height", std::to_string(file.height), std::to_string(manifest.height));
  differ("image_width", std::to_string(file.width), std::to_string(manifest.width));
  if (file.classes != manifest.classes)
    diffs.push_back(fmt::format("the class table ({} classes) differs from the manifest's ({})",
                                file.classes.size(), manifest.classes.size()));
  if (file.mean != manifest.mean || file.std != manifest.std)
    diffs.push_back("mean/std differ from the manifest's");
  if (has_depth(file.kind))
    differ("depth_dtype", to_string(file.depth_dtype), to_string(manifest.depth_dtype));
  std::string text;
  for (const std::string& d : diffs)
    text += (text.empty() ? "" : "; ") + d;
  return text;
}

bool type_matches(hid_t type, hid_t expected) {
  return COHORT_H5(H5Tequal(type, expected)) > 0;
}

// Opens dataset `name` and checks its type with `type_ok` and its dims against
// `dims` (a 0 entry accepts any extent). Returns an invalid handle after a problem.
h5::Dataset open_checked(hid_t file, const char* name, const char* type_text,
                         const std::function<bool(hid_t)>& type_ok,
                         const std::vector<hsize_t>& dims, const ProblemSink& sink) {
  h5::Dataset dataset;
  sink.guard(fmt::format("dataset '{}'", name), [&] {
    COHORT_CHECK(COHORT_H5(H5Lexists(file, name, H5P_DEFAULT)) > 0, "missing");
    h5::Dataset d(COHORT_H5(H5Dopen2(file, name, H5P_DEFAULT)));
    h5::Datatype type(COHORT_H5(H5Dget_type(d.get())));
    COHORT_CHECK(type_ok(type.get()), fmt::format("dtype is not {}", type_text));
    const std::vector<hsize_t> actual = h5x::dataset_dims(d.get());
    bool same = actual.size() == dims.size();
    for (size_t i = 0; same && i < dims.size(); ++i)
      same = dims[i] == 0 || dims[i] == actual[i];
    std::vector<std::string> want;
    for (hsize_t d : dims)
      want.push_back(d == 0 ? std::string("*") : std::to_string(d));
    COHORT_CHECK(
        same, fmt::format("shape {}, expected [{}]", h5x::dims_text(actual), fmt::join(want, ",")));
    dataset = std::move(d);
  });
  return dataset;
}

// Checks the chunk shape and the filter pipeline ([deflate], fletcher32).
bool check_layout(hid_t dataset, const char* name, const std::vector<hsize_t>& chunk,
                  Pipeline& pipeline, const ProblemSink& sink) {
  return sink.guard(fmt::format("dataset '{}'", name), [&] {
    h5::PropList dcpl(COHORT_H5(H5Dget_create_plist(dataset)));
    COHORT_CHECK(H5Pget_layout(dcpl.get()) == H5D_CHUNKED, "not chunked");
    std::vector<hsize_t> actual(chunk.size() + 1, 0);
    const int rank =
        COHORT_H5(H5Pget_chunk(dcpl.get(), static_cast<int>(actual.size()), actual.data()));
    actual.resize(static_cast<size_t>(rank));
    COHORT_CHECK(actual == chunk, fmt::format("chunks of {}, expected {}", h5x::dims_text(actual),
                                              h5x::dims_text(chunk)));
    const int n = COHORT_H5(H5Pget_nfilters(dcpl.get()));
    pipeline = Pipeline{};
    for (int i = 0; i < n; ++i) {
      unsigned flags = 0, config = 0;
      size_t nvalues = 0;
      char fname[64] = {0};
      const H5Z_filter_t id =
          COHORT_H5(H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nvalues, nullptr,
                                   sizeof(fname), fname, &config));
      if (id == H5Z_FILTER_DEFLATE && i == 0 && n == 2) {
        pipeline.deflate = i;
      } else if (id == H5Z_FILTER_FLETCHER32 && i == n - 1) {
        pipeline.fletcher = i;
      } else {
        COHORT_FAIL(
            fmt::format("filter '{}' (id {}) at position {}: shards use [deflate], "
                        "fletcher32 only",
                        fname, static_cast<int>(id), i));
      }
    }
    COHORT_CHECK(pipeline.fletcher >= 0, "has no fletcher32 filter (chunks carry no checksum)");
  });
}

std::string sample_text(const ShardIndex& s, int64_t local) {
  std::string text = fmt::format("sample {} (global {}", local, s.first + local);
  if (static_cast<size_t>(local) < s.names.size() && !s.names[local].empty())
    text += fmt::format(", '{}'", s.names[local]);
  return text + ")";
}

// Opens a one-sample-per-chunk dataset and checks its type, shape, chunking and
// filters; also that every sample's chunk was written.
void index_sample_column(hid_t file, const char* name, const char* type_text,
                         const std::function<bool(hid_t)>& type_ok,
                         const std::vector<hsize_t>& sample_dims, size_t element_bytes,
                         ShardIndex& out, SampleColumn& column, const ProblemSink& sink) {
  std::vector<hsize_t> dims{static_cast<hsize_t>(out.count)}, chunk{1};
  uint64_t chunk_bytes = element_bytes;
  for (hsize_t d : sample_dims) {
    dims.push_back(d);
    chunk.push_back(d);
    chunk_bytes *= d;
  }
  h5::Dataset d = open_checked(file, name, type_text, type_ok, dims, sink);
  if (!d || !check_layout(d.get(), name, chunk, column.pipeline, sink)) return;
  hsize_t written = 0;
  const bool counted = sink.guard(fmt::format("dataset '{}'", name), [&] {
    h5::Dataspace space(COHORT_H5(H5Dget_space(d.get())));
    COHORT_H5(H5Dget_num_chunks(d.get(), space.get(), &written));
  });
  if (!counted) return;
  if (written != static_cast<hsize_t>(out.count)) {
    sink.add(
        fmt::format("dataset '{}': {} of {} sample chunks were written", name, written, out.count));
    return;
  }
  column.chunk_bytes = chunk_bytes;
  column.rank = dims.size();
  column.dataset = std::move(d);
}

template <typename T>
bool read_small(hid_t file, const char* name, hid_t type, const char* type_text,
                const std::vector<hsize_t>& dims, std::vector<T>& values, const ProblemSink& sink) {
  h5::Dataset d = open_checked(
      file, name, type_text, [&](hid_t t) { return type_matches(t, type); }, dims, sink);
  if (!d) return false;
  size_t n = 1;
  for (hsize_t x : dims)
    n *= x;
  values.resize(n);
  // HDF5 checks the Fletcher-32 of these chunks as it reads them.
  return sink.guard(fmt::format("dataset '{}'", name), [&] {
    if (n > 0) COHORT_H5(H5Dread(d.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()));
  });
}

bool read_names(hid_t file, ShardIndex& out, const ProblemSink& sink) {
  h5::Dataset d = open_checked(
      file, ds::sample_name, "a fixed-length string",
      [](hid_t t) { return H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0; },
      {static_cast<hsize_t>(out.count)}, sink);
  if (!d) return false;
  return sink.guard("dataset 'sample_name'", [&] {
    h5::Datatype type(COHORT_H5(H5Dget_type(d.get())));
    const size_t width = H5Tget_size(type.get());
    std::vector<char> packed(static_cast<size_t>(out.count) * width);
    COHORT_H5(H5Dread(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, packed.data()));
    out.names.resize(static_cast<size_t>(out.count));
    for (int64_t i = 0; i < out.count; ++i) {
      const char* s = packed.data() + static_cast<size_t>(i) * width;
      out.names[i].assign(s, strnlen(s, width));
    }
  });
}

void index_blob(hid_t file, const DatasetSpec& spec, ShardIndex& out, const ProblemSink& sink) {
  BlobColumn& blob = out.blob;
  const hsize_t n = static_cast<hsize_t>(out.count);
  bool ok = read_small(file, ds::image_offsets, H5T_STD_U64LE, "u64", {n + 1}, blob.offsets, sink);
  std::vector<int32_t> shapes;
  ok = read_small(file, ds::image_shapes, H5T_STD_I32LE, "i32", {n, 3}, shapes, sink) && ok;
  h5::Dataset d = open_checked(
      file, ds::image_bytes, "u8", [](hid_t t) { return type_matches(t, H5T_STD_U8LE); }, {0},
      sink);
  if (!d || !ok) return;
  blob.total_bytes = h5x::dataset_dims(d.get())[0];
  hsize_t chunk = 0;
  sink.guard("dataset 'image_bytes'", [&] {
    h5::PropList dcpl(COHORT_H5(H5Dget_create_plist(d.get())));
    COHORT_CHECK(H5Pget_layout(dcpl.get()) == H5D_CHUNKED, "not chunked");
    COHORT_H5(H5Pget_chunk(dcpl.get(), 1, &chunk));
  });
  Pipeline pipeline;
  if (chunk == 0 || !check_layout(d.get(), ds::image_bytes, {chunk}, pipeline, sink)) return;
  if (pipeline.deflate >= 0) {
    sink.add("dataset 'image_bytes': deflate is not used on image bytes in schema 1");
    return;
  }
  blob.chunk_bytes = chunk;
  // Offsets must rise from 0 to at most the dataset's length; shapes must fit the spec.
  bool consistent = blob.offsets[0] == 0 && blob.offsets[n] <= blob.total_bytes;
  if (!consistent)
    sink.add(fmt::format("dataset 'image_offsets' runs from {} to {}, image_bytes holds {} bytes",
                         blob.offsets[0], blob.offsets[n], blob.total_bytes));
  blob.shapes.resize(n);
  int bad = 0;
  for (hsize_t k = 0; k < n; ++k) {
    blob.shapes[k] = {shapes[3 * k], shapes[3 * k + 1], shapes[3 * k + 2]};
    const auto& s = blob.shapes[k];
    std::string problem;
    if (blob.offsets[k + 1] <= blob.offsets[k]) {
      problem = fmt::format("image_offsets [{}, {}) are empty or decreasing", blob.offsets[k],
                            blob.offsets[k + 1]);
    } else if (s[0] <= 0 || s[1] <= 0 || s[2] != spec.channels) {
      problem = fmt::format("image_shapes ({}, {}, {}) is not a {}-channel image", s[0], s[1], s[2],
                            spec.channels);
    } else if (spec.fixed_size() && (s[0] != spec.height || s[1] != spec.width)) {
      problem = fmt::format("image_shapes ({}, {}) differs from the set's {}x{}", s[0], s[1],
                            spec.height, spec.width);
    } else if (spec.image_encoding == ImageEncoding::raw &&
               blob.offsets[k + 1] - blob.offsets[k] != uint64_t(s[0]) * s[1] * s[2]) {
      problem = fmt::format("{} raw bytes for a {}x{}x{} image",
                            blob.offsets[k + 1] - blob.offsets[k], s[0], s[1], s[2]);
    }
    if (!problem.empty()) {
      consistent = false;
      if (++bad <= 5) sink.add(fmt::format("{}: {}", sample_text(out, int64_t(k)), problem));
    }
  }
  if (bad > 5) sink.add(fmt::format("{} more samples with bad image index entries", bad - 5));
  if (!consistent) return;
  hsize_t written = 0;
  const hsize_t expected = (blob.total_bytes + chunk - 1) / chunk;
  if (!sink.guard("dataset 'image_bytes'", [&] {
        h5::Dataspace space(COHORT_H5(H5Dget_space(d.get())));
        COHORT_H5(H5Dget_num_chunks(d.get(), space.get(), &written));
        COHORT_CHECK(written == expected,
                     fmt::format("{} of {} chunks were written", written, expected));
      }))
    return;
  blob.dataset = std::move(d);
}

}  // namespace

std::string plain_message(const std::string& what) {
  const size_t open = what.rfind(" [");
  if (open == std::string::npos || what.empty() || what.back() != ']' ||
      what.find(':', open) == std::string::npos)
    return what;
  return what.substr(0, open);
}

bool index_shard(const std::string& dir, const Manifest& manifest, size_t shard, ShardIndex& out,
                 std::vector<std::string>& problems) {
  const ShardEntry& entry = manifest.shards[shard];
  const DatasetSpec& spec = manifest.spec;
  out.path = (fs::path(dir) / entry.file).string();
  out.first = entry.first_sample;
  out.count = entry.samples;
  const size_t problems_before = problems.size();
  ProblemSink sink{out.path, problems};

  std::error_code ec;
  const uint64_t size = fs::file_size(out.path, ec);
  if (ec) {
    sink.add(fs::exists(out.path) ? fmt::format("cannot stat: {}", ec.message())
                                  : std::string("missing shard file (listed in manifest.json)"));
    return false;
  }
  out.file_bytes = size;
  // A size that differs from the manifest's is a problem, but the file is still
  // examined (HDF5 itself refuses a truncated file) so the verifier can say more.
  size_t size_problems = 0;
  if (size != entry.bytes) {
    sink.add(
        fmt::format("{} bytes, the manifest says {} (truncated or rewritten)", size, entry.bytes));
    size_problems = 1;
  }
  h5::File file;
  if (!sink.guard("cannot open as HDF5", [&] {
        file = h5::File(COHORT_H5(H5Fopen(out.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)));
      }))
    return false;
  const hid_t f = file.get();
  bool usable = sink.guard("attributes", [&] {
    const std::string format =
        h5::has_attribute(f, "format") ? h5::read_string_attribute(f, "format") : "(none)";
    COHORT_CHECK(
        format == kShardFormatName,
        fmt::format("format '{}', expected '{}' (not a cohort shard)", format, kShardFormatName));
    COHORT_CHECK(h5::has_attribute(f, "schema_version"), "schema_version is missing");
    const int64_t version = h5::read_int64_attribute(f, "schema_version");
    COHORT_CHECK(version == kShardSchemaVersion,
                 fmt::format("schema_version {}; this build reads version {}", version,
                             kShardSchemaVersion));
    h5::PropList fcpl(COHORT_H5(H5Fget_create_plist(f)));
    hsize_t userblock = 0;
    COHORT_H5(H5Pget_userblock(fcpl.get(), &userblock));
    COHORT_CHECK(userblock == 0, fmt::format("has a {}-byte user block (chunk addresses would be "
                                             "offset); shards have none",
                                             userblock));
  });
  if (!usable) return false;
  sink.guard("attributes", [&] {
    const std::string diff = spec_differences(h5x::read_spec_attributes(f), spec);
    COHORT_CHECK(diff.empty(), diff);
    const int64_t index = h5::read_int64_attribute(f, "shard_index");
    const int64_t first = h5::read_int64_attribute(f, "first_sample");
    const int64_t count = h5::read_int64_attribute(f, "sample_count");
    COHORT_CHECK(index == static_cast<int64_t>(shard) && first == entry.first_sample &&
                     count == entry.samples,
                 fmt::format("shard_index {}, first_sample {}, sample_count {}; the manifest lists "
                             "it as shard {} with samples {}..{}",
                             index, first, count, shard, entry.first_sample,
                             entry.first_sample + entry.samples - 1));
  });

  read_names(f, out, sink);
  const hsize_t H = static_cast<hsize_t>(spec.height), W = static_cast<hsize_t>(spec.width),
                C = static_cast<hsize_t>(spec.channels);
  auto u8 = [](hid_t t) { return type_matches(t, H5T_STD_U8LE); };
  if (spec.uses_image_blob()) {
    index_blob(f, spec, out, sink);
  } else {
    index_sample_column(f, ds::image, "u8", u8, {H, W, C}, 1, out, out.image, sink);
  }
  if (has_label_map(spec.kind))
    index_sample_column(f, ds::label, "u8", u8, {H, W}, 1, out, out.label, sink);
  if (has_depth(spec.kind)) {
    h5::Datatype want = h5x::depth_type(spec.depth_dtype);
    index_sample_column(
        f, ds::depth, to_string(spec.depth_dtype),
        [&](hid_t t) { return type_matches(t, want.get()); }, {H, W},
        spec.depth_dtype == DepthDType::f32 ? 4 : 2, out, out.depth, sink);
  }
  if (has_class_id(spec.kind) &&
      read_small(f, ds::class_id, H5T_STD_I32LE, "i32", {static_cast<hsize_t>(out.count)},
                 out.class_ids, sink)) {
    int bad = 0;
    const int32_t classes = static_cast<int32_t>(spec.classes.size());
    for (int64_t k = 0; k < out.count; ++k)
      if ((out.class_ids[k] < 0 || out.class_ids[k] >= classes) && ++bad <= 5)
        sink.add(fmt::format("{}: class id {} is not in the class table (0..{})",
                             sample_text(out, k), out.class_ids[k], classes - 1));
    if (bad > 5) sink.add(fmt::format("{} more samples with class ids outside the table", bad - 5));
  }
  out.file = std::move(file);
  // The index is complete (samples can be fetched) when nothing but the size was wrong.
  return problems.size() == problems_before + size_problems;
}

}  // namespace detail

// ------------------------------------------------------------------ ShardSet

namespace {

constexpr size_t kMaxListedProblems = 50;

using detail::ShardIndex;

// Checks the Fletcher-32 HDF5 appended to `stored` (data + 4 bytes little-endian).
void check_fletcher(const uint8_t* stored, uint64_t size, const std::string& who,
                    const char* dataset, uint64_t chunk) {
  uint32_t expected = 0;
  std::memcpy(&expected, stored + size - 4, 4);
  const uint32_t actual = hdf5_fletcher32(stored, size - 4);
  COHORT_CHECK(actual == expected,
               fmt::format("{}: {} chunk {} fails its Fletcher-32 checksum (stored {:08x}, "
                           "computed {:08x}): the shard is damaged",
                           who, dataset, chunk, expected, actual));
}

// The critical section: two short HDF5 calls (chunk size, raw chunk read) that copy
// the chunk's stored bytes (data + checksum) into `out` and run no filter. Returns
// the filter mask (bit i set: filter i was skipped when the chunk was written).
uint32_t read_raw_chunk(hid_t dataset, const std::vector<hsize_t>& coords, uint64_t max_bytes,
                        std::vector<uint8_t>& out, const std::string& who, const char* name) {
  // Distributions build libhdf5 thread-safe; a build that is not gets one lock here.
  static const bool threadsafe = [] {
    hbool_t yes = 0;
    return H5is_library_threadsafe(&yes) >= 0 && yes;
  }();
  static std::mutex serial_hdf5;
  std::unique_lock<std::mutex> lock(serial_hdf5, std::defer_lock);
  if (!threadsafe) lock.lock();
  hsize_t size = 0;
  uint32_t mask = 0;
  try {
    COHORT_H5(H5Dget_chunk_storage_size(dataset, coords.data(), &size));
    COHORT_CHECK(size >= 4, fmt::format("chunk at {} was never written", coords[0]));
    // A stored chunk is at most zlib's bound of its data plus the checksum: anything
    // larger is damaged metadata, not a size to allocate.
    COHORT_CHECK(size <= max_bytes, fmt::format("chunk at {} claims {} bytes, at most {} possible",
                                                coords[0], size, max_bytes));
    out.resize(size);
    COHORT_H5(H5Dread_chunk(dataset, H5P_DEFAULT, coords.data(), &mask, out.data()));
  } catch (const Error& e) {
    COHORT_FAIL(fmt::format("{}: reading {}: {}", who, name, detail::plain_message(e.what())));
  }
  return mask;
}

// A sample's chunk of image/label/depth: checked, checksum stripped; `deflated`
// says whether it still has to be inflated.
void read_sample_chunk(const detail::SampleColumn& column, int64_t local, const std::string& who,
                       const char* name, std::vector<uint8_t>& out, bool& deflated) {
  std::vector<hsize_t> coords(column.rank, 0);
  coords[0] = static_cast<hsize_t>(local);
  const uint64_t max_bytes =
      (column.pipeline.deflate >= 0 ? compressBound(static_cast<uLong>(column.chunk_bytes))
                                    : column.chunk_bytes) +
      4;
  const uint32_t mask = read_raw_chunk(column.dataset.get(), coords, max_bytes, out, who, name);
  COHORT_CHECK((mask & (1u << column.pipeline.fletcher)) == 0,
               fmt::format("{}: {} chunk was stored without its checksum", who, name));
  check_fletcher(out.data(), out.size(), who, name, static_cast<uint64_t>(local));
  out.resize(out.size() - 4);
  deflated = column.pipeline.deflate >= 0 && (mask & (1u << column.pipeline.deflate)) == 0;
  COHORT_CHECK(deflated || out.size() == column.chunk_bytes,
               fmt::format("{}: {} chunk holds {} bytes, expected {}", who, name, out.size(),
                           column.chunk_bytes));
}

// Bytes [begin, end) of image_bytes, chunk by chunk, each checked before its part is
// copied out.
void read_blob(const detail::BlobColumn& blob, uint64_t begin, uint64_t end, const std::string& who,
               std::vector<uint8_t>& out) {
  out.resize(end - begin);
  const uint64_t cb = blob.chunk_bytes;
  std::vector<uint8_t> chunk;
  std::vector<hsize_t> coords(1);
  for (uint64_t c = begin / cb; c <= (end - 1) / cb; ++c) {
    coords[0] = c * cb;
    const uint32_t mask =
        read_raw_chunk(blob.dataset.get(), coords, cb + 4, chunk, who, ds::image_bytes);
    COHORT_CHECK(mask == 0 && chunk.size() == cb + 4,
                 fmt::format("{}: image_bytes chunk {} holds {} bytes with filter mask {}, "
                             "expected {} + 4 and 0",
                             who, c, chunk.size(), mask, cb));
    check_fletcher(chunk.data(), chunk.size(), who, ds::image_bytes, c);
    const uint64_t chunk_begin = c * cb;
    const uint64_t from = std::max(begin, chunk_begin), to = std::min(end, chunk_begin + cb);
    std::memcpy(out.data() + (from - begin), chunk.data() + (from - chunk_begin), to - from);
  }
}

std::vector<uint8_t> inflate_chunk(const std::vector<uint8_t>& stored, size_t expected,
                                   const std::string& who, const char* dataset) {
  std::vector<uint8_t> out(expected);
  uLongf size = static_cast<uLongf>(expected);
  const int rc = uncompress(out.data(), &size, stored.data(), static_cast<uLong>(stored.size()));
  COHORT_CHECK(rc == Z_OK && size == expected,
               fmt::format("{}: {} chunk does not inflate to {} bytes (zlib: {})", who, dataset,
                           expected, rc == Z_OK ? "wrong length" : zError(rc)));
  return out;
}

}  // namespace

const ShardIndex& ShardSet::State::locate(int64_t index, int64_t& local) const {
  COHORT_CHECK(index >= 0 && index < manifest.sample_count,
               fmt::format("shard set {}: sample {} is out of range (the set has {} samples)", dir,
                           index, manifest.sample_count));
  auto it = std::upper_bound(shards.begin(), shards.end(), index,
                             [](int64_t v, const ShardIndex& s) { return v < s.first; });
  --it;
  local = index - it->first;
  return *it;
}

ShardSet ShardSet::open(const std::string& dir, const OpenOptions& options) {
  auto state = std::make_shared<State>();
  state->dir = dir;
  state->manifest = read_manifest(dir);
  state->allowed_labels = allowed_label_values(state->manifest.spec);
  std::vector<std::string> problems;
  state->shards.resize(state->manifest.shards.size());
  for (size_t i = 0; i < state->shards.size(); ++i) {
    const bool ok = detail::index_shard(dir, state->manifest, i, state->shards[i], problems);
    if (ok && options.check_crc32) {
      const ShardEntry& e = state->manifest.shards[i];
      const uint32_t crc = crc32_file(state->shards[i].path);
      if (crc != e.crc32)
        problems.push_back(
            fmt::format("{}: CRC32 {} differs from the manifest's {} (the file is "
                        "damaged)",
                        state->shards[i].path, crc32_hex(crc), crc32_hex(e.crc32)));
    }
  }
  if (!problems.empty()) {
    std::string text = fmt::format("shard set {}: {} problem(s):", dir, problems.size());
    for (size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i)
      text += "\n  " + problems[i];
    if (problems.size() > kMaxListedProblems)
      text += fmt::format("\n  ... and {} more", problems.size() - kMaxListedProblems);
    COHORT_FAIL(text);
  }
  return ShardSet(std::move(state));
}

const std::string& ShardSet::dir() const {
  return m_state->dir;
}
const Manifest& ShardSet::manifest() const {
  return m_state->manifest;
}
const DatasetSpec& ShardSet::spec() const {
  return m_state->manifest.spec;
}
int64_t ShardSet::size() const {
  return m_state->manifest.sample_count;
}

std::array<int64_t, 3> ShardSet::image_shape(int64_t index) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(index, local);
  const DatasetSpec& spec = m_state->manifest.spec;
  if (!s.blob.shapes.empty()) {
    const auto& shape = s.blob.shapes[local];
    return {shape[0], shape[1], shape[2]};
  }
  return {spec.height, spec.width, spec.channels};
}

int32_t ShardSet::class_id(int64_t index) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(index, local);
  COHORT_CHECK(!s.class_ids.empty(), fmt::format("shard set {}: a {} set has no class ids", dir(),
                                                 to_string(spec().kind)));
  return s.class_ids[local];
}

const std::string& ShardSet::sample_name(int64_t index) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(index, local);
  return s.names[local];
}

std::string ShardSet::describe(int64_t index) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(index, local);
  return fmt::format("{} {}", s.path, detail::sample_text(s, local));
}

void ShardSet::fetch(int64_t index, SampleBytes& out) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(index, local);
  const std::string who = fmt::format("{} {}", s.path, detail::sample_text(s, local));
  // HDF5 keeps the file open, so a deleted file would still read and a truncated one
  // would read as zeros (which pass Fletcher-32): the path is checked first.
  struct stat st {};
  COHORT_CHECK(::stat(s.path.c_str(), &st) == 0,
               fmt::format("{}: the shard is gone: {} (did it vanish after the set was "
                           "opened?)",
                           who, std::strerror(errno)));
  COHORT_CHECK(static_cast<uint64_t>(st.st_size) == s.file_bytes,
               fmt::format("{}: the shard is now {} bytes but was {} when the set was opened "
                           "(truncated or replaced while running)",
                           who, st.st_size, s.file_bytes));
  out.index = index;
  if (s.image.present()) {
    bool deflated = false;
    read_sample_chunk(s.image, local, who, ds::image, out.image, deflated);
    if (deflated) out.image = inflate_chunk(out.image, s.image.chunk_bytes, who, ds::image);
  } else {
    read_blob(s.blob, s.blob.offsets[local], s.blob.offsets[local + 1], who, out.image);
  }
  out.label.clear();
  out.depth.clear();
  out.label_deflated = out.depth_deflated = false;
  if (s.label.present())
    read_sample_chunk(s.label, local, who, ds::label, out.label, out.label_deflated);
  if (s.depth.present())
    read_sample_chunk(s.depth, local, who, ds::depth, out.depth, out.depth_deflated);
}

SampleBytes ShardSet::fetch(int64_t index) const {
  SampleBytes out;
  fetch(index, out);
  return out;
}

Sample ShardSet::decode(SampleBytes bytes, const ImageWindow* window) const {
  int64_t local = 0;
  const ShardIndex& s = m_state->locate(bytes.index, local);
  const DatasetSpec& spec = m_state->manifest.spec;
  const std::string who = fmt::format("{} {}", s.path, detail::sample_text(s, local));
  const auto [H, W, C] = image_shape(bytes.index);
  Sample out;
  out.index = bytes.index;
  out.name = s.names[local];
  if (spec.image_encoding == ImageEncoding::raw) {
    COHORT_CHECK(bytes.image.size() == static_cast<size_t>(H * W * C),
                 fmt::format("{}: {} image bytes for {}x{}x{}", who, bytes.image.size(), H, W, C));
    out.image = Image8{H, W, C, std::move(bytes.image)};
  } else {
    out.image = window != nullptr ? decode_image_window(bytes.image.data(), bytes.image.size(),
                                                        static_cast<int>(C), who, *window)
                                  : decode_image(bytes.image.data(), bytes.image.size(),
                                                 static_cast<int>(C), who);
    COHORT_CHECK(out.image.height == H && out.image.width == W,
                 fmt::format("{}: the stored image decodes to {}x{}, image_shapes says {}x{}", who,
                             out.image.height, out.image.width, H, W));
  }
  const size_t pixels = static_cast<size_t>(H * W);
  if (s.label.present()) {
    out.label = bytes.label_deflated ? inflate_chunk(bytes.label, pixels, who, ds::label)
                                     : std::move(bytes.label);
    COHORT_CHECK(out.label.size() == pixels,
                 fmt::format("{}: {} label bytes for {}x{}", who, out.label.size(), H, W));
    const auto& allowed = m_state->allowed_labels;
    for (size_t i = 0; i < pixels; ++i)
      if (!allowed[out.label[i]]) {
        size_t bad = 0;
        for (size_t j = i; j < pixels; ++j)
          bad += allowed[out.label[j]] ? 0 : 1;
        COHORT_FAIL(fmt::format(
            "{}: label value {} at (y={}, x={}) is not a class id (0..{}) "
            "or {} ({} such pixels)",
            who, out.label[i], i / W, i % W, spec.classes.size() - 1, kIgnoreLabel, bad));
      }
  }
  if (s.depth.present()) {
    const size_t element = spec.depth_dtype == DepthDType::f32 ? 4 : 2;
    const std::vector<uint8_t> raw =
        bytes.depth_deflated ? inflate_chunk(bytes.depth, pixels * element, who, ds::depth)
                             : std::move(bytes.depth);
    COHORT_CHECK(raw.size() == pixels * element,
                 fmt::format("{}: {} depth bytes for {}x{}", who, raw.size(), H, W));
    out.depth.resize(pixels);
    if (element == 4) {
      std::memcpy(out.depth.data(), raw.data(), raw.size());
    } else {
      for (size_t i = 0; i < pixels; ++i) {
        uint16_t h = 0;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        out.depth[i] = core::Half::to_float(h);
      }
    }
  }
  if (has_class_id(spec.kind)) out.class_id = s.class_ids[local];
  return out;
}

}  // namespace cohort::data
