#pragma once
// Internal to data/: the pieces every converter shares.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/convert.hpp"

namespace cohort::data::detail {

// Appends make(i), i = 0..count-1, to `writer` in index order. make() and
// writer.prepare() run on `threads` worker threads, a window of items at a time,
// so memory stays bounded and the output does not depend on the thread count.
void write_in_order(ShardSetWriter& writer, int64_t count, int threads,
                    const std::function<SampleRecord(int64_t)>& make,
                    const std::function<void(const std::string&)>& log);

// finish(), then verify_shard_set() when common.verify (throwing its report).
Manifest finish_set(ShardSetWriter& writer, const ConvertCommon& common);

// One cohort::Error: `title`, then one problem per line (all of them).
[[noreturn]] void throw_problems(const std::string& title,
                                 const std::vector<std::string>& problems);

// The first `bytes` of a file (fewer if it is shorter); errors name the file.
std::vector<uint8_t> read_file_head(const std::string& path, size_t bytes);

// Image header from the first bytes of the file, reading the whole file only when
// the header does not fit in them.
ImageInfo read_image_header(const std::string& path);

// A progress logger printing at most ~20 lines per run.
std::function<void(int64_t)> progress_printer(const std::function<void(const std::string&)>& log,
                                              int64_t total, const std::string& what);

}  // namespace cohort::data::detail
