#include "core/ops/cpu/linear_cpu.hpp"

#include "core/ops/cpu/cpu_dispatch.hpp"
#include "core/ops/cpu/gemm_cpu.hpp"

namespace cohort::core::ops::cpu {

Tensor linear(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_cpu_float("linear", {{"x", &x}, {"w", &w}, {"bias", &bias}});
  const int64_t rows = x.dim(0), in = x.dim(1), out = w.dim(0);
  Tensor y = Tensor::empty(Shape{rows, out}, x.dtype(), ctx.device(), ctx.stream());
  dispatch_float("linear", x, [&](auto tag) {
    using T = decltype(tag);
    T* yp = y.data<T>();
    // y = x * w^T (+ b): with a bias, pre-fill y with b and let GEMM add to it.
    T beta = T(0);
    if (bias.defined()) {
      const T* b = bias.data<T>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < out; ++j)
          yp[r * out + j] = b[j];
      beta = T(1);
    }
    gemm({rows, out, in, false, true}, T(1), x.data<T>(), in, w.data<T>(), in, beta, yp, out);
  });
  return y;
}

Tensor linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& w) {
  check_cpu_float("linear_backward_input", {{"dy", &dy}, {"w", &w}});
  const int64_t rows = dy.dim(0), out = w.dim(0), in = w.dim(1);
  Tensor dx = Tensor::empty(Shape{rows, in}, dy.dtype(), ctx.device(), ctx.stream());
  dispatch_float("linear_backward_input", dy, [&](auto tag) {
    using T = decltype(tag);
    // dx[rows, in] = dy[rows, out] * w[out, in]
    gemm({rows, in, out, false, false}, T(1), dy.data<T>(), out, w.data<T>(), in, T(0),
         dx.data<T>(), in);
  });
  return dx;
}

void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate) {
  check_cpu_float("linear_backward_weight", {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
  const int64_t rows = x.dim(0), in = x.dim(1), out = dy.dim(1);
  dispatch_float("linear_backward_weight", dy, [&](auto tag) {
    using T = decltype(tag);
    // dw[out, in] (+)= dy[rows, out]^T * x[rows, in]
    gemm({out, in, rows, true, false}, T(1), dy.data<T>(), out, x.data<T>(), in,
         accumulate ? T(1) : T(0), dw.data<T>(), in);
  });
}

}  // namespace cohort::core::ops::cpu
