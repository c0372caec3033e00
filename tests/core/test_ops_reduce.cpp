// Reductions on the CPU: sum/mean in double accumulation, their backward, and
// argmax over channels (ties and NaN).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_error;
using testing::expect_gradient;
using testing::random_tensor;

TEST(Reduce, SumAndMeanValuesAndDtypes) {
  Context ctx;
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}, dtype);
    const Tensor s = ops::sum(ctx, x), m = ops::mean(ctx, x);
    EXPECT_EQ(s.dtype(), dtype);
    EXPECT_EQ(m.dtype(), dtype);
    EXPECT_EQ(s.shape(), Shape{1});
    EXPECT_EQ(s.item(), 21.0);
    EXPECT_EQ(m.item(), 3.5);
  }
}

TEST(Reduce, SumAccumulatesInDouble) {
  Context ctx;
  const int64_t n = 1000000;
  const Tensor x = Tensor::full(Shape{n}, 0.1, DType::f32);
  // A float accumulator drifts by ~1% here; double is exact to f32 output precision.
  const double exact = static_cast<double>(0.1f) * n;
  EXPECT_NEAR(ops::sum(ctx, x).item(), exact, 0.01);
  EXPECT_NEAR(ops::mean(ctx, x).item(), static_cast<double>(0.1f), 1e-8);
}

TEST(Reduce, BackwardBroadcastsDloss) {
  Context ctx;
  const Tensor dloss = Tensor::from_vector({3}, Shape{1}, DType::f32);
  const Tensor ds = ops::sum_backward(ctx, dloss, Shape{2, 2}, DType::f32);
  EXPECT_EQ(ds.to_vector(), std::vector<double>(4, 3.0));
  const Tensor dm = ops::mean_backward(ctx, dloss, Shape{2, 3}, DType::f64);
  EXPECT_EQ(dm.dtype(), DType::f64);
  EXPECT_EQ(dm.shape(), (Shape{2, 3}));
  EXPECT_EQ(dm.to_vector(), std::vector<double>(6, 0.5));
}

TEST(Reduce, GradientsInDouble) {
  Context ctx;
  Tensor x = random_tensor(Shape{3, 4, 5}, 1);
  const Tensor r = Tensor::from_vector({0.8}, Shape{1}, DType::f64);
  expect_gradient(
      "sum", [&] { return ops::sum(ctx, x); }, x, r,
      ops::sum_backward(ctx, r, x.shape(), DType::f64));
  expect_gradient(
      "mean", [&] { return ops::mean(ctx, x); }, x, r,
      ops::mean_backward(ctx, r, x.shape(), DType::f64));
}

TEST(Reduce, ArgmaxChannelsTiesGoToTheFirstIndex) {
  Context ctx;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor x = Tensor::from_vector({1, 3, 3, 0,        // tie between 1 and 2
                                        5, 5, 5, 5,        // all equal
                                        -1, -2, -0.5, -3,  // negatives
                                        0, nan, 9, 2},     // NaN wins, as torch.argmax
                                       Shape{2, 2, 4});
  const Tensor idx = ops::argmax_channels(ctx, x);
  EXPECT_EQ(idx.dtype(), DType::i32);
  EXPECT_EQ(idx.shape(), (Shape{2, 2}));
  EXPECT_EQ(idx.to_vector(), (std::vector<double>{1, 0, 2, 1}));
  const Tensor d =
      ops::argmax_channels(ctx, Tensor::from_vector({0, 7, 7}, Shape{1, 3}, DType::f64));
  EXPECT_EQ(d.to_vector(), std::vector<double>{1});
}

TEST(Reduce, ErrorsNameTheOp) {
  Context ctx;
  expect_error([&] { ops::mean(ctx, Tensor::zeros(Shape{0, 3}, DType::f32)); }, {"mean", "[0, 3]"});
  expect_error([&] { ops::argmax_channels(ctx, Tensor::zeros(Shape{4}, DType::f32)); },
               {"argmax_channels", "[4]"});
  EXPECT_THROW(ops::sum_backward(ctx, Tensor::zeros(Shape{2}, DType::f32), Shape{3}, DType::f32),
               Error);
}

}  // namespace
}  // namespace cohort::core::ops
