#include "core/ops/cpu/elementwise_cpu.hpp"

#include <cstring>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

// out[i] = f(a[i]) into a new tensor shaped like `a`.
template <typename F>
Tensor map_unary(const char* op, Context& ctx, const Tensor& a, F&& f) {
  return dispatch_float(op, a, [&](auto tag) {
    using T = decltype(tag);
    Tensor out = Tensor::empty(a.shape(), a.dtype(), ctx.device(), ctx.stream());
    const T* pa = a.data<T>();
    T* po = out.data<T>();
    for (int64_t i = 0, n = a.numel(); i < n; ++i)
      po[i] = f(pa[i]);
    return out;
  });
}

// out[i] = f(a[i], b[i]) into a new tensor shaped like `a` (same dtype as b).
template <typename F>
Tensor map_binary(const char* op, Context& ctx, const Tensor& a, const Tensor& b, F&& f) {
  return dispatch_float(op, a, [&](auto tag) {
    using T = decltype(tag);
    Tensor out = Tensor::empty(a.shape(), a.dtype(), ctx.device(), ctx.stream());
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    for (int64_t i = 0, n = a.numel(); i < n; ++i)
      po[i] = f(pa[i], pb[i]);
    return out;
  });
}

}  // namespace

// `x < 0 ? 0 : x` rather than max(x, 0): NaN stays NaN, as in PyTorch.
Tensor relu(Context& ctx, const Tensor& x) {
  return map_unary("relu", ctx, x, [](auto v) { return v < 0 ? decltype(v)(0) : v; });
}

// Gradient flows where the output is positive (PyTorch's threshold_backward).
Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y) {
  return map_binary("relu_backward", ctx, dy, y,
                    [](auto g, auto out) { return out <= 0 ? decltype(g)(0) : g; });
}

Tensor add(Context& ctx, const Tensor& a, const Tensor& b) {
  return map_binary("add", ctx, a, b, [](auto u, auto v) { return u + v; });
}

Tensor mul(Context& ctx, const Tensor& a, const Tensor& b) {
  return map_binary("mul", ctx, a, b, [](auto u, auto v) { return u * v; });
}

Tensor scale(Context& ctx, const Tensor& x, double alpha) {
  return map_unary("scale", ctx, x,
                   [alpha](auto v) { return static_cast<decltype(v)>(v * alpha); });
}

void add_inplace(Context& ctx, Tensor& acc, const Tensor& x) {
  dispatch_float("add_inplace", acc, [&](auto tag) {
    using T = decltype(tag);
    T* pa = acc.data<T>();
    const T* px = x.data<T>();
    for (int64_t i = 0, n = acc.numel(); i < n; ++i)
      pa[i] += px[i];
  });
}

Tensor cast(Context& ctx, const Tensor& x, DType dtype) {
  return x.cast_cpu(dtype);
}

// Any dtype: Tensor::full converts `value` once (with the library's rounding
// rules for f16/bf16/integers) and the bytes of that element are replicated.
void fill(Context& ctx, Tensor& t, double value) {
  const Tensor one = Tensor::full(Shape{1}, value, t.dtype());
  const size_t size = dtype_size(t.dtype());
  char* dst = static_cast<char*>(t.raw());
  for (int64_t i = 0, n = t.numel(); i < n; ++i)
    std::memcpy(dst + static_cast<size_t>(i) * size, one.raw(), size);
}

}  // namespace cohort::core::ops::cpu
