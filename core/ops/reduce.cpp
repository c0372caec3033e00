// Dispatchers for the reductions: validate, then run on the context's device.
#include <fmt/format.h>

#include <limits>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/reduce_cpu.hpp"
#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

namespace cohort::core::ops {
namespace {

#ifndef COHORT_WITH_CUDA
[[noreturn]] void no_cuda(const char* op, const Context& ctx) {
  COHORT_FAIL(fmt::format("{}: context is on {} but this build has no CUDA backend", op,
                          ctx.device().str()));
}
#endif

void check_input(const char* op, const Context& ctx, const Tensor& x) {
  check_defined(op, "x", x);
  check_floating(op, "x", x);
  check_device(op, ctx, {&x});
}

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
  check_input("sum", ctx, x);
  if (ctx.device().is_cpu()) return cpu::sum(ctx, x);
#ifdef COHORT_WITH_CUDA
  return cuda::sum(ctx, x);
#else
  no_cuda("sum", ctx);
#endif
}

// The mean of nothing is undefined; refusing it here beats a NaN found later.
Tensor mean(Context& ctx, const Tensor& x) {
  check_input("mean", ctx, x);
  COHORT_CHECK(x.numel() > 0, fmt::format("mean: x {} has no elements", x.str()));
  if (ctx.device().is_cpu()) return cpu::mean(ctx, x);
#ifdef COHORT_WITH_CUDA
  return cuda::mean(ctx, x);
#else
  no_cuda("mean", ctx);
#endif
}

Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  check_backward("sum_backward", ctx, dloss, x_shape, dtype);
  if (ctx.device().is_cpu()) return cpu::sum_backward(ctx, dloss, x_shape, dtype);
#ifdef COHORT_WITH_CUDA
  return cuda::sum_backward(ctx, dloss, x_shape, dtype);
#else
  no_cuda("sum_backward", ctx);
#endif
}

Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype) {
  check_backward("mean_backward", ctx, dloss, x_shape, dtype);
  COHORT_CHECK(x_shape.numel() > 0,
               fmt::format("mean_backward: x shape {} has no elements", x_shape.str()));
  if (ctx.device().is_cpu()) return cpu::mean_backward(ctx, dloss, x_shape, dtype);
#ifdef COHORT_WITH_CUDA
  return cuda::mean_backward(ctx, dloss, x_shape, dtype);
#else
  no_cuda("mean_backward", ctx);
#endif
}

Tensor argmax_channels(Context& ctx, const Tensor& x) {
  check_input("argmax_channels", ctx, x);
  COHORT_CHECK(x.rank() >= 2 && x.dim(-1) > 0 && x.dim(-1) <= std::numeric_limits<int32_t>::max(),
               fmt::format("argmax_channels: x must be [..., C] with 0 < C < 2^31 and at least 2 "
                           "dims, got {}",
                           x.str()));
  if (ctx.device().is_cpu()) return cpu::argmax_channels(ctx, x);
#ifdef COHORT_WITH_CUDA
  return cuda::argmax_channels(ctx, x);
#else
  no_cuda("argmax_channels", ctx);
#endif
}

}  // namespace cohort::core::ops
