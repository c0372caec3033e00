// Dispatchers for the reductions: validate, then run on the context's device.
#include <fmt/format.h>

#include <limits>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/reduce_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_backward(const char* op, const Context& ctx, const Tensor& dloss, const Shape& x_shape,
                    DType dtype) {
  check_defined(op, "dloss", dloss);
  check_floating(op, "dloss", dloss);
  COHORT_CHECK(dloss.numel() == 1,
               fmt::format("{}: dloss must hold exactly one element, got {} (x shape {})", op,
                           dloss.str(), x_shape.str()));
  COHORT_CHECK(is_floating(dtype), fmt::format("{}: gradient dtype must be floating point, got {} "
                                               "(x shape {})",
                                               op, dtype_name(dtype), x_shape.str()));
  check_device(op, ctx, {&dloss});
}

}  // namespace

Tensor sum(Context& ctx, const Tensor& x) {
  check_float_input("sum", ctx, "x", x);
  COHORT_RUN_ON_DEVICE("sum", ctx, sum(ctx, x));
}

// The mean of nothing is undefined; refusing it here beats a NaN found later.
Tensor mean(Context& ctx, const Tensor& x) {
  check_float_input("mean", ctx, "x", x);
  COHORT_CHECK(x.numel() > 0, fmt::format("mean: x {} has no elements", x.str()));
  COHORT_RUN_ON_DEVICE("mean", ctx, mean(ctx, x));
}

Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  check_backward("sum_backward", ctx, dloss, x_shape, dtype);
  COHORT_RUN_ON_DEVICE("sum_backward", ctx, sum_backward(ctx, dloss, x_shape, dtype));
}

Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  check_backward("mean_backward", ctx, dloss, x_shape, dtype);
  COHORT_CHECK(x_shape.numel() > 0,
               fmt::format("mean_backward: x shape {} has no elements", x_shape.str()));
  COHORT_RUN_ON_DEVICE("mean_backward", ctx, mean_backward(ctx, dloss, x_shape, dtype));
}

Tensor argmax_channels(Context& ctx, const Tensor& x) {
  check_float_input("argmax_channels", ctx, "x", x);
  COHORT_CHECK(x.rank() >= 2 && x.dim(-1) > 0 && x.dim(-1) <= std::numeric_limits<int32_t>::max(),
               fmt::format("argmax_channels: x must be [..., C] with 0 < C < 2^31 and at least 2 "
                           "dims, got {}",
                           x.str()));
  COHORT_RUN_ON_DEVICE("argmax_channels", ctx, argmax_channels(ctx, x));
}

}  // namespace cohort::core::ops
