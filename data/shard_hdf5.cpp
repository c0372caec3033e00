#include "data/shard_hdf5.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace cohort::data::h5x {
namespace {

h5::Dataspace vector_space(size_t n) {
  const hsize_t dims[1] = {static_cast<hsize_t>(n)};
  return h5::Dataspace(COHORT_H5(H5Screate_simple(1, dims, nullptr)));
}

// Opens a 1-D attribute and returns its element count after checking its class.
size_t open_vector_attribute(hid_t object, const std::string& name, H5T_class_t cls,
                             h5::Attribute& attr, h5::Datatype& type) {
  COHORT_CHECK(h5::has_attribute(object, name), fmt::format("attribute '{}' is missing", name));
  attr = h5::Attribute(COHORT_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  type = h5::Datatype(COHORT_H5(H5Aget_type(attr.get())));
  COHORT_CHECK(H5Tget_class(type.get()) == cls,
               fmt::format("attribute '{}' has the wrong type class", name));
  h5::Dataspace space(COHORT_H5(H5Aget_space(attr.get())));
  const int rank = COHORT_H5(H5Sget_simple_extent_ndims(space.get()));
  COHORT_CHECK(rank <= 1, fmt::format("attribute '{}' has {} dimensions, expected 1", name, rank));
  return static_cast<size_t>(COHORT_H5(H5Sget_simple_extent_npoints(space.get())));
}

}  // namespace

h5::Datatype half_type() {
  // sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9.
  h5::Datatype type(COHORT_H5(H5Tcopy(H5T_IEEE_F32LE)));
  COHORT_H5(H5Tset_fields(type.get(), 15, 10, 5, 0, 10));
  COHORT_H5(H5Tset_size(type.get(), 2));
  COHORT_H5(H5Tset_ebias(type.get(), 15));
  return type;
}

h5::Datatype depth_type(DepthDType dtype) {
  if (dtype == DepthDType::f16) return half_type();
  return h5::Datatype(COHORT_H5(H5Tcopy(H5T_IEEE_F32LE)));
}

void write_f32_array_attribute(hid_t object, const std::string& name,
                               const std::vector<float>& values) {
  h5::Dataspace space = vector_space(values.size());
  h5::Attribute attr(COHORT_H5(
      H5Acreate2(object, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  COHORT_H5(H5Awrite(attr.get(), H5T_NATIVE_FLOAT, values.data()));
}

std::vector<float> read_f32_array_attribute(hid_t object, const std::string& name) {
  h5::Attribute attr;
  h5::Datatype type;
  const size_t n = open_vector_attribute(object, name, H5T_FLOAT, attr, type);
  std::vector<float> values(n);
  if (n > 0) COHORT_H5(H5Aread(attr.get(), H5T_NATIVE_FLOAT, values.data()));
  return values;
}

void write_i32_array_attribute(hid_t object, const std::string& name,
                               const std::vector<int32_t>& values) {
  h5::Dataspace space = vector_space(values.size());
  h5::Attribute attr(COHORT_H5(
      H5Acreate2(object, name.c_str(), H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  COHORT_H5(H5Awrite(attr.get(), H5T_NATIVE_INT32, values.data()));
}

std::vector<int32_t> read_i32_array_attribute(hid_t object, const std::string& name) {
  h5::Attribute attr;
  h5::Datatype type;
  const size_t n = open_vector_attribute(object, name, H5T_INTEGER, attr, type);
  std::vector<int32_t> values(n);
  if (n > 0) COHORT_H5(H5Aread(attr.get(), H5T_NATIVE_INT32, values.data()));
  return values;
}

void write_string_array_attribute(hid_t object, const std::string& name,
                                  const std::vector<std::string>& values) {
  size_t width = 1;
  for (const std::string& v : values)
    width = std::max(width, v.size());
  h5::Datatype type = h5::string_type(width);
  h5::Dataspace space = vector_space(values.size());
  std::vector<char> packed(values.size() * width, '\0');
  for (size_t i = 0; i < values.size(); ++i)
    std::memcpy(packed.data() + i * width, values[i].data(), values[i].size());
  h5::Attribute attr(COHORT_H5(
      H5Acreate2(object, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  COHORT_H5(H5Awrite(attr.get(), type.get(), packed.data()));
}

std::vector<std::string> read_string_array_attribute(hid_t object, const std::string& name) {
  h5::Attribute attr;
  h5::Datatype type;
  const size_t n = open_vector_attribute(object, name, H5T_STRING, attr, type);
  COHORT_CHECK(H5Tis_variable_str(type.get()) == 0,
               fmt::format("attribute '{}' holds variable-length strings", name));
  const size_t width = H5Tget_size(type.get());
  std::vector<char> packed(n * width);
  if (n > 0) COHORT_H5(H5Aread(attr.get(), type.get(), packed.data()));
  std::vector<std::string> values(n);
  for (size_t i = 0; i < n; ++i) {
    const char* s = packed.data() + i * width;
    values[i].assign(s, strnlen(s, width));
  }
  return values;
}

void write_spec_attributes(hid_t file, const DatasetSpec& spec) {
  h5::write_string_attribute(file, "kind", to_string(spec.kind));
  h5::write_string_attribute(file, "split", spec.split);
  h5::write_string_attribute(file, "image_encoding", to_string(spec.image_encoding));
  h5::write_int64_attribute(file, "image_channels", spec.channels);
  h5::write_int64_attribute(file, "image_height", spec.height);
  h5::write_int64_attribute(file, "image_width", spec.width);
  std::vector<std::string> names;
  std::vector<int32_t> ids;
  for (const ClassEntry& c : spec.classes) {
    names.push_back(c.name);
    ids.push_back(c.id);
  }
  if (!spec.classes.empty()) {  // depth-only sets have no class table
    write_string_array_attribute(file, "class_names", names);
    write_i32_array_attribute(file, "class_ids", ids);
  }
  if (has_label_map(spec.kind)) h5::write_int64_attribute(file, "ignore_label", kIgnoreLabel);
  write_f32_array_attribute(file, "mean", spec.mean);
  write_f32_array_attribute(file, "std", spec.std);
  if (has_depth(spec.kind)) {
    h5::write_string_attribute(file, "depth_dtype", to_string(spec.depth_dtype));
    h5::write_string_attribute(file, "depth_unit", "m");
    h5::write_int64_attribute(file, "depth_invalid_value", 0);
  }
  h5::write_string_attribute(file, "source", spec.source);
}

DatasetSpec read_spec_attributes(hid_t file) {
  auto str = [&](const char* name) {
    COHORT_CHECK(h5::has_attribute(file, name), fmt::format("attribute '{}' is missing", name));
    return h5::read_string_attribute(file, name);
  };
  auto i64 = [&](const char* name) {
    COHORT_CHECK(h5::has_attribute(file, name), fmt::format("attribute '{}' is missing", name));
    return h5::read_int64_attribute(file, name);
  };
  DatasetSpec spec;
  spec.kind = parse_task_kind(str("kind"), "attribute 'kind'");
  spec.split = str("split");
  spec.image_encoding = parse_image_encoding(str("image_encoding"), "attribute 'image_encoding'");
  spec.channels = i64("image_channels");
  spec.height = i64("image_height");
  spec.width = i64("image_width");
  std::vector<std::string> names;
  std::vector<int32_t> ids;
  if (h5::has_attribute(file, "class_names") || h5::has_attribute(file, "class_ids")) {
    names = read_string_array_attribute(file, "class_names");
    ids = read_i32_array_attribute(file, "class_ids");
  }
  COHORT_CHECK(names.size() == ids.size(),
               fmt::format("attributes class_names ({}) and class_ids ({}) differ in length",
                           names.size(), ids.size()));
  for (size_t i = 0; i < ids.size(); ++i)
    spec.classes.push_back(ClassEntry{ids[i], names[i]});
  spec.mean = read_f32_array_attribute(file, "mean");
  spec.std = read_f32_array_attribute(file, "std");
  if (has_depth(spec.kind))
    spec.depth_dtype = parse_depth_dtype(str("depth_dtype"), "attribute 'depth_dtype'");
  spec.source = h5::has_attribute(file, "source") ? str("source") : std::string();
  return spec;
}

h5::Dataset create_chunked(hid_t file, const char* name, hid_t type,
                           const std::vector<hsize_t>& sample_dims, int deflate_level,
                           const std::vector<hsize_t>& chunk) {
  std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED}, chunk_dims{1};
  for (hsize_t d : sample_dims) {
    dims.push_back(d);
    maxdims.push_back(d);
    chunk_dims.push_back(d);
  }
  if (!chunk.empty()) chunk_dims = chunk;
  h5::Dataspace space(
      COHORT_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.data())));
  h5::PropList dcpl(COHORT_H5(H5Pcreate(H5P_DATASET_CREATE)));
  COHORT_H5(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk_dims.size()), chunk_dims.data()));
  // Deflate first, Fletcher-32 last: the checksum covers the bytes as stored.
  if (deflate_level > 0)
    COHORT_H5(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(deflate_level)));
  COHORT_H5(H5Pset_fletcher32(dcpl.get()));
  COHORT_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
  // No modification times in object headers: the same input gives the same bytes.
  COHORT_H5(H5Pset_obj_track_times(dcpl.get(), false));
  return h5::Dataset(
      COHORT_H5(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
}

void write_small(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims,
                 const void* data) {
  h5::Dataspace space(
      COHORT_H5(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  h5::PropList dcpl(COHORT_H5(H5Pcreate(H5P_DATASET_CREATE)));
  std::vector<hsize_t> chunk = dims;
  for (hsize_t& c : chunk)
    c = std::max<hsize_t>(c, 1);
  COHORT_H5(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()));
  COHORT_H5(H5Pset_fletcher32(dcpl.get()));
  COHORT_H5(H5Pset_obj_track_times(dcpl.get(), false));
  h5::Dataset dataset(
      COHORT_H5(H5Dcreate2(file, name, type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
  hsize_t total = 1;
  for (hsize_t d : dims)
    total *= d;
  if (total > 0) COHORT_H5(H5Dwrite(dataset.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  COHORT_H5_CLOSE(dataset);
}

void append_rows(hid_t dataset, hid_t type, hsize_t rows_before, hsize_t count, const void* data) {
  std::vector<hsize_t> dims = dataset_dims(dataset);
  dims[0] = rows_before + count;
  COHORT_H5(H5Dset_extent(dataset, dims.data()));
  h5::Dataspace file_space(COHORT_H5(H5Dget_space(dataset)));
  std::vector<hsize_t> start(dims.size(), 0), size = dims;
  start[0] = rows_before;
  size[0] = count;
  COHORT_H5(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                                size.data(), nullptr));
  h5::Dataspace mem_space(
      COHORT_H5(H5Screate_simple(static_cast<int>(size.size()), size.data(), nullptr)));
  COHORT_H5(H5Dwrite(dataset, type, mem_space.get(), file_space.get(), H5P_DEFAULT, data));
}

std::vector<hsize_t> dataset_dims(hid_t dataset) {
  h5::Dataspace space(COHORT_H5(H5Dget_space(dataset)));
  const int rank = COHORT_H5(H5Sget_simple_extent_ndims(space.get()));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  COHORT_H5(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr));
  return dims;
}

std::string dims_text(const std::vector<hsize_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ","));
}

}  // namespace cohort::data::h5x
