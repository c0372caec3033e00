#pragma once
// Optimizers over a graph's flat parameter and gradient buffers: SGD (momentum,
// Nesterov, weight decay) and AdamW, with parameter groups chosen by name prefix
// (their own LR multiplier and weight decay) and optional no-decay for biases and
// BatchNorm parameters. Frozen parameters are neither updated nor decayed.
// State lives in flat f32 buffers parallel to the parameters, and is exported per
// parameter name so checkpoints do not depend on the layout or the world size.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/nn/graph.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::core::optim {

struct ParamGroup {
  std::string prefix;  // parameters whose name starts with this ("" = all)
  double lr_mult = 1.0;
  std::optional<double> weight_decay;  // overrides the optimizer's
};

struct OptimizerConfig {
  std::string kind = "sgd";  // "sgd" | "adamw"
  double weight_decay = 0.0;
  bool no_decay_bias_bn = true;  // no weight decay on biases and BatchNorm parameters
  // SGD
  double momentum = 0.9;
  double dampening = 0.0;
  bool nesterov = false;
  // AdamW
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::vector<ParamGroup> groups;  // first matching prefix wins
};

class Optimizer {
 public:
  Optimizer(nn::Graph& graph, const OptimizerConfig& config);

  // One update with learning rate `lr` (before group multipliers). `skip`: optional
  // 1-element device flag; nonzero makes the step a no-op (fp16 overflow).
  // Steps that are skipped on the device still count here; the loss scaler tells
  // the trainer whether to count them.
  void step(Context& ctx, double lr, const Tensor& skip = {});

  int64_t steps() const { return m_steps; }
  const OptimizerConfig& config() const { return m_config; }
  // State by name: "<kind>/<buffer>/<param name>" views plus nothing else; `steps`
  // is saved by the trainer as an integer.
  std::map<std::string, Tensor> state();
  void set_steps(int64_t steps) { m_steps = steps; }
  // Segments for the current trainable set (rebuilt when parameters are frozen or
  // unfrozen, since each step reads `trainable`).
  std::vector<UpdateSegment> segments(double lr) const;

 private:
  nn::Graph& m_graph;
  OptimizerConfig m_config;
  Tensor m_buf1, m_buf2;  // SGD: momentum; AdamW: exp_avg, exp_avg_sq
  int64_t m_steps = 0;
};

}  // namespace cohort::core::optim
