// Evaluation metrics accumulated on the device: a confusion matrix and depth
// error sums. Both add into caller-owned device tensors with atomics, so an
// evaluation loop launches kernels per batch and reads back once at the end;
// nothing here synchronises or touches host memory. The dispatcher in
// core/ops/metrics.cpp has validated shapes, dtypes and devices.
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/cuda/reduce.cuh"

namespace cohort::core::ops::cuda {
namespace {

// What atomicAdd takes for 64-bit integers. Two's-complement addition gives the
// same bits as on int64_t, so the i64 tensors are updated through this type.
using Count = unsigned long long;

// Matrices of up to this many entries are counted in a per-block shared-memory
// histogram of 32-bit counters (16 KiB), so a block touches global memory once
// per non-empty bin rather than once per pixel; this is where segmentation
// (19x19 for Cityscapes) lives. Larger matrices (1000 ImageNet classes) are
// sparse enough per batch that global atomics rarely collide.
constexpr int64_t kSharedBins = 4096;

template <typename L, bool kShared>
__global__ void confusion_kernel(const int32_t* __restrict__ predicted, const L* __restrict__ truth,
                                 int64_t n, int64_t ignore_index, int64_t k,
                                 Count* __restrict__ confusion, Count* __restrict__ out_of_range) {
  __shared__ unsigned bins[kShared ? kSharedBins : 1];
  __shared__ Count scratch[32];
  const int64_t entries = k * k;
  if constexpr (kShared) {
    for (int64_t i = threadIdx.x; i < entries; i += blockDim.x)
      bins[i] = 0;
    __syncthreads();
  }
  Count outside = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = static_cast<int64_t>(truth[i]);
    if (t == ignore_index) continue;
    const int64_t p = predicted[i];
    if (t < 0 || t >= k || p < 0 || p >= k) {
      ++outside;
      continue;
    }
    if constexpr (kShared)
      atomicAdd(&bins[t * k + p], 1u);
    else
      atomicAdd(&confusion[t * k + p], Count{1});
  }
  if constexpr (kShared) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < entries; i += blockDim.x)
      if (bins[i] != 0) atomicAdd(&confusion[i], static_cast<Count>(bins[i]));
  }
  outside = block_sum(outside, scratch);
  if (threadIdx.x == 0 && outside != 0) atomicAdd(out_of_range, outside);
}

// Per-thread double partials, one block reduction, one atomicAdd per block and
// sum. The order of the blocks' atomics varies, so the last bits may differ
// between runs; an evaluation metric does not need bitwise reproducibility.
template <typename T>
__global__ void depth_errors_kernel(const T* __restrict__ predicted,
                                    const float* __restrict__ target,
                                    const uint8_t* __restrict__ valid, int64_t n,
                                    double* __restrict__ sums) {
  __shared__ double scratch[32];
  double abs_rel = 0, squared = 0, count = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float t = target[i];
    if (valid[i] == 0 || !(t > 0.0f)) continue;  // NaN targets are not valid either
    const double td = t, diff = static_cast<double>(to_f32(predicted[i])) - td;
    abs_rel += fabs(diff) / td;
    squared += diff * diff;
    count += 1;
  }
  abs_rel = block_sum(abs_rel, scratch);
  squared = block_sum(squared, scratch);
  count = block_sum(count, scratch);
  if (threadIdx.x == 0 && count > 0) {
    atomicAdd(&sums[0], abs_rel);
    atomicAdd(&sums[1], squared);
    atomicAdd(&sums[2], count);
  }
}

template <typename F>
void dispatch_truth(const char* op, const Tensor& truth, F&& f) {
  switch (truth.dtype()) {
    case DType::u8:
      f(TypeTag<uint8_t>{});
      return;
    case DType::i32:
      f(TypeTag<int32_t>{});
      return;
    default:
      fail_dtype(op, "truth", truth, "u8 or i32");
  }
}

template <typename L>
void launch_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                      int64_t ignore_index, Tensor& confusion, Tensor& out_of_range) {
  const int64_t n = predicted.numel(), k = confusion.dim(0);
  // Many items per thread: each block pays for zeroing and flushing its histogram.
  const unsigned blocks = reduction_blocks(n, 16);
  // A block's 32-bit bins must not wrap: at most n / blocks + one grid stride per block.
  const bool shared = k * k <= kSharedBins && n / blocks < (int64_t{1} << 31);
  const int32_t* p = predicted.data<int32_t>();
  const L* t = static_cast<const L*>(truth.raw());
  Count* c = static_cast<Count*>(confusion.raw());
  Count* o = static_cast<Count*>(out_of_range.raw());
  if (shared)
    confusion_kernel<L, true>
        <<<blocks, kThreads, 0, ctx.stream()>>>(p, t, n, ignore_index, k, c, o);
  else
    confusion_kernel<L, false>
        <<<blocks, kThreads, 0, ctx.stream()>>>(p, t, n, ignore_index, k, c, o);
  COHORT_CUDA_LAUNCH_CHECK();
}

}  // namespace

void accumulate_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range) {
  const char* op = "accumulate_confusion";
  dispatch_truth(op, truth, [&](auto tag) {
    using L = typename decltype(tag)::type;
    if (predicted.numel() == 0) return;
    launch_confusion<L>(ctx, predicted, truth, ignore_index, confusion, out_of_range);
  });
}

void accumulate_depth_errors(Context& ctx, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums) {
  const char* op = "accumulate_depth_errors";
  const int64_t n = predicted.numel();
  dispatch_float(op, "predicted", predicted, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n == 0) return;
    depth_errors_kernel<<<reduction_blocks(n), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(predicted.raw()), target.data<float>(), valid.data<uint8_t>(), n,
        sums.data<double>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace cohort::core::ops::cuda
