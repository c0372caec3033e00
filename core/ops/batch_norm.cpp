// Dispatchers for batch normalisation: validate, then run on the context's device.
#include <fmt/format.h>

#include <cmath>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/batch_norm_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_x(const char* op, const Tensor& x) {
  check_defined(op, "x", x);
  check_floating(op, "x", x);
  COHORT_CHECK(
      x.rank() >= 2 && x.dim(-1) > 0,
      fmt::format("{}: x must be [..., C] with C > 0 and at least 2 dims, got {}", op, x.str()));
}

// Per-channel vectors (gamma, beta, statistics) are f32 [C] whatever x's dtype.
void check_channel_vector(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  check_defined(op, name, t);
  COHORT_CHECK(t.dtype() == DType::f32 && t.shape() == Shape{x.dim(-1)},
               fmt::format("{}: {} must be f32[{}] (the channels of x {}), got {}", op, name,
                           x.dim(-1), x.str(), t.str()));
}

void check_args(const char* op, const Tensor& x, const BatchNormArgs& args) {
  COHORT_CHECK(args.eps > 0 && std::isfinite(args.eps),
               fmt::format("{}: eps must be positive, got {} (x {})", op, args.eps, x.str()));
  COHORT_CHECK(
      args.momentum >= 0 && args.momentum <= 1,
      fmt::format("{}: momentum must be in [0, 1], got {} (x {})", op, args.momentum, x.str()));
  if (args.residual.defined()) {
    check_same_shape(op, "x", x, "residual", args.residual);
    check_same_dtype(op, "x", x, "residual", args.residual);
  }
}

void check_forward(const char* op, const Context& ctx, const Tensor& x, const Tensor& gamma,
                   const Tensor& beta, const Tensor& running_mean, const Tensor& running_var,
                   const BatchNormArgs& args) {
  check_x(op, x);
  check_channel_vector(op, "gamma", gamma, x);
  check_channel_vector(op, "beta", beta, x);
  check_channel_vector(op, "running_mean", running_mean, x);
  check_channel_vector(op, "running_var", running_var, x);
  check_args(op, x, args);
  check_device(op, ctx, {&x, &gamma, &beta, &running_mean, &running_var, &args.residual});
}

}  // namespace

Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved) {
  const char* op = "batch_norm_train";
  check_forward(op, ctx, x, gamma, beta, running_mean, running_var, args);
  COHORT_RUN_ON_DEVICE(
      op, ctx, batch_norm_train(ctx, x, gamma, beta, running_mean, running_var, args, saved));
}

Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved) {
  const char* op = "batch_norm_eval";
  check_forward(op, ctx, x, gamma, beta, running_mean, running_var, args);
  COHORT_RUN_ON_DEVICE(
      op, ctx, batch_norm_eval(ctx, x, gamma, beta, running_mean, running_var, args, saved));
}

// dgamma and dbeta may be undefined (frozen affine parameters); then they are skipped.
BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate) {
  const char* op = "batch_norm_backward";
  check_x(op, x);
  check_defined(op, "dy", dy);
  check_same_shape(op, "dy", dy, "x", x);
  check_same_dtype(op, "dy", dy, "x", x);
  if (args.relu) {
    check_defined(op, "y (needed for the fused relu)", y);
    check_same_shape(op, "y", y, "x", x);
    check_same_dtype(op, "y", y, "x", x);
  }
  check_channel_vector(op, "gamma", gamma, x);
  check_channel_vector(op, "saved.mean", saved.mean, x);
  check_channel_vector(op, "saved.invstd", saved.invstd, x);
  if (dgamma.defined()) check_channel_vector(op, "dgamma", dgamma, x);
  if (dbeta.defined()) check_channel_vector(op, "dbeta", dbeta, x);
  check_args(op, x, args);
  check_device(op, ctx,
               {&dy, &x, &y, &gamma, &saved.mean, &saved.invstd, &dgamma, &dbeta, &args.residual});
  COHORT_RUN_ON_DEVICE(
      op, ctx,
      batch_norm_backward(ctx, dy, x, y, gamma, saved, args, training, dgamma, dbeta, accumulate));
}

}  // namespace cohort::core::ops
