// Dispatchers for the element-wise ops: validate, then run on the context's device.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/elementwise_cpu.hpp"
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

void check_unary(const char* op, const Context& ctx, const Tensor& x) {
  check_defined(op, "x", x);
  check_floating(op, "x", x);
  check_device(op, ctx, {&x});
}

void check_binary(const char* op, const Context& ctx, const char* a_name, const Tensor& a,
                  const char* b_name, const Tensor& b) {
  check_defined(op, a_name, a);
  check_defined(op, b_name, b);
  check_floating(op, a_name, a);
  check_same_shape(op, a_name, a, b_name, b);
  check_same_dtype(op, a_name, a, b_name, b);
  check_device(op, ctx, {&a, &b});
}

}  // namespace

// Every op below switches on the device the same way: CPU implementation, CUDA
// implementation of the same name, or an error in a build without CUDA.
#ifdef COHORT_WITH_CUDA
#define COHORT_RUN_ON_DEVICE(op, call)         \
  if (ctx.device().is_cpu()) return cpu::call; \
  return cuda::call
#else
#define COHORT_RUN_ON_DEVICE(op, call)         \
  if (ctx.device().is_cpu()) return cpu::call; \
  no_cuda(op, ctx)
#endif

Tensor relu(Context& ctx, const Tensor& x) {
  check_unary("relu", ctx, x);
  COHORT_RUN_ON_DEVICE("relu", relu(ctx, x));
}

Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y) {
  check_binary("relu_backward", ctx, "dy", dy, "y", y);
  COHORT_RUN_ON_DEVICE("relu_backward", relu_backward(ctx, dy, y));
}

Tensor add(Context& ctx, const Tensor& a, const Tensor& b) {
  check_binary("add", ctx, "a", a, "b", b);
  COHORT_RUN_ON_DEVICE("add", add(ctx, a, b));
}

Tensor mul(Context& ctx, const Tensor& a, const Tensor& b) {
  check_binary("mul", ctx, "a", a, "b", b);
  COHORT_RUN_ON_DEVICE("mul", mul(ctx, a, b));
}

Tensor scale(Context& ctx, const Tensor& x, double alpha) {
  check_unary("scale", ctx, x);
  COHORT_RUN_ON_DEVICE("scale", scale(ctx, x, alpha));
}

void add_inplace(Context& ctx, Tensor& acc, const Tensor& x) {
  check_binary("add_inplace", ctx, "acc", acc, "x", x);
  COHORT_RUN_ON_DEVICE("add_inplace", add_inplace(ctx, acc, x));
}

// Always a new tensor, even for the same dtype, so the result never aliases x.
Tensor cast(Context& ctx, const Tensor& x, DType dtype) {
  check_defined("cast", "x", x);
  check_device("cast", ctx, {&x});
  COHORT_RUN_ON_DEVICE("cast", cast(ctx, x, dtype));
}

void fill(Context& ctx, Tensor& t, double value) {
  check_defined("fill", "t", t);
  check_device("fill", ctx, {&t});
  COHORT_RUN_ON_DEVICE("fill", fill(ctx, t, value));
}

#undef COHORT_RUN_ON_DEVICE

}  // namespace cohort::core::ops
