#include "launch/task_gradients.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace cohort::launch {

using core::Tensor;
using core::nn::NodeId;

namespace {

constexpr uint8_t kShared = 1;    // a parameter every task's loss depends on
constexpr uint8_t kGradNorm = 2;  // a parameter of GradNorm's layer

bool has_weight_matrix(core::nn::Layer& layer) {
  for (const core::nn::Parameter* p : layer.params())
    if (p->trainable && p->shape.rank() >= 2) return true;
  return false;
}

bool has_trainable(core::nn::Layer& layer) {
  for (const core::nn::Parameter* p : layer.params())
    if (p->trainable) return true;
  return false;
}

}  // namespace

std::unique_ptr<TaskGradients> make_task_gradients(core::Context& ctx, core::nn::Graph& graph,
                                                   const ModelNodes& nodes, TrainingEngine& engine,
                                                   const TrainConfig& config) {
  const bool pcgrad = config.loss_balancing == "pcgrad";
  if (!config.depth_head || (!pcgrad && config.loss_balancing != "gradnorm")) return nullptr;
  TaskGradientSettings s;
  s.method =
      pcgrad ? core::nn::LossBalancingMethod::pcgrad : core::nn::LossBalancingMethod::gradnorm;
  s.gradnorm.alpha = config.gradnorm_alpha;
  s.gradnorm.lr = config.gradnorm_lr;
  s.gradnorm_layer = config.gradnorm_layer;
  return std::make_unique<TaskGradients>(
      ctx, graph, std::vector<NodeId>{nodes.seg_loss, nodes.depth_loss}, nodes.loss, engine, s);
}

TaskGradients::TaskGradients(core::Context& ctx, core::nn::Graph& graph, std::vector<NodeId> tasks,
                             NodeId balanced, TrainingEngine& engine,
                             const TaskGradientSettings& settings)
    : m_graph(graph), m_engine(engine), m_tasks(std::move(tasks)), m_settings(settings) {
  using Method = core::nn::LossBalancingMethod;
  const bool gradnorm = settings.method == Method::gradnorm;
  COHORT_CHECK(settings.method == Method::pcgrad || gradnorm,
               "TaskGradients: only pcgrad and gradnorm take per-task gradients");
  const int n_tasks = static_cast<int>(m_tasks.size());
  COHORT_CHECK(n_tasks >= 2 && n_tasks <= core::ops::kMaxBalancedLosses,
               fmt::format("TaskGradients: 2 to {} task losses, got {}",
                           core::ops::kMaxBalancedLosses, n_tasks));
  m_weights = dynamic_cast<core::nn::WeightedLossSum*>(graph.layer(balanced));
  COHORT_CHECK(m_weights != nullptr && m_weights->num_inputs() == n_tasks,
               fmt::format("TaskGradients: node '{}' must be a WeightedLossSum over the {} tasks",
                           graph.node_name(balanced), n_tasks));
  COHORT_CHECK(m_weights->is_gradnorm() == gradnorm,
               fmt::format("TaskGradients: node '{}' {} GradNorm's weights",
                           graph.node_name(balanced), gradnorm ? "lacks" : "holds"));

  // Shared: layers every task loss depends on.
  std::vector<bool> shared(static_cast<size_t>(graph.num_nodes()), true);
  for (NodeId t : m_tasks) {
    const std::vector<bool> up = graph.ancestors_of({t});
    for (size_t k = 0; k < shared.size(); ++k)
      shared[k] = shared[k] && up[k];
  }
  NodeId norm_node = -1;
  if (gradnorm) {
    if (!settings.gradnorm_layer.empty()) {
      for (NodeId k = 0; k < graph.num_nodes() && norm_node < 0; ++k)
        if (graph.node_name(k) == settings.gradnorm_layer) norm_node = k;
      COHORT_CHECK(norm_node >= 0, fmt::format("loss.gradnorm_layer '{}' is no layer of the model",
                                               settings.gradnorm_layer));
      core::nn::Layer* layer = graph.layer(norm_node);
      COHORT_CHECK(
          layer != nullptr && shared[static_cast<size_t>(norm_node)] && has_trainable(*layer),
          fmt::format("loss.gradnorm_layer '{}' must be a layer with trainable "
                      "parameters that every task uses (a frozen one has no gradient "
                      "to compare)",
                      settings.gradnorm_layer));
    } else {
      for (NodeId k = graph.num_nodes(); k-- > 0;) {
        core::nn::Layer* layer = graph.layer(k);
        if (layer != nullptr && shared[static_cast<size_t>(k)] && has_weight_matrix(*layer)) {
          norm_node = k;
          break;
        }
      }
      COHORT_CHECK(norm_node >= 0,
                   "loss.balancing gradnorm: no layer with a weight matrix is shared by every "
                   "task (set loss.gradnorm_layer)");
    }
    m_gradnorm_layer = graph.node_name(norm_node);
  }

  // The mask over the flat parameter order (padded like the engine's shards),
  // cut to the part engine.gradients() holds.
  const Tensor grads = engine.gradients();
  const int64_t offset = engine.gradient_offset();
  const int64_t held = grads.numel();
  Tensor host = Tensor::zeros(core::Shape{held}, core::DType::u8);
  uint8_t* bits = host.data<uint8_t>();
  for (NodeId k = 0; k < graph.num_nodes(); ++k) {
    core::nn::Layer* layer = graph.layer(k);
    if (layer == nullptr) continue;
    uint8_t b = 0;
    if (shared[static_cast<size_t>(k)]) b |= kShared;
    if (k == norm_node) b |= kGradNorm;
    if (b == 0) continue;
    for (const core::nn::Parameter* p : layer->params()) {
      if (b & kShared) m_shared_parameters += p->shape.numel();
      const int64_t begin = std::max(p->offset, offset);
      const int64_t end = std::min(p->offset + p->shape.numel(), offset + held);
      for (int64_t e = begin; e < end; ++e)
        bits[e - offset] |= b;
    }
  }
  m_mask = host.to(graph.device(), ctx.stream());
  ctx.synchronize();  // the host mask dies at the return

  // Replicated gradients: each rank takes an even slice for the Gram matrix, so the
  // all-reduced sum counts every element once.
  if (engine.gradients_sharded()) {
    m_gram_end = held;
  } else {
    const int world = engine.world_size();
    const int64_t part = (held + world - 1) / world;
    m_gram_begin = std::min(held, part * engine.rank());
    m_gram_end = std::min(held, m_gram_begin + part);
  }
  if (gradnorm) {
    const int64_t t = n_tasks;
    m_reduced =
        Tensor::empty(core::Shape{t * t + t + 1}, core::DType::f32, graph.device(), ctx.stream());
  }
}

void TaskGradients::backward(core::Context& ctx, const Tensor& seed) {
  const size_t n = m_tasks.size();
  for (size_t t = 0; t < n; ++t) {
    const bool last = t + 1 == n;
    m_engine.prepare(ctx, /*accumulate=*/false, /*last=*/true);
    m_graph.backward(ctx, {{m_tasks[t], seed}}, /*accumulate=*/false, /*keep_saved=*/!last);
    m_engine.finish(ctx);
    if (last) break;
    const Tensor reduced = m_engine.gradients();
    if (m_saved.size() <= t)
      m_saved.push_back(
          Tensor::empty(reduced.shape(), reduced.dtype(), reduced.device(), ctx.stream()));
    m_saved[t].copy_from(reduced, ctx.stream());
  }
  Tensor out = m_engine.gradients();
  std::vector<Tensor> grads = m_saved;
  grads.push_back(out);

  // This rank's part of the Gram matrix over `bits` (summed over the ranks below).
  auto gram = [&](uint8_t bits) {
    std::vector<Tensor> parts;
    for (const Tensor& g : grads)
      parts.push_back(g.slice(m_gram_begin, m_gram_end));
    return core::ops::task_gram(ctx, parts, m_mask.slice(m_gram_begin, m_gram_end), bits);
  };
  core::ops::StatsReducer* ranks = m_engine.rank_sum();
  const Tensor& weights = m_weights->weights(ctx);
  if (m_settings.method == core::nn::LossBalancingMethod::pcgrad) {
    Tensor g = gram(kShared);
    if (ranks != nullptr) ranks->all_reduce_sum(ctx, g);
    // Last: the combination overwrites the last task's gradient.
    const Tensor coeff = core::ops::pcgrad_coefficients(ctx, g, weights);
    core::ops::combine_task_gradients(ctx, grads, m_mask, kShared, coeff, weights, out);
    return;
  }
  // GradNorm: what after_step() needs -- the Gram matrix on its layer and the
  // task losses, summed over ranks in one all-reduce -- and then the weighted sum
  // with this step's weights (last: it overwrites the last task's gradient).
  const int64_t tt = static_cast<int64_t>(n * n);
  m_reduced.slice(0, tt).copy_from(gram(kGradNorm), ctx.stream());
  Tensor sums = m_reduced.slice(tt, m_reduced.numel());
  sums.zero_(ctx.stream());
  std::vector<Tensor> losses;
  for (NodeId t : m_tasks)
    losses.push_back(m_graph.output(t));
  core::ops::accumulate_loss_sums(ctx, losses, sums);
  if (ranks != nullptr) ranks->all_reduce_sum(ctx, m_reduced);
  m_update_pending = true;
  core::ops::combine_task_gradients(ctx, grads, m_mask, kShared, weights, weights, out);
}

double TaskGradients::exposed_comm_seconds() {
  double total = 0;
  for (size_t t = 0; t < m_tasks.size(); ++t)
    total += m_engine.exposed_comm_seconds();
  return total;
}

void TaskGradients::after_step(core::Context& ctx, const Tensor& scale, const Tensor& skip) {
  if (m_settings.method != core::nn::LossBalancingMethod::gradnorm) return;
  COHORT_CHECK(m_update_pending, "TaskGradients::after_step: call backward() first");
  const int64_t tt = static_cast<int64_t>(m_tasks.size() * m_tasks.size());
  Tensor weights = m_weights->weights(ctx);
  core::ops::gradnorm_update(ctx, weights, m_weights->gradnorm_state(), m_reduced.slice(0, tt),
                             m_reduced.slice(tt, m_reduced.numel()), scale, skip,
                             m_settings.gradnorm);
  m_update_pending = false;
}

}  // namespace cohort::launch
