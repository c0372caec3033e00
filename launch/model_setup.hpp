#pragma once
// What `cohort train` and `cohort eval` build alike from a TrainConfig: the
// model's graph nodes, the checks that a shard set fits the model, the
// augmentation of training and evaluation, and the loader options of a rank.
// Both commands must agree on all of it, or a checkpoint would be evaluated on
// other inputs than it was trained on.
#include <map>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "core/nn/graph.hpp"
#include "data/loader.hpp"
#include "launch/train_config.hpp"

namespace cohort::launch {

// The ranks of a data-parallel run: `grads` carries gradients and parameters on
// the training device (NCCL on GPUs), `control` small host-side agreements (MPI
// on the CPU). Both null: a single process.
struct TrainRanks {
  comm::Communicator* grads = nullptr;
  comm::Communicator* control = nullptr;
};

int rank_of(const TrainRanks& ranks);
int world_of(const TrainRanks& ranks);

// Element-wise sum over the ranks in one host collective on the control
// communicator (never a device sync); alone, the values themselves.
std::vector<int64_t> sum_over_ranks(const TrainRanks& ranks, const std::vector<int64_t>& values);
std::vector<double> sum_over_ranks(const TrainRanks& ranks, const std::vector<double>& values);
int64_t sum_over_ranks(const TrainRanks& ranks, int64_t value);

// run.dtype: "f32" | "bf16" | "f16".
core::DType compute_dtype(const TrainConfig& config);

// The nodes callers use. Inputs are "image" and "label" (+ "depth",
// "depth_valid" for multi-task).
struct ModelNodes {
  core::nn::NodeId logits = -1, loss = -1;
  bool dense = false;           // per-pixel labels (segmentation) or one class per image
  core::nn::NodeId depth = -1;  // multi-task: the depth prediction
  core::nn::NodeId seg_loss = -1, depth_loss = -1;  // multi-task: the balanced task losses
};

// Adds model.kind's network (and loss) to `graph`, for images of `in_channels`.
ModelNodes add_model(core::nn::Graph& graph, const TrainConfig& config, int64_t in_channels);

// Throws unless `set` suits the model: its kind (classification, segmentation,
// multitask for the depth head) and its class count.
void check_set_fits(const TrainConfig& config, const data::ShardSet& set, bool dense);

// Training or evaluation augmentation for `set` (checked with check_set_fits).
data::AugmentOptions augment_for(const TrainConfig& config, const data::ShardSet& set, bool train,
                                 bool dense);

// A rank's loader options for `set` (batch: the global data.batch over the
// ranks; images in the compute dtype's storage, labels i32, on `device`).
data::LoaderOptions loader_options(const TrainConfig& config, const data::ShardSet& set,
                                   const TrainRanks& ranks, core::Device device, bool train,
                                   bool dense);

// Multi-task inputs: depth and its validity as [N, H, W, 1], like the prediction.
void add_depth_inputs(const data::Batch& batch, std::map<std::string, core::Tensor>& inputs);

}  // namespace cohort::launch
