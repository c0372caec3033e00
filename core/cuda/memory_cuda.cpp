// Device memory from CUDA's stream-ordered pool. The pool's release threshold is
// raised to "never" so freed blocks stay cached for the next step (no hand-written
// caching allocator). Out-of-memory errors say what was asked and what the pool holds.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "core/cuda/check.hpp"
#include "core/storage.hpp"

namespace cohort::core {

int cuda_runtime_device_count() {
  int count = 0;
  // No driver or no device is a CPU-only run, not an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

namespace {
void configure_pool_once(int device) {
  static std::mutex mutex;
  static std::vector<bool> configured;
  std::lock_guard lock(mutex);
  if (configured.size() <= static_cast<size_t>(device)) configured.resize(device + 1, false);
  if (configured[device]) return;
  cudaMemPool_t pool;
  COHORT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  COHORT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  configured[device] = true;
}

std::string pool_report(int device) {
  cudaMemPool_t pool;
  uint64_t reserved = 0, used = 0;
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
    cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used);
  }
  cudaMemGetInfo(&free_bytes, &total_bytes);
  (void)cudaGetLastError();
  constexpr double mib = 1024.0 * 1024.0;
  return fmt::format(
      "pool holds {:.1f} MiB reserved, {:.1f} MiB in use; device has {:.1f} MiB "
      "free of {:.1f} MiB",
      reserved / mib, used / mib, free_bytes / mib, total_bytes / mib);
}
}  // namespace

void cuda_pool_stats(int device, size_t out[4]) {
  cudaMemPool_t pool;
  COHORT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  const cudaMemPoolAttr attrs[4] = {cudaMemPoolAttrUsedMemCurrent, cudaMemPoolAttrUsedMemHigh,
                                    cudaMemPoolAttrReservedMemCurrent,
                                    cudaMemPoolAttrReservedMemHigh};
  for (int i = 0; i < 4; ++i) {
    uint64_t value = 0;
    COHORT_CUDA_CHECK(cudaMemPoolGetAttribute(pool, attrs[i], &value));
    out[i] = static_cast<size_t>(value);
  }
}

void cuda_pool_reset_peaks(int device) {
  cudaMemPool_t pool;
  COHORT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t zero = 0;  // the only value these attributes accept: "restart from now"
  COHORT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  COHORT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
}

void* cuda_allocate(size_t bytes, int device, StreamHandle stream) {
  COHORT_CUDA_CHECK(cudaSetDevice(device));
  configure_pool_once(device);
  void* p = nullptr;
  const cudaError_t status = cudaMallocAsync(&p, bytes, stream);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw OutOfMemoryError(
        fmt::format("CUDA out of memory on cuda:{}: asked for {:.1f} MiB; {} [{}]", device,
                    bytes / (1024.0 * 1024.0), pool_report(device), process_identity()));
  }
  COHORT_CUDA_CHECK(status);
  return p;
}

void cuda_free(void* ptr, int device, StreamHandle stream) noexcept {
  COHORT_CUDA_CHECK_PRINT(cudaFreeAsync(ptr, stream));
}

void* cuda_allocate_pinned(size_t bytes) {
  void* p = nullptr;
  COHORT_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return p;
}

void cuda_free_pinned(void* ptr) noexcept {
  COHORT_CUDA_CHECK_PRINT(cudaFreeHost(ptr));
}

}  // namespace cohort::core

namespace cohort::core {

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
               StreamHandle stream) {
  COHORT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
}

void cuda_memset_zero(void* dst, int device, size_t bytes, StreamHandle stream) {
  COHORT_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream));
}

void cuda_stream_synchronize(StreamHandle stream) {
  COHORT_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace cohort::core

namespace cohort::core {

// Streams of contexts are pooled per device and never destroyed: a tensor frees
// its memory on the stream it was allocated on (cudaFreeAsync), and tensors may
// outlive the Context that made them (a graph's parameters outlive the setup
// context of Graph::build). A released stream is synchronised first, so it comes
// back empty, and the next Context on that device reuses it.
namespace {
std::mutex g_stream_pool_mutex;
std::vector<std::pair<int, cudaStream_t>> g_free_streams;
std::vector<std::pair<cudaStream_t, int>> g_stream_devices;
}  // namespace

StreamHandle cuda_create_stream(int device) {
  COHORT_CUDA_CHECK(cudaSetDevice(device));
  {
    std::lock_guard lock(g_stream_pool_mutex);
    for (auto it = g_free_streams.begin(); it != g_free_streams.end(); ++it) {
      if (it->first != device) continue;
      cudaStream_t s = it->second;
      g_free_streams.erase(it);
      return s;
    }
  }
  cudaStream_t stream = nullptr;
  COHORT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::lock_guard lock(g_stream_pool_mutex);
  g_stream_devices.emplace_back(stream, device);
  return stream;
}

void cuda_destroy_stream(StreamHandle stream) noexcept {
  COHORT_CUDA_CHECK_PRINT(cudaStreamSynchronize(stream));
  std::lock_guard lock(g_stream_pool_mutex);
  for (const auto& [s, device] : g_stream_devices)
    if (s == stream) {
      g_free_streams.emplace_back(device, stream);
      return;
    }
}

}  // namespace cohort::core
