// conv2d and conv_transpose2d on the CPU: values against hand-computed and naive
// direct-loop references, gradient checks in double for every gradient (input,
// weight, bias) over strides, padding, dilation, output padding and non-square
// kernels, gradient accumulation, f32 vs f64 agreement and argument errors.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <utility>
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

ConvGeometry geometry(int sh, int sw, int ph, int pw, int dh = 1, int dw = 1, int oph = 0,
                      int opw = 0) {
  ConvGeometry g;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  g.dilation_h = dh, g.dilation_w = dw, g.output_pad_h = oph, g.output_pad_w = opw;
  return g;
}

// Visits every (input element, weight element, output element) product of a
// direct convolution x [N,H,W,C] * w [O,kh,kw,C] -> y [N,OH,OW,O] as flat indices.
template <typename Fn>
void visit_direct_conv(const Shape& x, const Shape& w, const Shape& y, const ConvGeometry& g,
                       Fn&& fn) {
  for (int64_t n = 0; n < y[0]; ++n)
    for (int64_t oy = 0; oy < y[1]; ++oy)
      for (int64_t ox = 0; ox < y[2]; ++ox)
        for (int64_t o = 0; o < y[3]; ++o)
          for (int64_t ki = 0; ki < w[1]; ++ki)
            for (int64_t kj = 0; kj < w[2]; ++kj) {
              const int64_t iy = oy * g.stride_h - g.pad_h + ki * g.dilation_h;
              const int64_t ix = ox * g.stride_w - g.pad_w + kj * g.dilation_w;
              if (iy < 0 || iy >= x[1] || ix < 0 || ix >= x[2]) continue;
              for (int64_t c = 0; c < x[3]; ++c)
                fn(((n * x[1] + iy) * x[2] + ix) * x[3] + c,
                   ((o * w[1] + ki) * w[2] + kj) * w[3] + c,
                   ((n * y[1] + oy) * y[2] + ox) * y[3] + o);
            }
}

// y (of shape ys, channels innermost) + bias per channel, as an f64 tensor.
Tensor plus_bias(std::vector<double> y, const Shape& ys, const Tensor& bias) {
  if (bias.defined()) {
    const std::vector<double> b = bias.to_vector();
    for (size_t i = 0; i < y.size(); ++i)
      y[i] += b[i % b.size()];
  }
  return values(y, ys);
}

Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g) {
  const Shape ys = conv2d_output_shape(x.shape(), w.shape(), g);
  std::vector<double> y(static_cast<size_t>(ys.numel()), 0.0);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  visit_direct_conv(x.shape(), w.shape(), ys, g, [&](int64_t xi, int64_t wi, int64_t yi) {
    y[static_cast<size_t>(yi)] += xv[static_cast<size_t>(xi)] * wv[static_cast<size_t>(wi)];
  });
  return plus_bias(std::move(y), ys, bias);
}

// PyTorch's definition of the transposed convolution: every input pixel scatters
// its weighted kernel into the output at stride spacing, cropped by the padding.
Tensor naive_conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& bias,
                              const ConvGeometry& g) {
  const Shape xs = x.shape(), ws = w.shape();
  const Shape ys = conv_transpose2d_output_shape(xs, ws, g);
  std::vector<double> y(static_cast<size_t>(ys.numel()), 0.0);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  for (int64_t n = 0; n < xs[0]; ++n)
    for (int64_t iy = 0; iy < xs[1]; ++iy)
      for (int64_t ix = 0; ix < xs[2]; ++ix)
        for (int64_t i = 0; i < xs[3]; ++i)
          for (int64_t ki = 0; ki < ws[1]; ++ki)
            for (int64_t kj = 0; kj < ws[2]; ++kj) {
              const int64_t oy = iy * g.stride_h - g.pad_h + ki * g.dilation_h;
              const int64_t ox = ix * g.stride_w - g.pad_w + kj * g.dilation_w;
              if (oy < 0 || oy >= ys[1] || ox < 0 || ox >= ys[2]) continue;
              for (int64_t o = 0; o < ws[3]; ++o)
                y[static_cast<size_t>(((n * ys[1] + oy) * ys[2] + ox) * ys[3] + o)] +=
                    xv[static_cast<size_t>(((n * xs[1] + iy) * xs[2] + ix) * xs[3] + i)] *
                    wv[static_cast<size_t>(((i * ws[1] + ki) * ws[2] + kj) * ws[3] + o)];
            }
  return plus_bias(std::move(y), ys, bias);
}

// ---- shapes -------------------------------------------------------------------

TEST(ConvShapes, FollowPyTorchFormulas) {
  // OH = (7 + 2 - 2*(3-1) - 1)/2 + 1 = 3, OW = (9 - 1 - 1)/3 + 1 = 3
  EXPECT_EQ(conv2d_output_shape({1, 7, 9, 3}, {5, 3, 2, 3}, geometry(2, 3, 1, 0, 2, 1)),
            (Shape{1, 3, 3, 5}));
  // OH = (3-1)*2 - 2 + 2 + 1 + 1 = 6, OW = (4-1)*2 - 2 + 2 + 1 + 1 = 8
  EXPECT_EQ(
      conv_transpose2d_output_shape({1, 3, 4, 2}, {2, 3, 3, 5}, geometry(2, 2, 1, 1, 1, 1, 1, 1)),
      (Shape{1, 6, 8, 5}));
}

// ---- exact values ---------------------------------------------------------------

TEST(Conv2d, HandComputedSingleChannel) {
  Context ctx;
  const Tensor x = values({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3, 1});
  const Tensor w = values({1, 2, 3, 4}, {1, 2, 2, 1});
  // Valid 2x2 windows: 1+4+12+20, 2+6+15+24, 4+10+21+32, 5+12+24+36; plus bias 0.5.
  expect_close("valid", conv2d(ctx, x, w, values({0.5}, {1}), {}),
               values({37.5, 47.5, 67.5, 77.5}, {1, 2, 2, 1}), 0, 1e-12);
  // Padding 1, stride 2: windows start at -1 and 1; padded taps contribute nothing.
  expect_close("stride 2 pad 1", conv2d(ctx, x, w, Tensor(), geometry(2, 2, 1, 1)),
               values({4, 18, 36, 77}, {1, 2, 2, 1}), 0, 1e-12);
}

TEST(Conv2d, WeightIsOutputMajorInputMinor) {
  Context ctx;
  // One pixel with channels (1, 10); w [3, 1, 1, 2] rows (1,0), (0,1), (2,3).
  const Tensor x = values({1, 10}, {1, 1, 1, 2});
  const Tensor w = values({1, 0, 0, 1, 2, 3}, {3, 1, 1, 2});
  expect_close("pointwise", conv2d(ctx, x, w, Tensor(), {}), values({1, 10, 32}, {1, 1, 1, 3}), 0,
               1e-12);
}

TEST(ConvTranspose2d, HandComputedStride2) {
  Context ctx;
  const Tensor x = values({1, 2, 3, 4}, {1, 2, 2, 1});
  const Tensor w = values({1, 10, 100, 1000}, {1, 2, 2, 1});
  // Each input pixel stamps x * w into its own 2x2 block.
  const Tensor full = values({1, 10, 2, 20,          //
                              100, 1000, 200, 2000,  //
                              3, 30, 4, 40,          //
                              300, 3000, 400, 4000},
                             {1, 4, 4, 1});
  expect_close("stride 2", conv_transpose2d(ctx, x, w, Tensor(), geometry(2, 2, 0, 0)), full, 0,
               1e-12);
  // Padding 1 crops one row/column at each side; output padding 1 gives one back
  // at the bottom/right: rows and columns 1..3 of the full result.
  const Tensor cropped = values({1000, 200, 2000,  //
                                 30, 4, 40,        //
                                 3000, 400, 4000},
                                {1, 3, 3, 1});
  expect_close("pad 1 output pad 1",
               conv_transpose2d(ctx, x, w, Tensor(), geometry(2, 2, 1, 1, 1, 1, 1, 1)), cropped, 0,
               1e-12);
}

// ---- parameterised gradient checks -------------------------------------------------

struct ConvCase {
  std::string name;
  Shape x;  // [N, H, W, C]
  int out_channels, kh, kw;
  ConvGeometry g;
  bool bias = true;
};

void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name;
}

class Conv2dGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dGrad, MatchesDirectLoopAndFiniteDifferences) {
  const ConvCase& p = GetParam();
  Context ctx;
  Tensor x = random_tensor(p.x, 1);
  Tensor w = random_tensor({p.out_channels, p.kh, p.kw, p.x[3]}, 2);
  Tensor b = p.bias ? random_tensor({p.out_channels}, 3) : Tensor();
  auto forward = [&] { return conv2d(ctx, x, w, b, p.g); };
  const Tensor y = forward();
  expect_close("forward vs direct loop", y, naive_conv2d(x, w, b, p.g), 1e-12, 1e-12);

  const Tensor r = random_tensor(y.shape(), 4);
  expect_gradient("dx", forward, x, r, conv2d_backward_input(ctx, r, w, x.shape(), p.g));
  Tensor dw = Tensor::empty(w.shape(), DType::f64);
  conv2d_backward_weight(ctx, r, x, dw, false, p.g);
  expect_gradient("dw", forward, w, r, dw);
  if (p.bias) {
    Tensor db = Tensor::empty(b.shape(), DType::f64);
    bias_backward(ctx, r, db, false);
    expect_gradient("db", forward, b, r, db);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Conv2dGrad,
    ::testing::Values(
        ConvCase{"Stride2Pad1", {2, 5, 6, 3}, 4, 3, 3, geometry(2, 2, 1, 1)},
        ConvCase{"Dilation2Pad2", {1, 6, 6, 2}, 3, 3, 3, geometry(1, 1, 2, 2, 2, 2)},
        ConvCase{"NonSquareKernel", {2, 6, 5, 3}, 2, 3, 2, geometry(2, 1, 1, 0, 1, 2)},
        ConvCase{"Pointwise", {2, 4, 3, 5}, 3, 1, 1, geometry(1, 1, 0, 0)},
        ConvCase{"PointwiseStride2", {1, 5, 5, 3}, 2, 1, 1, geometry(2, 2, 0, 0)},
        ConvCase{"NoBiasStride3", {1, 7, 8, 2}, 3, 2, 3, geometry(3, 2, 1, 1), false}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; });

struct TransposeCase {
  std::string name;
  Shape x;  // [N, H, W, I]
  int out_channels, kh, kw;
  ConvGeometry g;
};

void PrintTo(const TransposeCase& c, std::ostream* os) {
  *os << c.name;
}

class ConvTranspose2dGrad : public ::testing::TestWithParam<TransposeCase> {};

TEST_P(ConvTranspose2dGrad, MatchesScatterDefinitionAndFiniteDifferences) {
  const TransposeCase& p = GetParam();
  Context ctx;
  Tensor x = random_tensor(p.x, 11);
  Tensor w = random_tensor({p.x[3], p.kh, p.kw, p.out_channels}, 12);
  Tensor b = random_tensor({p.out_channels}, 13);
  auto forward = [&] { return conv_transpose2d(ctx, x, w, b, p.g); };
  const Tensor y = forward();
  expect_close("forward vs scatter definition", y, naive_conv_transpose2d(x, w, b, p.g), 1e-12,
               1e-12);

  const Tensor r = random_tensor(y.shape(), 14);
  expect_gradient("dx", forward, x, r, conv_transpose2d_backward_input(ctx, r, w, x.shape(), p.g));
  Tensor dw = Tensor::empty(w.shape(), DType::f64);
  conv_transpose2d_backward_weight(ctx, r, x, dw, false, p.g);
  expect_gradient("dw", forward, w, r, dw);
  Tensor db = Tensor::empty(b.shape(), DType::f64);
  bias_backward(ctx, r, db, false);
  expect_gradient("db", forward, b, r, db);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConvTranspose2dGrad,
    ::testing::Values(
        TransposeCase{
            "Stride2Pad1OutPad1", {2, 3, 4, 3}, 2, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1, 1)},
        TransposeCase{"Dilation2OutPad1", {1, 4, 3, 2}, 3, 3, 3, geometry(1, 1, 1, 0, 2, 2, 1, 1)},
        TransposeCase{"NonSquareKernel", {2, 3, 3, 2}, 3, 2, 3, geometry(2, 3, 0, 1, 1, 1, 1, 2)},
        TransposeCase{"Stride1Pad1", {1, 4, 4, 3}, 2, 3, 3, geometry(1, 1, 1, 1)},
        TransposeCase{"Pointwise", {2, 3, 2, 4}, 3, 1, 1, geometry(1, 1, 0, 0)}),
    [](const ::testing::TestParamInfo<TransposeCase>& info) { return info.param.name; });

// ---- accumulation ------------------------------------------------------------------

TEST(Conv2d, AccumulateAddsToWeightAndBiasGradients) {
  Context ctx;
  const ConvGeometry g = geometry(2, 2, 1, 1);
  const Tensor x = random_tensor({2, 5, 5, 3}, 21);
  const Tensor dy = random_tensor(conv2d_output_shape(x.shape(), {4, 3, 3, 3}, g), 22);
  expect_accumulates(
      "dw", random_tensor({4, 3, 3, 3}, 23),
      [&](Tensor& dw, bool accumulate) { conv2d_backward_weight(ctx, dy, x, dw, accumulate, g); },
      7.0, 1e-12, 1e-12);
  expect_accumulates(
      "db", random_tensor({4}, 24),
      [&](Tensor& db, bool accumulate) { bias_backward(ctx, dy, db, accumulate); }, 7.0, 1e-12,
      1e-12);
}

TEST(Conv2d, WeightGradientWritesOnlyItsViewOfAFlatBuffer) {
  Context ctx;
  const ConvGeometry g = geometry(1, 1, 1, 1);
  const Tensor x = random_tensor({1, 4, 4, 2}, 25);
  const Tensor dy = random_tensor({1, 4, 4, 3}, 26);
  Tensor expected = Tensor::empty({3, 3, 3, 2}, DType::f64);
  conv2d_backward_weight(ctx, dy, x, expected, false, g);
  // Parameter gradients are views at an offset into one flat buffer.
  Tensor buffer = Tensor::full({54 + 10}, 9.0, DType::f64);
  Tensor view = buffer.flat(5, 54).view({3, 3, 3, 2});
  conv2d_backward_weight(ctx, dy, x, view, false, g);
  expect_close("view", view, expected, 0, 0);
  const std::vector<double> all = buffer.to_vector();
  for (size_t i : {0, 1, 2, 3, 4, 59, 60, 61, 62, 63})
    EXPECT_EQ(all[i], 9.0) << "element " << i;
}

TEST(ConvTranspose2d, AccumulateAddsToWeightGradient) {
  Context ctx;
  const ConvGeometry g = geometry(2, 2, 1, 1, 1, 1, 1, 1);
  const Tensor x = random_tensor({1, 3, 3, 2}, 31);
  const Tensor dy = random_tensor(conv_transpose2d_output_shape(x.shape(), {2, 3, 3, 3}, g), 32);
  expect_accumulates(
      "dw", random_tensor({2, 3, 3, 3}, 33),
      [&](Tensor& dw, bool accumulate) {
        conv_transpose2d_backward_weight(ctx, dy, x, dw, accumulate, g);
      },
      -3.0, 1e-12, 1e-12);
}

// ---- large inputs: im2col runs in several chunks --------------------------------------

TEST(Conv2d, ManyChunksMatchDirectLoop) {
  Context ctx;
  // 700*700 output pixels with 9-element patches exceed one im2col chunk several times.
  const ConvGeometry g = geometry(1, 1, 1, 1);
  const Tensor x = random_tensor({1, 700, 700, 1}, 41);
  const Tensor w = random_tensor({2, 3, 3, 1}, 42);
  const Tensor y = conv2d(ctx, x, w, Tensor(), g);
  expect_close("forward", y, naive_conv2d(x, w, Tensor(), g), 1e-12, 1e-12);

  const Tensor dy = random_tensor(y.shape(), 43);
  std::vector<double> dx_ref(static_cast<size_t>(x.numel()), 0.0), dw_ref(18, 0.0);
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector(), dyv = dy.to_vector();
  visit_direct_conv(x.shape(), w.shape(), y.shape(), g, [&](int64_t xi, int64_t wi, int64_t yi) {
    dx_ref[static_cast<size_t>(xi)] += dyv[static_cast<size_t>(yi)] * wv[static_cast<size_t>(wi)];
    dw_ref[static_cast<size_t>(wi)] += dyv[static_cast<size_t>(yi)] * xv[static_cast<size_t>(xi)];
  });
  expect_close("dx", conv2d_backward_input(ctx, dy, w, x.shape(), g), values(dx_ref, x.shape()),
               1e-12, 1e-12);
  Tensor dw = Tensor::empty(w.shape(), DType::f64);
  conv2d_backward_weight(ctx, dy, x, dw, false, g);
  expect_close("dw", dw, values(dw_ref, w.shape()), 1e-10, 1e-10);
}

// ---- single precision ------------------------------------------------------------------

TEST(Conv2d, FloatAgreesWithDouble) {
  Context ctx;
  const ConvGeometry g = geometry(1, 1, 1, 1);
  const Tensor x = random_tensor({2, 16, 16, 8}, 51);
  const Tensor w = random_tensor({16, 3, 3, 8}, 52);
  const Tensor b = random_tensor({16}, 53);
  const Tensor y64 = conv2d(ctx, x, w, b, g);
  const Tensor y32 =
      conv2d(ctx, x.cast_cpu(DType::f32), w.cast_cpu(DType::f32), b.cast_cpu(DType::f32), g);
  EXPECT_EQ(y32.dtype(), DType::f32);
  expect_close("forward", y32, y64, 1e-4, 1e-4);

  const Tensor dy = random_tensor(y64.shape(), 54);
  const Tensor dy32 = dy.cast_cpu(DType::f32);
  expect_close("dx", conv2d_backward_input(ctx, dy32, w.cast_cpu(DType::f32), x.shape(), g),
               conv2d_backward_input(ctx, dy, w, x.shape(), g), 1e-4, 1e-4);
  Tensor dw64 = Tensor::empty(w.shape(), DType::f64), dw32 = Tensor::empty(w.shape(), DType::f32);
  conv2d_backward_weight(ctx, dy, x, dw64, false, g);
  conv2d_backward_weight(ctx, dy32, x.cast_cpu(DType::f32), dw32, false, g);
  expect_close("dw", dw32, dw64, 1e-4, 1e-3);

  const Tensor t64 =
      conv_transpose2d(ctx, x, w.view({8, 3, 3, 16}), b, geometry(2, 2, 1, 1, 1, 1, 1, 1));
  const Tensor t32 =
      conv_transpose2d(ctx, x.cast_cpu(DType::f32), w.cast_cpu(DType::f32).view({8, 3, 3, 16}),
                       b.cast_cpu(DType::f32), geometry(2, 2, 1, 1, 1, 1, 1, 1));
  expect_close("transpose forward", t32, t64, 1e-4, 1e-4);
}

// ---- errors ------------------------------------------------------------------------------

TEST(ConvErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor x = random_tensor({1, 5, 5, 3}, 61);
  const Tensor w = random_tensor({4, 3, 3, 2}, 62);
  expect_error([&] { conv2d(ctx, x, w, Tensor(), {}); },
               {"conv2d", "[1, 5, 5, 3]", "[4, 3, 3, 2]", "channels"});

  const Tensor w3 = random_tensor({4, 3, 3, 3}, 63);
  expect_error([&] { conv2d(ctx, x, w3, random_tensor({5}, 64), {}); },
               {"conv2d", "bias", "[5]", "[4, 3, 3, 3]"});
  expect_error(
      [&] {
        conv2d(ctx, x, random_tensor({4, 7, 7, 3}, 65), Tensor(), {});
      },
      {"conv2d", "[1, 5, 5, 3]", "[4, 7, 7, 3]", "does not fit"});
  expect_error([&] { conv2d(ctx, x, w3, Tensor(), geometry(0, 1, 0, 0)); },
               {"conv2d", "stride 0x1"});
  expect_error(
      [&] {
        conv2d(ctx, x.view({5, 5, 3}), w3, Tensor(), {});
      },
      {"conv2d", "4-D", "[5, 5, 3]"});
  expect_error([&] { conv2d(ctx, x.cast_cpu(DType::f32), w3, Tensor(), {}); },
               {"conv2d", "f32[1, 5, 5, 3]", "f64[4, 3, 3, 3]"});
  expect_error([&] { conv2d(ctx, x.cast_cpu(DType::i32), w3.cast_cpu(DType::i32), Tensor(), {}); },
               {"conv2d", "floating", "[1, 5, 5, 3]"});
  expect_error(
      [&] { conv2d(ctx, x.cast_cpu(DType::bf16), w3.cast_cpu(DType::bf16), Tensor(), {}); },
      {"conv2d", "f32 and f64", "bf16[1, 5, 5, 3]"});

  // Backward ops check dy against the forward output shape.
  const Tensor bad_dy = random_tensor({1, 4, 4, 4}, 66);
  expect_error([&] { conv2d_backward_input(ctx, bad_dy, w3, x.shape(), {}); },
               {"conv2d_backward_input", "[1, 4, 4, 4]", "[1, 3, 3, 4]"});
  Tensor dw = Tensor::empty(w3.shape(), DType::f64);
  expect_error([&] { conv2d_backward_weight(ctx, bad_dy, x, dw, false, {}); },
               {"conv2d_backward_weight", "[1, 4, 4, 4]", "[1, 3, 3, 4]"});
  Tensor db = Tensor::empty({3}, DType::f64);
  expect_error([&] { bias_backward(ctx, bad_dy, db, false); },
               {"bias_backward", "[1, 4, 4, 4]", "[3]"});
}

TEST(ConvTransposeErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor x = random_tensor({1, 3, 3, 2}, 71);
  expect_error(
      [&] {
        conv_transpose2d(ctx, x, random_tensor({3, 3, 3, 4}, 72), Tensor(), {});
      },
      {"conv_transpose2d", "[1, 3, 3, 2]", "[3, 3, 3, 4]", "channels"});
  const Tensor w = random_tensor({2, 3, 3, 4}, 73);
  // Output padding must stay below stride or dilation.
  expect_error([&] { conv_transpose2d(ctx, x, w, Tensor(), geometry(2, 2, 0, 0, 1, 1, 2, 0)); },
               {"conv_transpose2d", "output padding", "[1, 3, 3, 2]", "[2, 3, 3, 4]"});
  expect_error([&] { conv_transpose2d(ctx, x, w, random_tensor({2}, 74), {}); },
               {"conv_transpose2d", "bias", "[4]", "[2]"});
  expect_error(
      [&] {
        conv_transpose2d_backward_input(ctx, random_tensor({1, 3, 3, 4}, 75), w, x.shape(), {});
      },
      {"conv_transpose2d_backward_input", "[1, 3, 3, 4]", "[1, 5, 5, 4]"});
}

}  // namespace
}  // namespace cohort::core::ops
