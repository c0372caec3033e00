// memory_stats on a GPU: the stream-ordered pool's counters follow allocations
// and frees, and reset_peak_memory restarts the peak from the current use.
#ifdef COHORT_WITH_CUDA
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "core/memory_stats.hpp"
#include "core/tensor.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

TEST(GpuMemoryStats, PoolCountersFollowTensors) {
  const core::Device device = gpu().device();
  // Every stream, not only gpu()'s: frees queued on other pooled streams by
  // earlier tests must not land between `before` and `after`.
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  core::reset_peak_memory(device);
  const core::MemoryStats before = core::memory_stats(device);
  EXPECT_EQ(before.peak_in_use, before.in_use);
  {
    Tensor a = Tensor::zeros(Shape{int64_t{64} << 20}, DType::f32, device, gpu().stream());
    gpu().synchronize();
    const core::MemoryStats during = core::memory_stats(device);
    EXPECT_GE(during.in_use, before.in_use + (size_t{256} << 20));
    EXPECT_GE(during.reserved, during.in_use);
  }
  gpu().synchronize();
  const core::MemoryStats after = core::memory_stats(device);
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_GE(after.peak_in_use, before.in_use + (size_t{256} << 20));
  // The pool keeps what it reserved (release threshold "never").
  EXPECT_GE(after.reserved, size_t{256} << 20);
  core::reset_peak_memory(device);
  EXPECT_EQ(core::memory_stats(device).peak_in_use, after.in_use);
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
