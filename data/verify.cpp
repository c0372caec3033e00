#include "data/verify.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <mutex>

#include "core/error.hpp"
#include "data/checksum.hpp"
#include "data/parallel.hpp"
#include "data/shard_index.hpp"

namespace cohort::data {

std::string VerifyReport::text() const {
  std::string out =
      ok() ? fmt::format("{}: OK ({} shards, {} samples checked)", dir, shards, samples_checked)
           : fmt::format("{}: {} problem(s) in {} shards, {} samples", dir, problem_count, shards,
                         samples);
  for (const std::string& p : problems)
    out += "\n  " + p;
  if (problem_count > static_cast<int64_t>(problems.size()))
    out +=
        fmt::format("\n  ... and {} more", problem_count - static_cast<int64_t>(problems.size()));
  return out;
}

VerifyReport verify_shard_set(const std::string& dir, const VerifyOptions& options) {
  VerifyReport report;
  report.dir = dir;
  std::mutex mutex;
  auto add = [&](std::string line) {
    std::lock_guard<std::mutex> lock(mutex);
    ++report.problem_count;
    if (report.problems.size() < options.max_problems) report.problems.push_back(std::move(line));
  };

  auto state = std::make_shared<ShardSet::State>();
  state->dir = dir;
  try {
    state->manifest = read_manifest(dir);
  } catch (const Error& e) {
    add(detail::plain_message(e.what()));
    return report;
  }
  const Manifest& manifest = state->manifest;
  state->allowed_labels = allowed_label_values(manifest.spec);
  report.shards = static_cast<int64_t>(manifest.shards.size());
  report.samples = manifest.sample_count;

  std::vector<bool> good(manifest.shards.size(), false);
  state->shards.resize(manifest.shards.size());
  for (size_t i = 0; i < manifest.shards.size(); ++i) {
    std::vector<std::string> problems;
    good[i] = detail::index_shard(dir, manifest, i, state->shards[i], problems);
    for (std::string& p : problems)
      add(std::move(p));
    const std::string path = state->shards[i].path;
    if (options.check_crc32 && std::filesystem::exists(path)) {
      try {
        const uint32_t crc = crc32_file(path);
        if (crc != manifest.shards[i].crc32)
          add(fmt::format("{}: CRC32 {} differs from the manifest's {} (the file is damaged)", path,
                          crc32_hex(crc), crc32_hex(manifest.shards[i].crc32)));
      } catch (const Error& e) {
        add(detail::plain_message(e.what()));
      }
    }
  }
  if (!options.check_samples) return report;

  // Samples of shards whose structure is sound: fetch (Fletcher-32) and decode
  // (labels in the table), then check depth values.
  const ShardSet set(state);
  std::vector<int64_t> todo;
  for (size_t i = 0; i < manifest.shards.size(); ++i)
    if (good[i])
      for (int64_t k = 0; k < manifest.shards[i].samples; ++k)
        todo.push_back(manifest.shards[i].first_sample + k);
  const size_t listed_before = report.problems.size();
  parallel_for(static_cast<int64_t>(todo.size()), options.threads, [&](int64_t t) {
    const int64_t index = todo[t];
    try {
      const Sample s = set.read(index);
      for (size_t p = 0; p < s.depth.size(); ++p)
        if (!std::isfinite(s.depth[p]) || s.depth[p] < 0) {
          add(fmt::format("{}: depth {} at (y={}, x={}) is not finite and >= 0",
                          set.describe(index), s.depth[p], p / s.image.width, p % s.image.width));
          break;
        }
    } catch (const Error& e) {
      add(detail::plain_message(e.what()));
    }
  });
  // Threads finish in any order: list sample problems in a stable order.
  std::sort(report.problems.begin() + static_cast<std::ptrdiff_t>(listed_before),
            report.problems.end());
  report.samples_checked = static_cast<int64_t>(todo.size());
  return report;
}

}  // namespace cohort::data
