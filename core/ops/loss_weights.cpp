// Dispatcher for multi-task losses summed with weights that are not trained
// (fixed, or Dynamic Weight Average's), and the running loss sums behind DWA.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/loss_weights_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

// Every loss is one value of `dtype` on ctx's device; 1 to kMaxBalancedLosses of them.
void check_losses(const char* op, const Context& ctx, const std::vector<Tensor>& losses,
                  DType dtype) {
  const int64_t n = static_cast<int64_t>(losses.size());
  COHORT_CHECK(n >= 1 && n <= kMaxBalancedLosses,
               fmt::format("{}: needs 1 to {} losses, got {}", op, kMaxBalancedLosses, n));
  for (int64_t i = 0; i < n; ++i) {
    const Tensor& l = losses[static_cast<size_t>(i)];
    check_defined(op, "loss", l);
    COHORT_CHECK(
        l.numel() == 1 && l.dtype() == dtype,
        fmt::format("{}: loss {} must be one {} value, got {}", op, i, dtype_name(dtype), l.str()));
    check_device(op, ctx, {&l});
  }
}

void check_weights(const char* op, const Context& ctx, const Tensor& weights) {
  check_float_input(op, ctx, "weights", weights);
  COHORT_CHECK(weights.rank() == 1 && weights.numel() >= 1 && weights.numel() <= kMaxBalancedLosses,
               fmt::format("{}: weights must be [n] with 1 <= n <= {}, got {}", op,
                           kMaxBalancedLosses, weights.str()));
}

}  // namespace

Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights) {
  const char* op = "weighted_loss_sum";
  check_weights(op, ctx, weights);
  check_losses(op, ctx, losses, weights.dtype());
  COHORT_CHECK(static_cast<int64_t>(losses.size()) == weights.numel(),
               fmt::format("{}: {} losses but weights {} (one weight per loss)", op, losses.size(),
                           weights.str()));
  COHORT_RUN_ON_DEVICE(op, ctx, weighted_loss_sum(ctx, losses, weights));
}

std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights) {
  const char* op = "weighted_loss_sum_backward";
  check_weights(op, ctx, weights);
  check_defined(op, "dtotal", dtotal);
  COHORT_CHECK(dtotal.numel() == 1 && dtotal.dtype() == weights.dtype(),
               fmt::format("{}: dtotal must be one {} value (the weights' dtype), got {}", op,
                           dtype_name(weights.dtype()), dtotal.str()));
  check_device(op, ctx, {&dtotal});
  COHORT_RUN_ON_DEVICE(op, ctx, weighted_loss_sum_backward(ctx, dtotal, weights));
}

void accumulate_loss_sums(Context& ctx, const std::vector<Tensor>& losses, Tensor& sums) {
  const char* op = "accumulate_loss_sums";
  check_float_input(op, ctx, "sums", sums);
  check_losses(op, ctx, losses, sums.dtype());
  const int64_t n = static_cast<int64_t>(losses.size());
  COHORT_CHECK(sums.rank() == 1 && sums.numel() == n + 1,
               fmt::format("{}: sums must be [{}] ({} losses and the count), got {}", op, n + 1, n,
                           sums.str()));
  COHORT_RUN_ON_DEVICE(op, ctx, accumulate_loss_sums(ctx, losses, sums));
}

}  // namespace cohort::core::ops
