#include "core/ops/cpu/reduce_cpu.hpp"

#include <cmath>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

// sum(x) * factor as a 1-element tensor of x's dtype.
Tensor scaled_sum(const char* op, Context& ctx, const Tensor& x, double factor) {
  return dispatch_float(op, x, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    double s = 0;
    for (int64_t i = 0, n = x.numel(); i < n; ++i)
      s += p[i];
    Tensor out = Tensor::empty(Shape{1}, x.dtype(), ctx.device(), ctx.stream());
    out.data<T>()[0] = static_cast<T>(s * factor);
    return out;
  });
}

// dx filled with dloss[0] * factor.
Tensor broadcast(const char* op, Context& ctx, const Tensor& dloss, const Shape& x_shape,
                 DType dtype, double factor) {
  Tensor dx = Tensor::empty(x_shape, dtype, ctx.device(), ctx.stream());
  const double value = dloss.item() * factor;  // a CPU tensor: no stream to wait for
  dispatch_float(op, dx, [&](auto tag) {
    using T = decltype(tag);
    T* p = dx.data<T>();
    for (int64_t i = 0, n = dx.numel(); i < n; ++i)
      p[i] = static_cast<T>(value);
  });
  return dx;
}

}  // namespace

Tensor sum(Context& ctx, const Tensor& x) {
  return scaled_sum("sum", ctx, x, 1.0);
}

Tensor mean(Context& ctx, const Tensor& x) {
  return scaled_sum("mean", ctx, x, 1.0 / static_cast<double>(x.numel()));
}

Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  return broadcast("sum_backward", ctx, dloss, x_shape, dtype, 1.0);
}

Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  return broadcast("mean_backward", ctx, dloss, x_shape, dtype,
                   1.0 / static_cast<double>(x_shape.numel()));
}

Tensor argmax_channels(Context& ctx, const Tensor& x) {
  return dispatch_float("argmax_channels", x, [&](auto tag) {
    using T = decltype(tag);
    const auto dims = x.shape().dims();
    Tensor out =
        Tensor::empty(Shape(dims.first(dims.size() - 1)), DType::i32, ctx.device(), ctx.stream());
    const int64_t channels = x.dim(-1), rows = out.numel();
    const T* p = x.data<T>();
    int32_t* po = out.data<int32_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * channels;
      int64_t best = 0;
      for (int64_t c = 1; c < channels && !std::isnan(row[best]); ++c)
        if (row[c] > row[best] || std::isnan(row[c])) best = c;  // strict >: first of ties
      po[r] = static_cast<int32_t>(best);
    }
    return out;
  });
}

}  // namespace cohort::core::ops::cpu
