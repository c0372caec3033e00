#include "core/ops/cpu/conv_cpu.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/ops/cpu/cpu_dispatch.hpp"
#include "core/ops/cpu/gemm_cpu.hpp"

namespace cohort::core::ops::cpu {
namespace {

// One convolution y = conv(x, w) in NHWC: x [n, h, w, c], w [o, kh, kw, c],
// y [n, oh, ow, o]. Sizes are explicit (not derived from the geometry) because
// conv-transpose reuses these kernels with its output padding, where the
// transpose's output is the convolution's input.
struct ConvProblem {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t oh = 0, ow = 0, o = 0;
  int64_t kh = 0, kw = 0;
  ConvGeometry g;

  int64_t patch() const { return kh * kw * c; }   // one im2col row: (ki, kj, c)
  int64_t pixels() const { return n * oh * ow; }  // im2col rows = GEMM M
  // A 1x1 kernel with unit stride and no padding reads x exactly as a
  // [pixels, c] matrix, so im2col would be a plain copy.
  bool pointwise() const {
    return kh == 1 && kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 &&
           g.pad_w == 0 && oh == h && ow == w;
  }
};

ConvProblem conv_problem(const Shape& x, const Shape& w, const Shape& y, const ConvGeometry& g) {
  ConvProblem p;
  p.n = x[0], p.h = x[1], p.w = x[2], p.c = x[3];
  p.oh = y[1], p.ow = y[2], p.o = y[3];
  p.kh = w[1], p.kw = w[2];
  p.g = g;
  return p;
}

// Conv-transpose x [n, h, w, i] -> y [n, oh, ow, o] with weight [i, kh, kw, o] is
// the adjoint of the convolution y -> x with the same weight read as [o', kh, kw, c']
// = [i, kh, kw, o].
ConvProblem transpose_problem(const Shape& x, const Shape& w, const Shape& y,
                              const ConvGeometry& g) {
  return conv_problem(y, w, x, g);
}

// im2col works on bounded blocks of output pixels so that its buffer stays
// around 16 MB (f32) however large the batch or image.
constexpr int64_t kColumnBudgetElements = int64_t{1} << 22;

int64_t rows_per_chunk(const ConvProblem& p) {
  return std::max<int64_t>(1, kColumnBudgetElements / std::max<int64_t>(1, p.patch()));
}

// Visits every kernel tap of output pixel q: fn(tap_offset_in_patch_row, x_pixel_offset) with
// x_pixel_offset = -1 for taps that fall into the padding.
template <typename Fn>
void for_each_tap(const ConvProblem& p, int64_t q, Fn&& fn) {
  const int64_t per_image = p.oh * p.ow;
  const int64_t img = q / per_image;
  const int64_t oy = (q % per_image) / p.ow;
  const int64_t ox = q % p.ow;
  const ConvGeometry& g = p.g;
  for (int64_t ki = 0; ki < p.kh; ++ki) {
    const int64_t iy = oy * g.stride_h - g.pad_h + ki * g.dilation_h;
    const bool row_inside = iy >= 0 && iy < p.h;
    for (int64_t kj = 0; kj < p.kw; ++kj) {
      const int64_t ix = ox * g.stride_w - g.pad_w + kj * g.dilation_w;
      const int64_t tap = (ki * p.kw + kj) * p.c;
      if (row_inside && ix >= 0 && ix < p.w)
        fn(tap, ((img * p.h + iy) * p.w + ix) * p.c);
      else
        fn(tap, int64_t{-1});
    }
  }
}

// col[q - q0, (ki, kj, c)] = x[pixel under tap (ki, kj) of output pixel q, c], 0 in padding.
template <typename T>
void im2col(const ConvProblem& p, const T* x, int64_t q0, int64_t q1, T* col) {
  const int64_t k = p.patch();
  const size_t run = static_cast<size_t>(p.c) * sizeof(T);
  for (int64_t q = q0; q < q1; ++q) {
    T* row = col + (q - q0) * k;
    for_each_tap(p, q, [&](int64_t tap, int64_t src) {
      if (src >= 0)
        std::memcpy(row + tap, x + src, run);
      else
        std::fill(row + tap, row + tap + p.c, T(0));
    });
  }
}

// The adjoint of im2col: dx[pixel under tap] += dcol[q - q0, tap].
template <typename T>
void col2im_add(const ConvProblem& p, const T* dcol, int64_t q0, int64_t q1, T* dx) {
  const int64_t k = p.patch();
  for (int64_t q = q0; q < q1; ++q) {
    const T* row = dcol + (q - q0) * k;
    for_each_tap(p, q, [&](int64_t tap, int64_t dst) {
      if (dst < 0) return;
      T* out = dx + dst;
      const T* in = row + tap;
      for (int64_t ch = 0; ch < p.c; ++ch)
        out[ch] += in[ch];
    });
  }
}

// Calls fn(q0, rows, col) for consecutive blocks of output pixels [q0, q0 + rows),
// with col holding im2col(x) of the block.
template <typename T, typename Fn>
void for_each_column_block(const ConvProblem& p, const T* x, Fn&& fn) {
  const int64_t chunk = std::min(rows_per_chunk(p), p.pixels());
  std::vector<T> col(static_cast<size_t>(chunk * p.patch()));
  for (int64_t q0 = 0; q0 < p.pixels(); q0 += chunk) {
    const int64_t rows = std::min(chunk, p.pixels() - q0);
    im2col(p, x, q0, q0 + rows, col.data());
    fn(q0, rows, static_cast<const T*>(col.data()));
  }
}

// y[pixels, o] = col[pixels, k] * w[o, k]^T
template <typename T>
void conv_forward(const ConvProblem& p, const T* x, const T* w, T* y) {
  const int64_t k = p.patch();
  if (p.pointwise()) {
    gemm({p.pixels(), p.o, k, false, true}, T(1), x, k, w, k, T(0), y, p.o);
    return;
  }
  for_each_column_block(p, x, [&](int64_t q0, int64_t rows, const T* col) {
    gemm({rows, p.o, k, false, true}, T(1), col, k, w, k, T(0), y + q0 * p.o, p.o);
  });
}

// dx = col2im(dy[pixels, o] * w[o, k]); dx is overwritten.
template <typename T>
void conv_backward_data(const ConvProblem& p, const T* dy, const T* w, T* dx) {
  const int64_t k = p.patch();
  if (p.pointwise()) {
    gemm({p.pixels(), k, p.o, false, false}, T(1), dy, p.o, w, k, T(0), dx, k);
    return;
  }
  std::fill(dx, dx + p.n * p.h * p.w * p.c, T(0));
  const int64_t chunk = std::min(rows_per_chunk(p), p.pixels());
  std::vector<T> dcol(static_cast<size_t>(chunk * k));
  for (int64_t q0 = 0; q0 < p.pixels(); q0 += chunk) {
    const int64_t rows = std::min(chunk, p.pixels() - q0);
    gemm({rows, k, p.o, false, false}, T(1), dy + q0 * p.o, p.o, w, k, T(0), dcol.data(), k);
    col2im_add(p, dcol.data(), q0, q0 + rows, dx);
  }
}

// dw[o, k] (+)= dy[pixels, o]^T * col[pixels, k]
template <typename T>
void conv_backward_filter(const ConvProblem& p, const T* dy, const T* x, T* dw, bool accumulate) {
  const int64_t k = p.patch();
  if (p.pointwise() || p.pixels() == 0) {
    // With no pixels the GEMM has k = 0 and just applies beta (zeroes or keeps dw).
    gemm({p.o, k, p.pixels(), true, false}, T(1), dy, p.o, x, k, accumulate ? T(1) : T(0), dw, k);
    return;
  }
  for_each_column_block(p, x, [&](int64_t q0, int64_t rows, const T* col) {
    const T beta = (accumulate || q0 > 0) ? T(1) : T(0);
    gemm({p.o, k, rows, true, false}, T(1), dy + q0 * p.o, p.o, col, k, beta, dw, k);
  });
}

// y[..., c] += bias[c] for y of y_shape (channels innermost).
template <typename T>
void add_bias(T* y, const Shape& y_shape, const Tensor& bias) {
  if (!bias.defined()) return;
  const int64_t c = y_shape.dim(-1);
  const int64_t rows = c == 0 ? 0 : y_shape.numel() / c;
  const T* b = bias.data<T>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < c; ++j)
      y[r * c + j] += b[j];
}

// The two data movements of a convolution: the convolution itself (conv2d's
// forward, conv-transpose's input gradient) and its adjoint (conv2d's input
// gradient, conv-transpose's forward).
enum class DataPass { convolve, adjoint };

// A new tensor of out_shape = pass(in, w) (+ bias) for the convolution p.
Tensor run_data_pass(const char* op, Context& ctx, DataPass pass, const ConvProblem& p,
                     const Tensor& in, const Tensor& w, const Tensor& bias,
                     const Shape& out_shape) {
  return dispatch_into_new(op, ctx, in, out_shape, [&]<typename T>(const T* src, T* dst) {
    if (pass == DataPass::convolve)
      conv_forward(p, src, w.data<T>(), dst);
    else
      conv_backward_data(p, src, w.data<T>(), dst);
    add_bias(dst, out_shape, bias);
  });
}

// dw (+)= the weight gradient of the convolution p, given the gradient at its
// output and its input.
void run_filter_pass(const char* op, const ConvProblem& p, const Tensor& out_grad,
                     const Tensor& input, Tensor& dw, bool accumulate) {
  dispatch_float(op, out_grad, [&](auto tag) {
    using T = decltype(tag);
    conv_backward_filter(p, out_grad.data<T>(), input.data<T>(), dw.data<T>(), accumulate);
  });
}

}  // namespace

Tensor conv2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvGeometry& g) {
  check_cpu_float("conv2d", {{"x", &x}, {"w", &w}, {"bias", &bias}});
  const Shape y_shape = conv2d_output_shape(x.shape(), w.shape(), g);
  return run_data_pass("conv2d", ctx, DataPass::convolve,
                       conv_problem(x.shape(), w.shape(), y_shape, g), x, w, bias, y_shape);
}

Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_input";
  check_cpu_float(op, {{"dy", &dy}, {"w", &w}});
  return run_data_pass(op, ctx, DataPass::adjoint, conv_problem(x_shape, w.shape(), dy.shape(), g),
                       dy, w, Tensor(), x_shape);
}

void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv2d_backward_weight";
  check_cpu_float(op, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
  run_filter_pass(op, conv_problem(x.shape(), dw.shape(), dy.shape(), g), dy, x, dw, accumulate);
}

void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate) {
  check_cpu_float("bias_backward", {{"dy", &dy}, {"db", &db}});
  dispatch_float("bias_backward", dy, [&](auto tag) {
    using T = decltype(tag);
    const int64_t c = dy.dim(-1);
    const int64_t rows = c == 0 ? 0 : dy.numel() / c;
    // Sums over many rows: accumulate in double so f32 gradients keep their digits.
    std::vector<double> sums(static_cast<size_t>(c), 0.0);
    const T* in = dy.data<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < c; ++j)
        sums[static_cast<size_t>(j)] += in[r * c + j];
    T* out = db.data<T>();
    for (int64_t j = 0; j < c; ++j) {
      const T s = static_cast<T>(sums[static_cast<size_t>(j)]);
      out[j] = accumulate ? out[j] + s : s;
    }
  });
}

Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g) {
  check_cpu_float("conv_transpose2d", {{"x", &x}, {"w", &w}, {"bias", &bias}});
  const Shape y_shape = conv_transpose2d_output_shape(x.shape(), w.shape(), g);
  return run_data_pass("conv_transpose2d", ctx, DataPass::adjoint,
                       transpose_problem(x.shape(), w.shape(), y_shape, g), x, w, bias, y_shape);
}

Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_input";
  check_cpu_float(op, {{"dy", &dy}, {"w", &w}});
  return run_data_pass(op, ctx, DataPass::convolve,
                       transpose_problem(x_shape, w.shape(), dy.shape(), g), dy, w, Tensor(),
                       x_shape);
}

void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g) {
  constexpr const char* op = "conv_transpose2d_backward_weight";
  check_cpu_float(op, {{"dy", &dy}, {"x", &x}, {"dw", &dw}});
  // L = <dy, conv^T(x)> = <conv(dy), x>: the weight gradient of the convolution
  // that reads dy as its input and x as its output gradient.
  run_filter_pass(op, transpose_problem(x.shape(), dw.shape(), dy.shape(), g), x, dy, dw,
                  accumulate);
}

}  // namespace cohort::core::ops::cpu
