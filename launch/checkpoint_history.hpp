#pragma once
// The checkpoints of a `cohort train` run directory:
//
//   out_dir/checkpoint-<step>.h5   one per save (8-digit step), each written
//                                  atomically; the newest checkpoint.keep_last kept
//   out_dir/checkpoint.h5          a symbolic link to the newest, replaced
//                                  atomically after each save (what users, job
//                                  scripts and `cohort eval` open)
//
// Keeping more than one means a damaged newest file (a failing disk, a copy torn
// by a full quota, a bit flip the checksums catch) costs the steps since the one
// before it, not the run: resuming takes the newest checkpoint that reads back
// whole, and renames each newer damaged one to "<name>.damaged" (kept for a
// post-mortem, and out of the way of pruning and later resumes). When checkpoints
// exist but none is good, resuming refuses to start afresh over them.
#include <cstdint>
#include <string>

namespace cohort::launch {

std::string checkpoint_path(const std::string& out_dir, int64_t step);
std::string checkpoint_link(const std::string& out_dir);

struct ResumePoint {
  bool found = false;
  // The step of checkpoint-<step>.h5, or -1 for a run directory of an older
  // cohort holding one regular checkpoint.h5.
  int64_t step = -1;
};

// Looks for the checkpoint to resume from (call on one rank; others follow its
// answer, see resume_path). Throws, naming every file and why, when checkpoints
// exist and none of them is good.
ResumePoint find_resume_checkpoint(const std::string& out_dir);
std::string resume_path(const std::string& out_dir, const ResumePoint& point);

// A run that must not resume (checkpoint.resume=false) refuses a directory that
// already holds checkpoints: it would train over them and prune them away.
void check_fresh_start(const std::string& out_dir);

// After `path` (checkpoint_path of a step) is written: points checkpoint.h5 at it
// and deletes all but the newest `keep_last` checkpoint files up to its step.
// Failures are reported as warnings: the checkpoint itself is complete.
void publish_checkpoint(const std::string& out_dir, const std::string& path, int keep_last);

// checkpoint.keep_best: out_dir/checkpoint-best.h5 holds the training state at
// the best evaluation so far by one metric, and out_dir/best.json says which:
//   {"metric": "eval_miou", "value": 0.4132, "step": 1200}
// Each is written atomically: the new record marked "pending" first, then the
// checkpoint, then the record without the mark. A run that ends in between
// leaves a record at least as good as the checkpoint, so a later, worse
// evaluation never replaces a better checkpoint. Neither file is a
// checkpoint-<step> file: pruning and resuming never touch them; a fresh start
// (checkpoint.resume=false) refuses a directory holding checkpoint-best.h5. A
// record from steps a resumed run repeats is kept: it names a real state with
// its real evaluation.
std::string best_checkpoint_path(const std::string& out_dir);

struct BestEvaluation {
  bool found = false;
  int64_t step = -1;
  double value = 0;
};
// What best.json holds for `metric` (not found: no file, or another metric's).
// Throws, naming the file, when it cannot be read as written.
BestEvaluation read_best_evaluation(const std::string& out_dir, const std::string& metric);
void write_best_evaluation(const std::string& out_dir, const std::string& metric, int64_t step,
                           double value, bool pending = false);
// Whether `value` of `metric` beats `best`: higher accuracy and mIoU, lower depth
// errors; a NaN never does.
bool improves(const std::string& metric, double value, const BestEvaluation& best);

}  // namespace cohort::launch
