// Dispatchers for conv2d, conv_transpose2d and bias_backward: argument checks
// (every message names the op and the shapes), then the CPU or CUDA backend.
#include <initializer_list>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/conv_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

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

// The output-shape rule of one variant (conv_shape or transpose_shape).
using ShapeRule = Shape (*)(const char* op, const Shape& x, const char* w_name, const Shape& w,
                            const ConvGeometry& g);

// Forward: x and w fit under `rule`; the bias (if any) has one value per output
// channel, which is w's dim `out_channel_dim`.
void check_forward(const char* op, const Context& ctx, const Tensor& x, const Tensor& w,
                   const Tensor& bias, const ConvGeometry& g, ShapeRule rule, int out_channel_dim) {
  check_defined(op, "x", x);
  check_defined(op, "w", w);
  rule(op, x.shape(), "w", w.shape(), g);
  check_bias(op, bias, w.dim(out_channel_dim), w);
  check_common(op, ctx, {{"x", &x}, {"w", &w}, {"bias", &bias}});
}

void check_backward_input(const char* op, const Context& ctx, const Tensor& dy, const Tensor& w,
                          const Shape& x_shape, const ConvGeometry& g, ShapeRule rule) {
  check_defined(op, "w", w);
  check_dy(op, dy, rule(op, x_shape, "w", w.shape(), g), x_shape, w.shape());
  check_common(op, ctx, {{"dy", &dy}, {"w", &w}});
}

void check_backward_weight(const char* op, const Context& ctx, const Tensor& dy, const Tensor& x,
                           const Tensor& dw, const ConvGeometry& g, ShapeRule rule) {
  check_defined(op, "x", x);
  check_defined(op, "dw", dw);
  check_dy(op, dy, rule(op, x.shape(), "dw", dw.shape(), g), x.shape(), dw.shape());
  check_common(op, ctx, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
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
  check_forward("conv2d", ctx, x, w, bias, g, conv_shape, /*out_channel_dim=*/0);
  COHORT_RUN_ON_DEVICE("conv2d", ctx, conv2d(ctx, x, w, bias, g));
}

Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_input";
  check_backward_input(op, ctx, dy, w, x_shape, g, conv_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, conv2d_backward_input(ctx, dy, w, x_shape, g));
}

void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_weight";
  check_backward_weight(op, ctx, dy, x, dw, g, conv_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, conv2d_backward_weight(ctx, dy, x, dw, accumulate, g));
}

void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate) {
  constexpr const char* op = "bias_backward";
  check_defined(op, "dy", dy);
  check_defined(op, "db", db);
  COHORT_CHECK(dy.rank() >= 1 && db.rank() == 1 && db.dim(0) == dy.dim(-1),
               fmt::format("{}: db must have shape [C] with C the last dim of dy {}, got {}", op,
                           dy.shape().str(), db.shape().str()));
  check_common(op, ctx, {{"dy", &dy}, {"db", &db}});
  COHORT_RUN_ON_DEVICE(op, ctx, bias_backward(ctx, dy, db, accumulate));
}

Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g) {
  check_forward("conv_transpose2d", ctx, x, w, bias, g, transpose_shape, /*out_channel_dim=*/3);
  COHORT_RUN_ON_DEVICE("conv_transpose2d", ctx, conv_transpose2d(ctx, x, w, bias, g));
}

Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_input";
  check_backward_input(op, ctx, dy, w, x_shape, g, transpose_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, conv_transpose2d_backward_input(ctx, dy, w, x_shape, g));
}

void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_weight";
  check_backward_weight(op, ctx, dy, x, dw, g, transpose_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, conv_transpose2d_backward_weight(ctx, dy, x, dw, accumulate, g));
}

}  // namespace cohort::core::ops
