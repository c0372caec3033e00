// bias_backward: db[c] = sum over every row of dy[..., c] (conv, conv-transpose and
// linear bias gradients). Deterministic: per-block column partials, then one thread
// per channel adds them in a fixed order in double.
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

constexpr int kCols = 32, kRows = 8;

template <typename T>
__global__ void column_partial_kernel(const T* __restrict__ dy, int64_t rows, int64_t c,
                                      float* __restrict__ partial) {
  __shared__ float s[kRows][kCols];
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kCols) + threadIdx.x;
  float acc = 0.f;
  if (ch < c)
    for (int64_t r = blockIdx.y * static_cast<int64_t>(kRows) + threadIdx.y; r < rows;
         r += static_cast<int64_t>(gridDim.y) * kRows)
      acc += to_f32(dy[r * c + ch]);
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
    float t = 0.f;
    for (int i = 0; i < kRows; ++i)
      t += s[i][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * c + ch] = t;
  }
}

template <typename D>
__global__ void column_finalize_kernel(const float* __restrict__ partial, int row_blocks, int64_t c,
                                       D* __restrict__ db, bool accumulate) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  double s = 0;
  for (int i = 0; i < row_blocks; ++i)
    s += partial[static_cast<int64_t>(i) * c + ch];
  if (accumulate) s += to_f32(db[ch]);
  db[ch] = from_f32<D>(static_cast<float>(s));
}

}  // namespace

void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate) {
  const char* op = "bias_backward";
  require_float(op, "dy", dy);
  require_float(op, "db", db);
  const int64_t c = channels_of(dy), rows = rows_of(dy);
  if (db.numel() != c)
    COHORT_FAIL(std::string(op) + ": db " + db.str() + " must have one entry per channel of dy " +
                dy.str());
  if (c == 0) return;
  const int row_blocks =
      static_cast<int>(std::clamp<int64_t>((rows + kRows * 16 - 1) / (kRows * 16), 1, 1024));
  Tensor partial = new_tensor(ctx, Shape{static_cast<int64_t>(row_blocks) * c}, DType::f32);
  dispatch_float(op, "dy", dy, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid(static_cast<unsigned>((c + kCols - 1) / kCols),
                    static_cast<unsigned>(row_blocks));
    column_partial_kernel<<<grid, dim3(kCols, kRows), 0, ctx.stream()>>>(
        static_cast<const T*>(dy.raw()), rows, c, partial.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
  dispatch_float(op, "db", db, [&](auto tag) {
    using D = typename decltype(tag)::type;
    column_finalize_kernel<<<static_cast<unsigned>((c + 255) / 256), 256, 0, ctx.stream()>>>(
        partial.data<float>(), row_blocks, c, static_cast<D*>(db.raw()), accumulate);
    COHORT_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace cohort::core::ops::cuda
