#include "launch/checkpoint_history.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"

namespace cohort::launch {
namespace {

namespace fs = std::filesystem;
constexpr const char* kStem = "checkpoint";

}  // namespace

std::string checkpoint_path(const std::string& out_dir, int64_t step) {
  return (fs::path(out_dir) / fmt::format("{}-{:08d}.h5", kStem, step)).string();
}

std::string checkpoint_link(const std::string& out_dir) {
  return (fs::path(out_dir) / fmt::format("{}.h5", kStem)).string();
}

ResumePoint find_resume_checkpoint(const std::string& out_dir) {
  const core::io::CheckpointChoice choice = core::io::choose_checkpoint(out_dir, kStem);
  if (choice.good) {
    for (const auto& [path, why] : choice.damaged) {
      const std::string aside = path + ".damaged";
      std::error_code ec;
      fs::rename(path, aside, ec);
      std::fprintf(stderr, "cohort train: checkpoint %s is damaged (%s); set aside as %s%s\n",
                   path.c_str(), why.c_str(), aside.c_str(),
                   ec ? (" -- the rename failed: " + ec.message()).c_str() : "");
    }
    const core::io::CheckpointData data = core::io::read_checkpoint(*choice.good);
    return {true, data.integers.at("step")};
  }
  if (!choice.damaged.empty()) {
    std::string message = fmt::format(
        "train: no checkpoint in {} reads back whole, so the run cannot resume; refusing to start "
        "afresh over them. Move them away, or set checkpoint.resume=false to start anew:",
        out_dir);
    for (const auto& [path, why] : choice.damaged)
      message += fmt::format("\n  {}: {}", path, why);
    COHORT_FAIL(message);
  }
  // An older run directory: one regular checkpoint.h5 (not a link).
  const fs::path link = checkpoint_link(out_dir);
  std::error_code ec;
  if (fs::is_regular_file(fs::symlink_status(link, ec))) return {true, -1};
  return {};
}

std::string resume_path(const std::string& out_dir, const ResumePoint& point) {
  return point.step >= 0 ? checkpoint_path(out_dir, point.step) : checkpoint_link(out_dir);
}

void publish_checkpoint(const std::string& out_dir, const std::string& path, int keep_last) {
  // A new link under a temporary name renamed over the old one: readers see the
  // old target or the new one, never no checkpoint.h5.
  const fs::path link = checkpoint_link(out_dir);
  const fs::path temporary = link.string() + fmt::format(".link-{}", ::getpid());
  std::error_code ec;
  fs::remove(temporary, ec);
  fs::create_symlink(fs::path(path).filename(), temporary, ec);
  COHORT_CHECK(
      !ec, fmt::format("train: cannot create the link {}: {}", temporary.string(), ec.message()));
  fs::rename(temporary, link, ec);
  COHORT_CHECK(!ec,
               fmt::format("train: cannot point {} at {}: {}", link.string(), path, ec.message()));
  core::io::prune_checkpoints(out_dir, kStem, keep_last);
}

}  // namespace cohort::launch
