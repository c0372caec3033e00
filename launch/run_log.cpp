#include "launch/run_log.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/io/atomic_file.hpp"
#include "core/io/tensorboard_events.hpp"

namespace cohort::launch {
namespace {

std::string json_number(double v) {
  return std::isfinite(v) ? fmt::format("{:.6g}", v) : "null";
}

std::string tensorboard_tag(const std::string& name) {
  constexpr std::string_view kEval = "eval_";
  if (name.starts_with(kEval)) return "eval/" + name.substr(kEval.size());
  return "train/" + name;
}

// The step of a metrics.jsonl line, or -1 when it has none.
int64_t step_of(const std::string& line) {
  const size_t at = line.find("\"step\":");
  if (at == std::string::npos) return -1;
  const char* digits = line.c_str() + at + std::strlen("\"step\":");
  char* end = nullptr;
  const long long step = std::strtoll(digits, &end, 10);
  return end == digits ? -1 : step;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string metrics_up_to_step(const std::string& jsonl_text, int64_t step) {
  std::string kept;
  size_t begin = 0;
  while (begin < jsonl_text.size()) {
    const size_t end = jsonl_text.find('\n', begin);
    // A last line without its newline was torn by a kill or a full disk.
    if (end == std::string::npos) break;
    const std::string line = jsonl_text.substr(begin, end - begin);
    if (step_of(line) <= step) kept += line + "\n";
    begin = end + 1;
  }
  return kept;
}

RunLog::RunLog(const std::string& out_dir, bool tensorboard, int64_t start_step) {
  if (out_dir.empty()) return;
  m_jsonl_path = (std::filesystem::path(out_dir) / "metrics.jsonl").string();
  try {
    if (std::filesystem::exists(m_jsonl_path)) {
      const std::string text = read_text(m_jsonl_path);
      const std::string kept = metrics_up_to_step(text, start_step);
      if (kept.size() != text.size())
        core::io::write_file_atomically(m_jsonl_path, kept.data(), kept.size());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "cohort train: warning: %s; %s keeps records of steps after %lld\n",
                 e.what(), m_jsonl_path.c_str(), static_cast<long long>(start_step));
  }
  m_jsonl = std::fopen(m_jsonl_path.c_str(), "a");
  if (m_jsonl == nullptr)
    std::fprintf(stderr, "cohort train: warning: cannot append to %s: %s; no metrics records\n",
                 m_jsonl_path.c_str(), std::strerror(errno));
  if (!tensorboard) return;
  try {
    m_tensorboard = std::make_unique<core::io::TensorBoardWriter>(out_dir);
    m_tensorboard->add_session_start(start_step + 1);
  } catch (const Error& e) {
    give_up_tensorboard(e.what());
  }
}

RunLog::~RunLog() {
  if (m_jsonl != nullptr) std::fclose(m_jsonl);
}

void RunLog::write(int64_t step, const std::vector<Metric>& metrics) {
  if (m_jsonl != nullptr) {
    std::string line = fmt::format(R"({{"step": {})", step);
    for (const Metric& m : metrics) {
      std::vector<std::string> numbers;
      for (double v : m.values)
        numbers.push_back(json_number(v));
      line += fmt::format(
          R"(, "{}": {})", m.name,
          m.values.size() == 1 ? numbers.front() : fmt::format("[{}]", fmt::join(numbers, ", ")));
    }
    line += "}\n";
    // Flushed per record: a killed run keeps what it logged.
    if (std::fputs(line.c_str(), m_jsonl) < 0 || std::fflush(m_jsonl) != 0)
      give_up_jsonl(std::strerror(errno));
  }
  if (m_tensorboard != nullptr) {
    std::vector<core::io::Scalar> scalars;
    for (const Metric& m : metrics) {
      if (m.name == "epoch") continue;  // a position, not a measurement
      for (size_t i = 0; i < m.values.size(); ++i) {
        const std::string tag = tensorboard_tag(m.name);
        scalars.push_back({m.values.size() == 1 ? tag : tag + "/" + m.parts.at(i), m.values[i]});
      }
    }
    try {
      m_tensorboard->add_scalars(step, scalars);
    } catch (const Error& e) {
      give_up_tensorboard(e.what());
    }
  }
}

void RunLog::give_up_jsonl(const std::string& why) {
  std::fprintf(stderr, "cohort train: warning: cannot write %s: %s; no more records go there\n",
               m_jsonl_path.c_str(), why.c_str());
  std::fclose(m_jsonl);
  m_jsonl = nullptr;
}

void RunLog::give_up_tensorboard(const std::string& why) {
  std::fprintf(stderr, "cohort train: warning: %s; no more TensorBoard records this run\n",
               why.c_str());
  m_tensorboard.reset();
}

RankLog::RankLog(const std::string& out_dir, int rank, int64_t start_step) {
  if (out_dir.empty()) return;
  const std::filesystem::path dir = std::filesystem::path(out_dir) / "logs";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // every rank: out_dir may be node-local
  m_path = (dir / fmt::format("rank-{:05d}.log", rank)).string();
  m_file = std::fopen(m_path.c_str(), "a");
  if (m_file == nullptr) {
    std::fprintf(stderr, "cohort train: warning: rank %d cannot append to %s: %s\n", rank,
                 m_path.c_str(), std::strerror(errno));
    return;
  }
  const std::time_t now = std::time(nullptr);
  char when[64] = {};
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  write(
      fmt::format("--- rank {} starts at step {} ({}, pid {})", rank, start_step, when, getpid()));
}

RankLog::~RankLog() {
  if (m_file != nullptr) std::fclose(m_file);
}

void RankLog::write(const std::string& line) {
  if (m_file == nullptr) return;
  if (std::fputs((line + "\n").c_str(), m_file) < 0 || std::fflush(m_file) != 0) {
    std::fprintf(stderr, "cohort train: warning: cannot write %s: %s; no more records go there\n",
                 m_path.c_str(), std::strerror(errno));
    std::fclose(m_file);
    m_file = nullptr;
  }
}

}  // namespace cohort::launch
