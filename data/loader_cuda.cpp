// CUDA side of the loader (see loader_staging.hpp): a copy stream from a Context and
// two events per batch slot. Compiled only in CUDA builds (cohort_sources()).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstdio>

#include "core/context.hpp"
#include "core/cuda/check.hpp"
#include "data/loader_staging.hpp"

namespace cohort::data::detail {
namespace {

class Event {
 public:
  Event() { COHORT_CUDA_CHECK(cudaEventCreateWithFlags(&m_event, cudaEventDisableTiming)); }
  ~Event() {
    if (m_event) COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(m_event));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  Event(Event&& o) noexcept : m_event(o.m_event) { o.m_event = nullptr; }
  cudaEvent_t get() const { return m_event; }

 private:
  cudaEvent_t m_event = nullptr;
};

class CudaStaging final : public DeviceStaging {
 public:
  CudaStaging(core::Device device, int slots) : m_device(device), m_context(device) {
    COHORT_CUDA_CHECK(cudaSetDevice(device.index));
    for (int s = 0; s < slots; ++s) {
      m_copied.emplace_back();
      m_released.emplace_back();
    }
  }
  ~CudaStaging() override {
    // Buffers are freed after this: nothing may still read or write them.
    try {
      synchronize();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "data loader: %s\n", e.what());
    }
  }

  core::StreamHandle copy_stream() const override { return m_context.stream(); }

  void bind_thread() override { COHORT_CUDA_CHECK(cudaSetDevice(m_device.index)); }

  void wait_host_free(int slot) override {
    COHORT_CUDA_CHECK(cudaEventSynchronize(m_copied.at(slot).get()));
  }

  void copy(int slot, const std::vector<CopyRegion>& regions) override {
    cudaStream_t stream = m_context.stream();
    // A never-recorded event is complete, so the first use of a slot does not wait.
    COHORT_CUDA_CHECK(cudaStreamWaitEvent(stream, m_released.at(slot).get(), 0));
    for (const CopyRegion& r : regions)
      if (r.bytes)
        COHORT_CUDA_CHECK(cudaMemcpyAsync(r.dst, r.src, r.bytes, cudaMemcpyHostToDevice, stream));
    COHORT_CUDA_CHECK(cudaEventRecord(m_copied.at(slot).get(), stream));
  }

  void acquire(int slot, core::StreamHandle consumer) override {
    COHORT_CUDA_CHECK(cudaStreamWaitEvent(consumer, m_copied.at(slot).get(), 0));
  }

  void release(int slot, core::StreamHandle consumer) override {
    COHORT_CUDA_CHECK(cudaEventRecord(m_released.at(slot).get(), consumer));
  }

  void synchronize() override {
    COHORT_CUDA_CHECK(cudaSetDevice(m_device.index));
    for (const Event& e : m_released)
      COHORT_CUDA_CHECK(cudaEventSynchronize(e.get()));
    m_context.synchronize();
  }

 private:
  core::Device m_device;
  core::Context m_context;  // owns (borrows from the pool) the copy stream
  std::vector<Event> m_copied, m_released;
};

}  // namespace

std::unique_ptr<DeviceStaging> make_cuda_staging(core::Device device, int slots) {
  COHORT_CHECK(device.is_cuda() && device.index >= 0 && device.index < core::cuda_device_count(),
               fmt::format("data loader: device {} is not one of this machine's {} GPU(s)",
                           device.str(), core::cuda_device_count()));
  return std::make_unique<CudaStaging>(device, slots);
}

}  // namespace cohort::data::detail
