// conv2d and conv_transpose2d on cuDNN's legacy convolution API with NHWC
// tensors and [O, kh, kw, I] filters (CUDNN_TENSOR_NHWC). A conv-transpose is the
// adjoint of a conv, so it runs the same three cuDNN routines with roles swapped:
//   conv_transpose forward         = BackwardData(w, dy := x, dx := y)
//   conv_transpose backward input  = Forward(x := dy, w) -> dx
//   conv_transpose backward weight = BackwardFilter(x := dy, dy := x) -> dw
// Algorithms are chosen once per problem with cudnnFind*AlgorithmEx (benchmark
// mode) and cached in the context's CudaBackend.
//
// Numerics: f32 runs with CUDNN_FMA_MATH, because CUDNN_DEFAULT_MATH lets cuDNN
// use TF32 tensor cores on Ampere and later (10-bit mantissa); bf16/f16 run with
// tensor cores. Accumulation is f32 in every case.
#include <fmt/format.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/cuda/check.hpp"
#include "core/cuda/context_cuda.hpp"
#include "core/cuda/cudnn_descriptors.hpp"
#include "core/determinism.hpp"
#include "core/ops/cuda/cuda_common.hpp"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

using core::cuda::ConvAlgoChoice;
using core::cuda::ConvAlgoKey;
using core::cuda::ConvKind;
using core::cuda::ConvolutionDescriptor;
using core::cuda::CudaBackend;
using core::cuda::FilterDescriptor;
using core::cuda::TensorDescriptor;

// Workspace offered to cudnnFind: algorithms wanting more are not considered.
constexpr size_t kMaxFindWorkspace = size_t{1} << 30;
constexpr size_t kMinFindWorkspace = size_t{256} << 20;

// A convolution in cuDNN's terms: x [n, h, w, c] * filter [o, kh, kw, c] -> y [n, oh, ow, o].
struct ConvProblem {
  DType dtype = DType::f32;
  int n = 0, h = 0, w = 0, c = 0;
  int o = 0, kh = 0, kw = 0;
  int oh = 0, ow = 0;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;

  std::string str() const {
    return fmt::format(
        "x [{}, {}, {}, {}], w [{}, {}, {}, {}], y [{}, {}, {}, {}], {}, pad {}x{}, "
        "stride {}x{}, dilation {}x{}",
        n, h, w, c, o, kh, kw, c, n, oh, ow, o, dtype_name(dtype), pad_h, pad_w, stride_h, stride_w,
        dil_h, dil_w);
  }
};

int as_int(const char* op, int64_t v, const Shape& s) {
  COHORT_CHECK(
      v >= 0 && v <= INT_MAX,
      fmt::format("{}: dimension {} of shape {} exceeds cuDNN's int range", op, v, s.str()));
  return static_cast<int>(v);
}

// x_shape: the convolution's input; w_shape: [o, kh, kw, c]; y_shape: its output.
ConvProblem make_problem(const char* op, DType dtype, const Shape& x, const Shape& w,
                         const Shape& y, const ConvGeometry& g) {
  ConvProblem p;
  p.dtype = dtype;
  p.n = as_int(op, x[0], x);
  p.h = as_int(op, x[1], x);
  p.w = as_int(op, x[2], x);
  p.c = as_int(op, x[3], x);
  p.o = as_int(op, w[0], w);
  p.kh = as_int(op, w[1], w);
  p.kw = as_int(op, w[2], w);
  p.oh = as_int(op, y[1], y);
  p.ow = as_int(op, y[2], y);
  p.pad_h = g.pad_h;
  p.pad_w = g.pad_w;
  p.stride_h = g.stride_h;
  p.stride_w = g.stride_w;
  p.dil_h = g.dilation_h;
  p.dil_w = g.dilation_w;
  COHORT_CHECK(w[3] == x[3] && y[0] == x[0] && y[3] == w[0],
               fmt::format("{}: inconsistent convolution shapes x {}, w {}, y {}", op, x.str(),
                           w.str(), y.str()));
  // cuDNN checks that y is exactly the forward output of x; a conv-transpose whose
  // output padding is >= its stride (allowed when < dilation) has no such x.
  const int64_t expect_oh = (x[1] + 2 * g.pad_h - g.dilation_h * (w[1] - 1) - 1) / g.stride_h + 1;
  const int64_t expect_ow = (x[2] + 2 * g.pad_w - g.dilation_w * (w[2] - 1) - 1) / g.stride_w + 1;
  COHORT_CHECK(expect_oh == y[1] && expect_ow == y[2],
               fmt::format("{}: cuDNN cannot express this geometry: x {} and w {} give {}x{}, "
                           "not the {}x{} of {} (conv-transpose output padding >= stride is not "
                           "supported on CUDA)",
                           op, x.str(), w.str(), expect_oh, expect_ow, y[1], y[2], y.str()));
  return p;
}

cudnnMathType_t math_type_for(DType dtype) {
  return dtype == DType::f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

struct ConvDescriptors {
  TensorDescriptor x, y;
  FilterDescriptor w;
  ConvolutionDescriptor conv;

  explicit ConvDescriptors(const ConvProblem& p, const char* op) {
    const cudnnDataType_t type = core::cuda::cudnn_data_type(p.dtype, op);
    x.set_nhwc(type, p.n, p.h, p.w, p.c);
    y.set_nhwc(type, p.n, p.oh, p.ow, p.o);
    w.set_ohwi(type, p.o, p.kh, p.kw, p.c);
    conv.set_2d(p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h, p.dil_w);
    conv.set_math_type(math_type_for(p.dtype));
  }
};

ConvAlgoKey key_of(ConvKind kind, const ConvProblem& p) {
  ConvAlgoKey k;
  k.kind = kind;
  k.dtype = static_cast<int>(p.dtype);
  k.x = {p.n, p.h, p.w, p.c};
  k.w = {p.o, p.kh, p.kw, p.c};
  k.y = {p.n, p.oh, p.ow, p.o};
  k.geometry = {p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dil_h, p.dil_w};
  k.deterministic = core::deterministic_algorithms();
  return k;
}

size_t bytes_of(const ConvProblem& p, char which) {
  const size_t elem = dtype_size(p.dtype);
  switch (which) {
    case 'x':
      return elem * p.n * p.h * p.w * p.c;
    case 'y':
      return elem * p.n * p.oh * p.ow * p.o;
    default:
      return elem * p.o * p.kh * p.kw * p.c;
  }
}

// Scratch for cudnnFind: as much of `wanted` as can be had (halving on OOM).
Tensor find_workspace(Context& ctx, size_t wanted) {
  // cuDNN 9's workspace queries do not cover every engine cudnnFind tries: with too
  // little scratch, tensor-core engines fail (status 4002, measured on H100/H200)
  // and only slow fallback kernels remain. Offer a generous floor.
  wanted = std::max(wanted, kMinFindWorkspace);
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
    wanted = std::min(wanted, free_bytes / 2);
  else
    (void)cudaGetLastError();
  wanted = std::min(wanted, kMaxFindWorkspace);
  while (wanted > 0) {
    try {
      return new_tensor(ctx, Shape{static_cast<int64_t>(wanted)}, DType::u8);
    } catch (const OutOfMemoryError&) {
      wanted /= 2;
    }
  }
  return Tensor();
}

template <typename Perf>
ConvAlgoChoice pick(const std::vector<Perf>& perf, int returned, const char* op,
                    const ConvProblem& p, bool deterministic) {
  // COHORT_CUDNN_VERBOSE=1 prints what cudnnFind measured for every new problem.
  if (core::cuda::cudnn_verbose()) {
    std::string line = fmt::format("cudnn find {} {}:", op, p.str());
    for (int i = 0; i < std::min(returned, 4); ++i)
      line += fmt::format(" [algo {} status {} {:.3f} ms {} B math {}{}]",
                          static_cast<int>(perf[i].algo), static_cast<int>(perf[i].status),
                          perf[i].time, perf[i].memory, static_cast<int>(perf[i].mathType),
                          perf[i].determinism == CUDNN_DETERMINISTIC ? "" : " non-deterministic");
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  // Fastest first; run.deterministic (the cache key's copy of it, so that what is
  // cached under a key was chosen under it) skips algorithms that add with atomics.
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS &&
        (!deterministic || perf[i].determinism == CUDNN_DETERMINISTIC))
      return {static_cast<int>(perf[i].algo), perf[i].memory, perf[i].mathType};
  std::string tried;
  for (int i = 0; i < returned; ++i)
    tried += fmt::format(" algo {} status {}{};", static_cast<int>(perf[i].algo),
                         static_cast<int>(perf[i].status),
                         perf[i].determinism == CUDNN_DETERMINISTIC ? "" : " non-deterministic");
  COHORT_FAIL(fmt::format("{}: cuDNN found no working{} algorithm for {} (tried:{})", op,
                          deterministic ? " deterministic" : "", p.str(), tried));
}

// The cached choice for (kind, problem), benchmarking on first use.
ConvAlgoChoice choose(Context& ctx, ConvKind kind, const ConvProblem& p, ConvDescriptors& d,
                      const void* a, const void* b, const char* op) {
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  const ConvAlgoKey key = key_of(kind, p);
  auto& cache = be.conv_algorithms();
  if (auto it = cache.find(key); it != cache.end()) return it->second;

  cudnnHandle_t handle = be.cudnn();
  int count = 0;
  size_t wanted = 0;
  // Largest workspace any algorithm asks for (unsupported ones return an error).
  auto track = [&](cudnnStatus_t status, size_t size) {
    if (status == CUDNN_STATUS_SUCCESS) wanted = std::max(wanted, size);
  };
  ConvAlgoChoice choice;
  switch (kind) {
    case ConvKind::forward: {
      COHORT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count));
      for (int algo = 0; algo < count; ++algo) {
        size_t size = 0;
        track(cudnnGetConvolutionForwardWorkspaceSize(
                  handle, d.x.get(), d.w.get(), d.conv.get(), d.y.get(),
                  static_cast<cudnnConvolutionFwdAlgo_t>(algo), &size),
              size);
      }
      Tensor ws = find_workspace(ctx, wanted);
      Tensor out = new_tensor(ctx, Shape{static_cast<int64_t>(bytes_of(p, 'y'))}, DType::u8);
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      int returned = 0;
      COHORT_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
          handle, d.x.get(), a, d.w.get(), b, d.conv.get(), d.y.get(), out.raw(), count, &returned,
          perf.data(), ws.defined() ? ws.raw() : nullptr, ws.defined() ? ws.nbytes() : 0));
      choice = pick(perf, returned, op, p, key.deterministic);
      break;
    }
    case ConvKind::backward_data: {
      COHORT_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count));
      for (int algo = 0; algo < count; ++algo) {
        size_t size = 0;
        track(cudnnGetConvolutionBackwardDataWorkspaceSize(
                  handle, d.w.get(), d.y.get(), d.conv.get(), d.x.get(),
                  static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &size),
              size);
      }
      Tensor ws = find_workspace(ctx, wanted);
      Tensor out = new_tensor(ctx, Shape{static_cast<int64_t>(bytes_of(p, 'x'))}, DType::u8);
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(count, 1)));
      int returned = 0;
      // a = w, b = dy
      COHORT_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
          handle, d.w.get(), a, d.y.get(), b, d.conv.get(), d.x.get(), out.raw(), count, &returned,
          perf.data(), ws.defined() ? ws.raw() : nullptr, ws.defined() ? ws.nbytes() : 0));
      choice = pick(perf, returned, op, p, key.deterministic);
      break;
    }
    case ConvKind::backward_filter: {
      COHORT_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count));
      for (int algo = 0; algo < count; ++algo) {
        size_t size = 0;
        track(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                  handle, d.x.get(), d.y.get(), d.conv.get(), d.w.get(),
                  static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), &size),
              size);
      }
      Tensor ws = find_workspace(ctx, wanted);
      Tensor out = new_tensor(ctx, Shape{static_cast<int64_t>(bytes_of(p, 'w'))}, DType::u8);
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(
          static_cast<size_t>(std::max(count, 1)));
      int returned = 0;
      // a = x, b = dy
      COHORT_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
          handle, d.x.get(), a, d.y.get(), b, d.conv.get(), d.w.get(), out.raw(), count, &returned,
          perf.data(), ws.defined() ? ws.raw() : nullptr, ws.defined() ? ws.nbytes() : 0));
      choice = pick(perf, returned, op, p, key.deterministic);
      break;
    }
  }
  cache.emplace(key, choice);
  return choice;
}

void require_conv_operand(const char* op, const char* name, Context& ctx, const Tensor& t,
                          DType dtype) {
  require_on_device(op, name, ctx, t);
  require_float(op, name, t);
  if (t.dtype() != dtype)
    COHORT_FAIL(fmt::format("{}: {} is {} but the convolution runs in {}", op, name, t.str(),
                            dtype_name(dtype)));
}

// y = conv(x, w)   (y freshly allocated and written, beta = 0)
void run_forward(Context& ctx, const char* op, const ConvProblem& p, const Tensor& x,
                 const Tensor& w, Tensor& y) {
  ConvDescriptors d(p, op);
  const ConvAlgoChoice c = choose(ctx, ConvKind::forward, p, d, x.raw(), w.raw(), op);
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  d.conv.set_math_type(c.math_type);
  void* ws = be.workspace(c.workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  COHORT_CUDNN_CHECK(cudnnConvolutionForward(be.cudnn(), &alpha, d.x.get(), x.raw(), d.w.get(),
                                             w.raw(), d.conv.get(),
                                             static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws,
                                             c.workspace_bytes, &beta, d.y.get(), y.raw()));
}

// dx = conv^T(dy, w)   (dx freshly allocated)
void run_backward_data(Context& ctx, const char* op, const ConvProblem& p, const Tensor& w,
                       const Tensor& dy, Tensor& dx) {
  ConvDescriptors d(p, op);
  const ConvAlgoChoice c = choose(ctx, ConvKind::backward_data, p, d, w.raw(), dy.raw(), op);
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  d.conv.set_math_type(c.math_type);
  void* ws = be.workspace(c.workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  COHORT_CUDNN_CHECK(
      cudnnConvolutionBackwardData(be.cudnn(), &alpha, d.w.get(), w.raw(), d.y.get(), dy.raw(),
                                   d.conv.get(), static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo),
                                   ws, c.workspace_bytes, &beta, d.x.get(), dx.raw()));
}

// dw (=|+=) filter gradient of conv(x, .) with upstream dy. Accumulation, a dw of
// another dtype or a misaligned dw go through a fresh buffer and an add kernel, so
// cuDNN only ever overwrites (beta = 0) an aligned buffer of its own dtype.
void run_backward_filter(Context& ctx, const char* op, const ConvProblem& p, const Tensor& x,
                         const Tensor& dy, Tensor& dw, bool accumulate) {
  ConvDescriptors d(p, op);
  const ConvAlgoChoice c = choose(ctx, ConvKind::backward_filter, p, d, x.raw(), dy.raw(), op);
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  d.conv.set_math_type(c.math_type);
  const bool direct = !accumulate && dw.dtype() == p.dtype && is_aligned16(dw);
  Tensor out = direct ? dw : new_tensor(ctx, dw.shape(), p.dtype);
  void* ws = be.workspace(c.workspace_bytes);
  const float alpha = 1.f, beta = 0.f;
  COHORT_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      be.cudnn(), &alpha, d.x.get(), x.raw(), d.y.get(), dy.raw(), d.conv.get(),
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws, c.workspace_bytes, &beta, d.w.get(),
      out.raw()));
  if (!direct) convert_into(ctx, out, dw, accumulate);
}

}  // namespace

Tensor conv2d(Context& ctx, const Tensor& x_in, const Tensor& w_in, const Tensor& bias,
              const ConvGeometry& g) {
  const char* op = "conv2d";
  require_conv_operand(op, "x", ctx, x_in, x_in.dtype());
  require_conv_operand(op, "w", ctx, w_in, x_in.dtype());
  const Shape y_shape = conv2d_output_shape(x_in.shape(), w_in.shape(), g);
  Tensor y = new_tensor(ctx, y_shape, x_in.dtype());
  if (y.numel() == 0) return y;
  const Tensor x = aligned16_input(ctx, x_in), w = aligned16_input(ctx, w_in);
  run_forward(ctx, op, make_problem(op, x.dtype(), x.shape(), w.shape(), y_shape, g), x, w, y);
  if (bias.defined()) add_bias_rows(ctx, y, bias);
  return y;
}

Tensor conv2d_backward_input(Context& ctx, const Tensor& dy_in, const Tensor& w_in,
                             const Shape& x_shape, const ConvGeometry& g) {
  const char* op = "conv2d_backward_input";
  require_conv_operand(op, "dy", ctx, dy_in, dy_in.dtype());
  require_conv_operand(op, "w", ctx, w_in, dy_in.dtype());
  Tensor dx = new_tensor(ctx, x_shape, dy_in.dtype());
  if (dx.numel() == 0) return dx;
  if (dy_in.numel() == 0 || w_in.numel() == 0) {
    dx.zero_(ctx.stream());
    return dx;
  }
  const Tensor dy = aligned16_input(ctx, dy_in), w = aligned16_input(ctx, w_in);
  run_backward_data(ctx, op, make_problem(op, dy.dtype(), x_shape, w.shape(), dy.shape(), g), w, dy,
                    dx);
  return dx;
}

void conv2d_backward_weight(Context& ctx, const Tensor& dy_in, const Tensor& x_in, Tensor& dw,
                            bool accumulate, const ConvGeometry& g) {
  const char* op = "conv2d_backward_weight";
  require_conv_operand(op, "x", ctx, x_in, x_in.dtype());
  require_conv_operand(op, "dy", ctx, dy_in, x_in.dtype());
  require_on_device(op, "dw", ctx, dw);
  require_float(op, "dw", dw);
  if (dw.numel() == 0) return;
  if (dy_in.numel() == 0) {
    if (!accumulate) dw.zero_(ctx.stream());
    return;
  }
  const Tensor dy = aligned16_input(ctx, dy_in), x = aligned16_input(ctx, x_in);
  run_backward_filter(ctx, op, make_problem(op, x.dtype(), x.shape(), dw.shape(), dy.shape(), g), x,
                      dy, dw, accumulate);
}

Tensor conv_transpose2d(Context& ctx, const Tensor& x_in, const Tensor& w_in, const Tensor& bias,
                        const ConvGeometry& g) {
  const char* op = "conv_transpose2d";
  require_conv_operand(op, "x", ctx, x_in, x_in.dtype());
  require_conv_operand(op, "w", ctx, w_in, x_in.dtype());
  const Shape y_shape = conv_transpose2d_output_shape(x_in.shape(), w_in.shape(), g);
  Tensor y = new_tensor(ctx, y_shape, x_in.dtype());
  if (y.numel() == 0) return y;
  if (x_in.numel() == 0) {
    y.zero_(ctx.stream());
  } else {
    const Tensor x = aligned16_input(ctx, x_in), w = aligned16_input(ctx, w_in);
    // The adjoint convolution maps y [N, Ho, Wo, O] to x [N, H, W, I] with filter [I, kh, kw, O].
    run_backward_data(ctx, op, make_problem(op, x.dtype(), y_shape, w.shape(), x.shape(), g), w, x,
                      y);
  }
  if (bias.defined()) add_bias_rows(ctx, y, bias);
  return y;
}

Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy_in, const Tensor& w_in,
                                       const Shape& x_shape, const ConvGeometry& g) {
  const char* op = "conv_transpose2d_backward_input";
  require_conv_operand(op, "dy", ctx, dy_in, dy_in.dtype());
  require_conv_operand(op, "w", ctx, w_in, dy_in.dtype());
  Tensor dx = new_tensor(ctx, x_shape, dy_in.dtype());
  if (dx.numel() == 0) return dx;
  const Tensor dy = aligned16_input(ctx, dy_in), w = aligned16_input(ctx, w_in);
  run_forward(ctx, op, make_problem(op, dy.dtype(), dy.shape(), w.shape(), x_shape, g), dy, w, dx);
  return dx;
}

void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy_in, const Tensor& x_in,
                                      Tensor& dw, bool accumulate, const ConvGeometry& g) {
  const char* op = "conv_transpose2d_backward_weight";
  require_conv_operand(op, "x", ctx, x_in, x_in.dtype());
  require_conv_operand(op, "dy", ctx, dy_in, x_in.dtype());
  require_on_device(op, "dw", ctx, dw);
  require_float(op, "dw", dw);
  if (dw.numel() == 0) return;
  if (x_in.numel() == 0) {
    if (!accumulate) dw.zero_(ctx.stream());
    return;
  }
  const Tensor dy = aligned16_input(ctx, dy_in), x = aligned16_input(ctx, x_in);
  // Convolution input = dy (the conv-transpose output side), its output = x.
  run_backward_filter(ctx, op, make_problem(op, x.dtype(), dy.shape(), dw.shape(), x.shape(), g),
                      dy, x, dw, accumulate);
}

}  // namespace cohort::core::ops::cuda
