// sum, mean (device scalars), their backward broadcasts, and argmax over channels.
#include <string>

#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/cuda/reduce.cuh"

namespace cohort::core::ops::cuda {
namespace {

template <typename T>
__global__ void sum_partial_kernel(const T* __restrict__ x, int64_t n, double* partial) {
  double s = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    s += to_f32(x[i]);
  store_block_pair(s, 0.0, partial);
}

__global__ void sum_finalize_kernel(const double* partial, int blocks, double scale, float* out) {
  double a, b;
  sum_block_pairs(partial, blocks, a, b);
  if (threadIdx.x == 0) out[0] = static_cast<float>(a * scale);
}

// Broadcasts dloss[0] * scale into every element of dx.
template <typename T>
__global__ void broadcast_kernel(const float* __restrict__ dloss, double scale, T* __restrict__ dx,
                                 int64_t n) {
  const T v = from_f32<T>(static_cast<float>(static_cast<double>(dloss[0]) * scale));
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dx[i] = v;
}

template <typename T>
__global__ void argmax_kernel(const T* __restrict__ x, int64_t rows, int64_t c,
                              int32_t* __restrict__ out) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* row = x + r * c;
    float best = to_f32(row[0]);
    int32_t index = 0;
    // Strict >: ties keep the first index; the first NaN wins (as the CPU).
    for (int64_t j = 1; j < c && !isnan(best); ++j) {
      const float v = to_f32(row[j]);
      if (v > best || isnan(v)) {
        best = v;
        index = static_cast<int32_t>(j);
      }
    }
    out[r] = index;
  }
}

Tensor reduce_sum(Context& ctx, const char* op, const Tensor& x, bool mean) {
  Tensor out = new_tensor(ctx, Shape{1}, DType::f32);
  const int64_t n = x.numel();
  const unsigned blocks = reduction_blocks(n);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    sum_partial_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(static_cast<const T*>(x.raw()), n,
                                                              partial.data<double>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
  // mean of an empty tensor is NaN (0/0), as PyTorch.
  const double scale = mean ? (n > 0 ? 1.0 / static_cast<double>(n) : NAN) : 1.0;
  sum_finalize_kernel<<<1, kThreads, 0, ctx.stream()>>>(partial.data<double>(), blocks, scale,
                                                        out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

Tensor broadcast_backward(Context& ctx, const char* op, const Tensor& dloss, const Shape& x_shape,
                          DType dtype, bool mean) {
  require_on_device(op, "dloss", ctx, dloss);
  require_f32(op, "dloss", dloss);
  if (dloss.numel() != 1)
    COHORT_FAIL(std::string(op) + ": dloss " + dloss.str() + " must hold one element");
  Tensor dx = new_tensor(ctx, x_shape, dtype);
  const int64_t n = dx.numel();
  if (n == 0) return dx;
  const double scale = mean ? 1.0 / static_cast<double>(n) : 1.0;
  dispatch_float(op, "dx", dx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    broadcast_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(dloss.data<float>(), scale,
                                                                 static_cast<T*>(dx.raw()), n);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace

Tensor sum(Context& ctx, const Tensor& x) {
  return reduce_sum(ctx, "sum", x, false);
}
Tensor mean(Context& ctx, const Tensor& x) {
  return reduce_sum(ctx, "mean", x, true);
}

Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  return broadcast_backward(ctx, "sum_backward", dloss, x_shape, dtype, false);
}

Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  return broadcast_backward(ctx, "mean_backward", dloss, x_shape, dtype, true);
}

Tensor argmax_channels(Context& ctx, const Tensor& x) {
  const char* op = "argmax_channels";
  if (x.rank() < 1) COHORT_FAIL(std::string(op) + ": x " + x.str() + " has no channel dim");
  const int64_t c = channels_of(x), rows = rows_of(x);
  if (c == 0) COHORT_FAIL(std::string(op) + ": x " + x.str() + " has zero channels");
  const auto dims = x.shape().dims();
  Tensor out = new_tensor(ctx, Shape(dims.subspan(0, dims.size() - 1)), DType::i32);
  if (rows == 0) return out;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    argmax_kernel<<<grid_for(rows), kThreads, 0, ctx.stream()>>>(static_cast<const T*>(x.raw()),
                                                                 rows, c, out.data<int32_t>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cohort::core::ops::cuda
