#include "core/optim/optimizer.hpp"

#include <fmt/format.h>

namespace cohort::core::optim {

Optimizer::Optimizer(nn::Graph& graph, const OptimizerConfig& config)
    : m_graph(graph), m_config(config) {
  COHORT_CHECK(graph.built(), "Optimizer: build the graph first");
  COHORT_CHECK(config.kind == "sgd" || config.kind == "adamw",
               fmt::format("Optimizer: unknown kind '{}' (expected sgd or adamw)", config.kind));
  const int64_t n = graph.num_parameters();
  Context setup(graph.device());
  if (config.kind == "adamw" || config.momentum != 0)
    m_buf1 = Tensor::zeros(Shape{n}, DType::f32, graph.device(), setup.stream());
  if (config.kind == "adamw")
    m_buf2 = Tensor::zeros(Shape{n}, DType::f32, graph.device(), setup.stream());
  setup.synchronize();
  for (const ParamGroup& g : config.groups) {
    bool any = false;
    for (const nn::Parameter& p : graph.parameters()) any = any || p.name.rfind(g.prefix, 0) == 0;
    COHORT_CHECK(any, fmt::format("Optimizer: parameter group '{}' matches no parameter",
                                  g.prefix));
  }
}

std::vector<UpdateSegment> Optimizer::segments(double lr) const {
  std::vector<UpdateSegment> out;
  for (const nn::Parameter& p : m_graph.parameters()) {
    if (!p.trainable) continue;
    double mult = 1.0, wd = m_config.weight_decay;
    for (const ParamGroup& g : m_config.groups) {
      if (p.name.rfind(g.prefix, 0) != 0) continue;
      mult = g.lr_mult;
      if (g.weight_decay) wd = *g.weight_decay;
      break;
    }
    if (p.no_decay && m_config.no_decay_bias_bn) wd = 0.0;
    UpdateSegment s{p.offset, p.shape.numel(), static_cast<float>(lr * mult),
                    static_cast<float>(wd)};
    // Neighbours with the same hyper-parameters merge: fewer segments to walk.
    if (!out.empty() && out.back().offset + out.back().count == s.offset &&
        out.back().lr == s.lr && out.back().weight_decay == s.weight_decay)
      out.back().count += s.count;
    else
      out.push_back(s);
  }
  return out;
}

void Optimizer::step(Context& ctx, double lr, const Tensor& skip) {
  const std::vector<UpdateSegment> segs = segments(lr);
  ++m_steps;
  if (m_config.kind == "sgd") {
    SgdConfig c{static_cast<float>(m_config.momentum), static_cast<float>(m_config.dampening),
                m_config.nesterov};
    sgd_step(ctx, m_graph.flat_params(), m_graph.flat_grads(), m_buf1, segs, c, m_steps == 1,
             skip);
  } else {
    AdamWConfig c{static_cast<float>(m_config.beta1), static_cast<float>(m_config.beta2),
                  static_cast<float>(m_config.eps)};
    adamw_step(ctx, m_graph.flat_params(), m_graph.flat_grads(), m_buf1, m_buf2, segs, c,
               m_steps, skip);
  }
  m_graph.refresh_compute_weights(ctx);
}

std::map<std::string, Tensor> Optimizer::state() {
  std::map<std::string, Tensor> out;
  const char* names[2] = {m_config.kind == "sgd" ? "momentum" : "exp_avg", "exp_avg_sq"};
  const Tensor* bufs[2] = {&m_buf1, &m_buf2};
  for (int b = 0; b < 2; ++b) {
    if (!bufs[b]->defined()) continue;
    for (const nn::Parameter& p : m_graph.parameters())
      out.emplace(fmt::format("{}/{}", names[b], p.name),
                  bufs[b]->flat(p.offset, p.shape.numel()).view(p.shape));
  }
  return out;
}

}  // namespace cohort::core::optim
