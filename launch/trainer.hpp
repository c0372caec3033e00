#pragma once
// `cohort train`: one training run from a TrainConfig, alone or as the ranks of a
// data-parallel job, that survives being stopped.
//
//   - Data: the threaded loader over the config's shard sets (data::Loader), each
//     rank its part of a world-size-independent order; evaluation (if configured)
//     visits each sample once across ranks at the end.
//   - Engine: a plain optimizer alone; ZeroDataParallel at the configured stage
//     (0 = DataParallel) with ranks. Mixed precision: bf16/f16 compute with f32
//     masters; f16 with dynamic loss scaling.
//   - Checkpoints: out_dir/checkpoint-<step>.h5 (the newest checkpoint.keep_last
//     kept; out_dir/checkpoint.h5 links the newest: launch/checkpoint_history),
//     each written atomically every
//     checkpoint.every_steps, at the end, and when a stop is requested (SIGTERM,
//     SIGINT, SIGUSR1: Slurm's preemption and time-limit signals). The file holds
//     the whole training state by name (model, optimizer, step, loader position,
//     RNG, loss scaler, resolved config): it resumes at any stage and world size
//     with the same global batch. With checkpoint.resume (default) a run starts
//     from it, continuing the exact sequence of batches, so an interrupted and
//     resumed run ends with the same parameters as one that never stopped.
//   - Stopping: the ranks agree on a stop at every step boundary (one small MPI
//     all-reduce on the host, never a device sync), checkpoint together and
//     return; nothing is lost and nothing hangs.
//   - Metrics: rank 0 appends JSON lines to out_dir/metrics.jsonl (train: step,
//     epoch, loss, lr, samples/s, peak tensor memory since the last record;
//     multi-task: seg_loss, depth_loss, and with DWA the next epoch's
//     loss_weights; eval: accuracy, mIoU, depth errors), writes the same as
//     TensorBoard scalars (launch/run_log) and prints a progress line with the
//     time left at the current pace; with ranks, every rank also appends its
//     own loss and step-time breakdown to out_dir/logs/rank-<rank>.log.
#include <cstdint>
#include <string>

#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"

namespace cohort::launch {

struct TrainResult {
  int64_t steps = 0;           // optimizer steps taken in total (resumed ones included)
  int64_t steps_this_run = 0;  // by this invocation
  bool resumed = false;        // started from a checkpoint
  bool stopped = false;        // ended early on a stop request (checkpoint written)
  double final_loss = 0;       // the last logged training loss (mean over the ranks)
  double eval_accuracy = -1;   // classification accuracy, or segmentation pixel accuracy,
                               // over the whole eval set (all ranks); -1: no eval set
  // Segmentation: mean IoU over the eval set; -1: none.
  double eval_miou = -1;
  // Multi-task depth over valid pixels: mean |d - t| / t, and RMSE in metres; -1: none.
  double eval_depth_abs_rel = -1;
  double eval_depth_rmse = -1;
  double seconds = 0;
  std::string checkpoint;  // path of the last checkpoint written (or loaded)
};

// `device` is this rank's device (resolved by the caller, e.g. MpiSession).
TrainResult run_training(const TrainConfig& config, core::Device device, TrainRanks ranks = {});

// Asks a running training to stop at its next step boundary (what the signal
// handlers do; tests call it directly).
void request_training_stop();

}  // namespace cohort::launch
