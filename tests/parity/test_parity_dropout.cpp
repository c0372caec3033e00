// Dropout cannot match PyTorch bit for bit: PyTorch draws its mask from its own
// generator, cohort from Philox keyed by (seed, offset, index). What must agree
// is the distribution and the autograd rule, so this file checks, in f32 and f64:
//  - E[dropout(x)] ~ x (the 1/(1-p) scaling), the drop rate ~ p;
//  - every output is 0 or x/(1-p), and the kept set is Philox's (philox.hpp);
//  - backward recomputes the same mask: dx = dy/(1-p) exactly where kept;
//  - p = 0 is the identity (PyTorch's F.dropout(p=0) in the network case).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "core/ops/philox.hpp"
#include "tests/support/golden.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

class DropoutParity : public DTypeParityTest {
 protected:
  void SetUp() override { ctx.set_seed(1234567, 0); }
  Tensor input(int64_t n) const { return random_tensor({n}, 42, 0.5, 1.5, dt()); }
  Context ctx;
};

TEST_P(DropoutParity, ExpectationIsTheInputAndDropRateIsP) {
  constexpr double p = 0.3;
  constexpr int kDraws = 256;
  constexpr int64_t n = 1024;
  const Tensor x = input(n);
  const std::vector<double> xv = x.to_vector();
  std::vector<double> total(static_cast<size_t>(n), 0.0);
  int64_t dropped = 0;
  for (int d = 0; d < kDraws; ++d) {
    const std::vector<double> y = ops::dropout(ctx, x, p, ctx.reserve_random(n)).to_vector();
    for (size_t i = 0; i < y.size(); ++i) {
      total[i] += y[i];
      dropped += y[i] == 0.0;
    }
  }
  // Per element, y/x has mean 1 and standard deviation sqrt(p/(1-p)) = 0.65 per
  // draw, 0.041 over 256 draws; the masks are deterministic (fixed seed), so these
  // bounds (6 sigma per element, ~8 sigma overall) cannot flake.
  double ratio_sum = 0, worst = 0;
  for (size_t i = 0; i < total.size(); ++i) {
    const double ratio = total[i] / kDraws / xv[i];
    ratio_sum += ratio;
    worst = std::max(worst, std::abs(ratio - 1));
  }
  EXPECT_LT(worst, 0.25) << "E[dropout(x)_i]/x_i is far from 1 for some element";
  EXPECT_NEAR(ratio_sum / n, 1.0, 0.01) << "E[dropout(x)]/x over all elements";
  EXPECT_NEAR(static_cast<double>(dropped) / (n * kDraws), p, 0.005) << "drop rate";
}

TEST_P(DropoutParity, ForwardAndBackwardUseTheSamePhiloxMask) {
  constexpr double p = 0.4;
  constexpr int64_t n = 3000;
  const Tensor x = input(n);
  const Tensor dy = random_tensor({n}, 7, -1, 1, dt());
  const uint64_t offset = ctx.reserve_random(n);
  const Tensor y = ops::dropout(ctx, x, p, offset);
  const Tensor dx = ops::dropout_backward(ctx, dy, p, offset);
  ASSERT_EQ(y.shape(), x.shape());
  ASSERT_EQ(dx.shape(), dy.shape());
  EXPECT_EQ(y.dtype(), dt());
  EXPECT_EQ(dx.dtype(), dt());
  const std::vector<double> xv = x.to_vector(), yv = y.to_vector(), dyv = dy.to_vector(),
                            dxv = dx.to_vector();
  const double rel = dt() == DType::f32 ? 1e-6 : 1e-14;
  int bad = 0;
  for (size_t i = 0; i < xv.size() && bad < 5; ++i) {
    const bool keep = core::dropout_keep(ctx.seed(), offset, i, static_cast<float>(p));
    const double y_expected = keep ? xv[i] / (1 - p) : 0.0;
    const double dx_expected = keep ? dyv[i] / (1 - p) : 0.0;
    if (std::abs(yv[i] - y_expected) > rel * std::abs(y_expected) ||
        std::abs(dxv[i] - dx_expected) > rel * std::abs(dx_expected)) {
      ADD_FAILURE() << "element " << i << ": keep " << keep << ", x " << xv[i] << " -> y " << yv[i]
                    << " (expected " << y_expected << "), dy " << dyv[i] << " -> dx " << dxv[i]
                    << " (expected " << dx_expected << ")";
      ++bad;
    }
  }
  // Another offset draws another mask; the same offset draws the same one.
  const std::vector<double> again = ops::dropout(ctx, x, p, offset).to_vector();
  EXPECT_EQ(again, yv) << "dropout is not a pure function of (seed, offset, index)";
  const std::vector<double> other = ops::dropout(ctx, x, p, ctx.reserve_random(n)).to_vector();
  EXPECT_NE(other, yv) << "two offsets gave the same mask";
}

TEST_P(DropoutParity, ZeroProbabilityIsIdentity) {
  const Tensor x = input(500);
  const uint64_t offset = ctx.reserve_random(500);
  expect_matches("dropout(p=0)", ops::dropout(ctx, x, 0.0, offset), x.cast_cpu(DType::f64), dt(),
                 {0, 0});
  expect_matches("dropout_backward(p=0)", ops::dropout_backward(ctx, x, 0.0, offset),
                 x.cast_cpu(DType::f64), dt(), {0, 0});
}

COHORT_PARITY_DTYPES(DropoutParity);

}  // namespace
}  // namespace cohort::testing
