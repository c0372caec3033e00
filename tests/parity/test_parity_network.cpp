// PyTorch parity of a small whole network, composed op by op (network_case in
// make_golden.py):
//
//   x -> conv3x3 -> BN(train) -> relu -> maxpool 3x3/2 -> p1
//   p1 -> conv3x3 -> relu(BN(train) + p1) -> conv-transpose (x2) -> up
//   concat(up, resize(p1)) -> dropout(p=0) -> feat
//   feat -> adaptive avg pool 1x1 -> linear -> cross entropy       (cls_loss)
//   feat -> 1x1 conv -> bilinear resize -> per-pixel cross entropy (seg_loss, ignored pixels)
//   feat -> 1x1 conv -> masked L1                                  (reg_loss)
//   loss = cls_loss + seg_loss + 0.5 * reg_loss
//
// The backward pass calls every op's backward function by hand in reverse
// order, summing the fan-outs of feat and p1 with add_inplace. This checks the
// op chain against PyTorch's autograd (the loss, the gradient of every
// parameter and of the input); the graph executor is tested elsewhere.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

class NetworkParity : public DTypeParityTest {
 protected:
  Tensor param(const std::string& name) const {
    // Batch-norm parameters are f32 whatever the activations' dtype (ops.hpp).
    const bool bn = name.rfind("bn", 0) == 0;
    return case_.tensor(name, bn ? DType::f32 : dt());
  }
  // A zero gradient buffer shaped (and typed) like parameter `name`.
  Tensor& grad(const std::string& name) {
    const Tensor p = param(name);
    return grads_.emplace(name, Tensor::zeros(p.shape(), p.dtype())).first->second;
  }

  const GoldenCase case_{"network"};
  std::map<std::string, Tensor> grads_;
  Context ctx;
};

TEST_P(NetworkParity, LossAndEveryGradientMatchPyTorch) {
  const GoldenCase& c = case_;
  ctx.set_seed(99, 0);
  const Tensor x = c.tensor("x", dt());
  const Tensor conv1_w = param("conv1_w"), conv2_w = param("conv2_w");
  const Tensor bn1_gamma = param("bn1_gamma"), bn1_beta = param("bn1_beta");
  const Tensor bn2_gamma = param("bn2_gamma"), bn2_beta = param("bn2_beta");
  const Tensor up_w = param("up_w"), up_b = param("up_b"), fc_w = param("fc_w"),
               fc_b = param("fc_b");
  const Tensor seg_w = param("seg_w"), seg_b = param("seg_b"), reg_w = param("reg_w"),
               reg_b = param("reg_b");
  const Tensor cls_labels = c.tensor("cls_labels", DType::i64);
  const Tensor seg_labels = c.tensor("seg_labels", DType::u8);
  const Tensor reg_target = c.tensor("reg_target", dt());
  const Tensor reg_mask = c.tensor("reg_mask", DType::u8);
  const int64_t n = x.dim(0);

  ops::ConvGeometry same3x3;  // 3x3, stride 1, pad 1
  same3x3.pad_h = same3x3.pad_w = 1;
  const ops::ConvGeometry pointwise;  // 1x1
  ops::ConvGeometry up2x;
  up2x.stride_h = up2x.stride_w = 2;
  up2x.pad_h = up2x.pad_w = 1;
  up2x.output_pad_h = up2x.output_pad_w = 1;
  ops::PoolGeometry pool{3, 3, 2, 2, 1, 1, true};

  ops::BatchNormArgs bn1_args;
  bn1_args.momentum = c.attr("momentum");
  bn1_args.eps = c.attr("eps");
  Tensor bn1_mean = Tensor::zeros({bn1_gamma.numel()}, DType::f32);
  Tensor bn1_var = Tensor::full({bn1_gamma.numel()}, 1.0, DType::f32);
  Tensor bn2_mean = Tensor::zeros({bn2_gamma.numel()}, DType::f32);
  Tensor bn2_var = Tensor::full({bn2_gamma.numel()}, 1.0, DType::f32);

  // ---- forward ----
  const Tensor c1 = ops::conv2d(ctx, x, conv1_w, Tensor(), same3x3);
  ops::BatchNormSaved bn1_saved;
  const Tensor b1 =
      ops::batch_norm_train(ctx, c1, bn1_gamma, bn1_beta, bn1_mean, bn1_var, bn1_args, bn1_saved);
  const Tensor a1 = ops::relu(ctx, b1);
  const Tensor p1 = ops::max_pool2d(ctx, a1, pool);

  const Tensor c2 = ops::conv2d(ctx, p1, conv2_w, Tensor(), same3x3);
  ops::BatchNormArgs bn2_args = bn1_args;
  bn2_args.relu = true;
  bn2_args.residual = p1;
  ops::BatchNormSaved bn2_saved;
  const Tensor a2 =
      ops::batch_norm_train(ctx, c2, bn2_gamma, bn2_beta, bn2_mean, bn2_var, bn2_args, bn2_saved);

  const Tensor up = ops::conv_transpose2d(ctx, a2, up_w, up_b, up2x);
  const Tensor skip =
      ops::resize_bilinear(ctx, p1, static_cast<int>(up.dim(1)), static_cast<int>(up.dim(2)));
  const Tensor cat = ops::concat_channels(ctx, {up, skip});
  const uint64_t dropout_offset = ctx.reserve_random(static_cast<uint64_t>(cat.numel()));
  const Tensor feat = ops::dropout(ctx, cat, 0.0, dropout_offset);

  const Tensor pooled = ops::adaptive_avg_pool2d(ctx, feat, 1, 1);
  const Tensor pooled_flat = pooled.view({n, feat.dim(3)});
  const Tensor logits = ops::linear(ctx, pooled_flat, fc_w, fc_b);
  const Tensor cls_loss = ops::softmax_cross_entropy(ctx, logits, cls_labels, Tensor());

  const Tensor seg_small = ops::conv2d(ctx, feat, seg_w, seg_b, pointwise);
  const Tensor seg = ops::resize_bilinear(ctx, seg_small, static_cast<int>(seg_labels.dim(1)),
                                          static_cast<int>(seg_labels.dim(2)));
  const Tensor seg_loss = ops::softmax_cross_entropy(ctx, seg, seg_labels, Tensor());

  const Tensor reg = ops::conv2d(ctx, feat, reg_w, reg_b, pointwise);
  const Tensor reg_loss =
      ops::regression_loss(ctx, ops::RegressionLoss::l1, reg, reg_target, reg_mask);
  const double reg_weight = c.attr("reg_weight");

  expect_loss_matches("cls_loss", cls_loss, c.tensor("cls_loss", DType::f64), dt());
  expect_loss_matches("seg_loss", seg_loss, c.tensor("seg_loss", DType::f64), dt());
  expect_loss_matches("reg_loss", reg_loss, c.tensor("reg_loss", DType::f64), dt());
  const double total = cls_loss.item() + seg_loss.item() + reg_weight * reg_loss.item();
  expect_loss_matches("loss", Tensor::from_vector({total}, {1}, cls_loss.dtype()),
                      c.tensor("loss", DType::f64), dt());
  expect_matches("bn1 running mean", bn1_mean, c.tensor("bn1_running_mean", DType::f64), DType::f32,
                 tol::f32);
  expect_matches("bn1 running var", bn1_var, c.tensor("bn1_running_var", DType::f64), DType::f32,
                 tol::f32);
  expect_matches("bn2 running mean", bn2_mean, c.tensor("bn2_running_mean", DType::f64), DType::f32,
                 tol::f32);
  expect_matches("bn2 running var", bn2_var, c.tensor("bn2_running_var", DType::f64), DType::f32,
                 tol::f32);

  // ---- backward, in reverse order ----
  const Tensor one = Tensor::full({1}, 1.0, DType::f32);
  const Tensor reg_dloss = Tensor::full({1}, reg_weight, DType::f32);

  // Regression head.
  const Tensor dreg = ops::regression_loss_backward(ctx, ops::RegressionLoss::l1, reg_dloss, reg,
                                                    reg_target, reg_mask);
  Tensor dfeat = ops::conv2d_backward_input(ctx, dreg, reg_w, feat.shape(), pointwise);
  ops::conv2d_backward_weight(ctx, dreg, feat, grad("reg_w"), false, pointwise);
  ops::bias_backward(ctx, dreg, grad("reg_b"), false);

  // Segmentation head.
  const Tensor dseg = ops::softmax_cross_entropy_backward(ctx, one, seg, seg_labels, Tensor());
  const Tensor dseg_small = ops::resize_bilinear_backward(ctx, dseg, seg_small.shape());
  ops::add_inplace(ctx, dfeat,
                   ops::conv2d_backward_input(ctx, dseg_small, seg_w, feat.shape(), pointwise));
  ops::conv2d_backward_weight(ctx, dseg_small, feat, grad("seg_w"), false, pointwise);
  ops::bias_backward(ctx, dseg_small, grad("seg_b"), false);

  // Classification head.
  const Tensor dlogits =
      ops::softmax_cross_entropy_backward(ctx, one, logits, cls_labels, Tensor());
  const Tensor dpooled = ops::linear_backward_input(ctx, dlogits, fc_w);
  ops::linear_backward_weight(ctx, dlogits, pooled_flat, grad("fc_w"), false);
  ops::bias_backward(ctx, dlogits, grad("fc_b"), false);
  ops::add_inplace(
      ctx, dfeat,
      ops::adaptive_avg_pool2d_backward(ctx, dpooled.view(pooled.shape()), feat.shape()));

  // Decoder.
  const Tensor dcat = ops::dropout_backward(ctx, dfeat, 0.0, dropout_offset);
  const std::vector<Tensor> dparts = ops::split_channels(ctx, dcat, {up.dim(3), skip.dim(3)});
  Tensor dp1 = ops::resize_bilinear_backward(ctx, dparts[1], p1.shape());
  const Tensor da2 = ops::conv_transpose2d_backward_input(ctx, dparts[0], up_w, a2.shape(), up2x);
  ops::conv_transpose2d_backward_weight(ctx, dparts[0], a2, grad("up_w"), false, up2x);
  ops::bias_backward(ctx, dparts[0], grad("up_b"), false);

  // Residual block: relu(bn2(conv2(p1)) + p1).
  const ops::BatchNormGrads bn2_grads =
      ops::batch_norm_backward(ctx, da2, c2, a2, bn2_gamma, bn2_saved, bn2_args, true,
                               grad("bn2_gamma"), grad("bn2_beta"), false);
  ops::add_inplace(ctx, dp1, bn2_grads.dresidual);
  ops::add_inplace(ctx, dp1,
                   ops::conv2d_backward_input(ctx, bn2_grads.dx, conv2_w, p1.shape(), same3x3));
  ops::conv2d_backward_weight(ctx, bn2_grads.dx, p1, grad("conv2_w"), false, same3x3);

  // Stem.
  const Tensor da1 = ops::max_pool2d_backward(ctx, dp1, a1, p1, pool);
  const Tensor db1 = ops::relu_backward(ctx, da1, a1);
  const ops::BatchNormGrads bn1_grads =
      ops::batch_norm_backward(ctx, db1, c1, b1, bn1_gamma, bn1_saved, bn1_args, true,
                               grad("bn1_gamma"), grad("bn1_beta"), false);
  const Tensor dx = ops::conv2d_backward_input(ctx, bn1_grads.dx, conv1_w, x.shape(), same3x3);
  ops::conv2d_backward_weight(ctx, bn1_grads.dx, x, grad("conv1_w"), false, same3x3);

  // Gradients pass through the whole chain: twice tol::f32's atol in f32; in
  // f64, batch norm's f32 statistics bound the precision (ops.hpp).
  const Tolerance grad_tol = pick({1e-4, 2e-5}, tol::f64_from_f32_stats);
  expect_matches("dx", dx, c.tensor("dx", DType::f64), dt(), grad_tol);
  for (const auto& [name, g] : grads_) {
    expect_matches("d" + name, g, c.tensor("d" + name, DType::f64), g.dtype(), grad_tol);
  }
  EXPECT_EQ(grads_.size(), 14u) << "every parameter's gradient is compared";
}

COHORT_PARITY_DTYPES(NetworkParity);

}  // namespace
}  // namespace cohort::testing
