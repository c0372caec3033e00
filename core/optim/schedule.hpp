#pragma once
// Learning-rate schedules, each with an optional linear warmup. Pure functions of
// the step, so a resumed run continues the exact curve.
#include <cstdint>
#include <string>
#include <vector>

namespace cohort::core::optim {

struct ScheduleConfig {
  std::string kind = "constant";  // constant | step | poly | cosine
  double base_lr = 0.1;
  int64_t total_steps = 0;  // poly and cosine
  int64_t warmup_steps = 0;
  double warmup_start_factor = 0.001;  // lr at step 0 = base_lr * this factor (ramp to schedule)
  std::vector<int64_t> milestones;     // step: lr *= gamma at each milestone
  double gamma = 0.1;
  double power = 0.9;   // poly
  double min_lr = 0.0;  // cosine floor, poly floor
};

void validate(const ScheduleConfig& config);
// Learning rate for optimizer step `step` (0-based).
double learning_rate(const ScheduleConfig& config, int64_t step);

}  // namespace cohort::core::optim
