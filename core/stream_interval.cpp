#include "core/stream_interval.hpp"

#include "core/stream_interval_impl.hpp"

namespace cohort::core {
namespace {

using Clock = std::chrono::steady_clock;

int slot_after(const StreamInterval::Impl& impl, int count) {
  return (impl.oldest + count) % StreamInterval::kSlots;
}

void record(StreamInterval::Impl& impl, int slot, bool begin, StreamHandle stream) {
#ifdef COHORT_WITH_CUDA
  if (impl.cuda) return cuda_interval_record(impl, slot, begin, stream);
#endif
  (void)stream;
  (begin ? impl.start : impl.stop)[static_cast<size_t>(slot)] = Clock::now();
}

// The CPU's intervals are complete once ended: the host ran their work.
bool done(StreamInterval::Impl& impl, int slot) {
#ifdef COHORT_WITH_CUDA
  if (impl.cuda) return cuda_interval_done(impl, slot);
#endif
  (void)impl;
  (void)slot;
  return true;
}

double elapsed(StreamInterval::Impl& impl, int slot) {
#ifdef COHORT_WITH_CUDA
  if (impl.cuda) return cuda_interval_seconds(impl, slot);
#endif
  const auto s = static_cast<size_t>(slot);
  return std::chrono::duration<double>(impl.stop[s] - impl.start[s]).count();
}

}  // namespace

StreamInterval::StreamInterval(Device device) {
#ifdef COHORT_WITH_CUDA
  if (device.is_cuda()) {
    m_impl = make_cuda_stream_interval(device);
    return;
  }
#endif
  (void)device;
  m_impl = std::make_unique<Impl>();
}

StreamInterval::~StreamInterval() {
#ifdef COHORT_WITH_CUDA
  if (m_impl && m_impl->cuda) destroy_cuda_stream_interval(m_impl.get());
#endif
}

void StreamInterval::begin(StreamHandle stream) {
  Impl& impl = *m_impl;
  impl.unmeasured = false;
  if (!impl.open && impl.ended == kSlots) {
    // Full. Reusing a slot whose end is still pending would overwrite events the
    // device has yet to reach, and waiting for it would stall the host: drop the
    // oldest only once it is complete, else leave this interval unmeasured.
    if (!done(impl, impl.oldest)) {
      impl.unmeasured = true;
      return;
    }
    impl.oldest = slot_after(impl, 1);
    --impl.ended;
    ++impl.dropped;
  }
  record(impl, slot_after(impl, impl.ended), true, stream);
  impl.open = true;
}

void StreamInterval::end(StreamHandle stream) {
  Impl& impl = *m_impl;
  if (impl.unmeasured) {
    impl.unmeasured = false;
    ++impl.dropped;
    return;
  }
  if (!impl.open) return;
  record(impl, slot_after(impl, impl.ended), false, stream);
  impl.open = false;
  ++impl.ended;
}

std::optional<double> StreamInterval::seconds() {
  Impl& impl = *m_impl;
  if (impl.ended == 0 || !done(impl, impl.oldest)) return std::nullopt;
  const double s = elapsed(impl, impl.oldest);
  impl.oldest = slot_after(impl, 1);
  --impl.ended;
  return s;
}

int64_t StreamInterval::dropped() const {
  return m_impl->dropped;
}

}  // namespace cohort::core
