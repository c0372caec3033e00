// Pooling on the CPU: exact values (first-max ties, padding as -inf, both
// count_include_pad modes, PyTorch's adaptive bins), gradient checks in double
// and argument errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_gradient;
using testing::expect_resampling_gradients;
using testing::random_tensor;
using testing::values;

PoolGeometry pool(int kh, int kw, int sh, int sw, int ph = 0, int pw = 0,
                  bool count_include_pad = true) {
  PoolGeometry g;
  g.kernel_h = kh, g.kernel_w = kw, g.stride_h = sh, g.stride_w = sw;
  g.pad_h = ph, g.pad_w = pw, g.count_include_pad = count_include_pad;
  return g;
}

TEST(PoolShapes, FollowPyTorchFormula) {
  // (7 + 2 - 3)/2 + 1 = 4, (6 + 0 - 2)/1 + 1 = 5
  EXPECT_EQ(pool2d_output_shape({2, 7, 6, 3}, pool(3, 2, 2, 1, 1, 0)), (Shape{2, 4, 5, 3}));
}

// ---- max pooling -----------------------------------------------------------------

TEST(MaxPool2d, TiesSendTheGradientToTheFirstMaximum) {
  Context ctx;
  const Tensor x = values({1, 5, 2, 0,  //
                           3, 5, 1, 4,  //
                           7, 7, 6, 6,  //
                           0, 7, 6, 2},
                          {1, 4, 4, 1});
  const PoolGeometry g = pool(2, 2, 2, 2);
  const Tensor y = max_pool2d(ctx, x, g);
  expect_close("y", y, values({5, 4, 7, 6}, {1, 2, 2, 1}), 0, 0);
  const Tensor dx = max_pool2d_backward(ctx, values({1, 2, 3, 4}, {1, 2, 2, 1}), x, y, g);
  expect_close("dx", dx,
               values({0, 1, 0, 0,  //
                       0, 0, 0, 2,  //
                       3, 0, 4, 0,  //
                       0, 0, 0, 0},
                      {1, 4, 4, 1}),
               0, 0);
}

TEST(MaxPool2d, PaddingActsAsMinusInfinity) {
  Context ctx;
  // All values negative: zero padding would win every border window.
  const Tensor x = values({-1, -2, -3, -4, -5, -6, -7, -8, -9}, {1, 3, 3, 1});
  expect_close("y", max_pool2d(ctx, x, pool(3, 3, 1, 1, 1, 1)),
               values({-1, -1, -2, -1, -1, -2, -4, -4, -5}, {1, 3, 3, 1}), 0, 0);
}

TEST(MaxPool2d, GradientsMatchFiniteDifferences) {
  Context ctx;
  for (const PoolGeometry& g : {pool(3, 3, 2, 2, 1, 1), pool(2, 3, 1, 2, 1, 1), pool(2, 2, 2, 2)}) {
    SCOPED_TRACE(std::to_string(g.kernel_h) + "x" + std::to_string(g.kernel_w));
    Tensor x = random_tensor({2, 5, 6, 3}, 1);
    auto forward = [&] { return max_pool2d(ctx, x, g); };
    const Tensor y = forward();
    const Tensor r = random_tensor(y.shape(), 2);
    expect_gradient("dx", forward, x, r, max_pool2d_backward(ctx, r, x, y, g));
  }
}

// ---- average pooling -----------------------------------------------------------------

TEST(AvgPool2d, CountIncludePadSelectsTheDivisor) {
  Context ctx;
  const Tensor x = values({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1});
  expect_close("no padding", avg_pool2d(ctx, x, pool(2, 2, 1, 1)),
               values({3, 4, 6, 7}, {1, 2, 2, 1}), 0, 1e-12);
  std::vector<double> sums = {12, 21, 16, 27, 45, 33, 24, 39, 28};
  std::vector<double> with_pad;
  for (double s : sums)
    with_pad.push_back(s / 9);
  expect_close("count_include_pad", avg_pool2d(ctx, x, pool(3, 3, 1, 1, 1, 1, true)),
               values(with_pad, {1, 3, 3, 1}), 0, 1e-12);
  expect_close("exclude pad", avg_pool2d(ctx, x, pool(3, 3, 1, 1, 1, 1, false)),
               values({3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7}, {1, 3, 3, 1}), 0, 1e-12);
}

TEST(AvgPool2d, GradientsMatchFiniteDifferences) {
  Context ctx;
  for (const PoolGeometry& g : {pool(3, 3, 2, 2, 1, 1, true), pool(3, 3, 2, 2, 1, 1, false),
                                pool(2, 3, 1, 2, 1, 1, false), pool(2, 2, 2, 2)}) {
    SCOPED_TRACE(std::to_string(g.kernel_h) + "x" + std::to_string(g.kernel_w) +
                 (g.count_include_pad ? " include pad" : " exclude pad"));
    Tensor x = random_tensor({2, 5, 6, 3}, 11);
    auto forward = [&] { return avg_pool2d(ctx, x, g); };
    const Tensor r = random_tensor(forward().shape(), 12);
    expect_gradient("dx", forward, x, r, avg_pool2d_backward(ctx, r, x.shape(), g));
  }
}

// ---- adaptive average pooling ----------------------------------------------------------

TEST(AdaptiveAvgPool2d, RaggedBinsFollowPyTorch) {
  Context ctx;
  // x[h, w] = 10h + w on a 7x5 grid. PyTorch's bins for 7 -> 3 are rows [0,3),
  // [2,5), [4,7) (overlapping) and for 5 -> 2 columns [0,3), [2,5).
  std::vector<double> v;
  for (int h = 0; h < 7; ++h)
    for (int w = 0; w < 5; ++w)
      v.push_back(10.0 * h + w);
  expect_close("y", adaptive_avg_pool2d(ctx, values(v, {1, 7, 5, 1}), 3, 2),
               values({11, 13, 31, 33, 51, 53}, {1, 3, 2, 1}), 0, 1e-12);
}

TEST(AdaptiveAvgPool2d, GradientsMatchFiniteDifferences) {
  Context ctx;
  expect_resampling_gradients(
      {{{2, 7, 5, 2}, 3, 2}, {{1, 4, 6, 3}, 1, 1}, {{1, 3, 2, 2}, 4, 5}}, 21,
      [&](const Tensor& x, int oh, int ow) { return adaptive_avg_pool2d(ctx, x, oh, ow); },
      [&](const Tensor& dy, const Shape& x_shape) {
        return adaptive_avg_pool2d_backward(ctx, dy, x_shape);
      });
}

TEST(Pool, FloatAgreesWithDouble) {
  Context ctx;
  const Tensor x = random_tensor({2, 9, 8, 5}, 31);
  const Tensor x32 = x.cast_cpu(DType::f32);
  const PoolGeometry g = pool(3, 3, 2, 2, 1, 1);
  expect_close("max", max_pool2d(ctx, x32, g), max_pool2d(ctx, x, g), 1e-6, 1e-6);
  expect_close("avg", avg_pool2d(ctx, x32, g), avg_pool2d(ctx, x, g), 1e-5, 1e-6);
  expect_close("adaptive", adaptive_avg_pool2d(ctx, x32, 4, 3), adaptive_avg_pool2d(ctx, x, 4, 3),
               1e-5, 1e-6);
}

// ---- errors ------------------------------------------------------------------------------

TEST(PoolErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor x = random_tensor({1, 3, 3, 2}, 41);
  expect_error([&] { max_pool2d(ctx, x, pool(4, 4, 1, 1)); },
               {"max_pool2d", "[1, 3, 3, 2]", "kernel 4x4"});
  expect_error([&] { avg_pool2d(ctx, x, pool(2, 2, 1, 1, 2, 0)); },
               {"avg_pool2d", "half the kernel", "[1, 3, 3, 2]"});
  expect_error(
      [&] {
        max_pool2d(ctx, x.view({3, 3, 2}), pool(2, 2, 2, 2));
      },
      {"max_pool2d", "4-D", "[3, 3, 2]"});
  expect_error([&] { max_pool2d(ctx, x.cast_cpu(DType::i32), pool(2, 2, 2, 2)); },
               {"max_pool2d", "floating", "[1, 3, 3, 2]"});
  const Tensor dy = random_tensor({1, 2, 2, 2}, 42);
  expect_error([&] { avg_pool2d_backward(ctx, dy, x.shape(), pool(2, 2, 2, 2)); },
               {"avg_pool2d_backward", "[1, 2, 2, 2]", "[1, 3, 3, 2]", "[1, 1, 1, 2]"});
  expect_error([&] { max_pool2d_backward(ctx, dy, x, dy, pool(2, 2, 2, 2)); },
               {"max_pool2d_backward", "[1, 2, 2, 2]", "[1, 3, 3, 2]"});
  expect_error([&] { adaptive_avg_pool2d(ctx, x, 0, 2); },
               {"adaptive_avg_pool2d", "[1, 3, 3, 2]", "0x2"});
  expect_error(
      [&] {
        adaptive_avg_pool2d_backward(ctx, dy, Shape{1, 3, 3, 5});
      },
      {"adaptive_avg_pool2d_backward", "[1, 2, 2, 2]", "[1, 3, 3, 5]"});
}

}  // namespace
}  // namespace cohort::core::ops
