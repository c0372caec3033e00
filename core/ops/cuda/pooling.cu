// Max, average and adaptive-average pooling on NHWC tensors. Max/average forward
// and average backward try cuDNN first (pooling_cudnn.cpp); these own kernels run
// what cuDNN declines, adaptive pooling, and max-pool backward (see below).
// Forward: one thread per output element. Backward gathers (one thread per input
// element, summing over the windows that contain it), so no atomics are needed and
// the result is deterministic. Max pooling recomputes each window's first maximum
// from x with the CPU's rule (row-major window order, padding never wins, NaN beats
// numbers), so the gradient lands on exactly the CPU's element even with ties.
#include <cstdint>
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/cuda/pooling_cudnn.hpp"

namespace cohort::core::ops::cuda {
namespace {

struct PoolDims {
  int64_t n, h, w, c, oh, ow;
};

struct PoolParams {
  int kh, kw, sh, sw, ph, pw;
  bool count_include_pad;
};

// Output indices o whose window [o*s - p, o*s - p + k) contains input index i.
__device__ __forceinline__ void covering_range(int64_t i, int k, int s, int p, int64_t out,
                                               int64_t& lo, int64_t& hi) {
  const int64_t num = i + p - k + 1;  // o*s >= i + p - k + 1
  lo = num <= 0 ? 0 : (num + s - 1) / s;
  hi = (i + p) / s;  // o*s <= i + p
  if (hi > out - 1) hi = out - 1;
}

// Index (within the image, h*W + w) of the first maximum of channel ch in window
// (oy, ox), and the maximum itself.
template <typename T>
__device__ void window_max(const T* image, const PoolDims& d, const PoolParams& g, int64_t oy,
                           int64_t ox, int64_t ch, float& best, int64_t& where) {
  const int64_t ys = oy * g.sh - g.ph, xs = ox * g.sw - g.pw;
  const int64_t y0 = ys > 0 ? ys : 0, x0 = xs > 0 ? xs : 0;
  const int64_t y1 = ys + g.kh < d.h ? ys + g.kh : d.h, x1 = xs + g.kw < d.w ? xs + g.kw : d.w;
  best = -INFINITY;
  where = y0 * d.w + x0;  // every cell -inf (or an empty window): the first cell
  for (int64_t iy = y0; iy < y1; ++iy)
    for (int64_t ix = x0; ix < x1; ++ix) {
      const float v = to_f32(image[(iy * d.w + ix) * d.c + ch]);
      if (v > best || (isnan(v) && !isnan(best))) {
        best = v;
        where = iy * d.w + ix;
      }
    }
}

// Input rows/cols a window averages over and its divisor (the CPU's rule).
__device__ __forceinline__ void avg_window(const PoolDims& d, const PoolParams& g, int64_t oy,
                                           int64_t ox, int64_t& y0, int64_t& y1, int64_t& x0,
                                           int64_t& x1, float& inv) {
  const int64_t ys = oy * g.sh - g.ph, xs = ox * g.sw - g.pw;
  const int64_t ye = ys + g.kh < d.h + g.ph ? ys + g.kh : d.h + g.ph;
  const int64_t xe = xs + g.kw < d.w + g.pw ? xs + g.kw : d.w + g.pw;
  y0 = ys > 0 ? ys : 0;
  x0 = xs > 0 ? xs : 0;
  y1 = ye < d.h ? ye : d.h;
  x1 = xe < d.w ? xe : d.w;
  const double divisor = g.count_include_pad ? static_cast<double>((ye - ys) * (xe - xs))
                                             : static_cast<double>((y1 - y0) * (x1 - x0));
  inv = static_cast<float>(1.0 / divisor);
}

// PyTorch's adaptive bins: [floor(o*in/out), ceil((o+1)*in/out)).
__device__ __forceinline__ int64_t bin_start(int64_t o, int64_t in, int64_t out) {
  return o * in / out;
}
__device__ __forceinline__ int64_t bin_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

// Splits a flat NHWC index into (image, y, x, channel) for a [n, hh, ww, c] tensor.
__device__ __forceinline__ void unflatten(int64_t i, int64_t hh, int64_t ww, int64_t c,
                                          int64_t& img, int64_t& y, int64_t& x, int64_t& ch) {
  ch = i % c;
  int64_t pixel = i / c;
  x = pixel % ww;
  pixel /= ww;
  y = pixel % hh;
  img = pixel / hh;
}

// The maximum of every window (y, when given) and where it is (where_out, when
// given: the index h*W + w of its first maximum within the image).
//
// Backward runs in two passes, both deterministic (no atomics): this kernel finds
// every window's first maximum once, then each input element gathers dy from the
// (at most ceil(k/s)^2) windows that chose it. Recomputing the window maxima per
// input element instead (one pass) cost 13.7 ms for ResNet-50's stem at batch 256
// on an H100.
template <typename T>
__global__ void max_window_kernel(const T* __restrict__ x, T* __restrict__ y,
                                  int32_t* __restrict__ where_out, PoolDims d, PoolParams g,
                                  int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, oy, ox, ch;
    unflatten(i, d.oh, d.ow, d.c, img, oy, ox, ch);
    float best;
    int64_t where;
    window_max(x + img * d.h * d.w * d.c, d, g, oy, ox, ch, best, where);
    if (y != nullptr) y[i] = from_f32<T>(best);
    if (where_out != nullptr) where_out[i] = static_cast<int32_t>(where);
  }
}

template <typename T>
__global__ void max_backward_kernel(const T* __restrict__ dy, const int32_t* __restrict__ where,
                                    T* __restrict__ dx, PoolDims d, PoolParams g, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, iy, ix, ch;
    unflatten(i, d.h, d.w, d.c, img, iy, ix, ch);
    int64_t oy0, oy1, ox0, ox1;
    covering_range(iy, g.kh, g.sh, g.ph, d.oh, oy0, oy1);
    covering_range(ix, g.kw, g.sw, g.pw, d.ow, ox0, ox1);
    const int32_t me = static_cast<int32_t>(iy * d.w + ix);
    float acc = 0.f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t o = ((img * d.oh + oy) * d.ow + ox) * d.c + ch;
        if (where[o] == me) acc += to_f32(dy[o]);
      }
    dx[i] = from_f32<T>(acc);
  }
}

template <typename T>
__global__ void avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, PoolDims d,
                                   PoolParams g, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, oy, ox, ch;
    unflatten(i, d.oh, d.ow, d.c, img, oy, ox, ch);
    int64_t y0, y1, x0, x1;
    float inv;
    avg_window(d, g, oy, ox, y0, y1, x0, x1, inv);
    const T* image = x + img * d.h * d.w * d.c;
    float s = 0.f;
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t ix = x0; ix < x1; ++ix)
        s += to_f32(image[(iy * d.w + ix) * d.c + ch]);
    y[i] = from_f32<T>(s * inv);
  }
}

template <typename T>
__global__ void avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, PoolDims d,
                                    PoolParams g, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, iy, ix, ch;
    unflatten(i, d.h, d.w, d.c, img, iy, ix, ch);
    int64_t oy0, oy1, ox0, ox1;
    covering_range(iy, g.kh, g.sh, g.ph, d.oh, oy0, oy1);
    covering_range(ix, g.kw, g.sw, g.pw, d.ow, ox0, ox1);
    float acc = 0.f;
    for (int64_t oy = oy0; oy <= oy1; ++oy)
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        int64_t y0, y1, x0, x1;
        float inv;
        avg_window(d, g, oy, ox, y0, y1, x0, x1, inv);
        acc += to_f32(dy[((img * d.oh + oy) * d.ow + ox) * d.c + ch]) * inv;
      }
    dx[i] = from_f32<T>(acc);
  }
}

template <typename T>
__global__ void adaptive_forward_kernel(const T* __restrict__ x, T* __restrict__ y, PoolDims d,
                                        int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, oy, ox, ch;
    unflatten(i, d.oh, d.ow, d.c, img, oy, ox, ch);
    const int64_t y0 = bin_start(oy, d.h, d.oh), y1 = bin_end(oy, d.h, d.oh);
    const int64_t x0 = bin_start(ox, d.w, d.ow), x1 = bin_end(ox, d.w, d.ow);
    const T* image = x + img * d.h * d.w * d.c;
    float s = 0.f;
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t ix = x0; ix < x1; ++ix)
        s += to_f32(image[(iy * d.w + ix) * d.c + ch]);
    const float inv = static_cast<float>(1.0 / static_cast<double>((y1 - y0) * (x1 - x0)));
    y[i] = from_f32<T>(s * inv);
  }
}

// First and one-past-last output bins that contain input index i (bins overlap
// when out does not divide in, and are contiguous in o).
__device__ __forceinline__ void covering_bins(int64_t i, int64_t in, int64_t out, int64_t& lo,
                                              int64_t& hi) {
  lo = i * out / in;  // always covers i
  while (lo > 0 && bin_end(lo - 1, in, out) > i)
    --lo;
  hi = lo;
  while (hi < out && bin_start(hi, in, out) <= i)
    ++hi;
}

template <typename T>
__global__ void adaptive_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, PoolDims d,
                                         int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t img, iy, ix, ch;
    unflatten(i, d.h, d.w, d.c, img, iy, ix, ch);
    int64_t oy0, oy1, ox0, ox1;
    covering_bins(iy, d.h, d.oh, oy0, oy1);
    covering_bins(ix, d.w, d.ow, ox0, ox1);
    float acc = 0.f;
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      const int64_t rows = bin_end(oy, d.h, d.oh) - bin_start(oy, d.h, d.oh);
      for (int64_t ox = ox0; ox < ox1; ++ox) {
        const int64_t cols = bin_end(ox, d.w, d.ow) - bin_start(ox, d.w, d.ow);
        const float inv = static_cast<float>(1.0 / static_cast<double>(rows * cols));
        acc += to_f32(dy[((img * d.oh + oy) * d.ow + ox) * d.c + ch]) * inv;
      }
    }
    dx[i] = from_f32<T>(acc);
  }
}

PoolDims dims_of(const Shape& x, const Shape& y) {
  return {x[0], x[1], x[2], x[3], y[1], y[2]};
}

PoolParams params_of(const PoolGeometry& g) {
  return {g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.count_include_pad};
}

void check_nhwc(const char* op, const char* name, const Tensor& t) {
  require_float(op, name, t);
  if (t.rank() != 4) COHORT_FAIL(std::string(op) + ": " + name + " " + t.str() + " must be NHWC");
}

void check_window(const char* op, const Shape& x, const PoolGeometry& g) {
  if (g.kernel_h < 1 || g.kernel_w < 1 || g.stride_h < 1 || g.stride_w < 1 || g.pad_h < 0 ||
      g.pad_w < 0)
    COHORT_FAIL(std::string(op) + ": invalid pooling geometry for x " + x.str());
}

}  // namespace

Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  const char* op = "max_pool2d";
  check_nhwc(op, "x", x);
  check_window(op, x.shape(), g);
  const Shape y_shape = pool2d_output_shape(x.shape(), g);
  if (y_shape.numel() > 0)
    if (Tensor y = cudnn_pool_forward(ctx, x, g, /*max=*/true, y_shape); y.defined()) return y;
  Tensor y = new_tensor(ctx, y_shape, x.dtype());
  const int64_t total = y.numel();
  if (total == 0) return y;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_window_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), nullptr,
        dims_of(x.shape(), y.shape()), params_of(g), total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g) {
  const char* op = "max_pool2d_backward";
  check_nhwc(op, "x", x);
  check_nhwc(op, "dy", dy);
  check_window(op, x.shape(), g);
  if (dy.dtype() != x.dtype() || dy.shape() != pool2d_output_shape(x.shape(), g))
    COHORT_FAIL(std::string(op) + ": dy " + dy.str() + " does not match the pooled x " + x.str());
  if (x.dim(1) * x.dim(2) > INT32_MAX)
    COHORT_FAIL(std::string(op) + ": images of " + x.str() + " are too large for 32-bit indices");
  Tensor dx = new_tensor(ctx, x.shape(), x.dtype());
  const int64_t total = dx.numel();
  if (total == 0) return dx;
  const int64_t outputs = dy.numel();
  Tensor where = new_tensor(ctx, dy.shape(), DType::i32);
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (outputs > 0) {
      max_window_kernel<<<grid_for(outputs), kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(x.raw()), static_cast<T*>(nullptr),
          static_cast<int32_t*>(where.raw()), dims_of(x.shape(), dy.shape()), params_of(g),
          outputs);
      COHORT_CUDA_LAUNCH_CHECK();
    }
    max_backward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(dy.raw()), static_cast<const int32_t*>(where.raw()),
        static_cast<T*>(dx.raw()), dims_of(x.shape(), dy.shape()), params_of(g), total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return dx;
}

Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  const char* op = "avg_pool2d";
  check_nhwc(op, "x", x);
  check_window(op, x.shape(), g);
  const Shape y_shape = pool2d_output_shape(x.shape(), g);
  if (y_shape.numel() > 0)
    if (Tensor y = cudnn_pool_forward(ctx, x, g, /*max=*/false, y_shape); y.defined()) return y;
  Tensor y = new_tensor(ctx, y_shape, x.dtype());
  const int64_t total = y.numel();
  if (total == 0) return y;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_forward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), dims_of(x.shape(), y.shape()),
        params_of(g), total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g) {
  const char* op = "avg_pool2d_backward";
  check_nhwc(op, "dy", dy);
  check_window(op, x_shape, g);
  if (x_shape.rank() != 4 || dy.shape() != pool2d_output_shape(x_shape, g))
    COHORT_FAIL(std::string(op) + ": dy " + dy.str() + " does not match x shape " + x_shape.str());
  if (x_shape.numel() > 0 && dy.numel() > 0)
    if (Tensor dx = cudnn_avg_pool_backward(ctx, dy, x_shape, g); dx.defined()) return dx;
  Tensor dx = new_tensor(ctx, x_shape, dy.dtype());
  const int64_t total = dx.numel();
  if (total == 0) return dx;
  dispatch_float(op, "dy", dy, [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_backward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), dims_of(x_shape, dy.shape()),
        params_of(g), total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return dx;
}

Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w) {
  const char* op = "adaptive_avg_pool2d";
  check_nhwc(op, "x", x);
  if (out_h < 1 || out_w < 1)
    COHORT_FAIL(std::string(op) + ": output size " + std::to_string(out_h) + "x" +
                std::to_string(out_w) + " is empty (x " + x.str() + ")");
  Tensor y = new_tensor(ctx, Shape{x.dim(0), out_h, out_w, x.dim(3)}, x.dtype());
  const int64_t total = y.numel();
  if (total == 0 || x.numel() == 0) return y;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_forward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), dims_of(x.shape(), y.shape()),
        total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_nhwc(op, "dy", dy);
  if (x_shape.rank() != 4 || x_shape[0] != dy.dim(0) || x_shape[3] != dy.dim(3))
    COHORT_FAIL(std::string(op) + ": dy " + dy.str() + " does not match x shape " + x_shape.str());
  Tensor dx = new_tensor(ctx, x_shape, dy.dtype());
  const int64_t total = dx.numel();
  if (total == 0) return dx;
  dispatch_float(op, "dy", dy, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adaptive_backward_kernel<<<grid_for(total), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), dims_of(x_shape, dy.shape()),
        total);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace cohort::core::ops::cuda
