#include "core/ops/cpu/resize_cpu.hpp"

#include <algorithm>
#include <vector>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

// The two source cells of one output row (or column) and their weights.
template <typename T>
struct Taps {
  int64_t i0, i1;
  T w0, w1;
};

// PyTorch's align_corners=false mapping: src = (dst + 0.5) * in / out - 0.5,
// clamped at 0 below; the index is clamped at in - 1 and the right neighbour
// collapses onto it at the border.
template <typename T>
std::vector<Taps<T>> make_taps(int64_t in, int64_t out) {
  std::vector<Taps<T>> taps(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t d = 0; d < out; ++d) {
    const double src = std::max((static_cast<double>(d) + 0.5) * scale - 0.5, 0.0);
    const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
    const double frac = std::clamp(src - static_cast<double>(i0), 0.0, 1.0);
    taps[static_cast<size_t>(d)] = {i0, i0 < in - 1 ? i0 + 1 : i0, static_cast<T>(1.0 - frac),
                                    static_cast<T>(frac)};
  }
  return taps;
}

// x [n, h, w, c] <-> y [n, oh, ow, c].
struct ResizeDims {
  int64_t n, h, w, c, oh, ow;
};

// Calls fn(corner offsets in x, corner weights, y offset) for every output pixel;
// corners are (y0,x0), (y0,x1), (y1,x0), (y1,x1).
template <typename T, typename Fn>
void for_each_pixel(const ResizeDims& d, Fn&& fn) {
  const std::vector<Taps<T>> rows = make_taps<T>(d.h, d.oh);
  const std::vector<Taps<T>> cols = make_taps<T>(d.w, d.ow);
  for (int64_t img = 0; img < d.n; ++img)
    for (int64_t oy = 0; oy < d.oh; ++oy) {
      const Taps<T>& r = rows[static_cast<size_t>(oy)];
      const int64_t row0 = (img * d.h + r.i0) * d.w, row1 = (img * d.h + r.i1) * d.w;
      for (int64_t ox = 0; ox < d.ow; ++ox) {
        const Taps<T>& k = cols[static_cast<size_t>(ox)];
        const int64_t at[4] = {(row0 + k.i0) * d.c, (row0 + k.i1) * d.c, (row1 + k.i0) * d.c,
                               (row1 + k.i1) * d.c};
        const T weight[4] = {r.w0 * k.w0, r.w0 * k.w1, r.w1 * k.w0, r.w1 * k.w1};
        fn(at, weight, ((img * d.oh + oy) * d.ow + ox) * d.c);
      }
    }
}

}  // namespace

Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w) {
  check_cpu_float("resize_bilinear", {{"x", &x}});
  const ResizeDims d{x.dim(0), x.dim(1), x.dim(2), x.dim(3), out_h, out_w};
  return dispatch_into_new(
      "resize_bilinear", ctx, x, Shape{d.n, d.oh, d.ow, d.c}, [&]<typename T>(const T* xp, T* yp) {
        for_each_pixel<T>(d, [&](const int64_t* at, const T* weight, int64_t out_offset) {
          T* out = yp + out_offset;
          const T *a = xp + at[0], *b = xp + at[1], *c = xp + at[2], *e = xp + at[3];
          for (int64_t ch = 0; ch < d.c; ++ch)
            out[ch] = weight[0] * a[ch] + weight[1] * b[ch] + weight[2] * c[ch] + weight[3] * e[ch];
        });
      });
}

Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape) {
  check_cpu_float("resize_bilinear_backward", {{"dy", &dy}});
  const ResizeDims d{x_shape[0], x_shape[1], x_shape[2], x_shape[3], dy.dim(1), dy.dim(2)};
  return dispatch_into_new(
      "resize_bilinear_backward", ctx, dy, x_shape, [&]<typename T>(const T* dyp, T* dxp) {
        std::fill(dxp, dxp + x_shape.numel(), T(0));
        // Scatter each output gradient to its four corners (which may coincide at
        // the borders, hence += for every corner).
        for_each_pixel<T>(d, [&](const int64_t* at, const T* weight, int64_t out_offset) {
          const T* g = dyp + out_offset;
          for (int corner = 0; corner < 4; ++corner) {
            T* in = dxp + at[corner];
            const T wgt = weight[corner];
            for (int64_t ch = 0; ch < d.c; ++ch)
              in[ch] += wgt * g[ch];
          }
        });
      });
}

}  // namespace cohort::core::ops::cpu
