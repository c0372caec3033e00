#pragma once
// Reads a shard set (a directory with manifest.json and its HDF5 shards).
//
// Threading design (for the loader): libhdf5 is thread-safe behind one global lock.
// open() does all the HDF5 work that is not per sample (attributes, small index
// datasets, structure checks) and keeps every shard and dataset open. fetch() then
// holds the lock only for two short calls per chunk, H5Dget_chunk_storage_size and
// H5Dread_chunk, which copy the chunk's bytes as stored and run no filter; the
// Fletcher-32 check, inflating and PNG/JPEG decoding run outside the lock (the
// Fletcher-32 check in fetch(), the rest in decode()). Loader threads call fetch()
// and decode() on a shared ShardSet concurrently.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_codec.hpp"
#include "data/manifest.hpp"
#include "data/shard_format.hpp"

namespace cohort::data {

// A sample's stored bytes as fetched: checksums verified, nothing decoded.
struct SampleBytes {
  int64_t index = -1;          // global sample index
  std::vector<uint8_t> image;  // raw pixels [H,W,C], or the PNG/JPEG file's bytes
  std::vector<uint8_t> label;  // the label chunk as stored (a zlib stream if deflated)
  std::vector<uint8_t> depth;  // the depth chunk as stored
  bool label_deflated = false, depth_deflated = false;
};

// A decoded sample.
struct Sample {
  int64_t index = -1;
  std::string name;
  Image8 image;                // [H, W, C]
  std::vector<uint8_t> label;  // [H, W] class ids or kIgnoreLabel (label-map kinds)
  std::vector<float> depth;    // [H, W] metres, 0 = invalid (depth kinds)
  int32_t class_id = -1;       // classification
};

struct OpenOptions {
  // Also compare every shard's CRC32 with the manifest (reads all bytes once).
  // Without it, open() checks each file's size, schema and structure only; a flipped
  // byte in sample data is still caught by the Fletcher-32 check when it is fetched.
  bool check_crc32 = false;
};

class ShardSet {
 public:
  // Reads the manifest and every shard's structure; throws one cohort::Error listing
  // every problem found (missing or truncated shard, schema version, kinds, class
  // tables, dataset dtypes and shapes, chunk layout, class ids outside the table),
  // each naming its file.
  static ShardSet open(const std::string& dir, const OpenOptions& options = {});

  const std::string& dir() const;
  const Manifest& manifest() const;
  const DatasetSpec& spec() const;
  int64_t size() const;

  // Metadata known without reading sample data.
  std::array<int64_t, 3> image_shape(int64_t index) const;  // (H, W, C)
  int32_t class_id(int64_t index) const;                    // classification sets
  const std::string& sample_name(int64_t index) const;
  // "<shard path> sample <local> (global <index>, '<name>')": the prefix of errors.
  std::string describe(int64_t index) const;

  // Thread-safe; takes HDF5's lock only to copy raw chunks. Throws cohort::Error naming
  // the shard file and sample when the file vanished or changed size since open(), a
  // chunk is missing, or a chunk fails its Fletcher-32 checksum.
  void fetch(int64_t index, SampleBytes& out) const;
  SampleBytes fetch(int64_t index) const;

  // Thread-safe, CPU only: inflates label/depth chunks, decodes PNG/JPEG, widens f16
  // depth, and checks that label values are class ids or kIgnoreLabel. `window`:
  // only that part of an encoded image is needed (decode_image_window; pixels
  // outside it are unspecified); raw images are whole anyway.
  Sample decode(SampleBytes bytes, const ImageWindow* window = nullptr) const;
  Sample read(int64_t index) const { return decode(fetch(index)); }

  // The opened state (defined in the internal data/shard_index.hpp; open() and the
  // verifier build it).
  struct State;
  explicit ShardSet(std::shared_ptr<const State> state) : m_state(std::move(state)) {}

 private:
  std::shared_ptr<const State> m_state;  // immutable after open: copies share it
};

}  // namespace cohort::data
