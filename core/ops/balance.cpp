// Dispatcher for multi-task loss balancing: validate, then run on the context's device.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/balance_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_balance(const char* op, const Context& ctx, const std::vector<Tensor>& losses,
                   const Tensor& log_vars) {
  check_defined(op, "log_vars", log_vars);
  check_floating(op, "log_vars", log_vars);
  const int64_t n = static_cast<int64_t>(losses.size());
  COHORT_CHECK(n >= 1 && n <= kMaxBalancedLosses,
               fmt::format("{}: needs 1 to {} losses, got {}", op, kMaxBalancedLosses, n));
  COHORT_CHECK(
      log_vars.shape() == Shape{n},
      fmt::format("{}: log_vars must be [{}] (one per loss), got {}", op, n, log_vars.str()));
  for (int64_t i = 0; i < n; ++i) {
    const Tensor& l = losses[static_cast<size_t>(i)];
    check_defined(op, "loss", l);
    COHORT_CHECK(l.numel() == 1 && l.dtype() == log_vars.dtype(),
                 fmt::format("{}: loss {} must be one {} value, got {}", op, i,
                             dtype_name(log_vars.dtype()), l.str()));
    check_device(op, ctx, {&l});
  }
  check_device(op, ctx, {&log_vars});
}

}  // namespace

Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars) {
  const char* op = "uncertainty_weighted_sum";
  check_balance(op, ctx, losses, log_vars);
  COHORT_RUN_ON_DEVICE(op, ctx, uncertainty_weighted_sum(ctx, losses, log_vars));
}

std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate) {
  const char* op = "uncertainty_weighted_sum_backward";
  check_balance(op, ctx, losses, log_vars);
  check_defined(op, "dtotal", dtotal);
  COHORT_CHECK(dtotal.numel() == 1 && dtotal.dtype() == log_vars.dtype(),
               fmt::format("{}: dtotal must be one {} value, got {}", op,
                           dtype_name(log_vars.dtype()), dtotal.str()));
  if (dlog_vars.defined()) {
    check_same_shape(op, "dlog_vars", dlog_vars, "log_vars", log_vars);
    check_same_dtype(op, "dlog_vars", dlog_vars, "log_vars", log_vars);
  }
  check_device(op, ctx, {&dtotal, &dlog_vars});
  COHORT_RUN_ON_DEVICE(
      op, ctx,
      uncertainty_weighted_sum_backward(ctx, dtotal, losses, log_vars, dlog_vars, accumulate));
}

}  // namespace cohort::core::ops
