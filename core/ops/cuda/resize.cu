// Bilinear resize (align_corners=false) on NHWC tensors. Source coordinates are
// computed in double exactly as the CPU does (core/ops/resize_taps.hpp), so both
// pick the same taps. The backward scatters each output gradient to its four taps
// with f32 atomics (into dx itself for f32, into an f32 buffer then cast for
// bf16/f16); with run.deterministic it gathers instead: one thread per input
// element sums the output gradients that read it in a fixed order, bit for bit
// the same every run.
#include <string>

#include "core/determinism.hpp"
#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/resize_taps.hpp"

namespace cohort::core::ops::cuda {
namespace {

struct ResizeDims {
  int64_t n, h, w, c, oh, ow;
};

template <typename T>
__global__ void resize_forward_kernel(const T* __restrict__ x, T* __restrict__ y, ResizeDims d,
                                      int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = i % d.c;
    int64_t pixel = i / d.c;
    const int64_t ox = pixel % d.ow;
    pixel /= d.ow;
    const int64_t oy = pixel % d.oh, img = pixel / d.oh;
    const ResizeTaps r = resize_taps(oy, d.h, d.oh), k = resize_taps(ox, d.w, d.ow);
    const T* base = x + img * d.h * d.w * d.c + ch;
    const float a = to_f32(base[(r.i0 * d.w + k.i0) * d.c]);
    const float b = to_f32(base[(r.i0 * d.w + k.i1) * d.c]);
    const float c = to_f32(base[(r.i1 * d.w + k.i0) * d.c]);
    const float e = to_f32(base[(r.i1 * d.w + k.i1) * d.c]);
    y[i] = from_f32<T>(r.w0 * k.w0 * a + r.w0 * k.w1 * b + r.w1 * k.w0 * c + r.w1 * k.w1 * e);
  }
}

template <typename T>
__global__ void resize_backward_kernel(const T* __restrict__ dy, float* __restrict__ dx,
                                       ResizeDims d, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = i % d.c;
    int64_t pixel = i / d.c;
    const int64_t ox = pixel % d.ow;
    pixel /= d.ow;
    const int64_t oy = pixel % d.oh, img = pixel / d.oh;
    const ResizeTaps r = resize_taps(oy, d.h, d.oh), k = resize_taps(ox, d.w, d.ow);
    const float g = to_f32(dy[i]);
    float* base = dx + img * d.h * d.w * d.c + ch;
    atomicAdd(base + (r.i0 * d.w + k.i0) * d.c, r.w0 * k.w0 * g);
    atomicAdd(base + (r.i0 * d.w + k.i1) * d.c, r.w0 * k.w1 * g);
    atomicAdd(base + (r.i1 * d.w + k.i0) * d.c, r.w1 * k.w0 * g);
    atomicAdd(base + (r.i1 * d.w + k.i1) * d.c, r.w1 * k.w1 * g);
  }
}

// One thread per element of dx: the output gradients that read it, gathered.
template <typename T>
__global__ void resize_backward_gather_kernel(const T* __restrict__ dy, T* __restrict__ dx,
                                              ResizeDims d, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ch = i % d.c;
    int64_t pixel = i / d.c;
    const int64_t col = pixel % d.w;
    pixel /= d.w;
    const int64_t row = pixel % d.h, img = pixel / d.h;
    const T* base = dy + img * d.oh * d.ow * d.c + ch;
    const auto at = [&](int64_t oy, int64_t ox) { return to_f32(base[(oy * d.ow + ox) * d.c]); };
    dx[i] = from_f32<T>(resize_gather_gradient(row, col, d.h, d.w, d.oh, d.ow, at));
  }
}

}  // namespace

Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w) {
  const char* op = "resize_bilinear";
  require_float(op, "x", x);
  if (x.rank() != 4 || out_h < 1 || out_w < 1)
    COHORT_FAIL(std::string(op) + ": cannot resize " + x.str() + " to " + std::to_string(out_h) +
                "x" + std::to_string(out_w));
  const ResizeDims d{x.dim(0), x.dim(1), x.dim(2), x.dim(3), out_h, out_w};
  Tensor y = new_tensor(ctx, Shape{d.n, d.oh, d.ow, d.c}, x.dtype());
  const int64_t total = y.numel();
  if (total == 0 || x.numel() == 0) return y;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    resize_forward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), d, total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  const char* op = "resize_bilinear_backward";
  require_float(op, "dy", dy);
  if (dy.rank() != 4 || x_shape.rank() != 4 || dy.dim(0) != x_shape[0] || dy.dim(3) != x_shape[3])
    COHORT_FAIL(std::string(op) + ": dy " + dy.str() + " does not match x shape " + x_shape.str());
  const ResizeDims d{x_shape[0], x_shape[1], x_shape[2], x_shape[3], dy.dim(1), dy.dim(2)};
  if (core::deterministic_algorithms()) {
    Tensor dx = new_tensor(ctx, x_shape, dy.dtype());
    const int64_t total = dx.numel();
    if (total == 0) return dx;
    if (dy.numel() == 0) {
      dx.zero_(ctx.stream());
      return dx;
    }
    dispatch_float(op, "dy", dy, [&](auto tag) {
      using T = typename decltype(tag)::type;
      resize_backward_gather_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), d, total);
      COHORT_CUDA_LAUNCH_CHECK();
    });
    return dx;
  }
  const bool direct = dy.dtype() == DType::f32;
  Tensor dx = new_tensor(ctx, x_shape, dy.dtype());
  Tensor acc = direct ? dx : new_tensor(ctx, x_shape, DType::f32);
  acc.zero_(ctx.stream());
  const int64_t total = dy.numel();
  if (total > 0) {
    dispatch_float(op, "dy", dy, [&](auto tag) {
      using T = typename decltype(tag)::type;
      resize_backward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(dy.raw()), acc.data<float>(), d, total);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  }
  if (!direct) convert_into(ctx, acc, dx, false);
  return dx;
}

}  // namespace cohort::core::ops::cuda
