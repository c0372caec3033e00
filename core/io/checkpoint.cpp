#include "core/io/checkpoint.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <span>

#include "core/io/hdf5_handles.hpp"

namespace cohort::core::io {
namespace {

namespace fs = std::filesystem;

// Datasets are written and read with explicit little-endian types used as both the
// memory and the file type, so HDF5 never converts and the crc32 of the bytes in
// memory is the crc32 of the bytes on disk.
static_assert(std::endian::native == std::endian::little,
              "checkpoint I/O assumes a little-endian host");

constexpr const char* kFormatName = "cohort-checkpoint";
constexpr const char* kTensorsGroup = "tensors";
constexpr const char* kStringsGroup = "strings";
constexpr const char* kIntegersGroup = "integers";
constexpr const char* kRealsGroup = "reals";
constexpr int kMaxGroupDepth = 64;

uint32_t crc32_of(const void* data, size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  // zlib's length is a uInt: feed large buffers in pieces.
  constexpr size_t kPiece = size_t{1} << 30;
  while (bytes > 0) {
    const size_t n = std::min(bytes, kPiece);
    crc = crc32(crc, p, static_cast<uInt>(n));
    p += n;
    bytes -= n;
  }
  return static_cast<uint32_t>(crc);
}

// The HDF5 file type of a cohort dtype. bf16 and f16 are kept as raw u16 bits (the
// "dtype" attribute says which), so the round trip is bit-exact for every value,
// NaN payloads included.
hid_t file_type_of(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return H5T_IEEE_F32LE;
    case DType::f64:
      return H5T_IEEE_F64LE;
    case DType::f16:
      return H5T_STD_U16LE;
    case DType::bf16:
      return H5T_STD_U16LE;
    case DType::i32:
      return H5T_STD_I32LE;
    case DType::i64:
      return H5T_STD_I64LE;
    case DType::u8:
      return H5T_STD_U8LE;
  }
  COHORT_FAIL("checkpoint: unknown dtype");
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (DType t :
       {DType::f32, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::f64})
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

// "model/layer1.0.conv1.weight" -> {"model", "layer1.0.conv1.weight"}.
std::vector<std::string> split_name(const std::string& name, const char* kind) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t end = name.find('/', begin);
    parts.push_back(name.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  for (const std::string& p : parts)
    COHORT_CHECK(!p.empty() && p != "." && p != "..",
                 fmt::format("write_checkpoint: {} name '{}' has an empty, '.' or '..' "
                             "component (names are '/'-separated paths)",
                             kind, name));
  return parts;
}

h5::Group open_or_create_group(hid_t parent, const std::string& name,
                               const std::string& full_name) {
  if (COHORT_H5(H5Lexists(parent, name.c_str(), H5P_DEFAULT)) > 0) {
    h5::Object obj(COHORT_H5(H5Oopen(parent, name.c_str(), H5P_DEFAULT)));
    COHORT_CHECK(H5Iget_type(obj.get()) == H5I_GROUP,
                 fmt::format("write_checkpoint: '{}' needs '{}' to be a group, but an entry of "
                             "that name already exists",
                             full_name, name));
    return h5::Group(COHORT_H5(H5Gopen2(parent, name.c_str(), H5P_DEFAULT)));
  }
  return h5::Group(
      COHORT_H5(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
}

// Creates `name` (possibly nested) under `root` as a contiguous dataset and writes
// `bytes` into it; returns the dataset so the caller can add attributes.
h5::Dataset write_dataset(hid_t root, const std::string& name, const char* kind, hid_t type,
                          std::span<const int64_t> dims, const void* bytes, size_t nbytes) {
  const std::vector<std::string> parts = split_name(name, kind);
  std::vector<h5::Group> groups;
  hid_t parent = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    groups.push_back(open_or_create_group(parent, parts[i], name));
    parent = groups.back().get();
  }
  const std::string& leaf = parts.back();
  COHORT_CHECK(COHORT_H5(H5Lexists(parent, leaf.c_str(), H5P_DEFAULT)) == 0,
               fmt::format("write_checkpoint: {} '{}' collides with a group of the same name "
                           "(another name continues it with '/')",
                           kind, name));

  h5::Dataspace space;
  if (dims.empty()) {
    space = h5::Dataspace(COHORT_H5(H5Screate(H5S_SCALAR)));
  } else {
    std::vector<hsize_t> h5dims(dims.begin(), dims.end());
    space = h5::Dataspace(
        COHORT_H5(H5Screate_simple(static_cast<int>(h5dims.size()), h5dims.data(), nullptr)));
  }
  h5::PropList dcpl(COHORT_H5(H5Pcreate(H5P_DATASET_CREATE)));
  // Contiguous (no chunking, no filters): the bytes sit in the file as they are in
  // memory, which the crc32 attribute covers.
  COHORT_H5(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS));
  h5::Dataset dataset(COHORT_H5(
      H5Dcreate2(parent, leaf.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
  if (nbytes > 0) COHORT_H5(H5Dwrite(dataset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes));
  h5::write_int64_attribute(dataset.get(), "crc32", crc32_of(bytes, nbytes));
  return dataset;
}

h5::Group create_group(hid_t parent, const char* name) {
  return h5::Group(COHORT_H5(H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
}

void write_contents(hid_t file, const CheckpointData& data) {
  {
    h5::Group group = create_group(file, kTensorsGroup);
    for (const auto& [name, tensor] : data.tensors) {
      COHORT_CHECK(tensor.defined(),
                   fmt::format("write_checkpoint: tensor '{}' is undefined", name));
      COHORT_CHECK(tensor.device().is_cpu(),
                   fmt::format("write_checkpoint: tensor '{}' is {}; checkpoints take CPU "
                               "tensors (copy it to the host first)",
                               name, tensor.str()));
      h5::Dataset ds = write_dataset(group.get(), name, "tensor", file_type_of(tensor.dtype()),
                                     tensor.shape().dims(), tensor.raw(), tensor.nbytes());
      h5::write_string_attribute(ds.get(), "dtype", std::string(dtype_name(tensor.dtype())));
    }
  }
  {
    h5::Group group = create_group(file, kStringsGroup);
    for (const auto& [name, text] : data.strings) {
      h5::Datatype type = h5::string_type(text.size());
      // A fixed-length string type has at least one byte; the exact length is an
      // attribute so empty strings and embedded NULs survive.
      std::string padded = text.empty() ? std::string(1, '\0') : text;
      h5::Dataset ds =
          write_dataset(group.get(), name, "string", type.get(), {}, padded.data(), padded.size());
      h5::write_int64_attribute(ds.get(), "length", static_cast<int64_t>(text.size()));
    }
  }
  {
    h5::Group group = create_group(file, kIntegersGroup);
    for (const auto& [name, value] : data.integers)
      write_dataset(group.get(), name, "integer", H5T_STD_I64LE, {}, &value, sizeof(value));
  }
  {
    h5::Group group = create_group(file, kRealsGroup);
    for (const auto& [name, value] : data.reals)
      write_dataset(group.get(), name, "real", H5T_IEEE_F64LE, {}, &value, sizeof(value));
  }
}

// fsync a file or directory by path; durability of the rename needs both.
void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  COHORT_CHECK(fd >= 0, fmt::format("write_checkpoint: cannot open '{}' to fsync it: {}", path,
                                    std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  COHORT_CHECK(rc == 0,
               fmt::format("write_checkpoint: fsync of '{}' failed: {}", path, std::strerror(err)));
}

// ---- reading ----------------------------------------------------------------

void walk_datasets(hid_t group, const std::string& prefix, int depth,
                   const std::function<void(hid_t, const std::string&)>& visit) {
  COHORT_CHECK(depth < kMaxGroupDepth,
               fmt::format("groups nest deeper than {} levels at '{}'", kMaxGroupDepth, prefix));
  for (const std::string& name : h5::link_names(group)) {
    h5::Object obj(COHORT_H5(H5Oopen(group, name.c_str(), H5P_DEFAULT)));
    const H5I_type_t type = H5Iget_type(obj.get());
    if (type == H5I_GROUP) {
      walk_datasets(obj.get(), prefix + name + "/", depth + 1, visit);
    } else if (type == H5I_DATASET) {
      visit(obj.get(), prefix + name);
    } else {
      COHORT_FAIL(fmt::format("'{}{}' is neither a group nor a dataset", prefix, name));
    }
  }
}

// Reads a dataset's bytes after checking the stored size, then its crc32.
void read_checked(hid_t dataset, const std::string& where, hid_t mem_type, void* out,
                  size_t nbytes) {
  COHORT_CHECK(h5::has_attribute(dataset, "crc32"),
               fmt::format("dataset '{}' has no crc32 attribute", where));
  const hsize_t stored = H5Dget_storage_size(dataset);
  COHORT_CHECK(stored == nbytes, fmt::format("dataset '{}' stores {} bytes but its shape and "
                                             "type need {}",
                                             where, stored, nbytes));
  if (nbytes > 0) COHORT_H5(H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out));
  const int64_t expected = h5::read_int64_attribute(dataset, "crc32");
  const uint32_t actual = crc32_of(out, nbytes);
  COHORT_CHECK(expected == static_cast<int64_t>(actual),
               fmt::format("dataset '{}' fails its checksum (stored crc32 {:08x}, data has "
                           "{:08x}): its bytes are damaged",
                           where, static_cast<uint64_t>(expected), actual));
}

Shape dataset_shape(hid_t dataset, const std::string& where) {
  h5::Dataspace space(COHORT_H5(H5Dget_space(dataset)));
  const int rank = COHORT_H5(H5Sget_simple_extent_ndims(space.get()));
  COHORT_CHECK(rank <= Shape::max_rank,
               fmt::format("dataset '{}' has rank {}; at most {} is supported", where, rank,
                           Shape::max_rank));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) COHORT_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  std::vector<int64_t> out(dims.begin(), dims.end());
  return Shape(std::span<const int64_t>(out));
}

void check_type(hid_t dataset, hid_t expected, const std::string& where, const char* what) {
  h5::Datatype type(COHORT_H5(H5Dget_type(dataset)));
  COHORT_CHECK(COHORT_H5(H5Tequal(type.get(), expected)) > 0,
               fmt::format("dataset '{}' does not have the HDF5 type of {}", where, what));
}

Tensor read_tensor(hid_t dataset, const std::string& where) {
  COHORT_CHECK(h5::has_attribute(dataset, "dtype"),
               fmt::format("dataset '{}' has no dtype attribute", where));
  const std::string name = h5::read_string_attribute(dataset, "dtype");
  const std::optional<DType> dtype = parse_dtype(name);
  COHORT_CHECK(dtype.has_value(), fmt::format("dataset '{}' has unknown dtype '{}'", where, name));
  const hid_t type = file_type_of(*dtype);
  check_type(dataset, type, where, name.c_str());
  const Shape shape = dataset_shape(dataset, where);
  // Compare with the stored size before allocating: a damaged shape must not ask for
  // terabytes.
  const hsize_t stored = H5Dget_storage_size(dataset);
  const auto needed = static_cast<hsize_t>(shape.numel()) * dtype_size(*dtype);
  COHORT_CHECK(stored == needed, fmt::format("dataset '{}' stores {} bytes but {}{} needs {}",
                                             where, stored, name, shape.str(), needed));
  Tensor t = Tensor::empty(shape, *dtype);
  read_checked(dataset, where, type, t.raw(), t.nbytes());
  return t;
}

std::string read_string(hid_t dataset, const std::string& where) {
  h5::Datatype type(COHORT_H5(H5Dget_type(dataset)));
  COHORT_CHECK(H5Tget_class(type.get()) == H5T_STRING && H5Tis_variable_str(type.get()) == 0,
               fmt::format("dataset '{}' is not a fixed-length string", where));
  const size_t size = H5Tget_size(type.get());
  COHORT_CHECK(h5::has_attribute(dataset, "length"),
               fmt::format("dataset '{}' has no length attribute", where));
  const int64_t length = h5::read_int64_attribute(dataset, "length");
  COHORT_CHECK(
      length >= 0 && static_cast<size_t>(length) <= size,
      fmt::format("dataset '{}' claims length {} in a {}-byte string", where, length, size));
  std::string text(size, '\0');
  read_checked(dataset, where, type.get(), text.data(), size);
  text.resize(static_cast<size_t>(length));
  return text;
}

template <typename T>
T read_scalar(hid_t dataset, const std::string& where, hid_t type, const char* what) {
  check_type(dataset, type, where, what);
  T value{};
  read_checked(dataset, where, type, &value, sizeof(value));
  return value;
}

CheckpointData read_contents(const std::string& path) {
  COHORT_CHECK(fs::exists(path), "the file does not exist");
  h5::ensure_quiet();
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    const std::string stack = h5::take_error_stack();
    COHORT_FAIL(fmt::format("it is not an HDF5 file{}", stack.empty() ? "" : " (" + stack + ")"));
  }
  h5::File file;
  try {
    file = h5::File(COHORT_H5(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)));
  } catch (const Error& e) {
    COHORT_FAIL(fmt::format("HDF5 cannot open it (truncated or damaged): {}", e.what()));
  }
  const hid_t root = file.get();
  COHORT_CHECK(
      h5::has_attribute(root, "format") && h5::read_string_attribute(root, "format") == kFormatName,
      fmt::format("it is not a {} file (no matching 'format' attribute)", kFormatName));
  COHORT_CHECK(h5::has_attribute(root, "format_version"), "it has no 'format_version' attribute");
  const int64_t version = h5::read_int64_attribute(root, "format_version");
  COHORT_CHECK(version == checkpoint_format_version,
               fmt::format("it has format version {}; this build reads version {}", version,
                           checkpoint_format_version));
  COHORT_CHECK(
      h5::has_attribute(root, "complete") && h5::read_int64_attribute(root, "complete") == 1,
      "it is incomplete (no 'complete' mark: the write did not finish)");

  CheckpointData data;
  auto walk = [&](const char* group_name,
                  const std::function<void(hid_t, const std::string&, const std::string&)>& f) {
    COHORT_CHECK(COHORT_H5(H5Lexists(root, group_name, H5P_DEFAULT)) > 0,
                 fmt::format("it has no '/{}' group", group_name));
    h5::Group group(COHORT_H5(H5Gopen2(root, group_name, H5P_DEFAULT)));
    walk_datasets(group.get(), "", 0, [&](hid_t ds, const std::string& name) {
      f(ds, name, fmt::format("/{}/{}", group_name, name));
    });
  };
  walk(kTensorsGroup, [&](hid_t ds, const std::string& name, const std::string& where) {
    data.tensors.emplace(name, read_tensor(ds, where));
  });
  walk(kStringsGroup, [&](hid_t ds, const std::string& name, const std::string& where) {
    data.strings.emplace(name, read_string(ds, where));
  });
  walk(kIntegersGroup, [&](hid_t ds, const std::string& name, const std::string& where) {
    data.integers.emplace(name, read_scalar<int64_t>(ds, where, H5T_STD_I64LE, "i64"));
  });
  walk(kRealsGroup, [&](hid_t ds, const std::string& name, const std::string& where) {
    data.reals.emplace(name, read_scalar<double>(ds, where, H5T_IEEE_F64LE, "f64"));
  });
  return data;
}

std::string describe(const Tensor& t) {
  return fmt::format("{}{}", dtype_name(t.dtype()), t.shape().str());
}

// "<stem>-<step>.h5" -> step; nullopt for anything else (temporary files included).
std::optional<int64_t> checkpoint_step(const std::string& filename, const std::string& stem) {
  const std::string head = stem + "-";
  const std::string tail = ".h5";
  if (filename.size() <= head.size() + tail.size()) return std::nullopt;
  if (filename.compare(0, head.size(), head) != 0) return std::nullopt;
  if (filename.compare(filename.size() - tail.size(), tail.size(), tail) != 0) return std::nullopt;
  const char* begin = filename.data() + head.size();
  const char* end = filename.data() + filename.size() - tail.size();
  if (!std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  int64_t step = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, step);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return step;
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointData& data) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  try {
    {
      h5::PropList fapl(COHORT_H5(H5Pcreate(H5P_FILE_ACCESS)));
      // The 1.8+ object formats checksum the file's metadata, so HDF5 itself refuses
      // damaged headers; readers need HDF5 1.8 or newer.
      COHORT_H5(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST));
      // Closing the file must fail (not silently defer) if an object is still open.
      COHORT_H5(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI));
      h5::File file(COHORT_H5(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get())));
      write_contents(file.get(), data);
      h5::write_string_attribute(file.get(), "format", kFormatName);
      h5::write_int64_attribute(file.get(), "format_version", checkpoint_format_version);
      // Written last: a reader that finds it knows every dataset before it is there.
      h5::write_int64_attribute(file.get(), "complete", 1);
      COHORT_H5(H5Fflush(file.get(), H5F_SCOPE_GLOBAL));
      COHORT_H5_CLOSE(file);
    }
    fsync_path(tmp, /*directory=*/false);
    COHORT_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0,
                 fmt::format("rename of '{}' to '{}' failed: {}", tmp, path, std::strerror(errno)));
    const fs::path parent = fs::path(path).parent_path();
    fsync_path(parent.empty() ? std::string(".") : parent.string(), /*directory=*/true);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);  // a failed write leaves no debris (and `path` untouched)
    throw Error(fmt::format("write_checkpoint('{}') failed: {}", path, e.what()));
  }
}

CheckpointData read_checkpoint(const std::string& path) {
  try {
    return read_contents(path);
  } catch (const std::exception& e) {
    throw Error(fmt::format("cannot read checkpoint '{}': {}", path, e.what()));
  }
}

void load_tensors(const CheckpointData& data, const std::string& prefix,
                  const std::map<std::string, Tensor>& targets, bool strict, StreamHandle stream) {
  std::vector<std::string> problems;
  for (const auto& [key, target] : targets) {
    const std::string name = prefix + key;
    if (!target.defined()) {
      problems.push_back(fmt::format("undefined target: '{}' has no tensor to load into", key));
      continue;
    }
    const auto it = data.tensors.find(name);
    if (it == data.tensors.end()) {
      problems.push_back(fmt::format("missing: '{}' (model expects {})", name, describe(target)));
      continue;
    }
    const Tensor& source = it->second;
    if (source.shape() != target.shape())
      problems.push_back(fmt::format("shape mismatch: '{}': checkpoint {} vs model {}", name,
                                     describe(source), describe(target)));
    if (source.dtype() != target.dtype())
      problems.push_back(fmt::format("dtype mismatch: '{}': checkpoint {} vs model {}", name,
                                     describe(source), describe(target)));
  }
  if (strict) {
    for (auto it = data.tensors.lower_bound(prefix); it != data.tensors.end(); ++it) {
      const std::string& name = it->first;
      if (name.compare(0, prefix.size(), prefix) != 0) break;  // past the subtree
      if (!targets.contains(name.substr(prefix.size())))
        problems.push_back(
            fmt::format("unexpected: '{}' ({}) is in the checkpoint but not in "
                        "the model",
                        name, describe(it->second)));
    }
  }
  if (!problems.empty()) {
    std::string message = fmt::format("load_tensors (prefix '{}'): {} problem{}; nothing loaded",
                                      prefix, problems.size(), problems.size() == 1 ? "" : "s");
    for (const std::string& p : problems)
      message += "\n  " + p;
    COHORT_FAIL(message);
  }
  for (const auto& [key, target] : targets) {
    Tensor destination = target;  // shares storage: copy_from writes the caller's tensor
    destination.copy_from(data.tensors.at(prefix + key), stream);
  }
}

std::vector<std::string> list_checkpoints(const std::string& dir, const std::string& stem) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec)) continue;
    const std::string filename = it->path().filename().string();
    if (const std::optional<int64_t> step = checkpoint_step(filename, stem))
      found.emplace_back(*step, it->path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second > b.second;
  });
  std::vector<std::string> paths;
  paths.reserve(found.size());
  for (auto& [step, path] : found)
    paths.push_back(std::move(path));
  return paths;
}

void prune_checkpoints(const std::string& dir, const std::string& stem, int keep_last) {
  COHORT_CHECK(keep_last >= 1,
               fmt::format("prune_checkpoints: keep_last must be at least 1 (got {})", keep_last));
  const std::vector<std::string> paths = list_checkpoints(dir, stem);
  for (size_t i = static_cast<size_t>(keep_last); i < paths.size(); ++i) {
    std::error_code ec;
    fs::remove(paths[i], ec);
    COHORT_CHECK(!ec,
                 fmt::format("prune_checkpoints: cannot remove '{}': {}", paths[i], ec.message()));
  }
}

CheckpointChoice choose_checkpoint(const std::string& dir, const std::string& stem) {
  CheckpointChoice choice;
  for (const std::string& path : list_checkpoints(dir, stem)) {
    try {
      read_checkpoint(path);
      choice.good = path;
      return choice;
    } catch (const std::exception& e) {
      choice.damaged.emplace_back(path, e.what());
    }
  }
  return choice;
}

std::optional<std::string> latest_good_checkpoint(const std::string& dir, const std::string& stem) {
  const CheckpointChoice choice = choose_checkpoint(dir, stem);
  for (const auto& [path, why] : choice.damaged)
    std::fprintf(stderr, "cohort: skipping damaged checkpoint %s: %s\n", path.c_str(), why.c_str());
  return choice.good;
}

}  // namespace cohort::core::io
