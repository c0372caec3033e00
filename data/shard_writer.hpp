#pragma once
// Writes a shard set: numbered HDF5 shards plus manifest.json in one directory.
//
// Converters decode and encode samples in worker threads (prepare() is const and
// thread-safe) and append them in order from one thread, so the output does not
// depend on the thread count. Shards are written under a ".partial" name and
// renamed when complete; manifest.json is written last, so a directory with a
// manifest always holds a complete set. A writer destroyed before finish() removes
// the files it made.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_codec.hpp"
#include "data/manifest.hpp"
#include "data/shard_format.hpp"

namespace cohort::data {

// One sample on its way into a shard.
struct SampleRecord {
  std::string name;              // where it came from (file stem); stored in sample_name
  Image8 image;                  // decoded pixels [H, W, C]
  std::vector<uint8_t> encoded;  // stored PNG/JPEG bytes: filled by prepare(), or a
                                 // converter's verbatim copy of a source file
  std::vector<uint8_t> label;    // [H, W] class ids or kIgnoreLabel (label-map kinds)
  std::vector<float> depth;      // [H, W] metres, 0 = invalid (depth kinds)
  int32_t class_id = -1;         // classification
  bool prepared = false;         // set by ShardSetWriter::prepare
};

struct WriterOptions {
  int64_t samples_per_shard = 0;           // 0: as many as fit in shard_bytes
  int64_t shard_bytes = int64_t{1} << 30;  // target size when samples_per_shard is 0
  int deflate_level = 1;                   // label and depth chunks; 0 = stored plainly
  int png_level = 3;                       // zlib level of PNG-encoded images
  int jpeg_quality = 95;
  int64_t blob_chunk_bytes = 64 << 10;  // chunk of image_bytes
  bool overwrite = false;               // replace an existing set in the directory
  std::string created_by = "cohort";
};

class ShardSetWriter {
 public:
  // Creates `dir` if needed. Refuses a directory that already holds a manifest
  // unless options.overwrite (then the old manifest and its shards are removed first).
  ShardSetWriter(std::string dir, DatasetSpec spec, WriterOptions options = {});
  ~ShardSetWriter();
  ShardSetWriter(const ShardSetWriter&) = delete;
  ShardSetWriter& operator=(const ShardSetWriter&) = delete;

  const DatasetSpec& spec() const;

  // Checks `record` against the spec (image size and channels, label size and values
  // in the class table, depth size and values finite and >= 0, class id) and encodes
  // the image when the set stores PNG/JPEG and `encoded` is empty. Thread-safe.
  // Errors start with the record's name.
  void prepare(SampleRecord& record) const;

  // Appends the next sample (calls prepare() when it was not called).
  void append(SampleRecord record);
  int64_t count() const;

  // Completes the last shard, checksums every shard file and writes manifest.json.
  // Throws when no sample was appended (an empty split is an error).
  Manifest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace cohort::data
