#include "core/storage.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <new>

#include "core/error.hpp"

namespace cohort::core {

#ifdef COHORT_WITH_CUDA
// core/cuda/memory_cuda.cpp
void* cuda_allocate(size_t bytes, int device, StreamHandle stream);
void cuda_free(void* ptr, int device, StreamHandle stream) noexcept;
void* cuda_allocate_pinned(size_t bytes);
void cuda_free_pinned(void* ptr) noexcept;
#endif

Storage::Storage(void* data, size_t bytes, Device device, std::function<void(void*)> deleter)
    : m_data(data), m_bytes(bytes), m_device(device), m_deleter(std::move(deleter)) {}

Storage::~Storage() {
  if (m_deleter && m_data) m_deleter(m_data);
}

namespace {
std::shared_ptr<Storage> allocate_host(size_t bytes) {
  constexpr size_t alignment = 64;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = rounded ? std::aligned_alloc(alignment, rounded) : nullptr;
  if (rounded && !p)
    throw OutOfMemoryError(
        fmt::format("host allocation of {} bytes failed [{}]", bytes, process_identity()));
  return std::make_shared<Storage>(p, bytes, Device::cpu(), [](void* q) { std::free(q); });
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
