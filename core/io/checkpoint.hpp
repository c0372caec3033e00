#pragma once
// Training checkpoints in HDF5.
//
// File layout (format "cohort-checkpoint", version 1):
//   /tensors/<name>    one contiguous dataset per tensor; '/' in a name makes nested
//                      groups ("model/fc.weight" -> group tensors/model, dataset
//                      "fc.weight"). Attributes: dtype (cohort's name: "f32", "bf16",
//                      ...; bf16 and f16 are stored as little-endian u16) and crc32 of
//                      the raw bytes.
//   /strings/<name>    fixed-length string datasets, with crc32.
//   /integers/<name>   scalar i64 datasets, with crc32.
//   /reals/<name>      scalar f64 datasets, with crc32.
//   root attributes    format, format_version, and complete=1 (written last).
// HDF5 checks its own metadata (v2 object headers carry checksums); the crc32
// attributes cover the raw data, which HDF5 does not checksum in contiguous datasets.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace cohort::core::io {

inline constexpr int64_t checkpoint_format_version = 1;

struct CheckpointData {
  std::map<std::string, Tensor> tensors;       // CPU tensors, any dtype
  std::map<std::string, std::string> strings;  // e.g. "config" (resolved YAML), "model"
  std::map<std::string, int64_t> integers;     // step, epoch, RNG seed/offset, scaler counters
  std::map<std::string, double> reals;         // loss scale, ...
};

// Writes atomically: everything goes to "<path>.tmp-<pid>", which is flushed, closed
// and fsync'd (with its directory) and only then renamed over `path`. A crash at any
// point leaves either the old file or the new one, never a torn file under `path`.
// Tensors must be on the CPU (copy device tensors to the host, after synchronising
// their stream, before checkpointing).
void write_checkpoint(const std::string& path, const CheckpointData& data);

// Reads everything back as CPU tensors. Throws cohort::Error naming the file and the
// reason for a file that is not HDF5, is truncated, lacks the "complete" mark, has
// another format version, or whose data fails its checksum (naming the dataset).
CheckpointData read_checkpoint(const std::string& path);

// Copies data.tensors[prefix + key] into targets[key] (targets may live on a GPU).
// Every problem is collected before anything is copied -- missing entries,
// unexpected entries under `prefix` (when `strict`), shape and dtype mismatches --
// and reported together in one cohort::Error, one problem per line.
// Copies are queued on `stream` (device targets); the caller synchronises it before
// `data` goes away.
void load_tensors(const CheckpointData& data, const std::string& prefix,
                  const std::map<std::string, Tensor>& targets, bool strict = true,
                  StreamHandle stream = nullptr);

// "<dir>/<stem>-<step>.h5", newest (highest step) first. Temporary files of writes in
// progress (or of crashed ones) never match. A missing directory gives an empty list.
std::vector<std::string> list_checkpoints(const std::string& dir, const std::string& stem);

// Deletes all but the newest `keep_last` checkpoints of list_checkpoints().
void prune_checkpoints(const std::string& dir, const std::string& stem, int keep_last);

// The newest of list_checkpoints() that reads back completely with valid
// checksums, and every newer one that does not (path, reason), newest first.
struct CheckpointChoice {
  std::optional<std::string> good;
  std::vector<std::pair<std::string, std::string>> damaged;
};
CheckpointChoice choose_checkpoint(const std::string& dir, const std::string& stem);

// The newest checkpoint that reads back completely with valid checksums. Damaged ones
// are skipped with a line on stderr saying which file and why. Empty if none is good.
std::optional<std::string> latest_good_checkpoint(const std::string& dir, const std::string& stem);

}  // namespace cohort::core::io
