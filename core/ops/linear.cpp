// Dispatchers for linear: y[N, out] = x[N, in] * w[out, in]^T + b.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/linear_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_matrix(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  COHORT_CHECK(t.rank() == 2,
               fmt::format("{}: {} must be 2-D, got shape {}", op, name, t.shape().str()));
  check_floating(op, name, t);
}

}  // namespace

Tensor linear(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias) {
  constexpr const char* op = "linear";
  check_matrix(op, "x [N, in]", x);
  check_matrix(op, "w [out, in]", w);
  COHORT_CHECK(x.dim(1) == w.dim(1),
               fmt::format("{}: x {} has {} features but w {} expects {}", op, x.shape().str(),
                           x.dim(1), w.shape().str(), w.dim(1)));
  if (bias.defined()) {
    check_floating(op, "bias", bias);
    COHORT_CHECK(bias.rank() == 1 && bias.dim(0) == w.dim(0),
                 fmt::format("{}: bias must have shape [{}] to match w {}, got {}", op, w.dim(0),
                             w.shape().str(), bias.shape().str()));
  }
  check_device(op, ctx, {&x, &w, &bias});
  COHORT_RUN_ON_DEVICE(op, ctx, linear(ctx, x, w, bias));
}

Tensor linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& w) {
  constexpr const char* op = "linear_backward_input";
  check_matrix(op, "dy [N, out]", dy);
  check_matrix(op, "w [out, in]", w);
  COHORT_CHECK(dy.dim(1) == w.dim(0),
               fmt::format("{}: dy {} has {} outputs but w {} has {}", op, dy.shape().str(),
                           dy.dim(1), w.shape().str(), w.dim(0)));
  check_device(op, ctx, {&dy, &w});
  COHORT_RUN_ON_DEVICE(op, ctx, linear_backward_input(ctx, dy, w));
}

void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate) {
  constexpr const char* op = "linear_backward_weight";
  check_matrix(op, "dy [N, out]", dy);
  check_matrix(op, "x [N, in]", x);
  check_matrix(op, "dw [out, in]", dw);
  COHORT_CHECK(dy.dim(0) == x.dim(0) && dw.dim(0) == dy.dim(1) && dw.dim(1) == x.dim(1),
               fmt::format("{}: dy {}, x {} and dw {} do not match (need dy [N, out], x [N, in], "
                           "dw [out, in])",
                           op, dy.shape().str(), x.shape().str(), dw.shape().str()));
  check_device(op, ctx, {&dy, &x, &dw});
  COHORT_RUN_ON_DEVICE(op, ctx, linear_backward_weight(ctx, dy, x, dw, accumulate));
}

}  // namespace cohort::core::ops
