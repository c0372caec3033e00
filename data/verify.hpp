#pragma once
// `cohort convert verify`: re-reads a shard set and reports every problem.
#include <cstdint>
#include <string>
#include <vector>

namespace cohort::data {

struct VerifyOptions {
  bool check_crc32 = true;     // whole-file CRC32 against the manifest
  bool check_samples = true;   // fetch and decode every sample (checksums, labels, depth)
  int threads = 0;             // 0: all cores
  size_t max_problems = 1000;  // stop listing after this many (the count stays exact)
};

struct VerifyReport {
  std::string dir;
  int64_t shards = 0, samples = 0, samples_checked = 0;
  int64_t problem_count = 0;
  // One line per problem, each naming the shard file and, where it applies, the sample
  // ("<file>: sample 3 (global 131, 'name'): ...").
  std::vector<std::string> problems;
  bool ok() const { return problem_count == 0; }
  std::string text() const;  // a summary line, then the problems
};

// Checks: the manifest (schema version, fields, counts), every listed shard
// (present, size, CRC32, format/schema attributes agreeing with the manifest,
// dataset names, dtypes, shapes, chunking and checksum filters), and every sample
// (chunk Fletcher-32, PNG/JPEG decodes to the recorded shape, label values in the
// class table or 255, depth finite and >= 0, class ids in the table).
VerifyReport verify_shard_set(const std::string& dir, const VerifyOptions& options = {});

}  // namespace cohort::data
