#pragma once
// Whole training state in one HDF5 checkpoint: parameters and buffers
// ("model/<torchvision name>"), optimizer state ("optim/<buffer>/<name>"),
// counters (step, epoch, optimizer steps), the RNG seed and offset, the loss
// scaler, and the resolved config text. Everything is stored per parameter name,
// so a checkpoint does not depend on the flat-buffer layout or the world size.
//
// Two layers: a TrainingSnapshot is that state by name, in memory, and
// write_training_snapshot / read_training_snapshot / check_training_snapshot
// move it to and from the file. save_/load_training_checkpoint build and apply
// a snapshot of one process's graph and (unsharded) optimizer;
// comm::save_/load_zero_checkpoint (comm/zero_checkpoint.hpp) build it from a
// sharded run's gathered state and apply it shard by shard. Both write the same
// file, so a checkpoint moves between them and between world sizes.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/io/checkpoint.hpp"
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

// The whole training state by name, as one file holds it.
struct TrainingSnapshot {
  std::map<std::string, Tensor> model;      // parameters and buffers ("fc.weight")
  std::map<std::string, Tensor> optimizer;  // unsharded state ("exp_avg/fc.weight")
  std::string optimizer_kind;               // OptimizerConfig::kind ("" if unknown)
  int64_t optimizer_steps = 0;
  uint64_t rng_seed = 0, rng_offset = 0;
  std::optional<optim::LossScalerState> loss_scaler;  // present when fp16 scaling was on
  TrainingProgress progress;
};

// Writes atomically (write_checkpoint). Device tensors are copied to the host
// on ctx's stream after synchronising it (the work that produced them must be
// queued there); host tensors are written as they are.
void write_training_snapshot(const std::string& path, const TrainingSnapshot& snapshot,
                             const Context& ctx);

// Reads a file written by write_training_snapshot (or save_training_checkpoint,
// any version of it): CPU tensors. Throws cohort::Error naming the file for an
// unreadable or damaged file, a missing counter, or a tensor outside model/ and
// optim/. Nothing is checked against a model here.
TrainingSnapshot read_training_snapshot(const std::string& path);

// What a load expects to find: name -> shape and dtype.
struct TensorSpec {
  Shape shape;
  DType dtype = DType::f32;
};
using TensorSpecs = std::map<std::string, TensorSpec>;

// The model entries a graph loads: every parameter (f32, its shape; valid while
// the values are released, as under ZeRO-3) and every buffer.
TensorSpecs model_specs(const nn::Graph& graph);
// The optimizer entries of the whole (unsharded) state of `optimizer` over
// `graph`: "<buffer>/<parameter>" for each state buffer and every parameter,
// f32 and the parameter's shape -- also when `optimizer` itself is sharded.
TensorSpecs optimizer_specs(const nn::Graph& graph, const optim::Optimizer& optimizer);

// Every reason why `snapshot` (read from `path`) cannot be loaded into a run
// with these entries, optimizer kind and scaler, in one cohort::Error (one
// problem per line, "model/..." and "optim/..." entries named): optimizer kind,
// missing loss-scaler state when `needs_scaler`, missing, unexpected and
// mis-shaped (or mis-typed) tensors. Returns normally when all is well.
void check_training_snapshot(const std::string& path, const TrainingSnapshot& snapshot,
                             const TensorSpecs& model, const TensorSpecs& optimizer,
                             const std::string& optimizer_kind, bool needs_scaler);

// Copies device state to the host (synchronising ctx) and writes atomically.
// The optimizer must be unsharded (a sharded one holds only its part:
// comm::save_zero_checkpoint gathers the whole state).
void save_training_checkpoint(const std::string& path, nn::Graph& graph,
                              optim::Optimizer& optimizer, const optim::LossScaler* scaler,
                              const Context& ctx, const TrainingProgress& progress);

// Restores everything save_training_checkpoint (or comm::save_zero_checkpoint,
// at any stage and world size) wrote. Every missing, unexpected or mis-shaped
// entry is reported in one error before anything is changed. Unsharded
// optimizers only (comm::load_zero_checkpoint loads into a sharded run).
TrainingProgress load_training_checkpoint(const std::string& path, nn::Graph& graph,
                                          optim::Optimizer& optimizer, optim::LossScaler* scaler,
                                          Context& ctx);

// Loads only the model ("model/..." entries) with the given strictness, e.g. a
// backbone from a classification checkpoint (fine-tuning).
void load_model_weights(const std::string& path, nn::Graph& graph, bool strict);
// The same from a checkpoint already read (e.g. for its config as well).
void load_model_weights(const CheckpointData& data, nn::Graph& graph, bool strict);

// Part of a checkpoint's model in a graph of another shape, e.g. a classification
// run's ResNet as the backbone of a fine-tuned model: checkpoint entry
// "model/<name>" goes to graph entry graph_prefix + <name>, except the names that
// start with one of skip_prefixes (the old head: "fc.").
struct ModelWeightsMapping {
  std::string graph_prefix;                // "backbone." (DeepLab), "" (same names)
  std::vector<std::string> skip_prefixes;  // checkpoint names left out ("fc.")
  bool strict = true;  // graph entries under graph_prefix, but skipped ones, must be given
};
struct ModelWeightsReport {
  int loaded = 0;
  std::vector<std::string> skipped;  // checkpoint names left out by skip_prefixes
};
// Every problem -- a checkpoint entry with no graph entry, a shape or dtype
// mismatch, a graph entry the checkpoint lacks (strict) -- is reported by name in
// one cohort::Error naming `source` (the file) before anything is written.
ModelWeightsReport load_model_weights(const CheckpointData& data, nn::Graph& graph,
                                      const ModelWeightsMapping& mapping,
                                      const std::string& source);

}  // namespace cohort::core::io
