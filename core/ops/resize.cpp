// Dispatchers for bilinear resizing (NHWC, align_corners=false).
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/cpu_dispatch.hpp"
#include "core/ops/cpu/resize_cpu.hpp"
#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

namespace cohort::core::ops {
namespace {

void check_sizes(const char* op, const Shape& x, int64_t out_h, int64_t out_w) {
  COHORT_CHECK(x.rank() == 4, fmt::format("{}: x must be 4-D NHWC, got shape {}", op, x.str()));
  COHORT_CHECK(x[1] >= 1 && x[2] >= 1 && out_h >= 1 && out_w >= 1,
               fmt::format("{}: input and output sizes must be positive, got x {} and output "
                           "{}x{}",
                           op, x.str(), out_h, out_w));
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
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"x", &x}});
    return cpu::resize_bilinear(ctx, x, out_h, out_w);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::resize_bilinear(ctx, x, out_h, out_w);
#else
  cpu::fail_no_cuda(op, x);
#endif
}

Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  constexpr const char* op = "resize_bilinear_backward";
  check_input(op, ctx, "dy", dy);
  check_sizes(op, x_shape, dy.dim(1), dy.dim(2));
  COHORT_CHECK(dy.dim(0) == x_shape[0] && dy.dim(3) == x_shape[3],
               fmt::format("{}: dy {} does not match x {} (need the same N and C)", op,
                           dy.shape().str(), x_shape.str()));
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}});
    return cpu::resize_bilinear_backward(ctx, dy, x_shape);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::resize_bilinear_backward(ctx, dy, x_shape);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

}  // namespace cohort::core::ops
