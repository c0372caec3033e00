#pragma once
// One optimisation step exactly as `cohort train` runs it, shared with
// `cohort bench train` so that the benchmark times the trainer's own step:
// forward (training mode) -> backward from the loss (scaled for fp16) with the
// engine's gradient reductions -> unscale -> optimizer step -> loss-scaler update.
// No host read: every value stays on the device.
#include <map>
#include <string>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "core/optim/loss_scaler.hpp"
#include "data/loader.hpp"
#include "launch/engine.hpp"
#include "launch/model_setup.hpp"

namespace cohort::launch {

// The graph inputs of `batch` for the model of `nodes`: the image in `compute`
// dtype, per-pixel labels or class ids, and depth + validity for a depth head.
std::map<std::string, core::Tensor> step_inputs(core::Context& ctx, const data::Batch& batch,
                                                const ModelNodes& nodes, core::DType compute);

// Multi-task models also keep their task losses (for the log lines).
void run_train_step(core::Context& ctx, core::nn::Graph& graph, const ModelNodes& nodes,
                    TrainingEngine& engine, core::optim::LossScaler& scaler,
                    const std::map<std::string, core::Tensor>& inputs, double lr);

}  // namespace cohort::launch
