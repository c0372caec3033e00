#include "core/storage.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "core/error.hpp"
#include "core/memory_stats.hpp"

namespace cohort::core {

#ifdef COHORT_WITH_CUDA
// core/cuda/memory_cuda.cpp
void* cuda_allocate(size_t bytes, int device, StreamHandle stream);
void cuda_free(void* ptr, int device, StreamHandle stream) noexcept;
void* cuda_allocate_pinned(size_t bytes);
void cuda_free_pinned(void* ptr) noexcept;
// {used, used high, reserved, reserved high} of the device's pool; the highs reset.
void cuda_pool_stats(int device, size_t out[4]);
void cuda_pool_reset_peaks(int device);
#endif

Storage::Storage(void* data, size_t bytes, Device device, std::function<void(void*)> deleter)
    : m_data(data), m_bytes(bytes), m_device(device), m_deleter(std::move(deleter)) {}

Storage::~Storage() {
  if (m_deleter && m_data) m_deleter(m_data);
}

namespace {
// Host tensor bytes (rounded as allocated), for memory_stats(Device::cpu()).
std::atomic<size_t> g_host_in_use{0};
std::atomic<size_t> g_host_peak{0};

void count_host_allocation(size_t bytes) {
  const size_t now = g_host_in_use.fetch_add(bytes) + bytes;
  size_t peak = g_host_peak.load();
  while (now > peak && !g_host_peak.compare_exchange_weak(peak, now)) {
  }
}

std::shared_ptr<Storage> allocate_host(size_t bytes) {
  constexpr size_t alignment = 64;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = rounded ? std::aligned_alloc(alignment, rounded) : nullptr;
  if (rounded && !p)
    throw OutOfMemoryError(
        fmt::format("host allocation of {} bytes failed [{}]", bytes, process_identity()));
  count_host_allocation(rounded);
  return std::make_shared<Storage>(p, bytes, Device::cpu(), [rounded](void* q) {
    std::free(q);
    g_host_in_use.fetch_sub(rounded);
  });
}
}  // namespace

std::shared_ptr<Storage> allocate_storage(size_t bytes, Device device, StreamHandle stream) {
  if (device.is_cpu()) return allocate_host(bytes);
#ifdef COHORT_WITH_CUDA
  void* p = bytes ? cuda_allocate(bytes, device.index, stream) : nullptr;
  const int index = device.index;
  return std::make_shared<Storage>(p, bytes, device,
                                   [index, stream](void* q) { cuda_free(q, index, stream); });
#else
  COHORT_FAIL(
      fmt::format("cannot allocate on {}: this build of cohort has no CUDA backend", device.str()));
#endif
}

std::shared_ptr<Storage> allocate_pinned_storage(size_t bytes) {
#ifdef COHORT_WITH_CUDA
  if (cuda_available()) {
    void* p = bytes ? cuda_allocate_pinned(bytes) : nullptr;
    return std::make_shared<Storage>(p, bytes, Device::cpu(), [](void* q) { cuda_free_pinned(q); });
  }
#endif
  return allocate_host(bytes);
}

}  // namespace cohort::core

namespace cohort::core {

MemoryStats memory_stats(Device device) {
  MemoryStats s;
  if (device.is_cpu()) {
    s.in_use = s.reserved = g_host_in_use.load();
    s.peak_in_use = s.peak_reserved = g_host_peak.load();
    return s;
  }
#ifdef COHORT_WITH_CUDA
  size_t v[4] = {0, 0, 0, 0};
  cuda_pool_stats(device.index, v);
  s.in_use = v[0];
  s.peak_in_use = v[1];
  s.reserved = v[2];
  s.peak_reserved = v[3];
  return s;
#else
  COHORT_FAIL(
      fmt::format("memory_stats({}): this build of cohort has no CUDA backend", device.str()));
#endif
}

void reset_peak_memory(Device device) {
  if (device.is_cpu()) {
    g_host_peak.store(g_host_in_use.load());
    return;
  }
#ifdef COHORT_WITH_CUDA
  cuda_pool_reset_peaks(device.index);
#else
  COHORT_FAIL(
      fmt::format("reset_peak_memory({}): this build of cohort has no CUDA backend", device.str()));
#endif
}

}  // namespace cohort::core
