#include "core/optim/optimizer.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/ops/ops.hpp"

namespace cohort::core::optim {

Optimizer::Optimizer(nn::Graph& graph, const OptimizerConfig& config)
    : m_graph(graph), m_config(config) {
  COHORT_CHECK(graph.built(), "Optimizer: build the graph first");
  COHORT_CHECK(config.kind == "sgd" || config.kind == "adamw",
               fmt::format("Optimizer: unknown kind '{}' (expected sgd or adamw)", config.kind));
  const int64_t total = graph.num_parameters();
  if (config.shard_count >= 0) {
    COHORT_CHECK(config.shard_offset >= 0 && config.shard_offset + config.shard_count <= total,
                 fmt::format("Optimizer: shard [{}, {}) is outside the {} parameters",
                             config.shard_offset, config.shard_offset + config.shard_count, total));
    m_shard_offset = config.shard_offset;
    m_shard_count = config.shard_count;
  } else {
    m_shard_offset = 0;
    m_shard_count = total;
  }
  const int64_t n = m_shard_count;
  Context setup(graph.device());
  if (config.kind == "adamw" || config.momentum != 0)
    m_buf1 = Tensor::zeros(Shape{n}, DType::f32, graph.device(), setup.stream());
  if (config.kind == "adamw")
    m_buf2 = Tensor::zeros(Shape{n}, DType::f32, graph.device(), setup.stream());
  m_applied = Tensor::zeros(Shape{1}, DType::i64, graph.device(), setup.stream());
  m_lr = Tensor::zeros(Shape{1}, DType::f32, graph.device(), setup.stream());
  setup.synchronize();
  for (const ParamGroup& g : config.groups) {
    bool any = false;
    for (const nn::Parameter& p : graph.parameters())
      any = any || p.name.rfind(g.prefix, 0) == 0;
    COHORT_CHECK(any,
                 fmt::format("Optimizer: parameter group '{}' matches no parameter", g.prefix));
  }
}

std::pair<int64_t, int64_t> Optimizer::owned_range(const nn::Parameter& p) const {
  const int64_t begin = std::max(p.offset, m_shard_offset);
  const int64_t end = std::min(p.offset + p.shape.numel(), m_shard_offset + m_shard_count);
  if (begin >= end) return {0, 0};
  return {begin - p.offset, end - p.offset};
}

std::vector<UpdateSegment> Optimizer::segments() const {
  std::vector<UpdateSegment> out;
  for (const nn::Parameter& p : m_graph.parameters()) {
    if (!p.trainable) continue;
    const auto [first, last] = owned_range(p);
    if (first == last) continue;
    double mult = 1.0, wd = m_config.weight_decay;
    for (const ParamGroup& g : m_config.groups) {
      if (p.name.rfind(g.prefix, 0) != 0) continue;
      mult = g.lr_mult;
      if (g.weight_decay) wd = *g.weight_decay;
      break;
    }
    if (p.no_decay && m_config.no_decay_bias_bn) wd = 0.0;
    UpdateSegment s{p.offset + first - m_shard_offset, last - first, static_cast<float>(mult),
                    static_cast<float>(wd)};
    // Neighbours with the same hyper-parameters merge: fewer segments to walk.
    if (!out.empty() && out.back().offset + out.back().count == s.offset &&
        out.back().lr_scale == s.lr_scale && out.back().weight_decay == s.weight_decay)
      out.back().count += s.count;
    else
      out.push_back(s);
  }
  return out;
}

const Tensor& Optimizer::lr_on_device(Context& ctx, double lr) {
  ops::fill(ctx, m_lr, lr);
  return m_lr;
}

void Optimizer::update(Context& ctx, const Tensor& lr, Tensor& params, const Tensor& grads,
                       const Tensor& skip) {
  const std::vector<UpdateSegment> segs = segments();
  // A rank whose shard is empty (more ranks than elements) updates nothing but
  // counts the step like the others.
  if (m_shard_count > 0 && m_config.kind == "sgd") {
    SgdConfig c{static_cast<float>(m_config.momentum), static_cast<float>(m_config.dampening),
                m_config.nesterov};
    sgd_step(ctx, params, grads, m_buf1, segs, lr, c, m_applied, skip);
  } else if (m_shard_count > 0) {
    AdamWConfig c{static_cast<float>(m_config.beta1), static_cast<float>(m_config.beta2),
                  static_cast<float>(m_config.eps)};
    adamw_step(ctx, params, grads, m_buf1, m_buf2, segs, lr, c, m_applied, skip);
  }
  count_applied_step(ctx, m_applied, skip);
}

int64_t Optimizer::steps(StreamHandle stream) const {
  return static_cast<int64_t>(m_applied.item(stream));
}

void Optimizer::set_steps(int64_t steps, StreamHandle stream) {
  COHORT_CHECK(steps >= 0, fmt::format("Optimizer: a step count of {} is negative", steps));
  m_applied.copy_from(Tensor::from_vector({static_cast<double>(steps)}, Shape{1}, DType::i64),
                      stream);
}

void Optimizer::step(Context& ctx, double lr, const Tensor& skip) {
  step(ctx, lr_on_device(ctx, lr), skip);
}

void Optimizer::step(Context& ctx, const Tensor& lr, const Tensor& skip) {
  if (!sharded()) {
    update(ctx, lr, m_graph.flat_params(), m_graph.flat_grads(), skip);
    m_graph.refresh_compute_weights(ctx);
    return;
  }
  COHORT_CHECK(m_graph.flat_params().defined() && m_graph.flat_grads().defined(),
               "Optimizer::step: the graph's flat parameter or gradient buffer was released "
               "(ZeRO-2/3 keep shards; use step_shard)");
  Tensor params = m_graph.flat_params().flat(m_shard_offset, m_shard_count);
  const Tensor grads = m_graph.flat_grads().flat(m_shard_offset, m_shard_count);
  update(ctx, lr, params, grads, skip);
}

void Optimizer::step_shard(Context& ctx, double lr, Tensor& params, const Tensor& grads,
                           const Tensor& skip) {
  step_shard(ctx, lr_on_device(ctx, lr), params, grads, skip);
}

void Optimizer::step_shard(Context& ctx, const Tensor& lr, Tensor& params, const Tensor& grads,
                           const Tensor& skip) {
  COHORT_CHECK(sharded(),
               "Optimizer::step_shard: this optimizer is not sharded "
               "(set OptimizerConfig::shard_count)");
  COHORT_CHECK(params.numel() == m_shard_count && grads.numel() == m_shard_count,
               fmt::format("Optimizer::step_shard: params {} and grads {} must have the shard's "
                           "{} elements",
                           params.str(), grads.str(), m_shard_count));
  update(ctx, lr, params, grads, skip);
}

std::vector<std::pair<std::string, Tensor>> Optimizer::state_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  if (m_buf1.defined()) out.emplace_back(m_config.kind == "sgd" ? "momentum" : "exp_avg", m_buf1);
  if (m_buf2.defined()) out.emplace_back("exp_avg_sq", m_buf2);
  return out;
}

std::map<std::string, Tensor> Optimizer::state() {
  std::map<std::string, Tensor> out;
  for (const auto& [name, buf] : state_buffers()) {
    for (const nn::Parameter& p : m_graph.parameters()) {
      const int64_t numel = p.shape.numel();
      const auto [first, last] = owned_range(p);
      // Unsharded, every parameter is listed (as before sharding existed).
      if (first == last && (sharded() || numel > 0)) continue;
      Tensor view = buf.flat(p.offset + first - m_shard_offset, last - first);
      out.emplace(fmt::format("{}/{}", name, p.name),
                  last - first == numel ? view.view(p.shape) : view);
    }
  }
  return out;
}

}  // namespace cohort::core::optim
