#include "core/optim/loss_scaler.hpp"

#include <fmt/format.h>

#include <vector>

#include "core/optim/kernels.hpp"

namespace cohort::core::optim {

LossScaler::LossScaler(const LossScalerConfig& config, Device device)
    : m_config(config), m_device(device) {
  COHORT_CHECK(config.init_scale > 0 && config.growth_factor > 1 && config.backoff_factor > 0 &&
                   config.backoff_factor < 1 && config.growth_interval > 0,
               fmt::format("LossScaler: invalid config (scale {}, growth {}, backoff {}, "
                           "interval {})",
                           config.init_scale, config.growth_factor, config.backoff_factor,
                           config.growth_interval));
  Context ctx(device);
  set_state(ctx, LossScalerState{config.enabled ? config.init_scale : 1.0, 0, 0});
  ctx.synchronize();
}

void LossScaler::set_state(Context& ctx, const LossScalerState& state) {
  COHORT_CHECK(state.scale > 0 && state.growth_tracker >= 0 && state.skipped_steps >= 0,
               fmt::format("LossScaler: invalid state (scale {}, growth tracker {}, skipped {})",
                           state.scale, state.growth_tracker, state.skipped_steps));
  const double scale = m_config.enabled ? state.scale : 1.0;
  const Tensor values = Tensor::from_vector({scale, 1.0 / scale, 0.0, 0.0}, Shape{4}, DType::f32);
  const Tensor counters = Tensor::from_vector(
      {static_cast<double>(state.growth_tracker), static_cast<double>(state.skipped_steps)},
      Shape{2}, DType::i64);
  // Stream-ordered uploads: later kernels on ctx's stream see them. A restore
  // writes into the existing buffers: replacing them would free the old ones on
  // the stream that made them, unordered with kernels still queued on ctx's
  // stream that read them.
  if (m_values.defined()) {
    m_values.copy_from(values, ctx.stream());
    m_counters.copy_from(counters, ctx.stream());
    return;
  }
  m_values = values.to(m_device, ctx.stream());
  m_counters = counters.to(m_device, ctx.stream());
  m_seed = m_values.flat(0, 1);
  m_inv = m_config.enabled ? m_values.flat(1, 1) : Tensor();
  m_found = m_config.enabled ? m_values.flat(2, 1) : Tensor();
}

void LossScaler::unscale(Context& ctx, Tensor& grads) {
  if (!m_config.enabled) return;
  unscale_and_check(ctx, grads, m_inv, m_found);
}

void LossScaler::update(Context& ctx) {
  if (!m_config.enabled) return;
  update_loss_scale(ctx, m_values, m_counters,
                    {m_config.growth_factor, m_config.backoff_factor, m_config.growth_interval});
}

LossScalerState LossScaler::state(const Context& ctx) const {
  const std::vector<double> v = m_values.to_vector(ctx.stream());
  const std::vector<double> c = m_counters.to_vector(ctx.stream());
  return {v[0], static_cast<int64_t>(c[0]), static_cast<int64_t>(c[1])};
}

bool LossScaler::last_step_skipped(const Context& ctx) const {
  return m_values.flat(3, 1).item(ctx.stream()) != 0.0;
}

}  // namespace cohort::core::optim
