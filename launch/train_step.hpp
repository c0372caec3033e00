#pragma once
// One optimisation step exactly as `cohort train` runs it, shared with
// `cohort bench train` so that the benchmark times the trainer's own step:
// for each micro-batch, forward (training mode) and backward from the loss
// (scaled for fp16, divided by the micro-batch count) with the engine's
// gradient reductions; then unscale, clip, optimizer step, loss-scaler update.
// No host read: every value stays on the device.
#include <map>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/stream_interval.hpp"
#include "data/loader.hpp"
#include "launch/engine.hpp"
#include "launch/model_setup.hpp"
#include "launch/task_gradients.hpp"

namespace cohort::launch {

using StepInputs = std::map<std::string, core::Tensor>;

// The graph inputs of `batch` for the model of `nodes`, split along the batch
// into `micro_batches` equal parts (views; the batch size must divide): the image
// in `compute` dtype, per-pixel labels or class ids, depth + validity for a
// depth head.
std::vector<StepInputs> step_inputs(core::Context& ctx, const data::Batch& batch,
                                    const ModelNodes& nodes, core::DType compute,
                                    int micro_batches = 1);

struct StepSettings {
  double lr = 0;
  double grad_clip_norm = 0;  // > 0: clip the global gradient norm to this
  // Losses over valid elements (cross entropy with an ignore label, masked
  // regression) average over the whole global batch, every micro-batch of
  // every rank, not over each micro-batch alone: the step is then the same
  // however the batch is split (loss.normalize: global). Costs, with ranks, one
  // all-reduce per step of one float per such loss (two for multi-task);
  // nothing with one rank and one micro-batch.
  bool whole_batch_mean = true;
  // loss.balancing pcgrad | gradnorm: one backward per task and their combination
  // (one micro-batch only); nullptr: one backward from the model's loss.
  TaskGradients* task_gradients = nullptr;
};

// The step's losses as device scalars (f32 [1]), means over its micro-batches;
// seg and depth only for multi-task models. Read them only when logging. With
// whole-batch means over ranks, a rank's value is its part of the global mean
// times the rank count (their average over the ranks is the global mean).
struct StepLosses {
  core::Tensor loss, seg, depth;
};

// The device time of a step's phases, measured without synchronising (read once
// the step has completed): forward (with the loss), backward (with the engine's
// gradient reductions), update (unscale, clip, optimizer, scaler). Measured for
// steps of one micro-batch only (with several, forwards and backwards interleave).
struct StepPhases {
  explicit StepPhases(core::Device device) : forward(device), backward(device), update(device) {}
  core::StreamInterval forward, backward, update;
};

StepLosses run_train_step(core::Context& ctx, core::nn::Graph& graph, const ModelNodes& nodes,
                          TrainingEngine& engine, core::optim::LossScaler& scaler,
                          const std::vector<StepInputs>& micro_batches,
                          const StepSettings& settings, StepPhases* phases = nullptr);

}  // namespace cohort::launch
