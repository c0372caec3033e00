#pragma once
// StreamInterval's state, shared by core/stream_interval.cpp (the ring and the
// CPU clock) and core/cuda/stream_interval_cuda.cpp (CUDA events). Internal to core.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>

#include "core/stream_interval.hpp"

namespace cohort::core {

struct StreamInterval::Impl {
  bool cuda = false;
  // The ring: slots oldest .. oldest + ended - 1 (mod kSlots) hold ended
  // measurements not yet read, oldest first; when `open`, the slot after them
  // has a begin and no end yet.
  int oldest = 0, ended = 0;
  bool open = false;
  bool unmeasured = false;  // this interval found no free slot: its end does nothing
  int64_t dropped = 0;
  // CPU: the host clock, per slot.
  std::array<std::chrono::steady_clock::time_point, kSlots> start{}, stop{};
  // CUDA: kSlots event pairs, owned by stream_interval_cuda.cpp.
  void* events = nullptr;
};

#ifdef COHORT_WITH_CUDA
std::unique_ptr<StreamInterval::Impl> make_cuda_stream_interval(Device device);
void cuda_interval_record(StreamInterval::Impl& impl, int slot, bool begin, StreamHandle stream);
// Whether the device has passed the slot's end event (never waits).
bool cuda_interval_done(StreamInterval::Impl& impl, int slot);
double cuda_interval_seconds(StreamInterval::Impl& impl, int slot);
void destroy_cuda_stream_interval(StreamInterval::Impl* impl) noexcept;
#endif

}  // namespace cohort::core
