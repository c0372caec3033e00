#pragma once
// HDF5 helpers for the shard writer, reader and verifier. Internal to data/ (it
// includes <hdf5.h>, which only targets linking cohort_hdf5 see); the public headers
// (shard_writer.hpp, shard_reader.hpp) never include it.
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/hdf5_handles.hpp"
#include "data/shard_format.hpp"

namespace cohort::data::h5x {

namespace h5 = cohort::core::io::h5;

// IEEE half precision, little-endian: the layout numpy/h5py call float16.
h5::Datatype half_type();
// The HDF5 file (and memory) type of a depth dtype.
h5::Datatype depth_type(DepthDType dtype);

void write_f32_array_attribute(hid_t object, const std::string& name,
                               const std::vector<float>& values);
std::vector<float> read_f32_array_attribute(hid_t object, const std::string& name);
void write_i32_array_attribute(hid_t object, const std::string& name,
                               const std::vector<int32_t>& values);
std::vector<int32_t> read_i32_array_attribute(hid_t object, const std::string& name);
// A 1-D attribute of fixed-length, null-padded strings (h5py reads numpy bytes).
void write_string_array_attribute(hid_t object, const std::string& name,
                                  const std::vector<std::string>& values);
std::vector<std::string> read_string_array_attribute(hid_t object, const std::string& name);

// The dataset-wide attributes every shard carries (docs/SHARD_FORMAT.md).
void write_spec_attributes(hid_t file, const DatasetSpec& spec);
// Reads them back; throws cohort::Error naming the attribute on a missing or mistyped one.
DatasetSpec read_spec_attributes(hid_t file);

// A chunked dataset with an unlimited first dimension, initial extent 0 there,
// chunk = [1, dims[1:]] (one sample per chunk) unless `chunk` is given, and the filter
// pipeline [deflate (if level > 0)], fletcher32.
h5::Dataset create_chunked(hid_t file, const char* name, hid_t type,
                           const std::vector<hsize_t>& sample_dims, int deflate_level,
                           const std::vector<hsize_t>& chunk = {});
// A fixed-size chunked dataset (one chunk) with fletcher32, written at once.
void write_small(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims,
                 const void* data);
// Grows dim 0 of `dataset` by `count` rows and writes them from `data` (memory type
// `type`, rows of the dataset's row size), after the existing `rows_before`.
void append_rows(hid_t dataset, hid_t type, hsize_t rows_before, hsize_t count, const void* data);

std::vector<hsize_t> dataset_dims(hid_t dataset);
std::string dims_text(const std::vector<hsize_t>& dims);

}  // namespace cohort::data::h5x
