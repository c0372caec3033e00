// Losses on the CPU: softmax cross-entropy (class weights, ignored pixels, label
// dtypes, stability, bad labels) and L1 / smooth-L1 with masks, with double
// gradient checks of the logits and predictions; the normalisers of their means
// and a part's share of a larger batch's mean (whole-batch means), and the loss
// layers weighted by such a share.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/context.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_gradient;
using testing::random_tensor;

double log_sum_exp(std::vector<double> z) {
  double s = 0;
  for (double v : z)
    s += std::exp(v);
  return std::log(s);
}

Tensor one(double v, DType dtype = DType::f64) {
  return Tensor::from_vector({v}, Shape{1}, dtype);
}

TEST(CrossEntropy, WeightedMeanOverNonIgnoredRows) {
  Context ctx;
  const Tensor logits = Tensor::from_vector({1, 2, 3, 0, 0, 0, 5, -1, 2}, Shape{3, 3});
  const Tensor labels = Tensor::from_vector({2, 255, 0}, Shape{3}, DType::i32);
  const Tensor weights = Tensor::from_vector({0.5, 1, 2}, Shape{3});
  const double nll0 = log_sum_exp({1, 2, 3}) - 3, nll2 = log_sum_exp({5, -1, 2}) - 5;
  const Tensor loss = ops::softmax_cross_entropy(ctx, logits, labels, weights);
  EXPECT_EQ(loss.dtype(), DType::f32);
  EXPECT_EQ(loss.shape(), Shape{1});
  EXPECT_NEAR(loss.item(), (2 * nll0 + 0.5 * nll2) / 2.5, 1e-6);
  // Without weights: plain mean over the two counted rows.
  EXPECT_NEAR(ops::softmax_cross_entropy(ctx, logits, labels, Tensor()).item(), (nll0 + nll2) / 2,
              1e-6);
}

TEST(CrossEntropy, LabelDtypesAndIgnoreIndexAgree) {
  Context ctx;
  const Tensor logits = random_tensor(Shape{2, 2, 3, 5}, 1, -2, 2, DType::f32);
  const std::vector<double> y = {0, 4, 255, 2, 1, 3, 255, 0, 0, 1, 2, 4};
  const double u8 = ops::softmax_cross_entropy(
                        ctx, logits, Tensor::from_vector(y, Shape{2, 2, 3}, DType::u8), Tensor())
                        .item();
  const double i32 = ops::softmax_cross_entropy(
                         ctx, logits, Tensor::from_vector(y, Shape{2, 2, 3}, DType::i32), Tensor())
                         .item();
  std::vector<double> y100 = y;
  for (double& v : y100)
    if (v == 255) v = -100;
  const double i64 =
      ops::softmax_cross_entropy(ctx, logits, Tensor::from_vector(y100, Shape{2, 2, 3}, DType::i64),
                                 Tensor(), -100)
          .item();
  EXPECT_EQ(u8, i32);
  EXPECT_EQ(u8, i64);
  // Ignoring a row must change the loss: label 255 is not silently read as a class.
  EXPECT_GT(u8, 0);
}

TEST(CrossEntropy, GradientWithClassWeightsAndIgnoredPixels) {
  Context ctx;
  Tensor logits = random_tensor(Shape{2, 3, 2, 4}, 2, -3, 3);
  const Tensor labels =
      Tensor::from_vector({0, 3, 1, 255, 2, 2, 255, 1, 0, 3, 255, 1}, Shape{2, 3, 2}, DType::i64);
  const Tensor weights = Tensor::from_vector({0.5, 1, 2, 0.25}, Shape{4});
  const Tensor r = one(0.7);
  const Tensor analytic = ops::softmax_cross_entropy_backward(ctx, r, logits, labels, weights);
  EXPECT_EQ(analytic.dtype(), DType::f64);
  expect_gradient(
      "cross-entropy dlogits",
      [&] { return ops::softmax_cross_entropy(ctx, logits, labels, weights); }, logits, r,
      analytic);
  // Ignored rows get exactly zero gradient.
  const std::vector<double> g = analytic.to_vector();
  for (int c = 0; c < 4; ++c)
    EXPECT_EQ(g[3 * 4 + c], 0.0);
}

TEST(CrossEntropy, GradientOfRankTwoLogitsWithoutWeights) {
  Context ctx;
  Tensor logits = random_tensor(Shape{6, 3}, 3, -2, 2);
  const Tensor labels = Tensor::from_vector({0, 1, 2, 2, 1, 0}, Shape{6}, DType::u8);
  const Tensor r = one(-1.3);
  expect_gradient(
      "cross-entropy [N, C]",
      [&] { return ops::softmax_cross_entropy(ctx, logits, labels, Tensor()); }, logits, r,
      ops::softmax_cross_entropy_backward(ctx, r, logits, labels, Tensor()));
}

TEST(CrossEntropy, BackwardScalesWithDloss) {
  Context ctx;
  const Tensor logits = random_tensor(Shape{4, 3}, 4, -1, 1, DType::f32);
  const Tensor labels = Tensor::from_vector({0, 2, 1, 1}, Shape{4}, DType::i32);
  const Tensor g1 =
      ops::softmax_cross_entropy_backward(ctx, one(1, DType::f32), logits, labels, Tensor());
  const Tensor g25 =
      ops::softmax_cross_entropy_backward(ctx, one(2.5, DType::f32), logits, labels, Tensor());
  Context c2;
  expect_close("dloss 2.5", g25, ops::scale(c2, g1, 2.5), 1e-6, 1e-7);
}

TEST(CrossEntropy, StableForLargeLogits) {
  Context ctx;
  const Tensor logits = Tensor::from_vector({1000, 0, -1000, -500, 800, 790}, Shape{2, 3});
  const Tensor labels = Tensor::from_vector({1, 2}, Shape{2}, DType::i64);
  // Row 0: 1000 - 0; row 1: log(e^800 + e^790) - 790 = 10 + log(1 + e^-10).
  const double expected = (1000 + 10 + std::log1p(std::exp(-10.0))) / 2;
  const Tensor loss = ops::softmax_cross_entropy(ctx, logits, labels, Tensor());
  EXPECT_NEAR(loss.item(), expected, 1e-3);
  const std::vector<double> g =
      ops::softmax_cross_entropy_backward(ctx, one(1, DType::f32), logits, labels, Tensor())
          .to_vector();
  for (double v : g)
    EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(g[0], 0.5, 1e-6);   // softmax 1, not the label: +1 / 2 rows
  EXPECT_NEAR(g[1], -0.5, 1e-6);  // the label: (0 - 1) / 2
}

// PyTorch returns NaN (0/0) here; we return 0 so one unlabelled crop cannot
// poison a training run.
TEST(CrossEntropy, AllIgnoredGivesZeroLossAndGradient) {
  Context ctx;
  const Tensor logits = random_tensor(Shape{2, 2, 3}, 5, -1, 1, DType::f32);
  const Tensor labels = Tensor::full(Shape{2, 2}, 255, DType::u8);
  EXPECT_EQ(ops::softmax_cross_entropy(ctx, logits, labels, Tensor()).item(), 0.0);
  EXPECT_EQ(ops::softmax_cross_entropy_backward(ctx, one(1, DType::f32), logits, labels, Tensor())
                .to_vector(),
            std::vector<double>(12, 0.0));
}

TEST(CrossEntropy, BadLabelErrorNamesOpValueAndPosition) {
  Context ctx;
  const Tensor logits = Tensor::zeros(Shape{2, 3, 5}, DType::f32);
  const Tensor labels = Tensor::from_vector({0, 1, 2, 3, 7, 255}, Shape{2, 3}, DType::u8);
  expect_error([&] { ops::softmax_cross_entropy(ctx, logits, labels, Tensor()); },
               {"softmax_cross_entropy", "label 7", "position 4"});
  expect_error(
      [&] {
        ops::softmax_cross_entropy_backward(ctx, one(1, DType::f32), logits, labels, Tensor());
      },
      {"softmax_cross_entropy_backward", "label 7"});

  const Tensor negative = Tensor::from_vector({0, -1}, Shape{2}, DType::i32);
  expect_error(
      [&] {
        ops::softmax_cross_entropy(ctx, Tensor::zeros(Shape{2, 5}, DType::f32), negative, Tensor());
      },
      {"label -1", "position 1"});
}

TEST(CrossEntropy, ShapeErrorsNameBothShapes) {
  Context ctx;
  const Tensor logits = Tensor::zeros(Shape{2, 3, 5}, DType::f32);
  expect_error(
      [&] {
        ops::softmax_cross_entropy(ctx, logits, Tensor::zeros(Shape{2, 4}, DType::i32), Tensor());
      },
      {"softmax_cross_entropy", "[2, 3, 5]", "[2, 4]"});
  expect_error(
      [&] {
        ops::softmax_cross_entropy(ctx, logits, Tensor::zeros(Shape{2, 3}, DType::i32),
                                   Tensor::zeros(Shape{4}, DType::f32));
      },
      {"class_weights"});
}

// ---- regression losses ------------------------------------------------------------

TEST(RegressionLoss, HandValuesForL1AndSmoothL1WithMask) {
  Context ctx;
  const Tensor pred = Tensor::from_vector({1, 2, 3, 4}, Shape{2, 2});
  const Tensor target = Tensor::from_vector({1.5, 2, 0, 4.2}, Shape{2, 2});
  const Tensor none;
  // d = [-0.5, 0, 3, -0.2]
  EXPECT_NEAR(ops::regression_loss(ctx, ops::RegressionLoss::l1, pred, target, none).item(),
              3.7 / 4, 1e-6);
  EXPECT_NEAR(
      ops::regression_loss(ctx, ops::RegressionLoss::smooth_l1, pred, target, none, 1.0).item(),
      (0.125 + 0 + 2.5 + 0.02) / 4, 1e-6);
  const Tensor mask = Tensor::from_vector({1, 0, 1, 1}, Shape{2, 2}, DType::u8);
  EXPECT_NEAR(ops::regression_loss(ctx, ops::RegressionLoss::l1, pred, target, mask).item(),
              3.7 / 3, 1e-6);
  // beta = 0 is plain L1.
  EXPECT_NEAR(
      ops::regression_loss(ctx, ops::RegressionLoss::smooth_l1, pred, target, mask, 0.0).item(),
      3.7 / 3, 1e-6);
  expect_close("L1 dpred",
               ops::regression_loss_backward(ctx, ops::RegressionLoss::l1, one(1, DType::f32), pred,
                                             target, mask),
               Tensor::from_vector({-1.0 / 3, 0, 1.0 / 3, -1.0 / 3}, Shape{2, 2}, DType::f64), 1e-6,
               0);
}

// Mixed precision: a bf16 (or f16) prediction against an f32 depth target. The
// layer takes the loss in f32 from the prediction's values and hands back a
// gradient in the prediction's dtype (the ops themselves want equal dtypes).
TEST(RegressionLoss, LayerTakesA16BitPredictionAgainstAnF32Target) {
  Context ctx;
  const Tensor target = Tensor::from_vector({1.5, 2, 0, 70.25}, Shape{2, 2, 1});
  const Tensor mask = Tensor::from_vector({1, 0, 1, 1}, Shape{2, 2, 1}, DType::u8);
  for (DType low : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(low));
    const Tensor pred = ops::cast(ctx, Tensor::from_vector({1, 2, 3, 68}, Shape{2, 2, 1}), low);
    nn::RegressionLossLayer layer(ops::RegressionLoss::l1, true);
    nn::Saved saved;
    const Tensor loss = layer.forward(ctx, {pred, target, mask}, saved, {});
    EXPECT_EQ(loss.dtype(), DType::f32);
    // |1 - 1.5| + |3 - 0| + |68 - 70.25| over the 3 valid elements, in f32: the
    // target's 70.25 would round to 70 in bf16.
    EXPECT_NEAR(loss.item(), (0.5 + 3 + 2.25) / 3, 1e-6);
    const Tensor dpred = layer.backward(ctx, one(1, DType::f32), saved, {}).at(0);
    EXPECT_EQ(dpred.dtype(), low);
    EXPECT_EQ(dpred.shape(), pred.shape());
    const std::vector<double> d = dpred.to_vector();
    const double third = static_cast<double>(ops::cast(ctx, one(1.0 / 3, DType::f32), low).item());
    EXPECT_EQ(d, (std::vector<double>{-third, 0, third, -third}));
  }
}

TEST(RegressionLoss, SmoothL1GradientWithF32Mask) {
  Context ctx;
  Tensor pred = random_tensor(Shape{3, 4, 5}, 6, -2, 2);
  const Tensor target = random_tensor(pred.shape(), 7, -1, 1);
  const Tensor mask = testing::random_tensor(pred.shape(), 8, -1, 1, DType::f32);
  // Keep about half: zero out the negative entries.
  for (int64_t i = 0; i < mask.numel(); ++i)
    if (mask.data<float>()[i] < 0) mask.data<float>()[i] = 0;
  const Tensor r = one(1.7);
  const auto kind = ops::RegressionLoss::smooth_l1;
  expect_gradient(
      "smooth-L1 masked", [&] { return ops::regression_loss(ctx, kind, pred, target, mask, 0.5); },
      pred, r, ops::regression_loss_backward(ctx, kind, r, pred, target, mask, 0.5));
}

TEST(RegressionLoss, L1GradientWithU8MaskAndUnmasked) {
  Context ctx;
  Tensor pred = random_tensor(Shape{4, 6}, 9, -2, 2);
  const Tensor target = random_tensor(pred.shape(), 10);
  std::vector<double> m(24);
  for (size_t i = 0; i < m.size(); ++i)
    m[i] = i % 3 == 0 ? 0 : 1;
  const Tensor mask = Tensor::from_vector(m, pred.shape(), DType::u8);
  const Tensor r = one(0.9);
  const auto kind = ops::RegressionLoss::l1;
  expect_gradient(
      "L1 u8 mask", [&] { return ops::regression_loss(ctx, kind, pred, target, mask); }, pred, r,
      ops::regression_loss_backward(ctx, kind, r, pred, target, mask));
  expect_gradient(
      "L1 unmasked", [&] { return ops::regression_loss(ctx, kind, pred, target, Tensor()); }, pred,
      r, ops::regression_loss_backward(ctx, kind, r, pred, target, Tensor()));
}

TEST(RegressionLoss, NoValidElementGivesZeroLossAndGradient) {
  Context ctx;
  const Tensor pred = random_tensor(Shape{2, 3}, 11, -1, 1, DType::f32);
  const Tensor target = Tensor::zeros(pred.shape(), DType::f32);
  const Tensor mask = Tensor::zeros(pred.shape(), DType::u8);
  const auto kind = ops::RegressionLoss::smooth_l1;
  EXPECT_EQ(ops::regression_loss(ctx, kind, pred, target, mask).item(), 0.0);
  EXPECT_EQ(
      ops::regression_loss_backward(ctx, kind, one(1, DType::f32), pred, target, mask).to_vector(),
      std::vector<double>(6, 0.0));
}

TEST(RegressionLoss, ErrorsNameOpAndShapes) {
  Context ctx;
  const Tensor pred = Tensor::zeros(Shape{2, 3}, DType::f32);
  expect_error(
      [&] {
        ops::regression_loss(ctx, ops::RegressionLoss::l1, pred,
                             Tensor::zeros(Shape{3, 2}, DType::f32), Tensor());
      },
      {"regression_loss", "[2, 3]", "[3, 2]"});
  expect_error(
      [&] {
        ops::regression_loss(ctx, ops::RegressionLoss::l1, pred, pred,
                             Tensor::zeros(Shape{2, 3}, DType::i32));
      },
      {"mask"});
  expect_error(
      [&] {
        ops::regression_loss(ctx, ops::RegressionLoss::smooth_l1, pred, pred, Tensor(), -1.0);
      },
      {"beta"});
}

// The denominators of the means above: the total class weight of the counted
// labels, and the number of valid elements.
TEST(LossNormaliser, CrossEntropyAndRegressionDenominators) {
  Context ctx;
  const Tensor labels = Tensor::from_vector({2, 255, 0, 2}, Shape{2, 2}, DType::u8);
  const Tensor weights = Tensor::from_vector({0.5, 1, 2}, Shape{3});
  const Tensor counted = ops::cross_entropy_normaliser(ctx, labels, Tensor());
  EXPECT_EQ(counted.dtype(), DType::f32);
  EXPECT_EQ(counted.item(), 3.0);
  EXPECT_EQ(ops::cross_entropy_normaliser(ctx, labels, weights).item(), 4.5);
  EXPECT_EQ(ops::cross_entropy_normaliser(ctx, labels, Tensor(), 2).item(), 2.0)
      << "ignore_index 2: the 255 and the 0 count";
  expect_error(
      [&] {
        ops::cross_entropy_normaliser(ctx, Tensor::from_vector({1, 7}, Shape{2}, DType::i32),
                                      weights);
      },
      {"cross_entropy_normaliser", "label 7", "flat position 1"});
  const Tensor mask = Tensor::from_vector({1, 0, 0.5, 0, 1}, Shape{5}, DType::f32);
  EXPECT_EQ(ops::valid_count(ctx, mask, 5).item(), 3.0);
  EXPECT_EQ(ops::valid_count(ctx, Tensor(), 7).item(), 7.0);
  expect_error([&] { ops::valid_count(ctx, mask, 4); }, {"valid_count", "4 elements"});
}

TEST(LossNormaliser, ShareOfTheWholeMean) {
  Context ctx;
  auto f32 = [](double v) { return Tensor::from_vector({v}, Shape{1}, DType::f32); };
  EXPECT_FLOAT_EQ(ops::normaliser_share(ctx, f32(3), f32(12), 4).item(), 1.0f);
  EXPECT_FLOAT_EQ(ops::normaliser_share(ctx, f32(1), f32(12), 4).item(), 1.0f / 3);
  EXPECT_EQ(ops::normaliser_share(ctx, f32(0), f32(0), 4).item(), 0.0) << "nothing counted";
  EXPECT_TRUE(std::isnan(ops::normaliser_share(ctx, f32(NAN), f32(3), 4).item()));
  EXPECT_TRUE(std::isnan(ops::normaliser_share(ctx, f32(1), f32(NAN), 4).item()));
}

// Parts' means weighted by their shares add up to the mean over all parts: the
// cross-entropy layer's forward, and its backward (the same share scales the
// gradient), for two parts with different numbers of counted labels.
TEST(LossNormaliser, SharedLayerMeansAddUpToTheWholeMean) {
  Context ctx;
  const Tensor logits = random_tensor(Shape{6, 3}, 11, -2.0, 2.0, DType::f32);
  const Tensor labels = Tensor::from_vector({2, 255, 255, 0, 1, 1}, Shape{6}, DType::i32);
  nn::CrossEntropyLoss whole_layer, part_layer;
  nn::Saved saved;
  const double whole = whole_layer.forward(ctx, {logits, labels}, saved, {}).item();
  const Tensor dwhole = whole_layer.backward(ctx, one(1.0, DType::f32), saved, {}).at(0);
  const Tensor total = ops::cross_entropy_normaliser(ctx, labels, Tensor());
  double sum = 0;
  std::vector<double> dsum;
  for (int64_t begin : {0, 3}) {
    const Tensor x = logits.slice(begin, begin + 3), y = labels.slice(begin, begin + 3);
    // One part's mean counts for share = 2 * local / total of the mean over 2 parts.
    part_layer.set_share(
        ops::normaliser_share(ctx, part_layer.normaliser(ctx, y, Tensor()), total, 2.0));
    nn::Saved s;
    sum += part_layer.forward(ctx, {x, y}, s, {}).item() / 2;
    const std::vector<double> d =
        part_layer.backward(ctx, one(0.5, DType::f32), s, {}).at(0).to_vector();
    dsum.insert(dsum.end(), d.begin(), d.end());
  }
  EXPECT_NEAR(sum, whole, 1e-6);
  const std::vector<double> expected = dwhole.to_vector();
  ASSERT_EQ(dsum.size(), expected.size());
  for (size_t i = 0; i < dsum.size(); ++i)
    EXPECT_NEAR(dsum[i], expected[i], 1e-6) << "element " << i;
  // Without a share the part is its own mean again.
  part_layer.set_share({});
  nn::Saved s;
  const Tensor x = logits.slice(0, 3), y = labels.slice(0, 3);
  EXPECT_EQ(part_layer.forward(ctx, {x, y}, s, {}).item(),
            ops::softmax_cross_entropy(ctx, x, y, Tensor()).item());
}

}  // namespace
}  // namespace cohort::core::ops
