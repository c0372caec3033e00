#pragma once
// manifest.json: the list of a shard set's files, next to them in one directory.
// See docs/SHARD_FORMAT.md ("Manifest").
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard_format.hpp"

namespace cohort::data {

struct ShardEntry {
  std::string file;          // name relative to the manifest's directory
  int64_t first_sample = 0;  // global index of the shard's first sample
  int64_t samples = 0;
  uint64_t bytes = 0;  // file length
  uint32_t crc32 = 0;  // CRC32 of the whole file's bytes
};

struct Manifest {
  int64_t schema_version = kShardSchemaVersion;
  DatasetSpec spec;
  int64_t sample_count = 0;
  std::vector<ShardEntry> shards;
  std::string created_by;
};

std::string manifest_path(const std::string& dir);

// Writes "<dir>/manifest.json" atomically (temporary name, fsync, rename).
void write_manifest(const std::string& dir, const Manifest& manifest);

// Reads and checks "<dir>/manifest.json": JSON syntax, schema version, field types,
// the spec's consistency, and that shards tile 0..sample_count-1 in order. Throws
// cohort::Error naming the file (a missing manifest says how to make one).
Manifest read_manifest(const std::string& dir);

}  // namespace cohort::data
