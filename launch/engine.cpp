#include "launch/engine.hpp"

#include "comm/data_parallel.hpp"
#include "comm/zero_checkpoint.hpp"
#include "core/optim/kernels.hpp"

namespace cohort::launch {

TrainingEngine::TrainingEngine(core::nn::Graph& graph,
                               const core::optim::OptimizerConfig& optimizer,
                               comm::Communicator* grads, int zero_stage)
    : TrainingEngine(graph, optimizer, grads, comm::ZeroOptions{.stage = zero_stage}) {}

TrainingEngine::TrainingEngine(core::nn::Graph& graph,
                               const core::optim::OptimizerConfig& optimizer,
                               comm::Communicator* grads, const comm::ZeroOptions& parallel)
    : m_graph(graph), m_grads(grads) {
  if (grads == nullptr) {
    m_optimizer = std::make_unique<core::optim::Optimizer>(graph, optimizer);
    return;
  }
  m_zero = std::make_unique<comm::ZeroDataParallel>(graph, *grads, parallel, optimizer);
}

namespace {

core::optim::OptimizerConfig optimizer_config(const TrainConfig& c) {
  core::optim::OptimizerConfig oc;
  oc.kind = c.optimizer;
  oc.momentum = c.momentum;
  oc.nesterov = c.nesterov;
  oc.weight_decay = c.weight_decay;
  return oc;
}

comm::ZeroOptions parallel_options(const TrainConfig& c) {
  comm::ZeroOptions parallel;
  parallel.stage = c.zero_stage;
  parallel.bucket_bytes = static_cast<size_t>(c.bucket_mib * (1 << 20));
  parallel.bf16_gradients = c.bf16_gradients;
  parallel.sync_batch_norm = c.sync_batch_norm;
  parallel.prefetch_bytes = static_cast<size_t>(c.prefetch_mib * (1 << 20));
  return parallel;
}

}  // namespace

TrainingEngine::TrainingEngine(core::nn::Graph& graph, const TrainConfig& config,
                               comm::Communicator* grads)
    : TrainingEngine(graph, optimizer_config(config), grads, parallel_options(config)) {}

void TrainingEngine::prepare(core::Context& ctx, bool accumulate, bool last) {
  if (m_zero) m_zero->prepare_backward(ctx, accumulate, last);
}

core::Tensor TrainingEngine::clip_grad_norm(core::Context& ctx, double max_norm) {
  if (m_zero) return m_zero->clip_grad_norm(ctx, max_norm);
  core::Tensor& grads = m_graph.flat_grads();
  return core::optim::clip_to_max_norm(ctx, grads, core::optim::sum_of_squares(ctx, grads),
                                       max_norm);
}

void TrainingEngine::finish(core::Context& ctx) {
  if (m_zero) m_zero->finish_backward(ctx);
}

core::Tensor TrainingEngine::gradients() {
  if (m_zero && m_zero->stage() >= 2) return m_zero->gradient_shard();
  return m_graph.flat_grads();
}

bool TrainingEngine::gradients_sharded() const {
  return m_zero && m_zero->stage() >= 2;
}

int64_t TrainingEngine::gradient_offset() const {
  return gradients_sharded() ? m_zero->layout().shard_size * m_zero->rank() : 0;
}

int TrainingEngine::rank() const {
  return m_grads != nullptr ? m_grads->rank() : 0;
}

double TrainingEngine::exposed_comm_seconds() {
  return m_zero ? m_zero->exposed_comm_seconds() : 0.0;
}

int TrainingEngine::world_size() const {
  return m_grads != nullptr ? m_grads->size() : 1;
}

core::Tensor TrainingEngine::full_parameters(core::Context& ctx) {
  return m_zero ? m_zero->gather_parameters(ctx) : m_graph.flat_params();
}

core::ops::StatsReducer* TrainingEngine::rank_sum() {
  if (m_grads == nullptr) return nullptr;
  if (!m_rank_sum) m_rank_sum = comm::make_stats_reducer(*m_grads);
  return m_rank_sum.get();
}

void TrainingEngine::step(core::Context& ctx, double lr, const core::Tensor& skip) {
  if (m_zero)
    m_zero->step(ctx, lr, skip);
  else
    m_optimizer->step(ctx, lr, skip);
}

void TrainingEngine::save(const std::string& path, const core::optim::LossScaler* scaler,
                          core::Context& ctx, const core::io::TrainingProgress& progress) {
  if (m_zero)
    comm::save_zero_checkpoint(path, *m_zero, m_graph, scaler, ctx, progress);
  else
    core::io::save_training_checkpoint(path, m_graph, *m_optimizer, scaler, ctx, progress);
}

core::io::TrainingProgress TrainingEngine::load(const std::string& path,
                                                core::optim::LossScaler* scaler,
                                                core::Context& ctx) {
  if (m_zero) return comm::load_zero_checkpoint(path, *m_zero, m_graph, scaler, ctx);
  return core::io::load_training_checkpoint(path, m_graph, *m_optimizer, scaler, ctx);
}

}  // namespace cohort::launch
