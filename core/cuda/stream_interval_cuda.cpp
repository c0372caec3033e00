// StreamInterval on CUDA: two events with timing, recorded on the stream; read
// with cudaEventQuery (never cudaEventSynchronize) so a step does not wait for it.
#include <cuda_runtime.h>

#include <memory>
#include <optional>

#include "core/cuda/check.hpp"
#include "core/stream_interval_impl.hpp"

namespace cohort::core {
namespace {

struct EventPair {
  cudaEvent_t begin = nullptr, end = nullptr;
  bool recorded = false;  // an end was recorded since the last begin
};

EventPair& pair_of(StreamInterval::Impl& impl) {
  return *static_cast<EventPair*>(impl.events);
}

}  // namespace

std::unique_ptr<StreamInterval::Impl> make_cuda_stream_interval(Device device) {
  auto impl = std::make_unique<StreamInterval::Impl>();
  impl->cuda = true;
  auto pair = std::make_unique<EventPair>();
  int current = 0;
  COHORT_CUDA_CHECK(cudaGetDevice(&current));
  COHORT_CUDA_CHECK(cudaSetDevice(device.index));
  const cudaError_t a = cudaEventCreate(&pair->begin);
  const cudaError_t b = a == cudaSuccess ? cudaEventCreate(&pair->end) : a;
  COHORT_CUDA_CHECK(cudaSetDevice(current));
  if (b != cudaSuccess) {
    if (pair->begin != nullptr) COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(pair->begin));
    COHORT_CUDA_CHECK(b);
  }
  impl->events = pair.release();
  return impl;
}

void destroy_cuda_stream_interval(StreamInterval::Impl* impl) noexcept {
  EventPair* pair = static_cast<EventPair*>(impl->events);
  if (pair == nullptr) return;
  COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(pair->begin));
  COHORT_CUDA_CHECK_PRINT(cudaEventDestroy(pair->end));
  delete pair;
  impl->events = nullptr;
}

void cuda_interval_record(StreamInterval::Impl& impl, bool begin, StreamHandle stream) {
  EventPair& pair = pair_of(impl);
  COHORT_CUDA_CHECK(cudaEventRecord(begin ? pair.begin : pair.end, stream));
  pair.recorded = !begin;
}

std::optional<double> cuda_interval_seconds(StreamInterval::Impl& impl) {
  EventPair& pair = pair_of(impl);
  if (!pair.recorded) return std::nullopt;
  const cudaError_t status = cudaEventQuery(pair.end);
  if (status == cudaErrorNotReady) return std::nullopt;
  COHORT_CUDA_CHECK(status);
  float ms = 0;
  COHORT_CUDA_CHECK(cudaEventElapsedTime(&ms, pair.begin, pair.end));
  return static_cast<double>(ms) / 1e3;
}

}  // namespace cohort::core
