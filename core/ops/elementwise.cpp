// Dispatchers for the element-wise ops: validate, then run on the context's device.
#include "core/ops/checks.hpp"
#include "core/ops/cpu/elementwise_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

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

Tensor relu(Context& ctx, const Tensor& x) {
  check_float_input("relu", ctx, "x", x);
  COHORT_RUN_ON_DEVICE("relu", ctx, relu(ctx, x));
}

Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y) {
  check_binary("relu_backward", ctx, "dy", dy, "y", y);
  COHORT_RUN_ON_DEVICE("relu_backward", ctx, relu_backward(ctx, dy, y));
}

Tensor add(Context& ctx, const Tensor& a, const Tensor& b) {
  check_binary("add", ctx, "a", a, "b", b);
  COHORT_RUN_ON_DEVICE("add", ctx, add(ctx, a, b));
}

Tensor mul(Context& ctx, const Tensor& a, const Tensor& b) {
  check_binary("mul", ctx, "a", a, "b", b);
  COHORT_RUN_ON_DEVICE("mul", ctx, mul(ctx, a, b));
}

Tensor scale(Context& ctx, const Tensor& x, double alpha) {
  check_float_input("scale", ctx, "x", x);
  COHORT_RUN_ON_DEVICE("scale", ctx, scale(ctx, x, alpha));
}

void add_inplace(Context& ctx, Tensor& acc, const Tensor& x) {
  check_binary("add_inplace", ctx, "acc", acc, "x", x);
  COHORT_RUN_ON_DEVICE("add_inplace", ctx, add_inplace(ctx, acc, x));
}

// Always a new tensor, even for the same dtype, so the result never aliases x.
Tensor cast(Context& ctx, const Tensor& x, DType dtype) {
  check_defined("cast", "x", x);
  check_device("cast", ctx, {&x});
  COHORT_RUN_ON_DEVICE("cast", ctx, cast(ctx, x, dtype));
}

void fill(Context& ctx, Tensor& t, double value) {
  check_defined("fill", "t", t);
  check_device("fill", ctx, {&t});
  COHORT_RUN_ON_DEVICE("fill", ctx, fill(ctx, t, value));
}

}  // namespace cohort::core::ops
