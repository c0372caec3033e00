#pragma once
// Internal to data/ (includes <hdf5.h>): the open shards behind a ShardSet, built by
// ShardSet::open and by the verifier.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/io/hdf5_handles.hpp"
#include "data/manifest.hpp"
#include "data/shard_reader.hpp"

namespace cohort::data::detail {

// The pipeline of a chunked dataset: [deflate], fletcher32.
struct Pipeline {
  int deflate = -1;   // index of the deflate filter, -1 if none
  int fletcher = -1;  // index of the fletcher32 filter
};

// A dataset with one sample per chunk (image, label, depth), kept open.
struct SampleColumn {
  core::io::h5::Dataset dataset;
  Pipeline pipeline;
  uint64_t chunk_bytes = 0;  // uncompressed bytes of one sample
  size_t rank = 0;           // dimensions of the dataset
  bool present() const { return static_cast<bool>(dataset); }
};

// image_bytes (kept open) and its index.
struct BlobColumn {
  core::io::h5::Dataset dataset;
  uint64_t chunk_bytes = 0;
  uint64_t total_bytes = 0;
  std::vector<uint64_t> offsets;               // N + 1
  std::vector<std::array<int32_t, 3>> shapes;  // (H, W, C)
  bool present() const { return static_cast<bool>(dataset); }
};

// One shard, open: fetch() reads chunks through these handles with H5Dread_chunk.
struct ShardIndex {
  std::string path;
  core::io::h5::File file;
  int64_t first = 0, count = 0;
  uint64_t file_bytes = 0;
  SampleColumn image, label, depth;
  BlobColumn blob;
  std::vector<int32_t> class_ids;
  std::vector<std::string> names;
};

// An error's text without the " [file:line, rank R on host]" that COHORT_CHECK
// appends: problem lists quote many errors and the location of each adds nothing.
std::string plain_message(const std::string& what);

// Opens shard `shard` of `manifest` (in `dir`) with HDF5, checks it against the
// manifest and keeps its datasets open. Every problem is appended to `problems` as one
// line starting with the file's path. Returns true when the index is complete, i.e.
// samples can be fetched (a size differing from the manifest's is a problem that
// still allows it; ShardSet::open refuses any problem, the verifier reads on).
bool index_shard(const std::string& dir, const Manifest& manifest, size_t shard, ShardIndex& out,
                 std::vector<std::string>& problems);

}  // namespace cohort::data::detail

namespace cohort::data {

struct ShardSet::State {
  std::string dir;
  Manifest manifest;
  std::vector<detail::ShardIndex> shards;
  std::array<bool, 256> allowed_labels{};

  // The shard holding global sample `index` (checked) and the local index in it.
  const detail::ShardIndex& locate(int64_t index, int64_t& local) const;
};

}  // namespace cohort::data
