#pragma once
// The scalar solves behind pcgrad_coefficients and gradnorm_update (contract in
// core/ops/ops.hpp), on at most kMaxBalancedLosses values in double. Shared by the
// CPU backend and the CUDA kernels (one thread), so that both compute exactly the
// same steps.
#include <cmath>
#include <limits>

#include "core/host_device.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops::detail {

inline constexpr int kMaxTasks = kMaxBalancedLosses;

// PCGrad's coefficients c (f32 [T]) on the unweighted task gradients from their
// Gram matrix g (f32 [T*T]) and the task weights w (f32 [T]).
COHORT_HOST_DEVICE inline void pcgrad_solve(const float* g, const float* w, int tasks, float* c) {
  bool finite = true;
  for (int k = 0; k < tasks * tasks; ++k)
    finite = finite && std::isfinite(g[k]);
  for (int t = 0; t < tasks; ++t)
    finite = finite && std::isfinite(w[t]);
  if (!finite) {
    // A NaN would otherwise vanish in the comparisons below; the caller relies on
    // it reaching the combined gradient (the loss scaler then skips the step).
    for (int t = 0; t < tasks; ++t)
      c[t] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  // hg: the Gram matrix of the weighted gradients h_t = w_t g_t.
  double hg[kMaxTasks * kMaxTasks];
  for (int i = 0; i < tasks; ++i)
    for (int j = 0; j < tasks; ++j)
      hg[i * tasks + j] = static_cast<double>(w[i]) * w[j] * g[i * tasks + j];
  // h_i' = sum_k a[k] h_k; total = sum_i of those a.
  double total[kMaxTasks] = {};
  for (int i = 0; i < tasks; ++i) {
    double a[kMaxTasks] = {};
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
}

// One GradNorm update of w (f32 [T]) and state (f32 [4, T]: L(0), m, v, count)
// from the Gram matrix on its layer, the summed losses and rank count, and the
// loss scale (1 without). The caller has already honoured the skip flag.
COHORT_HOST_DEVICE inline void gradnorm_solve(float* w, float* state, const float* gram,
                                              const float* loss_sums, double scale, int tasks,
                                              const GradNormArgs& rule) {
  float* initial = state;
  float* m1 = state + tasks;
  float* m2 = state + 2 * tasks;
  float* count = state + 3 * tasks;
  const double ranks = loss_sums[tasks];

  // The norms and the mean losses; L is rounded to f32 as stored in L(0), so that
  // the first update's ratios are exactly 1.
  double norm[kMaxTasks], loss[kMaxTasks];
  for (int t = 0; t < tasks; ++t) {
    norm[t] = std::sqrt(static_cast<double>(gram[t * tasks + t])) / scale;
    loss[t] = static_cast<float>(static_cast<double>(loss_sums[t]) / ranks);
    if (!std::isfinite(norm[t]) || !std::isfinite(loss[t])) return;
  }

  // Relative inverse training rates; a task whose L(0) is not positive counts as
  // trained at the mean rate.
  double ratio[kMaxTasks];
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
  const double c1 = 1.0 - std::pow(rule.beta1, step), c2 = 1.0 - std::pow(rule.beta2, step);
  double next[kMaxTasks];
  double w_sum = 0;
  for (int t = 0; t < tasks; ++t) {
    const double r = ratio_mean > 0 ? ratio[t] / ratio_mean : 1.0;
    const double target = g_mean * std::pow(r, rule.alpha);
    const double diff = static_cast<double>(w[t]) * norm[t] - target;
    const double grad = ((diff > 0) - (diff < 0)) * norm[t];
    const double mt = rule.beta1 * m1[t] + (1.0 - rule.beta1) * grad;
    const double vt = rule.beta2 * m2[t] + (1.0 - rule.beta2) * grad * grad;
    m1[t] = static_cast<float>(mt);
    m2[t] = static_cast<float>(vt);
    const double moved = w[t] - rule.lr * (mt / c1) / (std::sqrt(vt / c2) + rule.eps);
    next[t] = moved > 0.0 ? moved : 0.0;
    w_sum += next[t];
  }
  for (int t = 0; t < tasks; ++t)
    w[t] = w_sum > 0 ? static_cast<float>(next[t] * tasks / w_sum) : 1.f;
}

}  // namespace cohort::core::ops::detail
