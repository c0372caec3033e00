#pragma once
// The time between two points of a stream's work as the device executes it: on a
// CUDA stream two timing events, on the CPU the host clock (CPU ops run when they
// are called). Reading never blocks and never synchronises: an interval whose end
// the device has not reached yet reads as "not yet", so a training step can
// measure itself without synchronising (the value is read a step or more later).
//
// The host may run several steps ahead of the device, so measurements queue: up
// to kSlots intervals can be ended and not yet read. seconds() returns the oldest
// unread one once the device has passed its end, and each measurement is returned
// once, in the order the intervals were ended: a reader that calls seconds() once
// per begin/end sees every interval, however far (up to kSlots) the device lags.
// (Oldest first, not newest: a newest-first reader would silently skip the older
// ones whenever two complete between reads.) Intervals on different streams are
// still read in that order: a later one that completes first waits for the older.
//
// When every slot holds an unread measurement, begin() reuses the oldest slot if
// the device has passed its end (its value is dropped: the reader fell behind);
// if even that one is still pending (the device lags by more than kSlots
// intervals) the new interval is not measured (its end does nothing). Either way
// nothing waits, and dropped() counts the loss. On the CPU every ended interval
// is complete, so only the first case happens there.
//
//   StreamInterval exposed(ctx.device());
//   exposed.begin(ctx.stream());  ... wait for the gradient reductions ...
//   exposed.end(ctx.stream());
//   if (auto s = exposed.seconds()) report(*s);  // GPU: usually a step or two later
#include <cstdint>
#include <memory>
#include <optional>

#include "core/device.hpp"
#include "core/storage.hpp"

namespace cohort::core {

class StreamInterval {
 public:
  // Measurements that can wait to be read (CUDA: event pairs).
  static constexpr int kSlots = 4;

  explicit StreamInterval(Device device);
  ~StreamInterval();
  StreamInterval(const StreamInterval&) = delete;
  StreamInterval& operator=(const StreamInterval&) = delete;

  // A begin after a begin without end restarts that interval; an end without a
  // begin does nothing.
  void begin(StreamHandle stream);
  void end(StreamHandle stream);
  // Seconds from begin to end of the oldest measurement not yet read, once the
  // device has passed its end (then it is consumed); nullopt when there is none
  // or the device has not got there yet.
  std::optional<double> seconds();
  // Measurements lost because every slot was in use (see above).
  int64_t dropped() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> m_impl;
};

}  // namespace cohort::core
