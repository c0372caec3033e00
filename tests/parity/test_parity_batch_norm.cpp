// PyTorch parity of batch normalisation: training (batch statistics, running
// statistics after one momentum-0.1 step), evaluation, and the fused forms
// relu(bn(x) + z) and relu(bn(x)), forward and backward, in f32 and f64.
//
// gamma, beta, the running statistics, the saved statistics and the parameter
// gradients are f32 whatever x's dtype (ops.hpp), so in the f64 run they are
// held to the f32 tolerance, and so is everything computed from the saved f32
// statistics (tol::f64_from_f32_stats; see README.md).
#include <gtest/gtest.h>

#include <string>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

class BatchNormParity : public DTypeParityTest {
 protected:
  void check(const std::string& name) {
    const GoldenCase c(name);
    const bool training = c.attr_int("training") != 0;
    const Tensor x = c.tensor("x", dt()), dy = c.tensor("dy", dt());
    const Tensor gamma = c.tensor("gamma", DType::f32), beta = c.tensor("beta", DType::f32);
    Tensor running_mean = c.tensor("running_mean", DType::f32);
    Tensor running_var = c.tensor("running_var", DType::f32);
    ops::BatchNormArgs args;
    args.momentum = c.attr("momentum");
    args.eps = c.attr("eps");
    args.relu = c.attr_int("relu") != 0;
    if (c.attr_int("has_residual")) args.residual = c.tensor("residual", dt());

    ops::BatchNormSaved saved;
    const Tensor y =
        training
            ? ops::batch_norm_train(ctx, x, gamma, beta, running_mean, running_var, args, saved)
            : ops::batch_norm_eval(ctx, x, gamma, beta, running_mean, running_var, args, saved);
    // Statistics are f32 by contract; the f64 run is as precise as they are.
    const Tolerance stats_tol = tol::f32;
    const Tolerance act_tol = pick(tol::f32, tol::f64_from_f32_stats);
    expect_matches(name + " y", y, c.tensor("y", DType::f64), dt(), act_tol);
    expect_matches(name + " running_mean", running_mean, c.tensor("running_mean_out", DType::f64),
                   DType::f32, stats_tol);
    expect_matches(name + " running_var", running_var, c.tensor("running_var_out", DType::f64),
                   DType::f32, stats_tol);
    expect_matches(name + " saved mean", saved.mean, c.tensor("saved_mean", DType::f64), DType::f32,
                   stats_tol);
    expect_matches(name + " saved invstd", saved.invstd, c.tensor("saved_invstd", DType::f64),
                   DType::f32, stats_tol);

    const Tensor dgamma_ref = c.tensor("dgamma", DType::f64);
    const Tensor dbeta_ref = c.tensor("dbeta", DType::f64);
    Tensor dgamma = Tensor::full(gamma.shape(), 1e6, DType::f32);
    Tensor dbeta = Tensor::full(beta.shape(), 1e6, DType::f32);
    const ops::BatchNormGrads grads = ops::batch_norm_backward(
        ctx, dy, x, y, gamma, saved, args, training, dgamma, dbeta, /*accumulate=*/false);
    expect_matches(name + " dx", grads.dx, c.tensor("dx", DType::f64), dt(), act_tol);
    expect_matches(name + " dgamma", dgamma, dgamma_ref, DType::f32, stats_tol);
    expect_matches(name + " dbeta", dbeta, dbeta_ref, DType::f32, stats_tol);
    if (args.residual.defined()) {
      expect_matches(name + " dresidual", grads.dresidual, c.tensor("dresidual", DType::f64), dt(),
                     pick(tol::f32_elementwise, tol::f64));
    } else {
      EXPECT_FALSE(grads.dresidual.defined()) << name << ": dresidual without a residual";
    }

    // Accumulating parameter gradients add onto what the buffers hold.
    Tensor dgamma_acc = Tensor::full(gamma.shape(), 0.5, DType::f32);
    Tensor dbeta_acc = Tensor::full(beta.shape(), -0.5, DType::f32);
    ops::batch_norm_backward(ctx, dy, x, y, gamma, saved, args, training, dgamma_acc, dbeta_acc,
                             /*accumulate=*/true);
    expect_matches(name + " dgamma accumulated", dgamma_acc, plus_constant(dgamma_ref, 0.5),
                   DType::f32, stats_tol);
    expect_matches(name + " dbeta accumulated", dbeta_acc, plus_constant(dbeta_ref, -0.5),
                   DType::f32, stats_tol);
  }

  Context ctx;
};

TEST_P(BatchNormParity, Train) {
  check("batch_norm_train");
}
TEST_P(BatchNormParity, Eval) {
  check("batch_norm_eval");
}
TEST_P(BatchNormParity, TrainFusedAddRelu) {
  check("bn_add_relu_train");
}
TEST_P(BatchNormParity, EvalFusedRelu) {
  check("bn_relu_eval");
}

COHORT_PARITY_DTYPES(BatchNormParity);

}  // namespace
}  // namespace cohort::testing
