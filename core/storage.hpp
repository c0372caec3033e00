#pragma once
// A block of memory on one device, shared by every tensor that views it.
// CPU memory is 64-byte aligned; CUDA memory comes from the stream-ordered pool
// (cudaMallocAsync) and is returned to it on the stream it was allocated on.
#include <cstddef>
#include <functional>
#include <memory>

#include "core/device.hpp"

struct CUstream_st;  // cudaStream_t without including CUDA headers

namespace cohort::core {

using StreamHandle = CUstream_st*;  // == cudaStream_t

class Storage {
 public:
  Storage(void* data, size_t bytes, Device device, std::function<void(void*)> deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return m_data; }
  size_t bytes() const { return m_bytes; }
  Device device() const { return m_device; }

 private:
  void* m_data;
  size_t m_bytes;
  Device m_device;
  std::function<void(void*)> m_deleter;
};

// Allocates `bytes` on `device`. For CUDA, `stream` orders the allocation and the
// eventual free; the caller must not use the memory on another stream without an
// event (see docs/ARCHITECTURE.md, "Streams").
std::shared_ptr<Storage> allocate_storage(size_t bytes, Device device, StreamHandle stream);

// Page-locked host memory for fast host<->device copies (falls back to ordinary
// memory in a CPU-only build).
std::shared_ptr<Storage> allocate_pinned_storage(size_t bytes);

}  // namespace cohort::core
