#include "core/ops/cpu/loss_weights_cpu.hpp"

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {

Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights) {
  return dispatch_float("weighted_loss_sum", weights, [&](auto tag) {
    using T = decltype(tag);
    const T* w = weights.data<T>();
    double total = 0;
    for (size_t i = 0; i < losses.size(); ++i)
      total += static_cast<double>(w[i]) * losses[i].data<T>()[0];
    Tensor out = Tensor::empty(Shape{1}, weights.dtype(), ctx.device(), ctx.stream());
    out.data<T>()[0] = static_cast<T>(total);
    return out;
  });
}

std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights) {
  return dispatch_float("weighted_loss_sum_backward", weights, [&](auto tag) {
    using T = decltype(tag);
    const T* w = weights.data<T>();
    const T g = dtotal.data<T>()[0];
    std::vector<Tensor> dlosses;
    for (int64_t i = 0; i < weights.numel(); ++i) {
      Tensor d = Tensor::empty(Shape{1}, weights.dtype(), ctx.device(), ctx.stream());
      d.data<T>()[0] = w[i] * g;
      dlosses.push_back(d);
    }
    return dlosses;
  });
}

void accumulate_loss_sums(Context&, const std::vector<Tensor>& losses, Tensor& sums) {
  dispatch_float("accumulate_loss_sums", sums, [&](auto tag) {
    using T = decltype(tag);
    T* s = sums.data<T>();
    for (size_t i = 0; i < losses.size(); ++i)
      s[i] += losses[i].data<T>()[0];
    s[losses.size()] += T(1);
  });
}

}  // namespace cohort::core::ops::cpu
