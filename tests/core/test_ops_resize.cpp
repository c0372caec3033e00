// Bilinear resize (align_corners=false) on the CPU: values from PyTorch's
// coordinate formula, gradient checks in double for up-, down- and mixed
// scaling, and argument errors.
#include <gtest/gtest.h>

#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_resampling_gradients;
using testing::random_tensor;
using testing::values;

TEST(ResizeBilinear, TwoByTwoToFourByFourMatchesPyTorch) {
  Context ctx;
  // Source coordinates (d + 0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25
  // (index clamped to 1): F.interpolate([[1, 2], [3, 4]], size=4, mode='bilinear').
  const Tensor x = values({1, 2, 3, 4}, {1, 2, 2, 1});
  expect_close("y", resize_bilinear(ctx, x, 4, 4),
               values({1.0, 1.25, 1.75, 2.0,  //
                       1.5, 1.75, 2.25, 2.5,  //
                       2.5, 2.75, 3.25, 3.5,  //
                       3.0, 3.25, 3.75, 4.0},
                      {1, 4, 4, 1}),
               0, 1e-12);
}

TEST(ResizeBilinear, NonIntegerScalesAndChannels) {
  Context ctx;
  // 3 -> 5 columns: sources 0 (from -0.2), 0.4, 1.0, 1.6, 2.2 (index clamped to 2).
  // Two channels interleaved (NHWC): channel 1 is channel 0 times -1.
  const Tensor x = values({0, 0, 10, -10, 20, -20}, {1, 1, 3, 2});
  expect_close("3 -> 5", resize_bilinear(ctx, x, 1, 5),
               values({0, 0, 4, -4, 10, -10, 16, -16, 20, -20}, {1, 1, 5, 2}), 0, 1e-12);
  // 4 -> 2 samples at 0.5 and 2.5: means of neighbouring pairs.
  expect_close("4 -> 2", resize_bilinear(ctx, values({1, 2, 3, 4}, {1, 4, 1, 1}), 2, 1),
               values({1.5, 3.5}, {1, 2, 1, 1}), 0, 1e-12);
  // Same size is the identity.
  const Tensor r = random_tensor({2, 3, 4, 2}, 1);
  expect_close("identity", resize_bilinear(ctx, r, 3, 4), r, 0, 1e-15);
}

TEST(ResizeBilinear, GradientsMatchFiniteDifferences) {
  Context ctx;
  expect_resampling_gradients(
      {{{2, 3, 4, 2}, 5, 7}, {{1, 6, 5, 2}, 4, 2}, {{2, 5, 3, 2}, 3, 7}, {{1, 1, 2, 3}, 3, 1}}, 2,
      [&](const Tensor& x, int oh, int ow) { return resize_bilinear(ctx, x, oh, ow); },
      [&](const Tensor& dy, const Shape& x_shape) {
        return resize_bilinear_backward(ctx, dy, x_shape);
      });
}

TEST(ResizeBilinear, FloatAgreesWithDouble) {
  Context ctx;
  const Tensor x = random_tensor({2, 7, 9, 4}, 4);
  expect_close("y", resize_bilinear(ctx, x.cast_cpu(DType::f32), 13, 5),
               resize_bilinear(ctx, x, 13, 5), 1e-5, 1e-6);
  const Tensor dy = random_tensor({2, 13, 5, 4}, 5);
  expect_close("dx", resize_bilinear_backward(ctx, dy.cast_cpu(DType::f32), x.shape()),
               resize_bilinear_backward(ctx, dy, x.shape()), 1e-5, 1e-6);
}

TEST(ResizeErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor x = random_tensor({1, 3, 3, 2}, 6);
  expect_error([&] { resize_bilinear(ctx, x, 0, 4); }, {"resize_bilinear", "[1, 3, 3, 2]", "0x4"});
  expect_error(
      [&] {
        resize_bilinear(ctx, x.view({3, 3, 2}), 4, 4);
      },
      {"resize_bilinear", "[3, 3, 2]"});
  expect_error([&] { resize_bilinear(ctx, x.cast_cpu(DType::u8), 4, 4); },
               {"resize_bilinear", "floating", "[1, 3, 3, 2]"});
  expect_error(
      [&] {
        resize_bilinear_backward(ctx, random_tensor({1, 4, 4, 3}, 7), x.shape());
      },
      {"resize_bilinear_backward", "[1, 4, 4, 3]", "[1, 3, 3, 2]"});
}

}  // namespace
}  // namespace cohort::core::ops
