#include "core/ops/cpu/dropout_cpu.hpp"

#include "core/ops/cpu/cpu_dispatch.hpp"
#include "core/ops/philox.hpp"

namespace cohort::core::ops::cpu {
namespace {

// out = keep(i) ? in * 1/(1-p) : 0. Forward and backward are the same map: the
// gradient of a kept element is scaled like the element itself.
Tensor apply_mask(const char* op, Context& ctx, const Tensor& in, double p, uint64_t offset) {
  return dispatch_float(op, in, [&](auto tag) {
    using T = decltype(tag);
    Tensor out = Tensor::empty(in.shape(), in.dtype(), ctx.device(), ctx.stream());
    const T* pi = in.data<T>();
    T* po = out.data<T>();
    // The threshold is compared in float, exactly as the CUDA kernel does; with
    // p == 1 nothing is kept, so the (infinite) scale is never used.
    const float threshold = static_cast<float>(p);
    const T keep_scale = p < 1 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const uint64_t seed = ctx.seed();
    for (int64_t i = 0, n = in.numel(); i < n; ++i)
      po[i] = dropout_keep(seed, offset, static_cast<uint64_t>(i), threshold) ? pi[i] * keep_scale
                                                                              : T(0);
    return out;
  });
}

}  // namespace

Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset) {
  return apply_mask("dropout", ctx, x, p, offset);
}

Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset) {
  return apply_mask("dropout_backward", ctx, dy, p, offset);
}

}  // namespace cohort::core::ops::cpu
