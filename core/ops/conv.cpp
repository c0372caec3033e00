// Dispatchers for conv2d, conv_transpose2d and bias_backward: argument checks
// (every message names the op and the shapes), then the CPU or CUDA backend.
#include <initializer_list>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/conv_cpu.hpp"
#include "core/ops/cpu/cpu_dispatch.hpp"
#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

namespace cohort::core::ops {
namespace {

std::string geometry_str(const ConvGeometry& g) {
  return fmt::format("stride {}x{}, padding {}x{}, dilation {}x{}, output padding {}x{}",
                     g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w,
                     g.output_pad_h, g.output_pad_w);
}

void check_geometry(const char* op, const Shape& x, const Shape& w, const ConvGeometry& g) {
  COHORT_CHECK(g.stride_h >= 1 && g.stride_w >= 1 && g.dilation_h >= 1 && g.dilation_w >= 1 &&
                   g.pad_h >= 0 && g.pad_w >= 0,
               fmt::format("{}: stride and dilation must be >= 1 and padding >= 0, got {} "
                           "(x {}, w {})",
                           op, geometry_str(g), x.str(), w.str()));
}

void check_rank4(const char* op, const char* name, const Shape& s) {
  COHORT_CHECK(
      s.rank() == 4,
      fmt::format("{}: {} must be 4-D (NHWC / [O, kh, kw, I]), got shape {}", op, name, s.str()));
}

// Checks the tensors that every variant shares and the device they live on.
void check_common(const char* op, const Context& ctx,
                  std::initializer_list<std::pair<const char*, const Tensor*>> tensors) {
  for (const auto& [name, t] : tensors) {
    if (!t->defined()) continue;
    check_floating(op, name, *t);
    check_device(op, ctx, {t});
  }
}

void check_bias(const char* op, const Tensor& bias, int64_t channels, const Tensor& w) {
  if (!bias.defined()) return;
  COHORT_CHECK(bias.rank() == 1 && bias.dim(0) == channels,
               fmt::format("{}: bias must have shape [{}] to match w {}, got {}", op, channels,
                           w.shape().str(), bias.shape().str()));
}

// The upstream gradient must have exactly the forward output's shape.
void check_dy(const char* op, const Tensor& dy, const Shape& expected, const Shape& x,
              const Shape& w) {
  check_defined(op, "dy", dy);
  COHORT_CHECK(dy.shape() == expected,
               fmt::format("{}: dy has shape {} but x {} and w {} give output {}", op,
                           dy.shape().str(), x.str(), w.str(), expected.str()));
}

Shape conv_shape(const char* op, const Shape& x, const char* w_name, const Shape& w,
                 const ConvGeometry& g) {
  check_rank4(op, "x", x);
  check_rank4(op, w_name, w);
  check_geometry(op, x, w, g);
  COHORT_CHECK(x[3] == w[3],
               fmt::format("{}: x {} has {} channels but {} {} ([O, kh, kw, I]) expects {} input "
                           "channels",
                           op, x.str(), x[3], w_name, w.str(), w[3]));
  const int64_t oh = (x[1] + 2 * g.pad_h - g.dilation_h * (w[1] - 1) - 1) / g.stride_h + 1;
  const int64_t ow = (x[2] + 2 * g.pad_w - g.dilation_w * (w[2] - 1) - 1) / g.stride_w + 1;
  // The numerators may be negative; C++ division truncates towards zero, so
  // compare the padded extent with the dilated kernel directly.
  const bool fits = x[1] + 2 * g.pad_h >= g.dilation_h * (w[1] - 1) + 1 &&
                    x[2] + 2 * g.pad_w >= g.dilation_w * (w[2] - 1) + 1;
  COHORT_CHECK(fits && w[1] >= 1 && w[2] >= 1 && oh >= 1 && ow >= 1,
               fmt::format("{}: kernel of {} {} does not fit input x {} with {}", op, w_name,
                           w.str(), x.str(), geometry_str(g)));
  return Shape{x[0], oh, ow, w[0]};
}

Shape transpose_shape(const char* op, const Shape& x, const char* w_name, const Shape& w,
                      const ConvGeometry& g) {
  check_rank4(op, "x", x);
  check_rank4(op, w_name, w);
  check_geometry(op, x, w, g);
  COHORT_CHECK(x[3] == w[0],
               fmt::format("{}: x {} has {} channels but {} {} ([I, kh, kw, O]) expects {} input "
                           "channels",
                           op, x.str(), x[3], w_name, w.str(), w[0]));
  // PyTorch's rule: output padding only selects among the sizes that map back to x.
  COHORT_CHECK(g.output_pad_h >= 0 && g.output_pad_w >= 0 &&
                   (g.output_pad_h < g.stride_h || g.output_pad_h < g.dilation_h) &&
                   (g.output_pad_w < g.stride_w || g.output_pad_w < g.dilation_w),
               fmt::format("{}: output padding must be >= 0 and smaller than stride or dilation, "
                           "got {} (x {}, {} {})",
                           op, geometry_str(g), x.str(), w_name, w.str()));
  const int64_t oh =
      (x[1] - 1) * g.stride_h - 2 * g.pad_h + g.dilation_h * (w[1] - 1) + g.output_pad_h + 1;
  const int64_t ow =
      (x[2] - 1) * g.stride_w - 2 * g.pad_w + g.dilation_w * (w[2] - 1) + g.output_pad_w + 1;
  COHORT_CHECK(x[1] >= 1 && x[2] >= 1 && w[1] >= 1 && w[2] >= 1 && oh >= 1 && ow >= 1,
               fmt::format("{}: x {} with {} {} and {} gives an empty output ({}x{})", op, x.str(),
                           w_name, w.str(), geometry_str(g), oh, ow));
  return Shape{x[0], oh, ow, w[3]};
}

}  // namespace

Shape conv2d_output_shape(const Shape& x, const Shape& w, const ConvGeometry& g) {
  return conv_shape("conv2d", x, "w", w, g);
}

Shape conv_transpose2d_output_shape(const Shape& x, const Shape& w, const ConvGeometry& g) {
  return transpose_shape("conv_transpose2d", x, "w", w, g);
}

Tensor conv2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvGeometry& g) {
  constexpr const char* op = "conv2d";
  check_defined(op, "x", x);
  check_defined(op, "w", w);
  conv_shape(op, x.shape(), "w", w.shape(), g);
  check_bias(op, bias, w.dim(0), w);
  check_common(op, ctx, {{"x", &x}, {"w", &w}, {"bias", &bias}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"x", &x}, {"w", &w}, {"bias", &bias}});
    return cpu::conv2d(ctx, x, w, bias, g);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::conv2d(ctx, x, w, bias, g);
#else
  cpu::fail_no_cuda(op, x);
#endif
}

Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_input";
  check_defined(op, "w", w);
  check_dy(op, dy, conv_shape(op, x_shape, "w", w.shape(), g), x_shape, w.shape());
  check_common(op, ctx, {{"dy", &dy}, {"w", &w}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}, {"w", &w}});
    return cpu::conv2d_backward_input(ctx, dy, w, x_shape, g);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::conv2d_backward_input(ctx, dy, w, x_shape, g);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_weight";
  check_defined(op, "x", x);
  check_defined(op, "dw", dw);
  check_dy(op, dy, conv_shape(op, x.shape(), "dw", dw.shape(), g), x.shape(), dw.shape());
  check_common(op, ctx, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
    return cpu::conv2d_backward_weight(ctx, dy, x, dw, accumulate, g);
  }
#ifdef COHORT_WITH_CUDA
  cuda::conv2d_backward_weight(ctx, dy, x, dw, accumulate, g);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate) {
  constexpr const char* op = "bias_backward";
  check_defined(op, "dy", dy);
  check_defined(op, "db", db);
  COHORT_CHECK(dy.rank() >= 1 && db.rank() == 1 && db.dim(0) == dy.dim(-1),
               fmt::format("{}: db must have shape [C] with C the last dim of dy {}, got {}", op,
                           dy.shape().str(), db.shape().str()));
  check_common(op, ctx, {{"dy", &dy}, {"db", &db}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}, {"db", &db}});
    return cpu::bias_backward(ctx, dy, db, accumulate);
  }
#ifdef COHORT_WITH_CUDA
  cuda::bias_backward(ctx, dy, db, accumulate);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d";
  check_defined(op, "x", x);
  check_defined(op, "w", w);
  transpose_shape(op, x.shape(), "w", w.shape(), g);
  check_bias(op, bias, w.dim(3), w);
  check_common(op, ctx, {{"x", &x}, {"w", &w}, {"bias", &bias}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"x", &x}, {"w", &w}, {"bias", &bias}});
    return cpu::conv_transpose2d(ctx, x, w, bias, g);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::conv_transpose2d(ctx, x, w, bias, g);
#else
  cpu::fail_no_cuda(op, x);
#endif
}

Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_input";
  check_defined(op, "w", w);
  check_dy(op, dy, transpose_shape(op, x_shape, "w", w.shape(), g), x_shape, w.shape());
  check_common(op, ctx, {{"dy", &dy}, {"w", &w}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}, {"w", &w}});
    return cpu::conv_transpose2d_backward_input(ctx, dy, w, x_shape, g);
  }
#ifdef COHORT_WITH_CUDA
  return cuda::conv_transpose2d_backward_input(ctx, dy, w, x_shape, g);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_weight";
  check_defined(op, "x", x);
  check_defined(op, "dw", dw);
  check_dy(op, dy, transpose_shape(op, x.shape(), "dw", dw.shape(), g), x.shape(), dw.shape());
  check_common(op, ctx, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
  if (ctx.device().is_cpu()) {
    cpu::check_cpu_float(op, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
    return cpu::conv_transpose2d_backward_weight(ctx, dy, x, dw, accumulate, g);
  }
#ifdef COHORT_WITH_CUDA
  cuda::conv_transpose2d_backward_weight(ctx, dy, x, dw, accumulate, g);
#else
  cpu::fail_no_cuda(op, dy);
#endif
}

}  // namespace cohort::core::ops
