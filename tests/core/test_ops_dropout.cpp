// Dropout on the CPU: the mask is the Philox draw, reproducible, p-accurate,
// shared by backward, and different for different offsets and seeds.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_error;
using testing::random_tensor;

std::vector<bool> kept(const Tensor& y) {
  std::vector<bool> out;
  for (double v : y.to_vector())
    out.push_back(v != 0);
  return out;
}

TEST(Dropout, MaskIsThePhiloxDrawAndKeptValuesAreRescaled) {
  Context ctx;
  ctx.set_seed(1234);
  const double p = 0.4;
  const Tensor x = random_tensor(Shape{4, 5, 6}, 3, 0.5, 1.5);  // never 0
  const uint64_t offset = 77;
  const Tensor y = ops::dropout(ctx, x, p, offset);
  const std::vector<double> xv = x.to_vector(), yv = y.to_vector();
  int kept_count = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const uint32_t bits = ops::philox_uniform_bits(1234, offset, i);
    const bool keep = static_cast<float>(bits >> 8) / 16777216.0f >= static_cast<float>(p);
    EXPECT_EQ(yv[i], keep ? xv[i] / (1 - p) : 0.0) << "element " << i;
    kept_count += keep;
  }
  EXPECT_GT(kept_count, 0);
  EXPECT_LT(kept_count, static_cast<int>(xv.size()));
  // Same seed and offset: same mask, even from another context.
  Context other;
  other.set_seed(1234);
  EXPECT_EQ(ops::dropout(other, x, p, offset).to_vector(), yv);
}

TEST(Dropout, KeepRateMatchesP) {
  Context ctx;
  ctx.set_seed(5);
  const int64_t n = 100000;
  const Tensor x = Tensor::full(Shape{n}, 1.0);
  const std::vector<double> y = ops::dropout(ctx, x, 0.3, 0).to_vector();
  double kept_count = 0, total = 0;
  for (double v : y) {
    kept_count += v != 0;
    total += v;
  }
  // Binomial standard deviation sqrt(0.21 / n) = 0.0014; allow 5 of them.
  EXPECT_NEAR(kept_count / n, 0.7, 0.007);
  EXPECT_NEAR(total / n, 1.0, 0.01);  // rescaling keeps the expectation
}

TEST(Dropout, BackwardUsesTheForwardMask) {
  Context ctx;
  ctx.set_seed(9);
  const double p = 0.5;
  const Tensor x = Tensor::full(Shape{8, 16}, 2.0, DType::f64);
  const Tensor y = ops::dropout(ctx, x, p, 3);
  const Tensor dy = random_tensor(x.shape(), 4, 0.5, 1.0);
  const std::vector<double> dx = ops::dropout_backward(ctx, dy, p, 3).to_vector(),
                            yv = y.to_vector(), dyv = dy.to_vector();
  for (size_t i = 0; i < dx.size(); ++i)
    EXPECT_EQ(dx[i], yv[i] != 0 ? dyv[i] * 2 : 0.0) << "element " << i;
  // Dropout is linear for a fixed mask: the double gradient check agrees.
  Tensor xr = random_tensor(x.shape(), 5);
  testing::expect_gradient(
      "dropout", [&] { return ops::dropout(ctx, xr, p, 3); }, xr, dy,
      ops::dropout_backward(ctx, dy, p, 3));
}

TEST(Dropout, DifferentOffsetsAndSeedsGiveDifferentMasks) {
  Context ctx;
  ctx.set_seed(11);
  const Tensor x = Tensor::full(Shape{1000}, 1.0);
  const std::vector<bool> a = kept(ops::dropout(ctx, x, 0.5, 0));
  const std::vector<bool> b = kept(ops::dropout(ctx, x, 0.5, 1));
  ctx.set_seed(12);
  const std::vector<bool> c = kept(ops::dropout(ctx, x, 0.5, 0));
  int differ_ab = 0, differ_ac = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    differ_ab += a[i] != b[i];
    differ_ac += a[i] != c[i];
  }
  // Independent masks at p = 0.5 differ in about half the elements.
  EXPECT_GT(differ_ab, 400);
  EXPECT_GT(differ_ac, 400);
}

TEST(Dropout, ZeroAndOneProbability) {
  Context ctx;
  const Tensor x = random_tensor(Shape{3, 7}, 6, -1, 1, DType::f32);
  const Tensor same = ops::dropout(ctx, x, 0.0, 0);
  EXPECT_EQ(same.to_vector(), x.to_vector());
  EXPECT_FALSE(same.shares_storage_with(x));
  EXPECT_EQ(ops::dropout(ctx, x, 1.0, 0).to_vector(), std::vector<double>(21, 0.0));
  EXPECT_EQ(ops::dropout_backward(ctx, x, 1.0, 0).to_vector(), std::vector<double>(21, 0.0));
}

TEST(Dropout, RejectsProbabilityOutsideZeroOne) {
  Context ctx;
  const Tensor x = Tensor::zeros(Shape{2, 2}, DType::f32);
  expect_error([&] { ops::dropout(ctx, x, 1.5, 0); }, {"dropout", "1.5", "[2, 2]"});
  EXPECT_THROW(ops::dropout_backward(ctx, x, std::nan(""), 0), Error);
}

}  // namespace
}  // namespace cohort::core::ops
