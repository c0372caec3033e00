#include "data/convert_common.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "data/parallel.hpp"
#include "data/verify.hpp"

namespace cohort::data::detail {

void write_in_order(ShardSetWriter& writer, int64_t count, int threads,
                    const std::function<SampleRecord(int64_t)>& make,
                    const std::function<void(const std::string&)>& log) {
  const int workers = resolve_threads(threads);
  const int64_t window = std::max<int64_t>(4, 2 * workers);
  const auto progress = progress_printer(log, count, "samples written");
  std::vector<SampleRecord> slots;
  for (int64_t start = 0; start < count; start += window) {
    const int64_t n = std::min(window, count - start);
    slots.assign(static_cast<size_t>(n), SampleRecord{});
    parallel_for(n, workers, [&](int64_t k) {
      SampleRecord r = make(start + k);
      writer.prepare(r);
      slots[k] = std::move(r);
    });
    for (SampleRecord& r : slots)
      writer.append(std::move(r));
    progress(start + n);
  }
}

Manifest finish_set(ShardSetWriter& writer, const ConvertCommon& common) {
  Manifest manifest = writer.finish();
  if (common.verify) {
    VerifyOptions options;
    options.threads = common.threads;
    const VerifyReport report = verify_shard_set(common.out_dir, options);
    COHORT_CHECK(report.ok(), "verification of the written set failed: " + report.text());
    if (common.log) common.log(report.text());
  }
  return manifest;
}

void throw_problems(const std::string& title, const std::vector<std::string>& problems) {
  std::string text = fmt::format("{} ({} problem(s)):", title, problems.size());
  for (const std::string& p : problems)
    text += "\n  " + p;
  COHORT_FAIL(text);
}

std::vector<uint8_t> read_file_head(const std::string& path, size_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  COHORT_CHECK(fd >= 0, fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::vector<uint8_t> out(bytes);
  size_t done = 0;
  while (done < bytes) {
    const ssize_t got = ::read(fd, out.data() + done, bytes - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    done += static_cast<size_t>(got);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

ImageInfo read_image_header(const std::string& path) {
  const std::vector<uint8_t> head = read_file_head(path, 256 << 10);
  try {
    return read_image_info(head.data(), head.size(), path);
  } catch (const Error&) {
    if (head.size() < (256u << 10)) throw;  // that was the whole file
  }
  return read_image_info_file(path);  // large metadata before the header
}

std::function<void(int64_t)> progress_printer(const std::function<void(const std::string&)>& log,
                                              int64_t total, const std::string& what) {
  if (!log) return [](int64_t) {};
  const int64_t step = std::max<int64_t>(1, total / 20);
  auto next = std::make_shared<int64_t>(step);
  return [=](int64_t done) {
    if (done >= *next || done == total) {
      log(fmt::format("{}/{} {}", done, total, what));
      *next = done + step;
    }
  };
}

}  // namespace cohort::data::detail
