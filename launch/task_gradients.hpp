#pragma once
// Multi-task balancing that needs each task's own gradient (loss.balancing pcgrad
// and gradnorm): after the step's forward, one backward per task loss, each
// reduced by the engine like a whole step's (data parallelism all-reduces it,
// ZeRO-2/3 reduce-scatter it to shards), then the task gradients are combined
// in place of engine.gradients():
//
//   pcgrad    on the parameters every task uses, sum_t w_t g_t with each
//             weighted task gradient projected off the others it conflicts with
//             (ops::pcgrad_coefficients); elsewhere plain sum_t w_t g_t. w: the
//             fixed loss.weights.
//   gradnorm  sum_t w_t g_t with GradNorm's weights; after the optimizer step the
//             weights move (ops::gradnorm_update) so that the tasks' gradient
//             norms on one shared layer follow their relative training rates.
//
// Everything the combination needs comes from the reduced gradients, so ranks and
// shards change nothing: every rank forms the Gram matrix of the task gradients
// over its part of the flat parameters (its shard, or an even slice of the
// replicated gradients) and one all-reduce of T*T (+ T + 1 losses for gradnorm)
// floats sums the parts. The step therefore equals one process on the whole
// batch, as plain data parallelism does.
//
// Costs: T backwards from one forward (the saved tensors are kept until the last),
// T gradient reductions, T - 1 gradient-sized buffers (shard-sized at ZeRO-2/3),
// one small all-reduce per step.
#include <memory>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"
#include "core/ops/ops.hpp"
#include "launch/engine.hpp"
#include "launch/model_setup.hpp"

namespace cohort::launch {

struct TaskGradientSettings {
  core::nn::LossBalancingMethod method = core::nn::LossBalancingMethod::pcgrad;
  core::ops::GradNormArgs gradnorm;
  std::string gradnorm_layer;  // node name; empty: the last shared layer with a weight matrix
};

class TaskGradients {
 public:
  // tasks: the task loss nodes (backward starts from each alone); balanced: the
  // WeightedLossSum node over them (fixed weights for pcgrad, GradNorm's buffers).
  TaskGradients(core::Context& ctx, core::nn::Graph& graph, std::vector<core::nn::NodeId> tasks,
                core::nn::NodeId balanced, TrainingEngine& engine,
                const TaskGradientSettings& settings);
  TaskGradients(const TaskGradients&) = delete;
  TaskGradients& operator=(const TaskGradients&) = delete;

  // After the forward of the step (one micro-batch): backward from each task
  // loss seeded with `seed` (the fp16 loss scale; undefined = 1), between
  // engine.prepare() and engine.finish(), and the combination into
  // engine.gradients().
  void backward(core::Context& ctx, const core::Tensor& seed);
  // GradNorm, after the optimizer step (whose skip flag is then the same on every
  // rank): moves the weights. scale: the loss scale the task gradients carry
  // (undefined = 1). A no-op for pcgrad.
  void after_step(core::Context& ctx, const core::Tensor& scale, const core::Tensor& skip);

  // The step's gradient communication that backward did not hide: one
  // measurement per task pass (TrainingEngine::exposed_comm_seconds), summed.
  // Call once per step instead of the engine's.
  double exposed_comm_seconds();

  // The node whose parameters GradNorm compares (empty for pcgrad), and how many
  // parameters are shared by every task.
  const std::string& gradnorm_layer() const { return m_gradnorm_layer; }
  int64_t shared_parameters() const { return m_shared_parameters; }

 private:
  core::nn::Graph& m_graph;
  TrainingEngine& m_engine;
  std::vector<core::nn::NodeId> m_tasks;
  core::nn::WeightedLossSum* m_weights = nullptr;
  TaskGradientSettings m_settings;
  std::string m_gradnorm_layer;
  int64_t m_shared_parameters = 0;
  core::Tensor m_mask;  // u8 over engine.gradients(): bit 0 shared, bit 1 GradNorm's
  int64_t m_gram_begin = 0, m_gram_end = 0;  // this rank's part of engine.gradients() for the Gram
  std::vector<core::Tensor> m_saved;         // tasks 0 .. T-2's reduced gradients
  // gradnorm: this step's Gram matrix over its layer, then the task loss sums and
  // the rank count, summed over the ranks (made once; pending until after_step).
  core::Tensor m_reduced;
  bool m_update_pending = false;
};

// What a `cohort train` config asks for: per-task gradients for loss.balancing
// pcgrad or gradnorm (loss.gradnorm_*) on the multi-task model of `nodes`;
// nullptr for every other model and balancing.
std::unique_ptr<TaskGradients> make_task_gradients(core::Context& ctx, core::nn::Graph& graph,
                                                   const ModelNodes& nodes, TrainingEngine& engine,
                                                   const TrainConfig& config);

}  // namespace cohort::launch
