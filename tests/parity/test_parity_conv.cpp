// PyTorch parity of conv2d, conv_transpose2d, bias_backward and linear, forward and
// backward, in f32 and f64 (cases written by make_golden.py).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

ops::ConvGeometry geometry(const GoldenCase& c) {
  ops::ConvGeometry g;
  g.stride_h = c.attr_int("stride_h");
  g.stride_w = c.attr_int("stride_w");
  g.pad_h = c.attr_int("pad_h");
  g.pad_w = c.attr_int("pad_w");
  g.dilation_h = c.attr_int("dilation_h");
  g.dilation_w = c.attr_int("dilation_w");
  g.output_pad_h = c.attr_int("output_pad_h");
  g.output_pad_w = c.attr_int("output_pad_w");
  return g;
}

// The entry points of one convolution variant in ops.hpp.
struct ConvVariant {
  core::Shape (*output_shape)(const core::Shape& x, const core::Shape& w,
                              const ops::ConvGeometry& g);
  Tensor (*forward)(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                    const ops::ConvGeometry& g);
  Tensor (*backward_input)(Context& ctx, const Tensor& dy, const Tensor& w,
                           const core::Shape& x_shape, const ops::ConvGeometry& g);
  void (*backward_weight)(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                          bool accumulate, const ops::ConvGeometry& g);
};

const ConvVariant kConv2d{ops::conv2d_output_shape, ops::conv2d, ops::conv2d_backward_input,
                          ops::conv2d_backward_weight};
const ConvVariant kConvTranspose2d{ops::conv_transpose2d_output_shape, ops::conv_transpose2d,
                                   ops::conv_transpose2d_backward_input,
                                   ops::conv_transpose2d_backward_weight};

// Weight and bias gradients are checked twice: overwriting a buffer of garbage
// and accumulating onto a buffer holding a constant.
constexpr double kGarbage = 1e6;
constexpr double kAccumulateOnto = 0.5;

class ConvParity : public DTypeParityTest {
 protected:
  // backward(buffer, accumulate) writes a parameter gradient whose reference is `expected`.
  void check_param_grad(const std::string& what, const Tensor& expected, Tolerance tol,
                        const std::function<void(Tensor&, bool)>& backward) {
    Tensor fresh = Tensor::full(expected.shape(), kGarbage, dt());
    backward(fresh, /*accumulate=*/false);
    expect_matches(what, fresh, expected, dt(), tol);
    Tensor accumulated = Tensor::full(expected.shape(), kAccumulateOnto, dt());
    backward(accumulated, /*accumulate=*/true);
    expect_matches(what + " accumulated", accumulated, plus_constant(expected, kAccumulateOnto),
                   dt(), tol);
  }

  void check_bias_grad(const GoldenCase& c, const Tensor& dy) {
    if (!c.has("db")) return;
    check_param_grad(
        c.name() + " db", c.tensor("db", DType::f64), pick(tol::f32, tol::f64),
        [&](Tensor& db, bool accumulate) { ops::bias_backward(ctx, dy, db, accumulate); });
  }

  void check_conv(const std::string& name, const ConvVariant& op) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), w = c.tensor("w", dt()), dy = c.tensor("dy", dt());
    const Tensor b = c.attr_int("has_bias") ? c.tensor("b", dt()) : Tensor();
    const ops::ConvGeometry g = geometry(c);
    EXPECT_EQ(op.output_shape(x.shape(), w.shape(), g), dy.shape()) << name;

    expect_matches(name + " y", op.forward(ctx, x, w, b, g), c.tensor("y", DType::f64), dt(),
                   pick(tol::f32, tol::f64));
    expect_matches(name + " dx", op.backward_input(ctx, dy, w, x.shape(), g),
                   c.tensor("dx", DType::f64), dt(), pick(tol::f32, tol::f64));
    check_param_grad(
        name + " dw", c.tensor("dw", DType::f64), pick(tol::f32_weight_grad, tol::f64),
        [&](Tensor& dw, bool accumulate) { op.backward_weight(ctx, dy, x, dw, accumulate, g); });
    check_bias_grad(c, dy);
  }

  Context ctx;
};

// stride 2, pad 1, dilation 2, bias, 3x2 kernel.
TEST_P(ConvParity, Conv2dStridedDilated) {
  check_conv("conv2d", kConv2d);
}
// Different stride, padding and dilation along H and W: catches swapped axes.
TEST_P(ConvParity, Conv2dAsymmetricGeometry) {
  check_conv("conv2d_asym", kConv2d);
}
// 1x1 without bias (the GEMM fast path and an undefined bias).
TEST_P(ConvParity, Conv2dPointwiseNoBias) {
  check_conv("conv2d_1x1", kConv2d);
}

// stride 2, pad 1, output_padding 1, bias.
TEST_P(ConvParity, ConvTranspose2dStrided) {
  check_conv("conv_transpose2d", kConvTranspose2d);
}
// 3x4 kernel, stride (2,3), pad (1,0), output_padding (1,2), no bias.
TEST_P(ConvParity, ConvTranspose2dAsymmetricGeometry) {
  check_conv("conv_transpose2d_asym", kConvTranspose2d);
}

TEST_P(ConvParity, Linear) {
  const GoldenCase c("linear");
  const Tensor x = c.tensor("x", dt()), w = c.tensor("w", dt()), b = c.tensor("b", dt());
  const Tensor dy = c.tensor("dy", dt());
  expect_matches("linear y", ops::linear(ctx, x, w, b), c.tensor("y", DType::f64), dt(),
                 pick(tol::f32, tol::f64));
  expect_matches("linear dx", ops::linear_backward_input(ctx, dy, w), c.tensor("dx", DType::f64),
                 dt(), pick(tol::f32, tol::f64));
  check_param_grad("linear dw", c.tensor("dw", DType::f64), pick(tol::f32, tol::f64),
                   [&](Tensor& dw, bool accumulate) {
                     ops::linear_backward_weight(ctx, dy, x, dw, accumulate);
                   });
  check_bias_grad(c, dy);
}

COHORT_PARITY_DTYPES(ConvParity);

}  // namespace
}  // namespace cohort::testing
