#pragma once
// Dynamic loss scaling for fp16 (as in PyTorch's GradScaler): the loss gradient is
// seeded with `scale`; after backward the gradients are unscaled and checked for
// inf/NaN on the device; the optimizer step is skipped through the device flag;
// then the scale backs off on overflow or grows after `growth_interval` clean steps.
// update() reads one 4-byte flag from the device: the only host read of a step,
// placed after the optimizer has been queued.
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
  // Adjusts the scale; returns true when this step overflowed (and was skipped).
  bool update(Context& ctx);

  const LossScalerState& state() const { return m_state; }
  void set_state(Context& ctx, const LossScalerState& state);

 private:
  void upload(Context& ctx);

  LossScalerConfig m_config;
  LossScalerState m_state;
  Device m_device;
  Tensor m_seed, m_inv, m_found;
};

}  // namespace cohort::core::optim
