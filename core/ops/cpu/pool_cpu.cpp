#include "core/ops/cpu/pool_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

// x [n, h, w, c] pooled to y [n, oh, ow, c].
struct PoolDims {
  int64_t n = 0, h = 0, w = 0, c = 0, oh = 0, ow = 0;
};

PoolDims pool_dims(const Shape& x, const Shape& y) {
  return {x[0], x[1], x[2], x[3], y[1], y[2]};
}

// Input rows [y0, y1) and columns [x0, x1) of one output pixel, already clipped
// to the image, and the divisor of an average over it.
struct Window {
  int64_t y0, y1, x0, x1;
  double divisor;
};

Window fixed_window(const PoolGeometry& g, const PoolDims& d, int64_t oy, int64_t ox) {
  const int64_t ys = oy * g.stride_h - g.pad_h, xs = ox * g.stride_w - g.pad_w;
  // PyTorch counts padded cells up to the padded border, never beyond it.
  const int64_t ye = std::min(ys + g.kernel_h, d.h + g.pad_h);
  const int64_t xe = std::min(xs + g.kernel_w, d.w + g.pad_w);
  Window win{std::max<int64_t>(ys, 0), std::min(ye, d.h), std::max<int64_t>(xs, 0),
             std::min(xe, d.w), 0.0};
  win.divisor = g.count_include_pad ? static_cast<double>((ye - ys) * (xe - xs))
                                    : static_cast<double>((win.y1 - win.y0) * (win.x1 - win.x0));
  return win;
}

// PyTorch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out)).
Window adaptive_window(const PoolDims& d, int64_t oy, int64_t ox) {
  Window win{oy * d.h / d.oh, ((oy + 1) * d.h + d.oh - 1) / d.oh, ox * d.w / d.ow,
             ((ox + 1) * d.w + d.ow - 1) / d.ow, 0.0};
  win.divisor = static_cast<double>((win.y1 - win.y0) * (win.x1 - win.x0));
  return win;
}

// Calls fn(window, input image offset, output pixel offset) for every output pixel.
template <typename WindowFn, typename Fn>
void for_each_output(const PoolDims& d, WindowFn&& window, Fn&& fn) {
  for (int64_t img = 0; img < d.n; ++img)
    for (int64_t oy = 0; oy < d.oh; ++oy)
      for (int64_t ox = 0; ox < d.ow; ++ox)
        fn(window(oy, ox), img * d.h * d.w * d.c, ((img * d.oh + oy) * d.ow + ox) * d.c);
}

template <typename T>
void avg_forward(const PoolDims& d, const T* x, T* y, auto&& window) {
  for_each_output(d, window, [&](const Window& win, int64_t image, int64_t out_offset) {
    T* out = y + out_offset;
    std::fill(out, out + d.c, T(0));
    for (int64_t iy = win.y0; iy < win.y1; ++iy)
      for (int64_t ix = win.x0; ix < win.x1; ++ix) {
        const T* in = x + image + (iy * d.w + ix) * d.c;
        for (int64_t ch = 0; ch < d.c; ++ch)
          out[ch] += in[ch];
      }
    const T inv = static_cast<T>(1.0 / win.divisor);
    for (int64_t ch = 0; ch < d.c; ++ch)
      out[ch] *= inv;
  });
}

template <typename T>
void avg_backward(const PoolDims& d, const T* dy, T* dx, auto&& window) {
  std::fill(dx, dx + d.n * d.h * d.w * d.c, T(0));
  std::vector<T> share(static_cast<size_t>(d.c));
  for_each_output(d, window, [&](const Window& win, int64_t image, int64_t out_offset) {
    const T inv = static_cast<T>(1.0 / win.divisor);
    for (int64_t ch = 0; ch < d.c; ++ch)
      share[static_cast<size_t>(ch)] = dy[out_offset + ch] * inv;
    for (int64_t iy = win.y0; iy < win.y1; ++iy)
      for (int64_t ix = win.x0; ix < win.x1; ++ix) {
        T* in = dx + image + (iy * d.w + ix) * d.c;
        for (int64_t ch = 0; ch < d.c; ++ch)
          in[ch] += share[static_cast<size_t>(ch)];
      }
  });
}

// The first maximum of each channel over the window in row-major window order;
// padding never wins (it acts as -inf) and NaN beats every number, as in PyTorch.
// `best` and `where` (input pixel index within the image) hold c entries.
template <typename T>
void window_max(const PoolDims& d, const Window& win, const T* image, T* best, int64_t* where) {
  std::fill(best, best + d.c, -std::numeric_limits<T>::infinity());
  std::fill(where, where + d.c, win.y0 * d.w + win.x0);  // all -inf: the first cell
  for (int64_t iy = win.y0; iy < win.y1; ++iy)
    for (int64_t ix = win.x0; ix < win.x1; ++ix) {
      const int64_t pixel = iy * d.w + ix;
      const T* in = image + pixel * d.c;
      for (int64_t ch = 0; ch < d.c; ++ch) {
        const T v = in[ch];
        if (v > best[ch] || (std::isnan(v) && !std::isnan(best[ch]))) {
          best[ch] = v;
          where[ch] = pixel;
        }
      }
    }
}

}  // namespace

Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  check_cpu_float("max_pool2d", {{"x", &x}});
  const Shape y_shape = pool2d_output_shape(x.shape(), g);
  const PoolDims d = pool_dims(x.shape(), y_shape);
  return dispatch_into_new("max_pool2d", ctx, x, y_shape, [&](const auto* xp, auto* yp) {
    std::vector<int64_t> where(static_cast<size_t>(d.c));
    for_each_output(
        d, [&](int64_t oy, int64_t ox) { return fixed_window(g, d, oy, ox); },
        [&](const Window& win, int64_t image, int64_t out_offset) {
          window_max(d, win, xp + image, yp + out_offset, where.data());
        });
  });
}

Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g) {
  check_cpu_float("max_pool2d_backward", {{"dy", &dy}, {"x", &x}, {"y", &y}});
  Tensor dx = Tensor::zeros(x.shape(), x.dtype(), ctx.device(), ctx.stream());
  const PoolDims d = pool_dims(x.shape(), dy.shape());
  dispatch_float("max_pool2d_backward", x, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data<T>();
    const T* dyp = dy.data<T>();
    T* dxp = dx.data<T>();
    // The argmax is recomputed from x rather than saved: it costs one more pass
    // over x but no index tensor between forward and backward.
    std::vector<T> best(static_cast<size_t>(d.c));
    std::vector<int64_t> where(static_cast<size_t>(d.c));
    for_each_output(
        d, [&](int64_t oy, int64_t ox) { return fixed_window(g, d, oy, ox); },
        [&](const Window& win, int64_t image, int64_t out_offset) {
          window_max(d, win, xp + image, best.data(), where.data());
          T* dimage = dxp + image;
          for (int64_t ch = 0; ch < d.c; ++ch)
            dimage[where[static_cast<size_t>(ch)] * d.c + ch] += dyp[out_offset + ch];
        });
  });
  return dx;
}

Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g) {
  check_cpu_float("avg_pool2d", {{"x", &x}});
  const Shape y_shape = pool2d_output_shape(x.shape(), g);
  const PoolDims d = pool_dims(x.shape(), y_shape);
  return dispatch_into_new("avg_pool2d", ctx, x, y_shape, [&](const auto* xp, auto* yp) {
    avg_forward(d, xp, yp, [&](int64_t oy, int64_t ox) { return fixed_window(g, d, oy, ox); });
  });
}

Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g) {
  check_cpu_float("avg_pool2d_backward", {{"dy", &dy}});
  const PoolDims d = pool_dims(x_shape, dy.shape());
  return dispatch_into_new(
      "avg_pool2d_backward", ctx, dy, x_shape, [&](const auto* dyp, auto* dxp) {
        avg_backward(d, dyp, dxp,
                     [&](int64_t oy, int64_t ox) { return fixed_window(g, d, oy, ox); });
      });
}

Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w) {
  check_cpu_float("adaptive_avg_pool2d", {{"x", &x}});
  const Shape y_shape{x.dim(0), out_h, out_w, x.dim(3)};
  const PoolDims d = pool_dims(x.shape(), y_shape);
  return dispatch_into_new("adaptive_avg_pool2d", ctx, x, y_shape, [&](const auto* xp, auto* yp) {
    avg_forward(d, xp, yp, [&](int64_t oy, int64_t ox) { return adaptive_window(d, oy, ox); });
  });
}

Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  check_cpu_float("adaptive_avg_pool2d_backward", {{"dy", &dy}});
  const PoolDims d = pool_dims(x_shape, dy.shape());
  return dispatch_into_new(
      "adaptive_avg_pool2d_backward", ctx, dy, x_shape, [&](const auto* dyp, auto* dxp) {
        avg_backward(d, dyp, dxp,
                     [&](int64_t oy, int64_t ox) { return adaptive_window(d, oy, ox); });
      });
}

}  // namespace cohort::core::ops::cpu
