// PyTorch parity of pooling and resizing, forward and backward, in f32 and f64:
// max pooling (ResNet's 3x3/2 pad 1, and windows full of ties), average pooling
// with and without count_include_pad, adaptive average pooling with ragged bins
// and bilinear resizing (align_corners=False) up and down.
#include <gtest/gtest.h>

#include <string>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

ops::PoolGeometry geometry(const GoldenCase& c) {
  ops::PoolGeometry g;
  g.kernel_h = c.attr_int("kernel_h");
  g.kernel_w = c.attr_int("kernel_w");
  g.stride_h = c.attr_int("stride_h");
  g.stride_w = c.attr_int("stride_w");
  g.pad_h = c.attr_int("pad_h");
  g.pad_w = c.attr_int("pad_w");
  g.count_include_pad = c.attr_int("count_include_pad") != 0;
  return g;
}

class PoolParity : public DTypeParityTest {
 protected:
  // Each output or input-gradient element is a short sum (at most a few
  // windows' worth of terms), so element-wise tolerances apply.
  Tolerance tolerance() const { return pick(tol::f32_elementwise, tol::f64); }

  void check_max_pool(const std::string& name) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), dy = c.tensor("dy", dt());
    const ops::PoolGeometry g = geometry(c);
    EXPECT_EQ(ops::pool2d_output_shape(x.shape(), g), dy.shape()) << name;
    const Tensor y = ops::max_pool2d(ctx, x, g);
    expect_matches(name + " y", y, c.tensor("y", DType::f64), dt(), {0, 0});
    expect_matches(name + " dx", ops::max_pool2d_backward(ctx, dy, x, y, g),
                   c.tensor("dx", DType::f64), dt(), tolerance());
  }

  void check_avg_pool(const std::string& name) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), dy = c.tensor("dy", dt());
    const ops::PoolGeometry g = geometry(c);
    EXPECT_EQ(ops::pool2d_output_shape(x.shape(), g), dy.shape()) << name;
    expect_matches(name + " y", ops::avg_pool2d(ctx, x, g), c.tensor("y", DType::f64), dt(),
                   tolerance());
    expect_matches(name + " dx", ops::avg_pool2d_backward(ctx, dy, x.shape(), g),
                   c.tensor("dx", DType::f64), dt(), tolerance());
  }

  // Adaptive pooling and bilinear resizing map x to an out_h x out_w output and
  // the gradient back to x's shape.
  using Resample = Tensor (*)(Context& ctx, const Tensor& x, int out_h, int out_w);
  using ResampleBackward = Tensor (*)(Context& ctx, const Tensor& dy, const core::Shape& x_shape);

  void check_resampling(const std::string& name, Resample forward, ResampleBackward backward,
                        Tolerance y_tolerance) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), dy = c.tensor("dy", dt());
    expect_matches(name + " y", forward(ctx, x, c.attr_int("out_h"), c.attr_int("out_w")),
                   c.tensor("y", DType::f64), dt(), y_tolerance);
    expect_matches(name + " dx", backward(ctx, dy, x.shape()), c.tensor("dx", DType::f64), dt(),
                   tolerance());
  }

  // An adaptive bin (up to the whole image) is a long sum: reduction tolerance.
  void check_adaptive(const std::string& name) {
    check_resampling(name, ops::adaptive_avg_pool2d, ops::adaptive_avg_pool2d_backward,
                     pick(tol::f32, tol::f64));
  }

  void check_resize(const std::string& name) {
    check_resampling(name, ops::resize_bilinear, ops::resize_bilinear_backward, tolerance());
  }

  Context ctx;
};

TEST_P(PoolParity, MaxPool3x3Stride2Pad1) {
  check_max_pool("max_pool2d");
}
// Windows with several equal maxima: the gradient goes to the first one.
TEST_P(PoolParity, MaxPoolTiesGoToFirstMaximum) {
  check_max_pool("max_pool2d_ties");
}
TEST_P(PoolParity, MaxPoolOverlappingWindowsWithTies) {
  check_max_pool("max_pool2d_overlap_ties");
}

TEST_P(PoolParity, AvgPoolCountIncludePad) {
  check_avg_pool("avg_pool2d_include_pad");
}
TEST_P(PoolParity, AvgPoolExcludePad) {
  check_avg_pool("avg_pool2d_exclude_pad");
}
TEST_P(PoolParity, AvgPoolAsymmetricGeometry) {
  check_avg_pool("avg_pool2d_asym");
}

TEST_P(PoolParity, AdaptiveAvgPoolRaggedBins) {
  check_adaptive("adaptive_avg_pool2d_3x2");
}
TEST_P(PoolParity, AdaptiveAvgPoolGlobal) {
  check_adaptive("adaptive_avg_pool2d_1x1");
}

TEST_P(PoolParity, ResizeBilinearUpNonIntegerFactor) {
  check_resize("resize_up");
}
TEST_P(PoolParity, ResizeBilinearUp2x) {
  check_resize("resize_up2x");
}
TEST_P(PoolParity, ResizeBilinearDown) {
  check_resize("resize_down");
}

COHORT_PARITY_DTYPES(PoolParity);

}  // namespace
}  // namespace cohort::testing
