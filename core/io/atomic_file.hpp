#pragma once
// Small files that must appear whole or not at all (shard manifests, evaluation
// outputs): written under "<path>.tmp-<pid>", fsync'd, then renamed over `path`.
// A crash or a full disk leaves the old file (or none), never a torn one; a failed
// write removes the temporary file.
#include <cstddef>
#include <string>

namespace cohort::core::io {

// Throws cohort::Error naming the file and the system's reason.
void write_file_atomically(const std::string& path, const void* data, size_t size);

}  // namespace cohort::core::io
