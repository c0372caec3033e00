#include "launch/checkpoint_history.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/io/atomic_file.hpp"
#include "core/io/checkpoint.hpp"

namespace cohort::launch {
namespace {

namespace fs = std::filesystem;
constexpr const char* kStem = "checkpoint";

// The step in "checkpoint-<step>.h5" (list_checkpoints only returns such names).
int64_t step_of(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  const size_t begin = std::string(kStem).size() + 1, end = name.size() - 3;
  int64_t step = -1;
  std::from_chars(name.data() + begin, name.data() + end, step);
  return step;
}

// Makes a rename in `dir` durable: without it a crash may bring back the old entry.
void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// checkpoint.h5 -> `path`: a new link under a temporary name renamed over the old
// one, so readers see the old target or the new one, never no checkpoint.h5.
void point_link(const std::string& out_dir, const std::string& path) {
  const fs::path link = checkpoint_link(out_dir);
  const fs::path temporary = link.string() + fmt::format(".link-{}", ::getpid());
  std::error_code ec;
  fs::remove(temporary, ec);
  fs::create_symlink(fs::path(path).filename(), temporary, ec);
  COHORT_CHECK(!ec, fmt::format("cannot create the link {}: {}", temporary.string(), ec.message()));
  fs::rename(temporary, link, ec);
  COHORT_CHECK(!ec, fmt::format("cannot point {} at {}: {}", link.string(), path, ec.message()));
  sync_directory(out_dir);
}

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
    if (!choice.damaged.empty()) {
      for (const auto& [path, why] : choice.damaged) {
        const std::string aside = path + ".damaged";
        std::error_code ec;
        fs::rename(path, aside, ec);
        std::fprintf(stderr, "cohort train: checkpoint %s is damaged (%s); set aside as %s%s\n",
                     path.c_str(), why.c_str(), aside.c_str(),
                     ec ? (" -- the rename failed: " + ec.message()).c_str() : "");
      }
      // checkpoint.h5 named the damaged newest file; it names the good one from now on.
      point_link(out_dir, *choice.good);
    }
    return {true, step_of(*choice.good)};
  }
  if (!choice.damaged.empty()) {
    std::string message = fmt::format(
        "train: no checkpoint in {} reads back whole, so the run cannot resume; refusing to start "
        "afresh over them. Move them away (or choose another run.out_dir) to start anew:",
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

void check_fresh_start(const std::string& out_dir) {
  const std::vector<std::string> existing = core::io::list_checkpoints(out_dir, kStem);
  std::error_code ec;
  const bool older = fs::exists(fs::symlink_status(checkpoint_link(out_dir), ec));
  const bool best = fs::exists(best_checkpoint_path(out_dir), ec);
  const std::string named = !existing.empty() ? existing[0]
                            : older           ? checkpoint_link(out_dir)
                                              : best_checkpoint_path(out_dir);
  COHORT_CHECK(existing.empty() && !older && !best,
               fmt::format("train: {} already holds checkpoints ({}); starting afresh "
                           "(checkpoint.resume=false) would train over them and prune or replace "
                           "them. Choose another run.out_dir, or move them away",
                           out_dir, named));
}

std::string resume_path(const std::string& out_dir, const ResumePoint& point) {
  return point.step >= 0 ? checkpoint_path(out_dir, point.step) : checkpoint_link(out_dir);
}

void publish_checkpoint(const std::string& out_dir, const std::string& path, int keep_last) {
  // The checkpoint itself is written and complete: failing to update the link or
  // to prune (a filesystem without symbolic links, a transient NFS error) must not
  // end the job, only be reported.
  try {
    point_link(out_dir, path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cohort train: warning: %s (the checkpoint %s is complete)\n", e.what(),
                 path.c_str());
  }
  // Keeps the newest keep_last at or below this step: files of higher steps (a
  // damaged one that could not be set aside) never push out the one just written.
  const int64_t step = step_of(path);
  int kept = 0;
  for (const std::string& p : core::io::list_checkpoints(out_dir, kStem)) {
    if (step_of(p) > step) continue;
    if (++kept <= keep_last) continue;
    std::error_code ec;
    fs::remove(p, ec);
    if (ec)
      std::fprintf(stderr, "cohort train: warning: cannot remove the old checkpoint %s: %s\n",
                   p.c_str(), ec.message().c_str());
  }
}

std::string best_checkpoint_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "checkpoint-best.h5").string();
}

namespace {
std::string best_json_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "best.json").string();
}
}  // namespace

BestEvaluation read_best_evaluation(const std::string& out_dir, const std::string& metric) {
  const std::string path = best_json_path(out_dir);
  std::error_code ec;
  if (!fs::exists(path, ec)) return {};
  try {
    std::ifstream in(path);
    const nlohmann::json j = nlohmann::json::parse(in);
    if (j.at("metric").get<std::string>() != metric) return {};
    if (j.value("pending", false))
      std::fprintf(stderr,
                   "cohort train: warning: %s was being replaced when the run ended; %s holds "
                   "the evaluation of step %lld or an earlier best\n",
                   best_checkpoint_path(out_dir).c_str(), path.c_str(),
                   static_cast<long long>(j.at("step").get<int64_t>()));
    return {true, j.at("step").get<int64_t>(), j.at("value").get<double>()};
  } catch (const std::exception& e) {
    COHORT_FAIL(
        fmt::format("train: cannot read {} (written by checkpoint.keep_best): {}; move "
                    "it away to start the best-checkpoint record afresh",
                    path, e.what()));
  }
}

void write_best_evaluation(const std::string& out_dir, const std::string& metric, int64_t step,
                           double value, bool pending) {
  nlohmann::json j{{"metric", metric}, {"value", value}, {"step", step}};
  if (pending) j["pending"] = true;
  const std::string text = j.dump() + "\n";
  core::io::write_file_atomically(best_json_path(out_dir), text.data(), text.size());
}

bool improves(const std::string& metric, double value, const BestEvaluation& best) {
  if (std::isnan(value)) return false;
  if (!best.found) return true;
  const bool lower_is_better = metric.starts_with("eval_depth");
  return lower_is_better ? value < best.value : value > best.value;
}

}  // namespace cohort::launch
