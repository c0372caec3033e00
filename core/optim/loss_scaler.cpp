#include "core/optim/loss_scaler.hpp"

#include <fmt/format.h>

#include "core/ops/ops.hpp"
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
  m_state.scale = config.enabled ? config.init_scale : 1.0;
  Context ctx(device);
  upload(ctx);
  ctx.synchronize();
}

void LossScaler::upload(Context& ctx) {
  auto scalar = [&](double v) {
    Tensor t = Tensor::empty(Shape{1}, DType::f32, m_device, ctx.stream());
    ops::fill(ctx, t, v);
    return t;
  };
  m_seed = scalar(m_state.scale);
  if (m_config.enabled) {
    m_inv = scalar(1.0 / m_state.scale);
    m_found = scalar(0.0);
  }
}

void LossScaler::unscale(Context& ctx, Tensor& grads) {
  if (!m_config.enabled) return;
  unscale_and_check(ctx, grads, m_inv, m_found);
}

bool LossScaler::update(Context& ctx) {
  if (!m_config.enabled) return false;
  const bool overflow = m_found.item(ctx.stream()) != 0.0;
  if (overflow) {
    m_state.scale *= m_config.backoff_factor;
    m_state.growth_tracker = 0;
    ++m_state.skipped_steps;
  } else if (++m_state.growth_tracker >= m_config.growth_interval) {
    m_state.scale *= m_config.growth_factor;
    m_state.growth_tracker = 0;
  }
  ops::fill(ctx, m_seed, m_state.scale);
  ops::fill(ctx, m_inv, 1.0 / m_state.scale);
  ops::fill(ctx, m_found, 0.0);
  return overflow;
}

void LossScaler::set_state(Context& ctx, const LossScalerState& state) {
  m_state = state;
  upload(ctx);
}

}  // namespace cohort::core::optim
