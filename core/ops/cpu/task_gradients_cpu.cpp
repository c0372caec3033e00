// CPU per-task gradient ops. The Gram matrix is summed in double; the PCGrad and
// GradNorm solves work in double on at most kMaxBalancedLosses values and follow
// the CUDA kernels (core/ops/cuda/task_gradients.cu) step for step, so that the
// two backends agree to rounding.
#include "core/ops/cpu/task_gradients_cpu.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace cohort::core::ops::cpu {
namespace {

constexpr int kMaxT = kMaxBalancedLosses;

bool selected(uint8_t mask, uint8_t bits) {
  return (mask & bits) != 0;
}

std::array<const float*, kMaxT> pointers_of(const std::vector<Tensor>& grads) {
  std::array<const float*, kMaxT> p{};
  for (size_t t = 0; t < grads.size(); ++t)
    p[t] = grads[t].data<float>();
  return p;
}

}  // namespace

Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits) {
  const int tasks = static_cast<int>(grads.size());
  const int64_t n = mask.numel();
  const std::array<const float*, kMaxT> g = pointers_of(grads);
  const uint8_t* m = mask.data<uint8_t>();
  // Upper triangle only: the matrix is symmetric.
  std::array<double, kMaxT * kMaxT> sums{};
  std::array<double, kMaxT> v{};
  for (int64_t e = 0; e < n; ++e) {
    if (!selected(m[e], bits)) continue;
    for (int t = 0; t < tasks; ++t)
      v[t] = g[t][e];
    for (int i = 0; i < tasks; ++i)
      for (int j = i; j < tasks; ++j)
        sums[i * tasks + j] += v[i] * v[j];
  }
  Tensor gram =
      Tensor::empty(Shape{int64_t{tasks} * tasks}, DType::f32, ctx.device(), ctx.stream());
  float* out = gram.data<float>();
  for (int i = 0; i < tasks; ++i)
    for (int j = i; j < tasks; ++j)
      out[i * tasks + j] = out[j * tasks + i] = static_cast<float>(sums[i * tasks + j]);
  return gram;
}

Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights) {
  const int tasks = static_cast<int>(weights.numel());
  const float* g = gram.data<float>();
  const float* w = weights.data<float>();
  Tensor coeff = Tensor::empty(Shape{tasks}, DType::f32, ctx.device(), ctx.stream());
  float* c = coeff.data<float>();

  bool finite = true;
  for (int k = 0; k < tasks * tasks; ++k)
    finite = finite && std::isfinite(g[k]);
  for (int t = 0; t < tasks; ++t)
    finite = finite && std::isfinite(w[t]);
  if (!finite) {
    // A NaN would otherwise vanish in the comparisons below; the caller relies on
    // it reaching the combined gradient (the loss scaler then skips the step).
    std::fill(c, c + tasks, std::numeric_limits<float>::quiet_NaN());
    return coeff;
  }

  // hg: the Gram matrix of the weighted gradients h_t = w_t g_t.
  std::array<double, kMaxT * kMaxT> hg{};
  for (int i = 0; i < tasks; ++i)
    for (int j = 0; j < tasks; ++j)
      hg[i * tasks + j] = static_cast<double>(w[i]) * w[j] * g[i * tasks + j];
  // h_i' = sum_k a[k] h_k; total = sum_i of those a.
  std::array<double, kMaxT> total{};
  for (int i = 0; i < tasks; ++i) {
    std::array<double, kMaxT> a{};
    a[i] = 1.0;
    for (int step = 1; step < tasks; ++step) {
      const int j = (i + step) % tasks;
      const double norm2 = hg[j * tasks + j];
      if (!(norm2 > 0)) continue;
      double dot = 0;
      for (int k = 0; k < tasks; ++k)
        dot += a[k] * hg[k * tasks + j];
      if (dot < 0) a[j] -= dot / norm2;
    }
    for (int k = 0; k < tasks; ++k)
      total[k] += a[k];
  }
  for (int t = 0; t < tasks; ++t)
    c[t] = static_cast<float>(total[t] * w[t]);
  return coeff;
}

void combine_task_gradients(Context&, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out) {
  const int tasks = static_cast<int>(grads.size());
  const int64_t n = mask.numel();
  const std::array<const float*, kMaxT> g = pointers_of(grads);
  const uint8_t* m = mask.data<uint8_t>();
  const float* in_c = in_set.data<float>();
  const float* out_c = out_of_set.data<float>();
  float* y = out.data<float>();  // may be one of g: element e is read before it is written
  for (int64_t e = 0; e < n; ++e) {
    const float* c = selected(m[e], bits) ? in_c : out_c;
    double s = 0;
    for (int t = 0; t < tasks; ++t)
      s += static_cast<double>(c[t]) * g[t][e];
    y[e] = static_cast<float>(s);
  }
}

void gradnorm_update(Context&, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args) {
  const int tasks = static_cast<int>(weights.numel());
  if (skip.defined() && skip.data<float>()[0] != 0.f) return;
  float* w = weights.data<float>();
  float* s = state.data<float>();
  float* initial = s;
  float* m1 = s + tasks;
  float* m2 = s + 2 * tasks;
  float* count = s + 3 * tasks;
  const float* g = gram.data<float>();
  const float* l = loss_sums.data<float>();
  const double scale_v = scale.defined() ? static_cast<double>(scale.data<float>()[0]) : 1.0;
  const double ranks = l[tasks];

  // The norms and the mean losses; L is rounded to f32 as stored in L(0), so that
  // the first update's ratios are exactly 1.
  std::array<double, kMaxT> norm{}, loss{};
  for (int t = 0; t < tasks; ++t) {
    norm[t] = std::sqrt(static_cast<double>(g[t * tasks + t])) / scale_v;
    loss[t] = static_cast<float>(static_cast<double>(l[t]) / ranks);
    if (!std::isfinite(norm[t]) || !std::isfinite(loss[t])) return;
  }

  // Relative inverse training rates; a task whose L(0) is not positive counts as
  // trained at the mean rate.
  std::array<double, kMaxT> ratio{};
  double ratio_sum = 0, g_sum = 0;
  for (int t = 0; t < tasks; ++t) {
    if (initial[t] == 0.f) initial[t] = static_cast<float>(loss[t]);
    ratio[t] = initial[t] > 0.f ? loss[t] / static_cast<double>(initial[t]) : 1.0;
    ratio_sum += ratio[t];
    g_sum += static_cast<double>(w[t]) * norm[t];
  }
  const double ratio_mean = ratio_sum / tasks, g_mean = g_sum / tasks;

  const double step = static_cast<double>(count[0]) + 1.0;
  count[0] = static_cast<float>(step);
  const double c1 = 1.0 - std::pow(args.beta1, step), c2 = 1.0 - std::pow(args.beta2, step);
  std::array<double, kMaxT> next{};
  double w_sum = 0;
  for (int t = 0; t < tasks; ++t) {
    const double r = ratio_mean > 0 ? ratio[t] / ratio_mean : 1.0;
    const double target = g_mean * std::pow(r, args.alpha);
    const double diff = static_cast<double>(w[t]) * norm[t] - target;
    const double grad = ((diff > 0) - (diff < 0)) * norm[t];
    const double mt = args.beta1 * m1[t] + (1.0 - args.beta1) * grad;
    const double vt = args.beta2 * m2[t] + (1.0 - args.beta2) * grad * grad;
    m1[t] = static_cast<float>(mt);
    m2[t] = static_cast<float>(vt);
    next[t] = std::max(0.0, w[t] - args.lr * (mt / c1) / (std::sqrt(vt / c2) + args.eps));
    w_sum += next[t];
  }
  for (int t = 0; t < tasks; ++t)
    w[t] = w_sum > 0 ? static_cast<float>(next[t] * tasks / w_sum) : 1.f;
}

}  // namespace cohort::core::ops::cpu
