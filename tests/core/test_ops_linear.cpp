// linear on the CPU: exact values, gradient checks in double for input, weight
// and bias, gradient accumulation, f32 vs f64 agreement and argument errors.
#include <gtest/gtest.h>

#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_accumulates;
using testing::expect_close;
using testing::expect_error;
using testing::expect_gradient;
using testing::random_tensor;
using testing::values;

TEST(Linear, HandComputedValues) {
  Context ctx;
  const Tensor x = values({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor w = values({1, 0, -1, 2, 1, 0}, {2, 3});  // [out=2, in=3]
  const Tensor b = values({10, 20}, {2});
  // Row 0: (1 - 3, 2 + 2) + b; row 1: (4 - 6, 8 + 5) + b.
  expect_close("with bias", linear(ctx, x, w, b), values({8, 24, 8, 33}, {2, 2}), 0, 1e-12);
  expect_close("without bias", linear(ctx, x, w, Tensor()), values({-2, 4, -2, 13}, {2, 2}), 0,
               1e-12);
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  Context ctx;
  Tensor x = random_tensor({5, 7}, 1);
  Tensor w = random_tensor({4, 7}, 2);
  Tensor b = random_tensor({4}, 3);
  auto forward = [&] { return linear(ctx, x, w, b); };
  const Tensor r = random_tensor({5, 4}, 4);
  expect_gradient("dx", forward, x, r, linear_backward_input(ctx, r, w));
  Tensor dw = Tensor::empty(w.shape(), DType::f64);
  linear_backward_weight(ctx, r, x, dw, false);
  expect_gradient("dw", forward, w, r, dw);
  Tensor db = Tensor::empty(b.shape(), DType::f64);
  bias_backward(ctx, r, db, false);
  expect_gradient("db", forward, b, r, db);
}

TEST(Linear, AccumulateAddsToWeightGradient) {
  Context ctx;
  const Tensor x = random_tensor({3, 6}, 11);
  const Tensor dy = random_tensor({3, 2}, 12);
  const Tensor grad = expect_accumulates(
      "dw", random_tensor({2, 6}, 13),
      [&](Tensor& dw, bool accumulate) { linear_backward_weight(ctx, dy, x, dw, accumulate); }, 5.0,
      1e-12, 1e-12);
  // Overwrite mode gives dy^T x exactly: check one entry by hand too.
  const std::vector<double> xv = x.to_vector(), dyv = dy.to_vector();
  double g00 = 0;
  for (int r = 0; r < 3; ++r)
    g00 += dyv[static_cast<size_t>(r * 2)] * xv[static_cast<size_t>(r * 6)];
  EXPECT_NEAR(grad.to_vector()[0], g00, 1e-12);
}

TEST(Linear, EmptyBatchGivesZeroWeightGradient) {
  Context ctx;
  Tensor dw = Tensor::full({2, 3}, 4.0, DType::f64);
  linear_backward_weight(ctx, Tensor::empty({0, 2}, DType::f64), Tensor::empty({0, 3}, DType::f64),
                         dw, false);
  expect_close("dw", dw, Tensor::full({2, 3}, 0.0, DType::f64), 0, 0);
}

TEST(Linear, FloatAgreesWithDouble) {
  Context ctx;
  const Tensor x = random_tensor({32, 64}, 21);
  const Tensor w = random_tensor({48, 64}, 22);
  const Tensor b = random_tensor({48}, 23);
  const Tensor y32 =
      linear(ctx, x.cast_cpu(DType::f32), w.cast_cpu(DType::f32), b.cast_cpu(DType::f32));
  EXPECT_EQ(y32.dtype(), DType::f32);
  expect_close("forward", y32, linear(ctx, x, w, b), 1e-4, 1e-4);
  const Tensor dy = random_tensor({32, 48}, 24);
  expect_close("dx", linear_backward_input(ctx, dy.cast_cpu(DType::f32), w.cast_cpu(DType::f32)),
               linear_backward_input(ctx, dy, w), 1e-4, 1e-4);
}

TEST(LinearErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor x = random_tensor({4, 3}, 31);
  const Tensor w = random_tensor({2, 5}, 32);
  expect_error([&] { linear(ctx, x, w, Tensor()); }, {"linear", "[4, 3]", "[2, 5]"});
  const Tensor w3 = random_tensor({2, 3}, 33);
  expect_error([&] { linear(ctx, x, w3, random_tensor({3}, 34)); },
               {"linear", "bias", "[3]", "[2, 3]"});
  expect_error(
      [&] {
        linear(ctx, x.view({2, 2, 3}), w3, Tensor());
      },
      {"linear", "2-D", "[2, 2, 3]"});
  expect_error([&] { linear(ctx, x.cast_cpu(DType::f32), w3, Tensor()); },
               {"linear", "f32[4, 3]", "f64[2, 3]"});
  expect_error(
      [&] {
        linear_backward_input(ctx, random_tensor({4, 3}, 35), w3);
      },
      {"linear_backward_input", "[4, 3]", "[2, 3]"});
  Tensor dw = Tensor::empty({2, 4}, DType::f64);
  expect_error(
      [&] {
        linear_backward_weight(ctx, random_tensor({4, 2}, 36), x, dw, false);
      },
      {"linear_backward_weight", "[4, 2]", "[4, 3]", "[2, 4]"});
}

}  // namespace
}  // namespace cohort::core::ops
