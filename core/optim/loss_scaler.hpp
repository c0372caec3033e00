#pragma once
// Dynamic loss scaling for fp16 (as in PyTorch's GradScaler): the loss gradient is
// seeded with `scale`; after backward the gradients are unscaled and checked for
// inf/NaN on the device; the optimizer step is skipped through the device flag;
// then the scale backs off on overflow or grows after `growth_interval` clean steps.
// The whole state lives on the device and update() is one kernel, so a step has
// no host read; state() and last_step_skipped() read it back (checkpoints, logs).
#include <cstdint>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::optim {

struct LossScalerConfig {
  bool enabled = false;
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

struct LossScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;  // clean steps since the last change
  int64_t skipped_steps = 0;
};

class LossScaler {
 public:
  LossScaler(const LossScalerConfig& config, Device device);

  bool enabled() const { return m_config.enabled; }
  // Gradient to seed backward with: a 1-element f32 tensor holding the scale (1 when disabled).
  const Tensor& seed() const { return m_seed; }
  // Divides gradients by the scale and sets the overflow flag. Call after backward
  // (and after gradient all-reduce).
  void unscale(Context& ctx, Tensor& grads);
  // Device flag for Optimizer::step (undefined when disabled).
  const Tensor& skip_flag() const { return m_found; }
  // Adjusts the scale on the device (queued on ctx's stream; no host read) and
  // clears the flag for the next step. With data parallelism the flag must be the
  // same on every rank first (gradients all-reduced before unscale(), or the flag
  // summed over ranks, as ZeRO stages 2/3 do).
  void update(Context& ctx);

  // Read back from the device (synchronises ctx's stream): for checkpoints and logs.
  LossScalerState state(const Context& ctx) const;
  // Whether the step last passed to update() overflowed and was skipped.
  bool last_step_skipped(const Context& ctx) const;
  void set_state(Context& ctx, const LossScalerState& state);

 private:
  LossScalerConfig m_config;
  Device m_device;
  // f32 [4]: scale (the seed), 1/scale, found_non_finite, last_step_skipped;
  // views of it are what seed(), unscale() and skip_flag() hand out.
  Tensor m_values;
  Tensor m_counters;  // i64 [2]: growth tracker, skipped steps
  Tensor m_seed, m_inv, m_found;
};

}  // namespace cohort::core::optim
