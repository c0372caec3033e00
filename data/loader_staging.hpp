#pragma once
// Internal to the loader: the GPU side of batch delivery. Declared without CUDA
// headers; implemented in loader_cuda.cpp, which only CUDA builds compile.
//
// Per slot two events order the slot's reuse without host waits:
//   copied[s]   recorded on the copy stream after the slot's host->device copy; the
//               consumer's stream waits on it (acquire), and workers wait on it on
//               the host before refilling the slot's pinned buffers (wait_host_free)
//   released[s] recorded on the consumer's stream when the consumer moves past the
//               batch (release); the next copy into the slot waits on it (on the GPU)
// The loader's mutex orders the host calls: a slot is released before it is reused.
#include <cstddef>
#include <memory>
#include <vector>

#include "core/device.hpp"
#include "core/storage.hpp"

namespace cohort::data::detail {

struct CopyRegion {
  void* dst = nullptr;        // device memory
  const void* src = nullptr;  // pinned host memory
  size_t bytes = 0;
};

class DeviceStaging {
 public:
  virtual ~DeviceStaging() = default;
  // The stream the copies run on (device buffers are allocated on it too).
  virtual core::StreamHandle copy_stream() const = 0;
  // Makes the calling (worker) thread's current device the loader's device.
  virtual void bind_thread() = 0;
  // Blocks until the last copy out of the slot's host buffers has finished.
  virtual void wait_host_free(int slot) = 0;
  // Queues the slot's copies on the copy stream behind the slot's release.
  virtual void copy(int slot, const std::vector<CopyRegion>& regions) = 0;
  virtual void acquire(int slot, core::StreamHandle consumer) = 0;
  virtual void release(int slot, core::StreamHandle consumer) = 0;
  // Waits for every recorded release and copy (before buffers are reused or freed).
  virtual void synchronize() = 0;
};

// CUDA builds only (loader_cuda.cpp).
std::unique_ptr<DeviceStaging> make_cuda_staging(core::Device device, int slots);

}  // namespace cohort::data::detail
