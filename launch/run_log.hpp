#pragma once
// What `cohort train` records about a run (rank 0 only), in its out_dir:
//
//   metrics.jsonl            one JSON object per record: {"step": 10, "loss": ...}
//   events.out.tfevents.*    the same numbers as TensorBoard scalars, one file per
//                            invocation (log.tensorboard; `tensorboard --logdir
//                            out_dir`): "train/<name>", and "eval/<name>" for the
//                            names that start with "eval_"
//
// A run starting at step s (the step of the checkpoint it resumed from, 0 for a
// fresh start) continues both: records of steps after s, left by a run that died
// after its last checkpoint (or before its first), are removed from metrics.jsonl
// (rewritten atomically; a torn last line goes too) and TensorBoard is told to
// drop them (a SessionLog START at s + 1), so each step shows once, with the
// values of the run that continued.
//
// Logging never ends a training run: a failed write is reported on stderr and
// that output is given up; the checkpoints are what must not be lost.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace cohort::core::io {
class TensorBoardWriter;
}

namespace cohort::launch {

// One named number, or a few (written as a JSON array; TensorBoard gets one
// scalar per element, named by `parts`).
struct Metric {
  std::string name;
  std::vector<double> values;
  std::vector<std::string> parts;  // for more than one value: each one's name
};

class RunLog {
 public:
  // Writes nothing when `out_dir` is empty (ranks other than 0). `start_step`:
  // the step of the checkpoint this run resumed from, 0 for a fresh start.
  RunLog(const std::string& out_dir, bool tensorboard, int64_t start_step);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  void write(int64_t step, const std::vector<Metric>& metrics);

 private:
  void give_up_jsonl(const std::string& why);
  void give_up_tensorboard(const std::string& why);

  std::FILE* m_jsonl = nullptr;
  std::string m_jsonl_path;
  std::unique_ptr<core::io::TensorBoardWriter> m_tensorboard;
};

// Every rank's own log with ranks: out_dir/logs/rank-<rank, 5 digits>.log, one
// line per logged step with what only that rank knows (its own part of the loss,
// its data wait, exposed communication and compute), appended across runs, each
// run starting with a header line. Where a straggler's time goes, and the last
// words of a rank that died. Write failures warn once and stop that log.
class RankLog {
 public:
  // Writes nothing when `out_dir` is empty.
  RankLog(const std::string& out_dir, int rank, int64_t start_step);
  ~RankLog();
  RankLog(const RankLog&) = delete;
  RankLog& operator=(const RankLog&) = delete;
  void write(const std::string& line);

 private:
  std::FILE* m_file = nullptr;
  std::string m_path;
};

// metrics.jsonl's text without the records of steps after `step` (records
// without a step are kept) and without a torn last line (no newline).
std::string metrics_up_to_step(const std::string& jsonl_text, int64_t step);

}  // namespace cohort::launch
