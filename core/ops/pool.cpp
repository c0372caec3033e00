// Dispatchers for max, average and adaptive-average pooling (NHWC).
#include <string>

#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/pool_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

std::string geometry_str(const PoolGeometry& g) {
  return fmt::format("kernel {}x{}, stride {}x{}, padding {}x{}", g.kernel_h, g.kernel_w,
                     g.stride_h, g.stride_w, g.pad_h, g.pad_w);
}

void check_nhwc_shape(const char* op, const char* name, const Shape& s) {
  COHORT_CHECK(s.rank() == 4,
               fmt::format("{}: {} must be 4-D NHWC, got shape {}", op, name, s.str()));
}

void check_nhwc(const char* op, const Context& ctx, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  check_nhwc_shape(op, name, t.shape());
  check_floating(op, name, t);
  check_device(op, ctx, {&t});
}

Shape pool_shape(const char* op, const Shape& x, const PoolGeometry& g) {
  check_nhwc_shape(op, "x", x);
  COHORT_CHECK(g.kernel_h >= 1 && g.kernel_w >= 1 && g.stride_h >= 1 && g.stride_w >= 1 &&
                   g.pad_h >= 0 && g.pad_w >= 0,
               fmt::format("{}: kernel and stride must be >= 1 and padding >= 0, got {} (x {})", op,
                           geometry_str(g), x.str()));
  // PyTorch's limit; it also guarantees every window holds at least one real cell.
  COHORT_CHECK(2 * g.pad_h <= g.kernel_h && 2 * g.pad_w <= g.kernel_w,
               fmt::format("{}: padding must be at most half the kernel, got {} (x {})", op,
                           geometry_str(g), x.str()));
  COHORT_CHECK(x[1] + 2 * g.pad_h >= g.kernel_h && x[2] + 2 * g.pad_w >= g.kernel_w,
               fmt::format("{}: {} does not fit input x {}", op, geometry_str(g), x.str()));
  const int64_t oh = (x[1] + 2 * g.pad_h - g.kernel_h) / g.stride_h + 1;
  const int64_t ow = (x[2] + 2 * g.pad_w - g.kernel_w) / g.stride_w + 1;
  return Shape{x[0], oh, ow, x[3]};
}

void check_dy(const char* op, const Tensor& dy, const Shape& expected, const Shape& x) {
  COHORT_CHECK(dy.shape() == expected, fmt::format("{}: dy has shape {} but x {} pools to {}", op,
                                                   dy.shape().str(), x.str(), expected.str()));
}

}  // namespace

Shape pool2d_output_shape(const Shape& x, const PoolGeometry& g) {
  return pool_shape("pool2d", x, g);
}

Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  constexpr const char* op = "max_pool2d";
  check_nhwc(op, ctx, "x", x);
  pool_shape(op, x.shape(), g);
  COHORT_RUN_ON_DEVICE(op, ctx, max_pool2d(ctx, x, g));
}

Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g) {
  constexpr const char* op = "max_pool2d_backward";
  check_nhwc(op, ctx, "dy", dy);
  check_nhwc(op, ctx, "x", x);
  check_nhwc(op, ctx, "y", y);
  check_dy(op, dy, pool_shape(op, x.shape(), g), x.shape());
  check_same_shape(op, "dy", dy, "y", y);
  COHORT_RUN_ON_DEVICE(op, ctx, max_pool2d_backward(ctx, dy, x, y, g));
}

Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  constexpr const char* op = "avg_pool2d";
  check_nhwc(op, ctx, "x", x);
  pool_shape(op, x.shape(), g);
  COHORT_RUN_ON_DEVICE(op, ctx, avg_pool2d(ctx, x, g));
}

Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g) {
  constexpr const char* op = "avg_pool2d_backward";
  check_nhwc(op, ctx, "dy", dy);
  check_dy(op, dy, pool_shape(op, x_shape, g), x_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, avg_pool2d_backward(ctx, dy, x_shape, g));
}

Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w) {
  constexpr const char* op = "adaptive_avg_pool2d";
  check_nhwc(op, ctx, "x", x);
  check_resample_sizes(op, x.shape(), out_h, out_w);
  COHORT_RUN_ON_DEVICE(op, ctx, adaptive_avg_pool2d(ctx, x, out_h, out_w));
}

Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  constexpr const char* op = "adaptive_avg_pool2d_backward";
  check_nhwc(op, ctx, "dy", dy);
  check_nhwc_shape(op, "x", x_shape);
  check_resample_sizes(op, x_shape, static_cast<int>(dy.dim(1)), static_cast<int>(dy.dim(2)));
  check_same_batch_and_channels(op, dy, x_shape);
  COHORT_RUN_ON_DEVICE(op, ctx, adaptive_avg_pool2d_backward(ctx, dy, x_shape));
}

}  // namespace cohort::core::ops
