#pragma once
// The optimizer side of a training step, the same for the demo and `cohort train`:
// a plain optimizer in a single process, or ZeroDataParallel at a stage (0 =
// DataParallel) across the ranks of a communicator; and the matching checkpoint
// functions (both write the same world-size-independent file).
//
//   TrainingEngine engine(graph, optimizer_config, communicator_or_null, zero_stage);
//   graph.forward(...); engine.prepare(ctx); graph.backward(...); engine.finish(ctx);
//   engine.step(ctx, lr, skip_flag);
#include <memory>
#include <string>

#include "comm/communicator.hpp"
#include "comm/zero.hpp"
#include "core/io/training_state.hpp"
#include "core/nn/graph.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/optim/optimizer.hpp"
#include "launch/train_config.hpp"

namespace cohort::launch {

class TrainingEngine {
 public:
  // Collective when `grads` is given (ZeroDataParallel broadcasts rank 0's state).
  TrainingEngine(core::nn::Graph& graph, const core::optim::OptimizerConfig& optimizer,
                 comm::Communicator* grads, int zero_stage);
  // The same with every data-parallel setting (stage, bucket size, bf16
  // gradients, SyncBatchNorm, stage-3 prefetch window); ignored alone.
  TrainingEngine(core::nn::Graph& graph, const core::optim::OptimizerConfig& optimizer,
                 comm::Communicator* grads, const comm::ZeroOptions& parallel);
  // The optimizer.* and parallel.* sections of a `cohort train` config.
  TrainingEngine(core::nn::Graph& graph, const TrainConfig& config, comm::Communicator* grads);

  // Before backward / after backward (waits for the gradient reductions).
  // Gradient accumulation: `accumulate` for every micro-batch but the first (pass
  // the same to Graph::backward), `last` for the step's last one (stages 0/1
  // communicate only then).
  void prepare(core::Context& ctx, bool accumulate = false, bool last = true);
  void finish(core::Context& ctx);
  // Scales the gradients so that their global L2 norm (over every rank) is at
  // most max_norm; the norm before clipping stays on the device (f32 [1]).
  // Collective with ranks.
  core::Tensor clip_grad_norm(core::Context& ctx, double max_norm);
  // The reduced gradients this rank updates from (the loss scaler's unscale).
  core::Tensor gradients();
  // Where gradients() starts in the flat parameter order: rank * S at ZeRO
  // stages 2/3 (each rank holds its S-element shard, zero past the last
  // parameter), else 0 (every rank holds all of them, the same values).
  int64_t gradient_offset() const;
  bool gradients_sharded() const;
  int rank() const;
  void step(core::Context& ctx, double lr, const core::Tensor& skip = {});
  // Gradient communication backward did not hide (0 alone; see
  // DataParallel::exposed_comm_seconds).
  double exposed_comm_seconds();
  // The ranks the gradients are averaged over (1 alone), and a sum over them of
  // small device tensors (nullptr alone): the global loss normalisers.
  int world_size() const;
  // Every parameter, flat (ZeRO-3 gathers them: collective there).
  core::Tensor full_parameters(core::Context& ctx);
  core::ops::StatsReducer* rank_sum();

  void save(const std::string& path, const core::optim::LossScaler* scaler, core::Context& ctx,
            const core::io::TrainingProgress& progress);
  core::io::TrainingProgress load(const std::string& path, core::optim::LossScaler* scaler,
                                  core::Context& ctx);

 private:
  core::nn::Graph& m_graph;
  std::unique_ptr<core::optim::Optimizer> m_optimizer;
  std::unique_ptr<comm::ZeroDataParallel> m_zero;
  comm::Communicator* m_grads = nullptr;
  std::unique_ptr<core::ops::StatsReducer> m_rank_sum;  // made on first use
};

}  // namespace cohort::launch
