#pragma once
// Deterministic two-stage reductions to device scalars: a grid of blocks writes
// per-block partial sums (double), then one block adds the partials in a fixed
// order. The grid depends only on the element count, so the same input always
// gives the same bits, and no result ever visits the host.
#include "core/ops/cuda/common.cuh"

namespace cohort::core::ops::cuda {

// Blocks for the first stage of a reduction over n items.
inline unsigned reduction_blocks(int64_t n, int items_per_thread = 8) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * items_per_thread;
  return static_cast<unsigned>(std::clamp<int64_t>((n + per_block - 1) / per_block, 1, 1024));
}

// Each block's sums of two per-thread values: partial[2 * block + {0, 1}].
__device__ __forceinline__ void store_block_pair(double a, double b, double* partial) {
  __shared__ double scratch[32];
  a = block_sum(a, scratch);
  b = block_sum(b, scratch);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = a;
    partial[2 * blockIdx.x + 1] = b;
  }
}

// Sums the partial pairs in one block (launch with kThreads threads); the totals
// are valid in thread 0.
__device__ __forceinline__ void sum_block_pairs(const double* partial, int blocks, double& a,
                                                double& b) {
  __shared__ double scratch[32];
  double ta = 0, tb = 0;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) {
    ta += partial[2 * i];
    tb += partial[2 * i + 1];
  }
  a = block_sum(ta, scratch);
  b = block_sum(tb, scratch);
}

}  // namespace cohort::core::ops::cuda
