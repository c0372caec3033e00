#include "core/optim/schedule.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace cohort::core::optim {

void validate(const ScheduleConfig& c) {
  COHORT_CHECK(c.kind == "constant" || c.kind == "step" || c.kind == "poly" || c.kind == "cosine",
               fmt::format("schedule: unknown kind '{}' (constant, step, poly, cosine)", c.kind));
  COHORT_CHECK(c.base_lr > 0, fmt::format("schedule: base_lr must be > 0, got {}", c.base_lr));
  COHORT_CHECK(c.warmup_steps >= 0, "schedule: warmup_steps must be >= 0");
  if (c.kind == "poly" || c.kind == "cosine")
    COHORT_CHECK(c.total_steps > c.warmup_steps,
                 fmt::format("schedule: {} needs total_steps ({}) > warmup_steps ({})", c.kind,
                             c.total_steps, c.warmup_steps));
  COHORT_CHECK(std::is_sorted(c.milestones.begin(), c.milestones.end()),
               "schedule: milestones must be increasing");
}

namespace {
double scheduled(const ScheduleConfig& c, int64_t step) {
  if (c.kind == "constant") return c.base_lr;
  if (c.kind == "step") {
    const auto passed =
        std::upper_bound(c.milestones.begin(), c.milestones.end(), step) - c.milestones.begin();
    return c.base_lr * std::pow(c.gamma, static_cast<double>(passed));
  }
  // poly and cosine decay over the steps after warmup.
  const double span = static_cast<double>(c.total_steps - c.warmup_steps);
  const double t = std::clamp(static_cast<double>(step - c.warmup_steps) / span, 0.0, 1.0);
  if (c.kind == "poly") return c.min_lr + (c.base_lr - c.min_lr) * std::pow(1.0 - t, c.power);
  return c.min_lr + 0.5 * (c.base_lr - c.min_lr) * (1.0 + std::cos(M_PI * t));
}
}  // namespace

double learning_rate(const ScheduleConfig& c, int64_t step) {
  const double target = scheduled(c, std::max<int64_t>(step, c.warmup_steps));
  if (step >= c.warmup_steps) return scheduled(c, step);
  // Linear ramp from base*start_factor to the value the schedule has when warmup ends.
  const double f = static_cast<double>(step) / static_cast<double>(c.warmup_steps);
  return target * (c.warmup_start_factor + (1.0 - c.warmup_start_factor) * f);
}

}  // namespace cohort::core::optim
