// Bilinear resize (align_corners=false) on NHWC tensors. Source coordinates are
// computed in double exactly as the CPU does, so both pick the same taps. The
// backward scatters each output gradient to its four taps with f32 atomics (into
// dx itself for f32, into an f32 buffer then cast for bf16/f16).
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

struct Taps {
  int64_t i0, i1;
  float w0, w1;
};

// PyTorch's mapping: src = max((dst + 0.5) * in/out - 0.5, 0); the right tap
// collapses onto the left one at the border.
__device__ __forceinline__ Taps taps_for(int64_t dst, int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  double src = (static_cast<double>(dst) + 0.5) * scale - 0.5;
  if (src < 0) src = 0;
  int64_t i0 = static_cast<int64_t>(src);
  if (i0 > in - 1) i0 = in - 1;
  double frac = src - static_cast<double>(i0);
  frac = frac < 0 ? 0 : (frac > 1 ? 1 : frac);
  return {i0, i0 < in - 1 ? i0 + 1 : i0, static_cast<float>(1.0 - frac), static_cast<float>(frac)};
}

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
    const Taps r = taps_for(oy, d.h, d.oh), k = taps_for(ox, d.w, d.ow);
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
    const Taps r = taps_for(oy, d.h, d.oh), k = taps_for(ox, d.w, d.ow);
    const float g = to_f32(dy[i]);
    float* base = dx + img * d.h * d.w * d.c + ch;
    atomicAdd(base + (r.i0 * d.w + k.i0) * d.c, r.w0 * k.w0 * g);
    atomicAdd(base + (r.i0 * d.w + k.i1) * d.c, r.w0 * k.w1 * g);
    atomicAdd(base + (r.i1 * d.w + k.i0) * d.c, r.w1 * k.w0 * g);
    atomicAdd(base + (r.i1 * d.w + k.i1) * d.c, r.w1 * k.w1 * g);
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
