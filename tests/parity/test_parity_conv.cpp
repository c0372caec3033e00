// PyTorch parity of conv2d, conv_transpose2d, bias_backward and linear, forward and
// backward, in f32 and f64 (cases written by make_golden.py).
#include <gtest/gtest.h>

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

// Weight and bias gradients are checked twice: overwriting a buffer of garbage
// and accumulating onto a buffer holding a constant.
constexpr double kGarbage = 1e6;
constexpr double kAccumulateOnto = 0.5;

class ConvParity : public DTypeParityTest {
 protected:
  void check_bias_grad(const GoldenCase& c, const Tensor& dy) {
    if (!c.has("db")) return;
    const Tensor expected = c.tensor("db", DType::f64);
    Tensor db = Tensor::full(expected.shape(), kGarbage, dt());
    ops::bias_backward(ctx, dy, db, /*accumulate=*/false);
    expect_matches(c.name() + " db", db, expected, dt(), pick(tol::f32, tol::f64));
    Tensor db_acc = Tensor::full(expected.shape(), kAccumulateOnto, dt());
    ops::bias_backward(ctx, dy, db_acc, /*accumulate=*/true);
    expect_matches(c.name() + " db accumulated", db_acc, plus_constant(expected, kAccumulateOnto),
                   dt(), pick(tol::f32, tol::f64));
  }

  void check_conv2d(const std::string& name) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), w = c.tensor("w", dt()), dy = c.tensor("dy", dt());
    const Tensor b = c.attr_int("has_bias") ? c.tensor("b", dt()) : Tensor();
    const ops::ConvGeometry g = geometry(c);
    EXPECT_EQ(ops::conv2d_output_shape(x.shape(), w.shape(), g), dy.shape()) << name;

    expect_matches(name + " y", ops::conv2d(ctx, x, w, b, g), c.tensor("y", DType::f64), dt(),
                   pick(tol::f32, tol::f64));
    expect_matches(name + " dx", ops::conv2d_backward_input(ctx, dy, w, x.shape(), g),
                   c.tensor("dx", DType::f64), dt(), pick(tol::f32, tol::f64));

    const Tensor dw_ref = c.tensor("dw", DType::f64);
    Tensor dw = Tensor::full(w.shape(), kGarbage, dt());
    ops::conv2d_backward_weight(ctx, dy, x, dw, /*accumulate=*/false, g);
    expect_matches(name + " dw", dw, dw_ref, dt(), pick(tol::f32_weight_grad, tol::f64));
    Tensor dw_acc = Tensor::full(w.shape(), kAccumulateOnto, dt());
    ops::conv2d_backward_weight(ctx, dy, x, dw_acc, /*accumulate=*/true, g);
    expect_matches(name + " dw accumulated", dw_acc, plus_constant(dw_ref, kAccumulateOnto), dt(),
                   pick(tol::f32_weight_grad, tol::f64));
    check_bias_grad(c, dy);
  }

  void check_conv_transpose2d(const std::string& name) {
    const GoldenCase c(name);
    const Tensor x = c.tensor("x", dt()), w = c.tensor("w", dt()), dy = c.tensor("dy", dt());
    const Tensor b = c.attr_int("has_bias") ? c.tensor("b", dt()) : Tensor();
    const ops::ConvGeometry g = geometry(c);
    EXPECT_EQ(ops::conv_transpose2d_output_shape(x.shape(), w.shape(), g), dy.shape()) << name;

    expect_matches(name + " y", ops::conv_transpose2d(ctx, x, w, b, g), c.tensor("y", DType::f64),
                   dt(), pick(tol::f32, tol::f64));
    expect_matches(name + " dx", ops::conv_transpose2d_backward_input(ctx, dy, w, x.shape(), g),
                   c.tensor("dx", DType::f64), dt(), pick(tol::f32, tol::f64));

    const Tensor dw_ref = c.tensor("dw", DType::f64);
    Tensor dw = Tensor::full(w.shape(), kGarbage, dt());
    ops::conv_transpose2d_backward_weight(ctx, dy, x, dw, /*accumulate=*/false, g);
    expect_matches(name + " dw", dw, dw_ref, dt(), pick(tol::f32_weight_grad, tol::f64));
    Tensor dw_acc = Tensor::full(w.shape(), kAccumulateOnto, dt());
    ops::conv_transpose2d_backward_weight(ctx, dy, x, dw_acc, /*accumulate=*/true, g);
    expect_matches(name + " dw accumulated", dw_acc, plus_constant(dw_ref, kAccumulateOnto), dt(),
                   pick(tol::f32_weight_grad, tol::f64));
    check_bias_grad(c, dy);
  }

  Context ctx;
};

// stride 2, pad 1, dilation 2, bias, 3x2 kernel.
TEST_P(ConvParity, Conv2dStridedDilated) {
  check_conv2d("conv2d");
}
// Different stride, padding and dilation along H and W: catches swapped axes.
TEST_P(ConvParity, Conv2dAsymmetricGeometry) {
  check_conv2d("conv2d_asym");
}
// 1x1 without bias (the GEMM fast path and an undefined bias).
TEST_P(ConvParity, Conv2dPointwiseNoBias) {
  check_conv2d("conv2d_1x1");
}

// stride 2, pad 1, output_padding 1, bias.
TEST_P(ConvParity, ConvTranspose2dStrided) {
  check_conv_transpose2d("conv_transpose2d");
}
// 3x4 kernel, stride (2,3), pad (1,0), output_padding (1,2), no bias.
TEST_P(ConvParity, ConvTranspose2dAsymmetricGeometry) {
  check_conv_transpose2d("conv_transpose2d_asym");
}

TEST_P(ConvParity, Linear) {
  const GoldenCase c("linear");
  const Tensor x = c.tensor("x", dt()), w = c.tensor("w", dt()), b = c.tensor("b", dt());
  const Tensor dy = c.tensor("dy", dt());
  expect_matches("linear y", ops::linear(ctx, x, w, b), c.tensor("y", DType::f64), dt(),
                 pick(tol::f32, tol::f64));
  expect_matches("linear dx", ops::linear_backward_input(ctx, dy, w), c.tensor("dx", DType::f64),
                 dt(), pick(tol::f32, tol::f64));

  const Tensor dw_ref = c.tensor("dw", DType::f64);
  Tensor dw = Tensor::full(w.shape(), kGarbage, dt());
  ops::linear_backward_weight(ctx, dy, x, dw, /*accumulate=*/false);
  expect_matches("linear dw", dw, dw_ref, dt(), pick(tol::f32, tol::f64));
  Tensor dw_acc = Tensor::full(w.shape(), kAccumulateOnto, dt());
  ops::linear_backward_weight(ctx, dy, x, dw_acc, /*accumulate=*/true);
  expect_matches("linear dw accumulated", dw_acc, plus_constant(dw_ref, kAccumulateOnto), dt(),
                 pick(tol::f32, tol::f64));
  check_bias_grad(c, dy);
}

COHORT_PARITY_DTYPES(ConvParity);

}  // namespace
}  // namespace cohort::testing
