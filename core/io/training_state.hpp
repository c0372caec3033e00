#pragma once
// Whole training state in one HDF5 checkpoint: parameters and buffers
// ("model/<torchvision name>"), optimizer state ("optim/<buffer>/<name>"),
// counters (step, epoch, optimizer steps), the RNG seed and offset, the loss
// scaler, and the resolved config text. Everything is stored per parameter name,
// so a checkpoint does not depend on the flat-buffer layout or the world size.
#include <cstdint>
#include <string>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/optim/optimizer.hpp"

namespace cohort::core::io {

struct TrainingProgress {
  int64_t step = 0;  // optimizer steps taken
  int64_t epoch = 0;
  int64_t sample_in_epoch = 0;  // loader position within the epoch
  std::string config;           // resolved configuration (YAML text)
};

// Copies device state to the host (synchronising ctx) and writes atomically.
void save_training_checkpoint(const std::string& path, nn::Graph& graph,
                              optim::Optimizer& optimizer, const optim::LossScaler* scaler,
                              const Context& ctx, const TrainingProgress& progress);

// Restores everything save_training_checkpoint wrote. Every missing, unexpected
// or mis-shaped entry is reported in one error before anything is changed.
TrainingProgress load_training_checkpoint(const std::string& path, nn::Graph& graph,
                                          optim::Optimizer& optimizer, optim::LossScaler* scaler,
                                          Context& ctx);

// Loads only the model ("model/..." entries) with the given strictness, e.g. a
// backbone from a classification checkpoint (fine-tuning).
void load_model_weights(const std::string& path, nn::Graph& graph, bool strict);

}  // namespace cohort::core::io
