// StreamInterval on CUDA: one pair of timing events per ring slot, recorded on
// the stream; read with cudaEventQuery (never cudaEventSynchronize) so a step
// does not wait for it. The ring itself is core/stream_interval.cpp's.
#include <cuda_runtime.h>

#include <array>
#include <memory>

#include "core/cuda/check.hpp"
#include "core/stream_interval_impl.hpp"

namespace cohort::core {
namespace {

struct EventPair {
  cudaEvent_t begin = nullptr, end = nullptr;
};
using EventRing = std::array<EventPair, StreamInterval::kSlots>;

EventPair& pair_of(StreamInterval::Impl& impl, int slot) {
  return (*static_cast<EventRing*>(impl.events))[static_cast<size_t>(slot)];
}

void destroy_events(EventRing& ring) noexcept {
  for (EventPair& pair : ring) {
    if (pair.begin != nullptr) COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(pair.begin));
    if (pair.end != nullptr) COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(pair.end));
    pair = EventPair{};
  }
}

cudaError_t create_events(EventRing& ring) {
  for (EventPair& pair : ring) {
    if (const cudaError_t e = cudaEventCreate(&pair.begin); e != cudaSuccess) return e;
    if (const cudaError_t e = cudaEventCreate(&pair.end); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace

std::unique_ptr<StreamInterval::Impl> make_cuda_stream_interval(Device device) {
  auto impl = std::make_unique<StreamInterval::Impl>();
  impl->cuda = true;
  auto ring = std::make_unique<EventRing>();
  int current = 0;
  COHORT_CUDA_CHECK(cudaGetDevice(&current));
  COHORT_CUDA_CHECK(cudaSetDevice(device.index));
  const cudaError_t created = create_events(*ring);
  COHORT_CUDA_CHECK(cudaSetDevice(current));
  if (created != cudaSuccess) {
    destroy_events(*ring);
    COHORT_CUDA_CHECK(created);
  }
  impl->events = ring.release();
  return impl;
}

void destroy_cuda_stream_interval(StreamInterval::Impl* impl) noexcept {
  auto* ring = static_cast<EventRing*>(impl->events);
  if (ring == nullptr) return;
  destroy_events(*ring);
  delete ring;
  impl->events = nullptr;
}

void cuda_interval_record(StreamInterval::Impl& impl, int slot, bool begin, StreamHandle stream) {
  EventPair& pair = pair_of(impl, slot);
  COHORT_CUDA_CHECK(cudaEventRecord(begin ? pair.begin : pair.end, stream));
}

bool cuda_interval_done(StreamInterval::Impl& impl, int slot) {
  const cudaError_t status = cudaEventQuery(pair_of(impl, slot).end);
  if (status == cudaErrorNotReady) return false;
  COHORT_CUDA_CHECK(status);
  return true;
}

double cuda_interval_seconds(StreamInterval::Impl& impl, int slot) {
  EventPair& pair = pair_of(impl, slot);
  float ms = 0;
  COHORT_CUDA_CHECK(cudaEventElapsedTime(&ms, pair.begin, pair.end));
  return static_cast<double>(ms) / 1e3;
}

}  // namespace cohort::core
