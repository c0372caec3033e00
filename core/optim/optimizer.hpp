#pragma once
// Optimizers over a graph's flat parameter and gradient buffers: SGD (momentum,
// Nesterov, weight decay) and AdamW, with parameter groups chosen by name prefix
// (their own LR multiplier and weight decay) and optional no-decay for biases and
// BatchNorm parameters. Frozen parameters are neither updated nor decayed.
// State lives in flat f32 buffers parallel to the parameters, and is exported per
// parameter name so checkpoints do not depend on the layout or the world size.
//
// Sharded (ZeRO, comm/zero.hpp): with OptimizerConfig::shard_count >= 0 the
// optimizer owns only the flat elements [shard_offset, shard_offset + shard_count):
// its state buffers have shard_count elements, its segments are clipped to the
// shard and counted from its start, and it updates only those elements. A
// sharded optimizer's state() holds only what the shard owns (see state()); a
// world-size independent checkpoint gathers the whole state to one rank first
// (ZeroDataParallel::gather_optimizer_state).
#include <map>
#include <optional>
#include <string>
#include <utility>
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
  // Sharding: update and keep state for the flat elements [shard_offset,
  // shard_offset + shard_count) only. shard_count < 0: every parameter (unsharded).
  int64_t shard_offset = 0;
  int64_t shard_count = -1;
};

class Optimizer {
 public:
  Optimizer(nn::Graph& graph, const OptimizerConfig& config);

  // One update with learning rate `lr` (before group multipliers). `skip`: optional
  // 1-element device flag; nonzero makes the step a no-op (fp16 overflow).
  // A step skipped on the device changes nothing, its count included (see
  // steps()).
  // Unsharded, it updates the graph's flat buffers and refreshes the 16-bit compute
  // weights. Sharded, it updates the shard's elements of the graph's flat buffers
  // and does not refresh them: the caller all-gathers the parameters first.
  void step(Context& ctx, double lr, const Tensor& skip = {});
  // The same with the learning rate already on the device (f32 [1]): nothing in
  // the step then comes from the host (a captured CUDA graph replays it).
  void step(Context& ctx, const Tensor& lr, const Tensor& skip = {});
  // Sharded update on caller-owned buffers (ZeRO-2 keeps only the shard's
  // gradient, ZeRO-3 also only its parameters): `params` and `grads` are f32 with
  // shard_count() elements, element i being flat element shard_offset() + i. No
  // compute-weight refresh.
  void step_shard(Context& ctx, double lr, Tensor& params, const Tensor& grads,
                  const Tensor& skip = {});
  void step_shard(Context& ctx, const Tensor& lr, Tensor& params, const Tensor& grads,
                  const Tensor& skip = {});

  // Updates applied so far: steps skipped on the device (fp16 overflow) are not
  // counted, as PyTorch's GradScaler does not call step() for them. The count
  // lives on the device (AdamW's bias correction and SGD's first step read it
  // there); reading it waits for `stream`, where the updates were queued.
  int64_t steps(StreamHandle stream = nullptr) const;
  const OptimizerConfig& config() const { return m_config; }
  bool sharded() const { return m_config.shard_count >= 0; }
  int64_t shard_offset() const { return m_shard_offset; }
  int64_t shard_count() const { return m_shard_count; }
  // State by name: "<buffer>/<param name>" views (e.g. "momentum/fc.weight") plus
  // nothing else; `steps` is saved by the trainer as an integer. Sharded: only the
  // parameters that overlap the shard; one wholly inside it is a view with its
  // shape, one the shard cuts is a 1-D view of the owned elements, which are
  // elements owned_range(p) of the parameter (row-major). A per-rank checkpoint
  // stores each entry with that range; any world size can then reassemble it.
  std::map<std::string, Tensor> state();
  // Elements [first, second) of `p` (counted within the parameter) that this
  // optimizer owns; the whole parameter when unsharded, {0, 0} when none.
  std::pair<int64_t, int64_t> owned_range(const nn::Parameter& p) const;
  // The flat state buffers by name ("momentum", or "exp_avg" and "exp_avg_sq"),
  // shard_count() elements each (memory reports, gathering a sharded state).
  std::vector<std::pair<std::string, Tensor>> state_buffers() const;
  // Restores the count (checkpoint load), ordered on `stream`.
  void set_steps(int64_t steps, StreamHandle stream = nullptr);
  // Segments for the current trainable set (rebuilt when parameters are frozen or
  // unfrozen, since each step reads `trainable`), counted from shard_offset()
  // (the flat offsets when unsharded); lr_scale is the group's multiplier.
  std::vector<UpdateSegment> segments() const;

 private:
  void update(Context& ctx, const Tensor& lr, Tensor& params, const Tensor& grads,
              const Tensor& skip);
  // `lr` in the device's learning-rate slot (a fill queued on ctx's stream).
  const Tensor& lr_on_device(Context& ctx, double lr);

  nn::Graph& m_graph;
  OptimizerConfig m_config;
  int64_t m_shard_offset = 0, m_shard_count = 0;
  Tensor m_buf1, m_buf2;  // SGD: momentum; AdamW: exp_avg, exp_avg_sq
  Tensor m_applied;       // i64 [1] on the device: updates applied (kernels.hpp)
  Tensor m_lr;            // f32 [1] on the device: step(double)'s learning rate
};

}  // namespace cohort::core::optim
