// cuDNN convolution, conv-transpose and cuBLASLt linear against the CPU ops:
// forward (with bias), input gradient, weight gradient (overwrite and accumulate),
// bias gradient; f32 with tight tolerances, bf16 and f16 with loose ones.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using core::ops::ConvGeometry;

ConvGeometry geometry(int sh, int sw, int ph, int pw, int dh = 1, int dw = 1, int oph = 0,
                      int opw = 0) {
  ConvGeometry g;
  g.stride_h = sh, g.stride_w = sw, g.pad_h = ph, g.pad_w = pw;
  g.dilation_h = dh, g.dilation_w = dw, g.output_pad_h = oph, g.output_pad_w = opw;
  return g;
}

struct ConvCase {
  Shape x, w;
  ConvGeometry g;
  std::string name;
};

std::vector<ConvCase> conv_cases() {
  return {
      {Shape{2, 9, 7, 5}, Shape{6, 3, 3, 5}, geometry(2, 2, 1, 1), "3x3 stride 2 pad 1"},
      {Shape{1, 8, 10, 4}, Shape{3, 3, 2, 4}, geometry(1, 1, 2, 1, 2, 1), "3x2 dilation 2x1"},
      {Shape{2, 5, 6, 16}, Shape{8, 1, 1, 16}, geometry(1, 1, 0, 0), "1x1 pointwise"},
      {Shape{1, 12, 12, 3}, Shape{8, 7, 7, 3}, geometry(2, 2, 3, 3), "7x7 stem, 3 channels"},
  };
}

// Runs every conv2d entry point on CPU (f32) and GPU (dtype) and compares.
void check_conv2d(const ConvCase& c, DType dtype, uint64_t seed) {
  SCOPED_TRACE(
      fmt::format("conv2d {} x {} w {} in {}", c.name, c.x.str(), c.w.str(), name_of(dtype)));
  const Tol tol = tol_for(dtype, kConvF32);
  const Tensor x = random_cpu(c.x, seed, -1, 1, dtype);
  const Tensor w = random_cpu(c.w, seed + 1, -1, 1, dtype);
  const Tensor b = random_cpu(Shape{c.w[0]}, seed + 2, -1, 1, dtype);
  const Shape y_shape = core::ops::conv2d_output_shape(c.x, c.w, c.g);
  const Tensor dy = random_cpu(y_shape, seed + 3, -1, 1, dtype);

  const Tensor y_cpu = core::ops::conv2d(cpu(), x, w, b, c.g);
  const Tensor y_gpu =
      core::ops::conv2d(gpu(), to_gpu(x, dtype), to_gpu(w, dtype), to_gpu(b, dtype), c.g);
  expect_near("conv2d forward", y_gpu, y_cpu, tol);
  const Tensor y_nobias =
      core::ops::conv2d(gpu(), to_gpu(x, dtype), to_gpu(w, dtype), Tensor(), c.g);
  expect_near("conv2d forward without bias", y_nobias,
              core::ops::conv2d(cpu(), x, w, Tensor(), c.g), tol);

  const Tensor dx_cpu = core::ops::conv2d_backward_input(cpu(), dy, w, c.x, c.g);
  const Tensor dx_gpu =
      core::ops::conv2d_backward_input(gpu(), to_gpu(dy, dtype), to_gpu(w, dtype), c.x, c.g);
  expect_near("conv2d backward input", dx_gpu, dx_cpu, tol);

  for (bool accumulate : {false, true}) {
    const Tensor dw0 = random_cpu(c.w, seed + 4, -1, 1, dtype);
    Tensor dw_cpu = dw0.clone();
    Tensor dw_gpu = to_gpu(dw0, dtype);
    core::ops::conv2d_backward_weight(cpu(), dy, x, dw_cpu, accumulate, c.g);
    core::ops::conv2d_backward_weight(gpu(), to_gpu(dy, dtype), to_gpu(x, dtype), dw_gpu,
                                      accumulate, c.g);
    expect_near(accumulate ? "conv2d backward weight (accumulate)" : "conv2d backward weight",
                dw_gpu, dw_cpu, tol);

    Tensor db_cpu = random_cpu(Shape{c.w[0]}, seed + 5, -1, 1, dtype);
    Tensor db_gpu = to_gpu(db_cpu, dtype);
    core::ops::bias_backward(cpu(), dy, db_cpu, accumulate);
    core::ops::bias_backward(gpu(), to_gpu(dy, dtype), db_gpu, accumulate);
    expect_near(accumulate ? "bias_backward (accumulate)" : "bias_backward", db_gpu, db_cpu,
                tol_for(dtype, kTightF32));
  }
}

TEST(GpuConv2d, MatchesCpuF32) {
  uint64_t seed = 100;
  for (const ConvCase& c : conv_cases())
    check_conv2d(c, DType::f32, seed += 10);
}

TEST(GpuConv2d, MatchesCpuBf16) {
  uint64_t seed = 200;
  for (const ConvCase& c : conv_cases())
    check_conv2d(c, DType::bf16, seed += 10);
}

TEST(GpuConv2d, MatchesCpuF16) {
  uint64_t seed = 300;
  for (const ConvCase& c : conv_cases())
    check_conv2d(c, DType::f16, seed += 10);
}

// A second call with the same shapes reuses the cached algorithm; results must not change.
TEST(GpuConv2d, RepeatedCallIsStable) {
  const ConvCase c = conv_cases()[0];
  const Tensor x = to_gpu(random_cpu(c.x, 7));
  const Tensor w = to_gpu(random_cpu(c.w, 8));
  const Tensor y1 = core::ops::conv2d(gpu(), x, w, Tensor(), c.g);
  const Tensor y2 = core::ops::conv2d(gpu(), x, w, Tensor(), c.g);
  expect_near("conv2d repeated", y2, y1, 1e-6, 1e-7);
}

// Weight gradients written into an unaligned view of a flat buffer (as the
// optimizer's flat gradient buffer hands out) land in the right place.
TEST(GpuConv2d, WeightGradIntoUnalignedView) {
  const ConvCase c = conv_cases()[0];
  const Tensor x = random_cpu(c.x, 11);
  const Tensor dy = random_cpu(core::ops::conv2d_output_shape(c.x, c.w, c.g), 12);
  Tensor dw_cpu = Tensor::zeros(c.w, DType::f32);
  core::ops::conv2d_backward_weight(cpu(), dy, x, dw_cpu, false, c.g);

  const int64_t n = c.w.numel();
  Tensor flat = to_gpu(random_cpu(Shape{n + 3}, 13));
  const Tensor before = to_cpu_f32(flat);
  Tensor view = flat.flat(1, n).view(c.w);  // 4-byte offset: not 16-byte aligned
  core::ops::conv2d_backward_weight(gpu(), to_gpu(dy), to_gpu(x), view, false, c.g);
  expect_near("conv2d dw in unaligned view", view, dw_cpu, kConvF32);
  const std::vector<double> after = values(flat), orig = values(before);
  EXPECT_EQ(after[0], orig[0]) << "element before the view was overwritten";
  EXPECT_EQ(after[static_cast<size_t>(n + 1)], orig[static_cast<size_t>(n + 1)])
      << "element after the view was overwritten";
}

struct TransposeCase {
  Shape x, w;  // x [N, H, W, I], w [I, kh, kw, O]
  ConvGeometry g;
  std::string name;
};

std::vector<TransposeCase> transpose_cases() {
  return {
      {Shape{2, 5, 4, 6}, Shape{6, 4, 4, 3}, geometry(2, 2, 1, 1), "4x4 stride 2 pad 1"},
      {Shape{1, 4, 5, 3}, Shape{3, 3, 3, 5}, geometry(2, 2, 1, 1, 1, 1, 1, 1),
       "3x3 stride 2 output padding 1"},
      {Shape{1, 6, 6, 4}, Shape{4, 3, 2, 2}, geometry(1, 1, 1, 0), "3x2 stride 1"},
  };
}

void check_transpose(const TransposeCase& c, DType dtype, uint64_t seed) {
  SCOPED_TRACE(fmt::format("conv_transpose2d {} x {} w {} in {}", c.name, c.x.str(), c.w.str(),
                           name_of(dtype)));
  const Tol tol = tol_for(dtype, kConvF32);
  const Tensor x = random_cpu(c.x, seed, -1, 1, dtype);
  const Tensor w = random_cpu(c.w, seed + 1, -1, 1, dtype);
  const Tensor b = random_cpu(Shape{c.w[3]}, seed + 2, -1, 1, dtype);
  const Shape y_shape = core::ops::conv_transpose2d_output_shape(c.x, c.w, c.g);
  const Tensor dy = random_cpu(y_shape, seed + 3, -1, 1, dtype);

  expect_near(
      "conv_transpose2d forward",
      core::ops::conv_transpose2d(gpu(), to_gpu(x, dtype), to_gpu(w, dtype), to_gpu(b, dtype), c.g),
      core::ops::conv_transpose2d(cpu(), x, w, b, c.g), tol);
  expect_near("conv_transpose2d backward input",
              core::ops::conv_transpose2d_backward_input(gpu(), to_gpu(dy, dtype), to_gpu(w, dtype),
                                                         c.x, c.g),
              core::ops::conv_transpose2d_backward_input(cpu(), dy, w, c.x, c.g), tol);
  for (bool accumulate : {false, true}) {
    const Tensor dw0 = random_cpu(c.w, seed + 4, -1, 1, dtype);
    Tensor dw_cpu = dw0.clone();
    Tensor dw_gpu = to_gpu(dw0, dtype);
    core::ops::conv_transpose2d_backward_weight(cpu(), dy, x, dw_cpu, accumulate, c.g);
    core::ops::conv_transpose2d_backward_weight(gpu(), to_gpu(dy, dtype), to_gpu(x, dtype), dw_gpu,
                                                accumulate, c.g);
    expect_near(accumulate ? "conv_transpose2d backward weight (accumulate)"
                           : "conv_transpose2d backward weight",
                dw_gpu, dw_cpu, tol);
  }
}

TEST(GpuConvTranspose2d, MatchesCpuF32) {
  uint64_t seed = 400;
  for (const TransposeCase& c : transpose_cases())
    check_transpose(c, DType::f32, seed += 10);
}

TEST(GpuConvTranspose2d, MatchesCpuBf16) {
  uint64_t seed = 500;
  for (const TransposeCase& c : transpose_cases())
    check_transpose(c, DType::bf16, seed += 10);
}

void check_linear(DType dtype, int64_t batch, int64_t in, int64_t out, uint64_t seed) {
  SCOPED_TRACE(fmt::format("linear [{}, {}] -> {} in {}", batch, in, out, name_of(dtype)));
  const Tol tol = tol_for(dtype, kConvF32);
  const Tensor x = random_cpu(Shape{batch, in}, seed, -1, 1, dtype);
  const Tensor w = random_cpu(Shape{out, in}, seed + 1, -1, 1, dtype);
  const Tensor b = random_cpu(Shape{out}, seed + 2, -1, 1, dtype);
  const Tensor dy = random_cpu(Shape{batch, out}, seed + 3, -1, 1, dtype);
  expect_near("linear forward",
              core::ops::linear(gpu(), to_gpu(x, dtype), to_gpu(w, dtype), to_gpu(b, dtype)),
              core::ops::linear(cpu(), x, w, b), tol);
  expect_near("linear forward without bias",
              core::ops::linear(gpu(), to_gpu(x, dtype), to_gpu(w, dtype), Tensor()),
              core::ops::linear(cpu(), x, w, Tensor()), tol);
  expect_near("linear backward input",
              core::ops::linear_backward_input(gpu(), to_gpu(dy, dtype), to_gpu(w, dtype)),
              core::ops::linear_backward_input(cpu(), dy, w), tol);
  for (bool accumulate : {false, true}) {
    const Tensor dw0 = random_cpu(Shape{out, in}, seed + 4, -1, 1, dtype);
    Tensor dw_cpu = dw0.clone();
    Tensor dw_gpu = to_gpu(dw0, dtype);
    core::ops::linear_backward_weight(cpu(), dy, x, dw_cpu, accumulate);
    core::ops::linear_backward_weight(gpu(), to_gpu(dy, dtype), to_gpu(x, dtype), dw_gpu,
                                      accumulate);
    expect_near(accumulate ? "linear backward weight (accumulate)" : "linear backward weight",
                dw_gpu, dw_cpu, tol);
    Tensor db_cpu = random_cpu(Shape{out}, seed + 5, -1, 1, dtype);
    Tensor db_gpu = to_gpu(db_cpu, dtype);
    core::ops::bias_backward(cpu(), dy, db_cpu, accumulate);
    core::ops::bias_backward(gpu(), to_gpu(dy, dtype), db_gpu, accumulate);
    expect_near("linear bias_backward", db_gpu, db_cpu, tol_for(dtype, kTightF32));
  }
}

TEST(GpuLinear, MatchesCpuF32) {
  check_linear(DType::f32, 7, 13, 11, 600);
  check_linear(DType::f32, 64, 128, 10, 610);
  check_linear(DType::f32, 1, 5, 3, 620);
}

TEST(GpuLinear, MatchesCpuBf16) {
  check_linear(DType::bf16, 7, 13, 11, 700);
  check_linear(DType::bf16, 64, 128, 10, 710);
}

TEST(GpuLinear, MatchesCpuF16) {
  check_linear(DType::f16, 16, 24, 8, 800);
}

// Inputs and outputs that are unaligned views (odd element offsets) still work.
TEST(GpuLinear, UnalignedViews) {
  const int64_t batch = 5, in = 7, out = 3;
  const Tensor x = random_cpu(Shape{batch, in}, 900);
  const Tensor w = random_cpu(Shape{out, in}, 901);
  const Tensor dy = random_cpu(Shape{batch, out}, 902);
  Tensor wflat = to_gpu(random_cpu(Shape{out * in + 1}, 903));
  wflat.flat(1, out * in).copy_from(to_gpu(w).view(Shape{out * in}), gpu().stream());
  const Tensor w_view = wflat.flat(1, out * in).view(Shape{out, in});
  expect_near("linear with unaligned w", core::ops::linear(gpu(), to_gpu(x), w_view, Tensor()),
              core::ops::linear(cpu(), x, w, Tensor()), kConvF32);

  Tensor dw_cpu = Tensor::zeros(Shape{out, in}, DType::f32);
  core::ops::linear_backward_weight(cpu(), dy, x, dw_cpu, false);
  Tensor gflat = to_gpu(Tensor::zeros(Shape{out * in + 1}, DType::f32));
  Tensor dw_view = gflat.flat(1, out * in).view(Shape{out, in});
  core::ops::linear_backward_weight(gpu(), to_gpu(dy), to_gpu(x), dw_view, false);
  expect_near("linear dw into unaligned view", dw_view, dw_cpu, kConvF32);
  EXPECT_EQ(values(gflat)[0], 0.0) << "element before the view was overwritten";
}

}  // namespace
}  // namespace cohort::gputest
