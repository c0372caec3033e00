#pragma once
// StreamInterval's state, shared by core/stream_interval.cpp (CPU) and
// core/cuda/stream_interval_cuda.cpp (CUDA events). Internal to core.
#include <chrono>
#include <memory>
#include <optional>

#include "core/stream_interval.hpp"

namespace cohort::core {

struct StreamInterval::Impl {
  bool cuda = false;
  // CPU: the host clock.
  std::chrono::steady_clock::time_point start{}, stop{};
  bool ended = false;
  // CUDA: the event pair, owned by stream_interval_cuda.cpp.
  void* events = nullptr;
};

#ifdef COHORT_WITH_CUDA
std::unique_ptr<StreamInterval::Impl> make_cuda_stream_interval(Device device);
void cuda_interval_record(StreamInterval::Impl& impl, bool begin, StreamHandle stream);
std::optional<double> cuda_interval_seconds(StreamInterval::Impl& impl);
void destroy_cuda_stream_interval(StreamInterval::Impl* impl) noexcept;
#endif

}  // namespace cohort::core
