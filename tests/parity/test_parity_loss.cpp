// PyTorch parity of the losses, forward and backward, in f32 and f64:
//  - softmax cross entropy on [N,H,W,C] logits with ignore_index 255 and class
//    weights (F.cross_entropy, reduction='mean'), and on [N,C] logits;
//  - L1 and smooth-L1 (beta 1.0 and 0.5) as a masked mean (computed by hand in
//    PyTorch) and as a plain mean without a mask.
// Loss values are 1-element tensors, f32 by ops.hpp's comment; an f64 loss for
// f64 input is accepted too (see expect_loss_matches). The upstream gradient
// dloss (0.75, exact in f32) is a 1-element f32 tensor.
#include <gtest/gtest.h>

#include <string>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

class LossParity : public DTypeParityTest {
 protected:
  void check_cross_entropy(const std::string& name) {
    const GoldenCase c(name);
    const Tensor logits = c.tensor("logits", dt());
    const Tensor weights =
        c.attr_int("has_weights") ? c.tensor("class_weights", DType::f32) : Tensor();
    const Tensor dloss = c.tensor("dloss", DType::f32);
    const int ignore = c.attr_int("ignore_index");
    // Every label dtype the op accepts.
    for (const DType label_dtype : {DType::u8, DType::i32, DType::i64}) {
      const std::string what = fmt_name(name, label_dtype);
      const Tensor labels = c.tensor("labels", label_dtype);
      expect_loss_matches(what + " loss",
                          ops::softmax_cross_entropy(ctx, logits, labels, weights, ignore),
                          c.tensor("loss", DType::f64), dt());
      expect_matches(
          what + " dlogits",
          ops::softmax_cross_entropy_backward(ctx, dloss, logits, labels, weights, ignore),
          c.tensor("dlogits", DType::f64), dt(), pick(tol::f32, tol::f64));
    }
  }

  void check_regression(const std::string& name) {
    const GoldenCase c(name);
    const auto kind =
        c.attr_int("smooth") ? ops::RegressionLoss::smooth_l1 : ops::RegressionLoss::l1;
    const double beta = c.attr("beta");
    const Tensor pred = c.tensor("pred", dt()), target = c.tensor("target", dt());
    const Tensor dloss = c.tensor("dloss", DType::f32);
    const Tolerance grad_tol = pick(tol::f32_elementwise, tol::f64);
    for (const DType mask_dtype : {DType::u8, DType::f32}) {
      const std::string what = fmt_name(name, mask_dtype);
      const Tensor mask = c.tensor("mask", mask_dtype);
      expect_loss_matches(what + " masked loss",
                          ops::regression_loss(ctx, kind, pred, target, mask, beta),
                          c.tensor("loss", DType::f64), dt());
      expect_matches(what + " masked dpred",
                     ops::regression_loss_backward(ctx, kind, dloss, pred, target, mask, beta),
                     c.tensor("dpred", DType::f64), dt(), grad_tol);
    }
    expect_loss_matches(name + " loss without mask",
                        ops::regression_loss(ctx, kind, pred, target, Tensor(), beta),
                        c.tensor("loss_nomask", DType::f64), dt());
    expect_matches(name + " dpred without mask",
                   ops::regression_loss_backward(ctx, kind, dloss, pred, target, Tensor(), beta),
                   c.tensor("dpred_nomask", DType::f64), dt(), grad_tol);

    // No valid element: loss 0 and gradient 0 (ops.hpp), where PyTorch's 0/0 is NaN.
    const Tensor none = Tensor::zeros(pred.shape(), DType::u8);
    expect_loss_matches(name + " loss, empty mask",
                        ops::regression_loss(ctx, kind, pred, target, none, beta),
                        Tensor::zeros({1}, DType::f64), dt());
    expect_matches(name + " dpred, empty mask",
                   ops::regression_loss_backward(ctx, kind, dloss, pred, target, none, beta),
                   Tensor::zeros(pred.shape(), DType::f64), dt(), {0, 0});
  }

  static std::string fmt_name(const std::string& name, DType dtype) {
    return name + " (" + std::string(core::dtype_name(dtype)) + ")";
  }

  Context ctx;
};

TEST_P(LossParity, CrossEntropyNHWCIgnoreIndexClassWeights) {
  check_cross_entropy("cross_entropy_nchw");
}
TEST_P(LossParity, CrossEntropyNC) {
  check_cross_entropy("cross_entropy_nc");
}

TEST_P(LossParity, MaskedL1) {
  check_regression("l1");
}
TEST_P(LossParity, MaskedSmoothL1Beta1) {
  check_regression("smooth_l1_beta1");
}
TEST_P(LossParity, MaskedSmoothL1BetaHalf) {
  check_regression("smooth_l1_beta05");
}

COHORT_PARITY_DTYPES(LossParity);

}  // namespace
}  // namespace cohort::testing
