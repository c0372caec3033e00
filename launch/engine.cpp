#include "launch/engine.hpp"

#include "comm/zero_checkpoint.hpp"

namespace cohort::launch {

TrainingEngine::TrainingEngine(core::nn::Graph& graph,
                               const core::optim::OptimizerConfig& optimizer,
                               comm::Communicator* grads, int zero_stage)
    : TrainingEngine(graph, optimizer, grads, comm::ZeroOptions{.stage = zero_stage}) {}

TrainingEngine::TrainingEngine(core::nn::Graph& graph,
                               const core::optim::OptimizerConfig& optimizer,
                               comm::Communicator* grads, const comm::ZeroOptions& parallel)
    : m_graph(graph) {
  if (grads == nullptr) {
    m_optimizer = std::make_unique<core::optim::Optimizer>(graph, optimizer);
    return;
  }
  m_zero = std::make_unique<comm::ZeroDataParallel>(graph, *grads, parallel, optimizer);
}

void TrainingEngine::prepare(core::Context& ctx) {
  if (m_zero) m_zero->prepare_backward(ctx);
}

void TrainingEngine::finish(core::Context& ctx) {
  if (m_zero) m_zero->finish_backward(ctx);
}

core::Tensor TrainingEngine::gradients() {
  if (m_zero && m_zero->stage() >= 2) return m_zero->gradient_shard();
  return m_graph.flat_grads();
}

double TrainingEngine::exposed_comm_seconds() {
  return m_zero ? m_zero->exposed_comm_seconds() : 0.0;
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
