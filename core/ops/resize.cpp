// Dispatchers for bilinear resizing (NHWC, align_corners=false).
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/resize_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_sizes(const char* op, const Shape& x, int64_t out_h, int64_t out_w) {
  COHORT_CHECK(x.rank() == 4, fmt::format("{}: x must be 4-D NHWC, got shape {}", op, x.str()));
  check_resample_sizes(op, x, out_h, out_w);
}

void check_input(const char* op, const Context& ctx, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  check_rank(op, name, t, 4);
  check_floating(op, name, t);
  check_device(op, ctx, {&t});
}

}  // namespace

Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w) {
  constexpr const char* op = "resize_bilinear";
  check_input(op, ctx, "x", x);
  check_sizes(op, x.shape(), out_h, out_w);
  COHORT_RUN_ON_DEVICE(op, ctx, resize_bilinear(ctx, x, out_h, out_w));
}

Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  constexpr const char* op = "resize_bilinear_backward";
  check_input(op, ctx, "dy", dy);
  check_sizes(op, x_shape, dy.dim(1), dy.dim(2));
  check_same_batch_and_channels(op, dy, x_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, resize_bilinear_backward(ctx, dy, x_shape));
}

}  // namespace cohort::core::ops
