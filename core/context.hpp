#pragma once
// Context: where ops run. It owns the stream (CUDA) and, lazily, the per-device
// library handles (cuDNN, cuBLASLt), the cuDNN algorithm cache and a scratch
// workspace. It also hands out random-number offsets so that dropout masks are a
// pure function of (seed, offset, element index) on every device.
// One Context per device per thread; ops never synchronise it implicitly.
#include <cstdint>
#include <memory>

#include "core/device.hpp"
#include "core/storage.hpp"

namespace cohort::core {

class Context {
 public:
  // For a CUDA device, takes a non-blocking stream from a per-device pool unless
  // `stream` is given (then the caller keeps ownership). Pooled streams are
  // synchronised and returned, never destroyed, so tensors allocated on them may
  // outlive the Context.
  explicit Context(Device device = Device::cpu(), StreamHandle stream = nullptr);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return m_device; }
  StreamHandle stream() const { return m_stream; }
  // Waits for all work queued on this context's stream (no-op on the CPU).
  void synchronize() const;

  // Random numbers: ops reserve `count` counters and get the first one back; the
  // seed and the running offset are checkpointed as the RNG state.
  void set_seed(uint64_t seed, uint64_t offset = 0) {
    m_seed = seed;
    m_rng_offset = offset;
  }
  uint64_t seed() const { return m_seed; }
  uint64_t rng_offset() const { return m_rng_offset; }
  uint64_t reserve_random(uint64_t count) {
    uint64_t first = m_rng_offset;
    m_rng_offset += count;
    return first;
  }

  // Backend-private state (cuDNN/cuBLAS handles, algorithm cache, workspace),
  // created on first use by the CUDA backend (core/cuda/context_cuda.cpp).
  struct BackendState {
    virtual ~BackendState() = default;
  };
  BackendState* backend_state() const { return m_backend.get(); }
  void set_backend_state(std::unique_ptr<BackendState> state) { m_backend = std::move(state); }

 private:
  Device m_device;
  StreamHandle m_stream = nullptr;
  bool m_owns_stream = false;
  uint64_t m_seed = 0;
  uint64_t m_rng_offset = 0;
  std::unique_ptr<BackendState> m_backend;
};

}  // namespace cohort::core
