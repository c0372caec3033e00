#pragma once
// The time between two points of a stream's work as the device executes it: on a
// CUDA stream two timing events, on the CPU the host clock (CPU ops run when they
// are called). Reading never blocks: an interval whose end the device has not
// reached yet reads as "not yet", so a training step can measure itself without
// synchronising (the value is read a step later).
//
//   StreamInterval exposed(ctx.device());
//   exposed.begin(ctx.stream());  ... wait for the gradient reductions ...
//   exposed.end(ctx.stream()); if (auto s = exposed.seconds()) report(*s);   // GPU: usually at the
//   next step
#include <memory>
#include <optional>

#include "core/device.hpp"
#include "core/storage.hpp"

namespace cohort::core {

class StreamInterval {
 public:
  explicit StreamInterval(Device device);
  ~StreamInterval();
  StreamInterval(const StreamInterval&) = delete;
  StreamInterval& operator=(const StreamInterval&) = delete;

  void begin(StreamHandle stream);
  void end(StreamHandle stream);
  // Seconds from begin to end once the device has passed end; nullopt before,
  // and before the first end.
  std::optional<double> seconds();

  struct Impl;

 private:
  std::unique_ptr<Impl> m_impl;
};

}  // namespace cohort::core
