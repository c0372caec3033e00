#include "core/ops/cpu/balance_cpu.hpp"

#include <cmath>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {

Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars) {
  return dispatch_float("uncertainty_weighted_sum", log_vars, [&](auto tag) {
    using T = decltype(tag);
    const T* s = log_vars.data<T>();
    double total = 0;
    for (size_t i = 0; i < losses.size(); ++i)
      total += 0.5 * std::exp(-static_cast<double>(s[i])) * losses[i].data<T>()[0] + 0.5 * s[i];
    Tensor out = Tensor::empty(Shape{1}, log_vars.dtype(), ctx.device(), ctx.stream());
    out.data<T>()[0] = static_cast<T>(total);
    return out;
  });
}

std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate) {
  return dispatch_float("uncertainty_weighted_sum_backward", log_vars, [&](auto tag) {
    using T = decltype(tag);
    const T* s = log_vars.data<T>();
    const double g = dtotal.data<T>()[0];
    std::vector<Tensor> dlosses;
    for (size_t i = 0; i < losses.size(); ++i) {
      const double w = 0.5 * std::exp(-static_cast<double>(s[i]));
      Tensor d = Tensor::empty(Shape{1}, log_vars.dtype(), ctx.device(), ctx.stream());
      d.data<T>()[0] = static_cast<T>(g * w);
      dlosses.push_back(d);
      if (dlog_vars.defined()) {
        const T ds = static_cast<T>(g * (0.5 - w * losses[i].data<T>()[0]));
        T& out = dlog_vars.data<T>()[i];
        out = accumulate ? out + ds : ds;
      }
    }
    return dlosses;
  });
}

}  // namespace cohort::core::ops::cpu
