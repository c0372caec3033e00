#include "core/nn/loss_balancing.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/nn/layers.hpp"

namespace cohort::core::nn {
namespace {

void check_count(const char* what, int n) {
  COHORT_CHECK(n >= 1 && n <= ops::kMaxBalancedLosses,
               fmt::format("{}: 1 to {} losses, got {}", what, ops::kMaxBalancedLosses, n));
}

}  // namespace

std::vector<double> dwa_weights(const std::vector<double>& last, const std::vector<double>& before,
                                double temperature) {
  COHORT_CHECK(last.size() == before.size() && !last.empty(),
               fmt::format("dwa_weights: {} and {} mean losses (one per task, both epochs)",
                           last.size(), before.size()));
  COHORT_CHECK(temperature > 0 && std::isfinite(temperature),
               fmt::format("dwa_weights: the temperature must be > 0, got {}", temperature));
  const size_t k = last.size();
  std::vector<double> scaled(k);
  for (size_t i = 0; i < k; ++i) {
    double r = 1.0;
    if (before[i] > 0 && std::isfinite(before[i])) {
      const double q = last[i] / before[i];
      if (std::isfinite(q)) r = q;
    }
    scaled[i] = r / temperature;
  }
  // Softmax with the largest term factored out: the same weights, no overflow.
  const double top = *std::max_element(scaled.begin(), scaled.end());
  double total = 0;
  for (double& s : scaled) {
    s = std::exp(s - top);
    total += s;
  }
  for (double& s : scaled)
    s = static_cast<double>(k) * s / total;
  return scaled;
}

WeightedLossSum::WeightedLossSum(std::vector<double> weights)
    : m_n(static_cast<int>(weights.size())) {
  check_count("WeightedLossSum", m_n);
  for (double w : weights)
    COHORT_CHECK(std::isfinite(w) && w >= 0,
                 fmt::format("WeightedLossSum: weights must be finite and >= 0, got {}", w));
  m_host_weights = Tensor::from_vector(weights, Shape{m_n}, DType::f32);
}

WeightedLossSum::WeightedLossSum(int num_losses, double temperature)
    : m_n(num_losses), m_dwa(true), m_temperature(temperature) {
  check_count("WeightedLossSum (DWA)", m_n);
  COHORT_CHECK(
      temperature > 0 && std::isfinite(temperature),
      fmt::format("WeightedLossSum (DWA): the temperature must be > 0, got {}", temperature));
}

std::unique_ptr<WeightedLossSum> WeightedLossSum::dwa(int num_losses, double temperature) {
  return std::unique_ptr<WeightedLossSum>(new WeightedLossSum(num_losses, temperature));
}

std::unique_ptr<WeightedLossSum> WeightedLossSum::gradnorm(int num_losses) {
  std::unique_ptr<WeightedLossSum> layer(
      new WeightedLossSum(std::vector<double>(static_cast<size_t>(num_losses), 1.0)));
  layer->m_gradnorm = true;
  return layer;
}

Tensor& WeightedLossSum::gradnorm_state() {
  COHORT_CHECK(m_gradnorm, "WeightedLossSum::gradnorm_state: the weights are not GradNorm's");
  return buffer(1).value;
}

std::vector<BufferSpec> WeightedLossSum::buffer_specs() const {
  if (m_gradnorm)
    return {{"weights", Shape{m_n}, Init::ones}, {"gradnorm", Shape{4, m_n}, Init::zeros}};
  if (!m_dwa) return {};
  return {{"weights", Shape{m_n}, Init::ones}, {"dwa_stats", Shape{3, m_n + 1}, Init::zeros}};
}

const Tensor& WeightedLossSum::weights_on(Context& ctx) {
  if (m_dwa || m_gradnorm) return buffer(0).value;
  // Uploaded once; the host copy stays alive, so the copy may still be in flight.
  if (!m_device_weights.defined() || m_device_weights.device() != ctx.device())
    m_device_weights = m_host_weights.to(ctx.device(), ctx.stream());
  return m_device_weights;
}

Tensor WeightedLossSum::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                const ForwardArgs& args) {
  const Tensor& w = weights_on(ctx);
  saved.tensors = {w};
  Tensor total = ops::weighted_loss_sum(ctx, in, w);
  if (m_dwa && args.training) {
    Tensor sums = buffer(1).value.flat(0, m_n + 1);  // row 0
    if (m_reducer == nullptr) {
      ops::accumulate_loss_sums(ctx, in, sums);
    } else {
      Tensor step = Tensor::zeros(Shape{m_n + 1}, DType::f32, ctx.device(), ctx.stream());
      ops::accumulate_loss_sums(ctx, in, step);
      m_reducer->all_reduce_sum(ctx, step);
      ops::add_inplace(ctx, sums, step);
    }
  }
  return total;
}

std::vector<Tensor> WeightedLossSum::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                              const BackwardArgs& args) {
  std::vector<Tensor> d = ops::weighted_loss_sum_backward(ctx, dy, saved.tensors.at(0));
  for (size_t i = 0; i < d.size(); ++i)
    if (!args.needs_input_grad.at(i)) d[i] = Tensor();
  return d;
}

std::vector<double> WeightedLossSum::finish_epoch(Context& ctx) {
  COHORT_CHECK(m_dwa, "WeightedLossSum::finish_epoch: only Dynamic Weight Average has epochs");
  const int64_t row = m_n + 1;
  const std::vector<double> stats = buffer(1).value.to_vector(ctx.stream());  // synchronises
  const double count = stats[m_n];
  COHORT_CHECK(count > 0, "WeightedLossSum::finish_epoch: no loss was accumulated this epoch");
  // Values are rounded to the buffers' f32 before they are used, so the weights
  // are exactly those of the statistics a checkpoint holds.
  std::vector<double> next(static_cast<size_t>(3 * row), 0.0);
  for (int64_t k = 0; k < m_n; ++k) {
    next[row + k] = static_cast<float>(stats[k] / count);
    // One non-finite step loss (f16 overflow, a NaN from a bad label) poisons the
    // epoch's mean; dwa_weights then treats the ratio as 1. Said, not hidden.
    if (!std::isfinite(next[row + k]))
      std::fprintf(stderr,
                   "cohort: warning: DWA: task %lld's mean loss over the epoch is %g (a "
                   "non-finite step loss); its weight ratio counts as 1 for the next two "
                   "epochs\n",
                   static_cast<long long>(k), next[row + k]);
  }
  next[row + m_n] = count;
  for (int64_t k = 0; k < row; ++k)
    next[2 * row + k] = stats[row + k];
  std::vector<double> weights(static_cast<size_t>(m_n), 1.0);
  if (next[2 * row + m_n] > 0) {
    const std::vector<double> last(next.begin() + row, next.begin() + row + m_n);
    const std::vector<double> before(next.begin() + 2 * row, next.begin() + 2 * row + m_n);
    weights = dwa_weights(last, before, m_temperature);
    for (double& w : weights)
      w = static_cast<float>(w);
  }
  const Tensor host_stats = Tensor::from_vector(next, Shape{3, row}, DType::f32);
  const Tensor host_weights = Tensor::from_vector(weights, Shape{m_n}, DType::f32);
  buffer(1).value.copy_from(host_stats, ctx.stream());
  buffer(0).value.copy_from(host_weights, ctx.stream());
  ctx.synchronize();  // the host sources die at the return
  return weights;
}

NodeId add_balanced_loss(Graph& graph, const std::string& name, std::vector<NodeId> losses,
                         const LossBalancing& b) {
  const int n = static_cast<int>(losses.size());
  switch (b.method) {
    case LossBalancingMethod::uncertainty:
      return graph.add(name, std::make_unique<UncertaintyWeighting>(n), std::move(losses));
    case LossBalancingMethod::fixed:
    case LossBalancingMethod::pcgrad: {
      std::vector<double> weights = b.weights;
      if (weights.empty()) weights.assign(static_cast<size_t>(n), 1.0);
      COHORT_CHECK(static_cast<int>(weights.size()) == n,
                   fmt::format("loss balancing '{}': {} fixed weights for {} losses (one each)",
                               name, weights.size(), n));
      return graph.add(name, std::make_unique<WeightedLossSum>(std::move(weights)),
                       std::move(losses));
    }
    case LossBalancingMethod::dwa:
      return graph.add(name, WeightedLossSum::dwa(n, b.temperature), std::move(losses));
    case LossBalancingMethod::gradnorm:
      return graph.add(name, WeightedLossSum::gradnorm(n), std::move(losses));
  }
  COHORT_FAIL(fmt::format("loss balancing '{}': unknown method", name));
}

}  // namespace cohort::core::nn
