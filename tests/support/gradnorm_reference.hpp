#pragma once
// GradNorm's weight update (core/ops/ops.hpp, gradnorm_update) written out in
// double, with the state kept in f32 as the op keeps it: the reference the op
// tests and the trainer-step tests compare against.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::testing {

// The documented update written out in double, with the state kept in f32 as
// the op keeps it.
struct GradNormReference {
  int tasks;
  core::ops::GradNormArgs args;
  std::vector<float> w, initial, m, v;
  float count = 0;

  GradNormReference(int t, core::ops::GradNormArgs a)
      : tasks(t), args(a), w(t, 1.f), initial(t, 0.f), m(t, 0.f), v(t, 0.f) {}

  void update(const std::vector<double>& norms, const std::vector<double>& loss_sums) {
    const double ranks = loss_sums[tasks];
    std::vector<double> loss(tasks), ratio(tasks), gn(tasks);
    for (int t = 0; t < tasks; ++t) {
      loss[t] = static_cast<float>(loss_sums[t] / ranks);
      if (initial[t] == 0.f) initial[t] = static_cast<float>(loss[t]);
      ratio[t] = loss[t] / initial[t];
      gn[t] = w[t] * norms[t];
    }
    double ratio_mean = 0, g_mean = 0;
    for (int t = 0; t < tasks; ++t) {
      ratio_mean += ratio[t] / tasks;
      g_mean += gn[t] / tasks;
    }
    count += 1.f;
    std::vector<double> next(tasks);
    double total = 0;
    for (int t = 0; t < tasks; ++t) {
      const double target = g_mean * std::pow(ratio[t] / ratio_mean, args.alpha);
      const double sign = gn[t] > target ? 1.0 : (gn[t] < target ? -1.0 : 0.0);
      const double grad = sign * norms[t];
      const double mt = args.beta1 * m[t] + (1 - args.beta1) * grad;
      const double vt = args.beta2 * v[t] + (1 - args.beta2) * grad * grad;
      m[t] = static_cast<float>(mt);
      v[t] = static_cast<float>(vt);
      const double m_hat = mt / (1 - std::pow(args.beta1, count));
      const double v_hat = vt / (1 - std::pow(args.beta2, count));
      next[t] = std::max(0.0, w[t] - args.lr * m_hat / (std::sqrt(v_hat) + args.eps));
      total += next[t];
    }
    for (int t = 0; t < tasks; ++t)
      w[t] = static_cast<float>(next[t] * tasks / total);
  }

  // GradNormTensors::values' layout.
  std::vector<double> values() const {
    std::vector<double> s;
    for (const auto* row : {&w, &initial, &m, &v})
      s.insert(s.end(), row->begin(), row->end());
    s.push_back(count);
    s.resize(static_cast<size_t>(5 * tasks), 0.0);
    return s;
  }
};

}  // namespace cohort::testing
