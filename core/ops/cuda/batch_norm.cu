// Batch normalisation over N, H, W per channel (NHWC, x viewed as [rows, C]).
// Training on a rank's own statistics goes to cuDNN first (batch_norm_cudnn.cpp:
// persistent NHWC kernels, batch norm + add + ReLU fused where cuDNN offers it);
// these own kernels cover the rest: SyncBN's cross-rank statistics, evaluation
// with a fused add+ReLU in one pass, and whatever cuDNN declines. Both keep the
// CPU's saved-statistics semantics (mean, 1/sqrt(var_biased + eps)).
//
// Reductions are deterministic: each block of 32 channels x 8 row-lanes writes its
// partial sums, and one thread per channel adds the partials in a fixed order (in
// double). The forward statistics are shifted by the channel's first value so the
// variance does not suffer from cancellation when |mean| >> std.
#include <string>

#include "core/ops/cuda/batch_norm_cudnn.hpp"
#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

constexpr int kChanTile = 32;  // channels per block (threadIdx.x)
constexpr int kRowLanes = 8;   // rows in flight per block (threadIdx.y)

struct ReduceGrid {
  dim3 grid, block;
  int row_blocks = 1;
};

ReduceGrid reduce_grid(int64_t rows, int64_t c) {
  ReduceGrid g;
  // Enough row blocks to fill the GPU, few enough that each thread sums a run of
  // rows and the partial buffer stays small.
  const int64_t wanted = (rows + kRowLanes * 16 - 1) / (kRowLanes * 16);
  g.row_blocks = static_cast<int>(std::clamp<int64_t>(wanted, 1, 1024));
  g.grid = dim3(static_cast<unsigned>((c + kChanTile - 1) / kChanTile),
                static_cast<unsigned>(g.row_blocks));
  g.block = dim3(kChanTile, kRowLanes);
  return g;
}

dim3 apply_grid(int64_t rows, int64_t c) {
  return dim3(
      static_cast<unsigned>((c + kChanTile - 1) / kChanTile),
      static_cast<unsigned>(std::clamp<int64_t>((rows + kRowLanes - 1) / kRowLanes, 1, 8192)));
}

// Reduces two per-thread values over threadIdx.y and writes them as this block's
// partials: partial[blockIdx.y][0][ch] and partial[blockIdx.y][1][ch].
__device__ void write_partials(float a, float b, float* partial, int64_t c) {
  __shared__ float sa[kRowLanes][kChanTile];
  __shared__ float sb[kRowLanes][kChanTile];
  sa[threadIdx.y][threadIdx.x] = a;
  sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kChanTile) + threadIdx.x;
  if (threadIdx.y == 0 && ch < c) {
    float ta = 0.f, tb = 0.f;
    for (int i = 0; i < kRowLanes; ++i) {
      ta += sa[i][threadIdx.x];
      tb += sb[i][threadIdx.x];
    }
    float* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * c;
    out[ch] = ta;
    out[c + ch] = tb;
  }
}

// Shifted sums: sum(x - x0) and sum((x - x0)^2) with x0 = the channel's first value.
template <typename T>
__global__ void stats_partial_kernel(const T* __restrict__ x, int64_t rows, int64_t c,
                                     float* __restrict__ partial) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kChanTile) + threadIdx.x;
  float s = 0.f, ss = 0.f;
  if (ch < c) {
    const float shift = to_f32(x[ch]);
    for (int64_t r = blockIdx.y * static_cast<int64_t>(kRowLanes) + threadIdx.y; r < rows;
         r += static_cast<int64_t>(gridDim.y) * kRowLanes) {
      const float d = to_f32(x[r * c + ch]) - shift;
      s += d;
      ss += d * d;
    }
  }
  write_partials(s, ss, partial, c);
}

struct ChannelSums {
  double a = 0, b = 0;
};
__device__ ChannelSums sum_partials(const float* partial, int row_blocks, int64_t c, int64_t ch) {
  ChannelSums s;
  for (int i = 0; i < row_blocks; ++i) {
    s.a += partial[static_cast<int64_t>(i) * 2 * c + ch];
    s.b += partial[static_cast<int64_t>(i) * 2 * c + c + ch];
  }
  return s;
}

__device__ void update_outputs(int64_t ch, double mean, double var, double n, double eps,
                               double momentum, float* running_mean, float* running_var,
                               float* mean_out, float* invstd_out) {
  var = var > 0 ? var : 0;
  mean_out[ch] = static_cast<float>(mean);
  invstd_out[ch] = static_cast<float>(1.0 / sqrt(var + eps));
  // PyTorch: the running variance takes the unbiased batch variance.
  const double unbiased = n > 1 ? var * n / (n - 1) : var;
  running_mean[ch] = static_cast<float>((1 - momentum) * running_mean[ch] + momentum * mean);
  running_var[ch] = static_cast<float>((1 - momentum) * running_var[ch] + momentum * unbiased);
}

// This rank's statistics only: mean/invstd straight from the shifted partials.
template <typename T>
__global__ void stats_finalize_local_kernel(const float* __restrict__ partial, int row_blocks,
                                            const T* __restrict__ x, int64_t rows, int64_t c,
                                            double eps, double momentum, float* running_mean,
                                            float* running_var, float* mean_out,
                                            float* invstd_out) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  const ChannelSums s = sum_partials(partial, row_blocks, c, ch);
  const double n = static_cast<double>(rows);
  const double dm = s.a / n;
  update_outputs(ch, static_cast<double>(to_f32(x[ch])) + dm, s.b / n - dm * dm, n, eps, momentum,
                 running_mean, running_var, mean_out, invstd_out);
}

// SyncBN, step 1: unshifted [sum(C), sumsq(C), count] in f32 for the cross-rank sum.
template <typename T>
__global__ void stats_to_sums_kernel(const float* __restrict__ partial, int row_blocks,
                                     const T* __restrict__ x, int64_t rows, int64_t c,
                                     float* __restrict__ sums) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch == 0) sums[2 * c] = static_cast<float>(rows);
  if (ch >= c) return;
  const ChannelSums s = sum_partials(partial, row_blocks, c, ch);
  const double shift = to_f32(x[ch]), n = static_cast<double>(rows);
  sums[ch] = static_cast<float>(s.a + n * shift);
  sums[c + ch] = static_cast<float>(s.b + 2 * shift * s.a + n * shift * shift);
}

// SyncBN, step 2: statistics from the summed [sum, sumsq, count].
__global__ void stats_from_sums_kernel(const float* __restrict__ sums, int64_t c, double eps,
                                       double momentum, float* running_mean, float* running_var,
                                       float* mean_out, float* invstd_out) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  const double n = sums[2 * c];
  const double mean = sums[ch] / n;
  update_outputs(ch, mean, sums[c + ch] / n - mean * mean, n, eps, momentum, running_mean,
                 running_var, mean_out, invstd_out);
}

__global__ void eval_params_kernel(const float* __restrict__ running_mean,
                                   const float* __restrict__ running_var, int64_t c, double eps,
                                   float* mean_out, float* invstd_out) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  mean_out[ch] = running_mean[ch];
  invstd_out[ch] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[ch]) + eps));
}

// y = relu?((x - mean) * invstd * gamma + beta [+ residual])
template <typename T>
__global__ void normalize_kernel(const T* __restrict__ x, const T* __restrict__ residual,
                                 T* __restrict__ y, int64_t rows, int64_t c,
                                 const float* __restrict__ mean, const float* __restrict__ invstd,
                                 const float* __restrict__ gamma, const float* __restrict__ beta,
                                 bool relu) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kChanTile) + threadIdx.x;
  if (ch >= c) return;
  const float m = mean[ch], s = invstd[ch] * gamma[ch], b = beta[ch];
  for (int64_t r = blockIdx.y * static_cast<int64_t>(kRowLanes) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.y) * kRowLanes) {
    const int64_t i = r * c + ch;
    float v = (to_f32(x[i]) - m) * s + b;
    if (residual) v += to_f32(residual[i]);
    if (relu && v < 0.f) v = 0.f;  // `v < 0` keeps NaN visible, as the CPU and PyTorch
    y[i] = from_f32<T>(v);
  }
}

// The upstream gradient after the fused relu: zero where y <= 0 (PyTorch's
// threshold_backward; a NaN output passes the gradient, as on the CPU).
template <typename T>
__device__ __forceinline__ float effective_grad(const T* dy, const T* y, int64_t i) {
  const float g = to_f32(dy[i]);
  return (y != nullptr && to_f32(y[i]) <= 0.f) ? 0.f : g;
}

// sum(g) and sum(g * (x - mean)) per channel.
template <typename T>
__global__ void backward_partial_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                        const T* __restrict__ y_relu, int64_t rows, int64_t c,
                                        const float* __restrict__ mean,
                                        float* __restrict__ partial) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kChanTile) + threadIdx.x;
  float s = 0.f, sx = 0.f;
  if (ch < c) {
    const float m = mean[ch];
    for (int64_t r = blockIdx.y * static_cast<int64_t>(kRowLanes) + threadIdx.y; r < rows;
         r += static_cast<int64_t>(gridDim.y) * kRowLanes) {
      const int64_t i = r * c + ch;
      const float g = effective_grad(dy, y_relu, i);
      s += g;
      sx += g * (to_f32(x[i]) - m);
    }
  }
  write_partials(s, sx, partial, c);
}

// dbeta = sum(g), dgamma = sum(g * xhat) from this rank's rows (either may be
// null: a frozen parameter). `sums` gets [sum(g), sum(g * xhat), count], the CPU
// backend's layout, for the dx kernel and SyncBN's all-reduce.
__global__ void backward_finalize_kernel(const float* __restrict__ partial, int row_blocks,
                                         int64_t rows, int64_t c, const float* __restrict__ invstd,
                                         float* dgamma, float* dbeta, bool accumulate,
                                         float* __restrict__ sums) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (ch == 0) sums[2 * c] = static_cast<float>(rows);
  if (ch >= c) return;
  const ChannelSums s = sum_partials(partial, row_blocks, c, ch);
  const double sum_g = s.a, sum_g_xhat = s.b * static_cast<double>(invstd[ch]);
  if (dbeta) dbeta[ch] = static_cast<float>(accumulate ? dbeta[ch] + sum_g : sum_g);
  if (dgamma) dgamma[ch] = static_cast<float>(accumulate ? dgamma[ch] + sum_g_xhat : sum_g_xhat);
  sums[ch] = static_cast<float>(sum_g);
  sums[c + ch] = static_cast<float>(sum_g_xhat);
}

// training: dx = gamma*invstd * (g - (sum(g) + xhat * sum(g*xhat)) / count)
// frozen statistics (sums == nullptr): dx = g * gamma * invstd.
template <typename T>
__global__ void backward_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                   const T* __restrict__ y_relu, int64_t rows, int64_t c,
                                   const float* __restrict__ mean, const float* __restrict__ invstd,
                                   const float* __restrict__ gamma, const float* __restrict__ sums,
                                   T* __restrict__ dx, T* __restrict__ dresidual) {
  const int64_t ch = blockIdx.x * static_cast<int64_t>(kChanTile) + threadIdx.x;
  if (ch >= c) return;
  const float m = mean[ch], is = invstd[ch], k = gamma[ch] * is;
  float mean_g = 0.f, coef = 0.f;  // coef * (x - mean) = xhat * mean(g * xhat)
  if (sums != nullptr) {
    const float n = sums[2 * c];
    mean_g = sums[ch] / n;
    coef = is * (sums[c + ch] / n);
  }
  for (int64_t r = blockIdx.y * static_cast<int64_t>(kRowLanes) + threadIdx.y; r < rows;
       r += static_cast<int64_t>(gridDim.y) * kRowLanes) {
    const int64_t i = r * c + ch;
    const float g = effective_grad(dy, y_relu, i);
    if (dresidual) dresidual[i] = from_f32<T>(g);
    const float v = sums != nullptr ? k * (g - mean_g - (to_f32(x[i]) - m) * coef) : g * k;
    dx[i] = from_f32<T>(v);
  }
}

// ---- host side -------------------------------------------------------------------------
unsigned channel_blocks(int64_t c) {
  return static_cast<unsigned>((c + 255) / 256);
}

void check_param(const char* op, const char* name, const Context& ctx, const Tensor& t, int64_t c) {
  require_on_device(op, name, ctx, t);
  require_f32(op, name, t);
  if (t.numel() != c)
    COHORT_FAIL(std::string(op) + ": " + name + " " + t.str() + " must have " + std::to_string(c) +
                " elements (the channels of x)");
}

void check_like_x(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  if (t.shape() != x.shape() || t.dtype() != x.dtype())
    COHORT_FAIL(std::string(op) + ": " + name + " " + t.str() + " must match x " + x.str());
}

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw()) : nullptr;
}

// cuDNN's plain batch norm leaves y = bn(x); this adds the residual and/or ReLU.
template <typename T>
__global__ void epilogue_kernel(T* __restrict__ y, const T* __restrict__ residual, int64_t n,
                                bool relu) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = to_f32(y[i]);
    if (residual != nullptr) v += to_f32(residual[i]);
    if (relu && v < 0.f) v = 0.f;  // NaN stays visible (as the CPU and PyTorch)
    y[i] = from_f32<T>(v);
  }
}

Tensor normalize(Context& ctx, const char* op, const Tensor& x, const Tensor& gamma,
                 const Tensor& beta, const BatchNormArgs& args, const BatchNormSaved& saved) {
  const int64_t c = channels_of(x), rows = rows_of(x);
  if (args.residual.defined()) check_like_x(op, "residual", args.residual, x);
  Tensor y = new_tensor(ctx, x.shape(), x.dtype());
  if (x.numel() == 0) return y;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    normalize_kernel<<<apply_grid(rows, c), dim3(kChanTile, kRowLanes), 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), ptr_or_null<T>(args.residual), static_cast<T*>(y.raw()),
        rows, c, saved.mean.data<float>(), saved.invstd.data<float>(), gamma.data<float>(),
        beta.data<float>(), args.relu);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace

void batch_norm_epilogue(Context& ctx, Tensor& y, const Tensor& residual, bool relu) {
  const char* op = "batch_norm_train (epilogue)";
  if (residual.defined()) check_like_x(op, "residual", residual, y);
  if (y.numel() == 0) return;
  dispatch_float(op, "y", y, [&](auto tag) {
    using T = typename decltype(tag)::type;
    epilogue_kernel<<<grid_for(y.numel()), kThreads, 0, ctx.stream()>>>(
        static_cast<T*>(y.raw()), ptr_or_null<T>(residual), y.numel(), relu);
    COHORT_CUDA_LAUNCH_CHECK();
  });
}

Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved) {
  const char* op = "batch_norm_train";
  require_float(op, "x", x);
  const int64_t c = channels_of(x), rows = rows_of(x);
  check_param(op, "gamma", ctx, gamma, c);
  check_param(op, "beta", ctx, beta, c);
  check_param(op, "running_mean", ctx, running_mean, c);
  check_param(op, "running_var", ctx, running_var, c);
  // As the CPU (and PyTorch): the unbiased variance of one value is 0/0. With a
  // reducer the global count is only known on the device, so only this rank's is checked.
  if (c == 0 || (args.reducer == nullptr ? rows < 2 : rows < 1))
    COHORT_FAIL(std::string(op) + ": training needs more than one value per channel, got x " +
                x.str());
  if (args.reducer == nullptr && cudnn_batch_norm_enabled()) {
    Tensor y = cudnn_batch_norm_train(ctx, x, gamma, beta, running_mean, running_var, args, saved);
    if (y.defined()) return y;
  }

  saved.path = BatchNormPath::kernels;
  saved.reserve = Tensor();
  saved.beta = Tensor();
  saved.mean = new_tensor(ctx, Shape{c}, DType::f32);
  saved.invstd = new_tensor(ctx, Shape{c}, DType::f32);
  const ReduceGrid rg = reduce_grid(rows, c);
  Tensor partial = new_tensor(ctx, Shape{static_cast<int64_t>(rg.row_blocks) * 2 * c}, DType::f32);
  float* mean_out = saved.mean.data<float>();
  float* invstd_out = saved.invstd.data<float>();
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();

  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.raw());
    stats_partial_kernel<<<rg.grid, rg.block, 0, ctx.stream()>>>(xp, rows, c,
                                                                 partial.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
    if (args.reducer == nullptr) {
      stats_finalize_local_kernel<<<channel_blocks(c), 256, 0, ctx.stream()>>>(
          partial.data<float>(), rg.row_blocks, xp, rows, c, args.eps, args.momentum, rm, rv,
          mean_out, invstd_out);
      COHORT_CUDA_LAUNCH_CHECK();
    } else {
      Tensor sums = new_tensor(ctx, Shape{2 * c + 1}, DType::f32);
      stats_to_sums_kernel<<<channel_blocks(c), 256, 0, ctx.stream()>>>(
          partial.data<float>(), rg.row_blocks, xp, rows, c, sums.data<float>());
      COHORT_CUDA_LAUNCH_CHECK();
      args.reducer->all_reduce_sum(ctx, sums);
      if (sums.numel() != 2 * c + 1 || sums.dtype() != DType::f32)
        COHORT_FAIL(std::string(op) + ": the stats reducer returned " + sums.str() +
                    ", expected f32[" + std::to_string(2 * c + 1) + "]");
      stats_from_sums_kernel<<<channel_blocks(c), 256, 0, ctx.stream()>>>(
          sums.data<float>(), c, args.eps, args.momentum, rm, rv, mean_out, invstd_out);
      COHORT_CUDA_LAUNCH_CHECK();
    }
  });
  return normalize(ctx, op, x, gamma, beta, args, saved);
}

Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved) {
  const char* op = "batch_norm_eval";
  require_float(op, "x", x);
  const int64_t c = channels_of(x);
  check_param(op, "gamma", ctx, gamma, c);
  check_param(op, "beta", ctx, beta, c);
  check_param(op, "running_mean", ctx, running_mean, c);
  check_param(op, "running_var", ctx, running_var, c);
  saved.path = BatchNormPath::kernels;
  saved.reserve = Tensor();
  saved.beta = Tensor();
  saved.mean = new_tensor(ctx, Shape{c}, DType::f32);
  saved.invstd = new_tensor(ctx, Shape{c}, DType::f32);
  if (c > 0) {
    eval_params_kernel<<<channel_blocks(c), 256, 0, ctx.stream()>>>(
        running_mean.data<float>(), running_var.data<float>(), c, args.eps,
        saved.mean.data<float>(), saved.invstd.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
  }
  return normalize(ctx, op, x, gamma, beta, args, saved);
}

BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate) {
  const char* op = "batch_norm_backward";
  require_float(op, "x", x);
  check_like_x(op, "dy", dy, x);
  const int64_t c = channels_of(x), rows = rows_of(x);
  check_param(op, "gamma", ctx, gamma, c);
  check_param(op, "saved.mean", ctx, saved.mean, c);
  check_param(op, "saved.invstd", ctx, saved.invstd, c);
  // Undefined dgamma/dbeta: a frozen parameter whose gradient nobody wants.
  if (dgamma.defined()) check_param(op, "dgamma", ctx, dgamma, c);
  if (dbeta.defined()) check_param(op, "dbeta", ctx, dbeta, c);
  if (args.relu) {
    if (!y.defined())
      COHORT_FAIL(std::string(op) + ": the forward output y is needed with relu=true");
    check_like_x(op, "y", y, x);
  }
  if (saved.path != BatchNormPath::kernels) {
    if (!training)
      COHORT_FAIL(std::string(op) + ": a cuDNN training forward needs the training backward (x " +
                  x.str() + ")");
    BatchNormGrads from_cudnn;
    if (cudnn_batch_norm_backward(ctx, dy, x, y, gamma, saved, args, dgamma, dbeta, accumulate,
                                  from_cudnn))
      return from_cudnn;
  }

  BatchNormGrads grads;
  grads.dx = new_tensor(ctx, x.shape(), x.dtype());
  if (args.residual.defined()) {
    check_like_x(op, "residual", args.residual, x);
    grads.dresidual = new_tensor(ctx, x.shape(), x.dtype());
  }
  if (x.numel() == 0) return grads;

  const ReduceGrid rg = reduce_grid(rows, c);
  Tensor partial = new_tensor(ctx, Shape{static_cast<int64_t>(rg.row_blocks) * 2 * c}, DType::f32);
  Tensor sums = new_tensor(ctx, Shape{2 * c + 1}, DType::f32);
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* dyp = static_cast<const T*>(dy.raw());
    const T* xp = static_cast<const T*>(x.raw());
    const T* yp = args.relu ? static_cast<const T*>(y.raw()) : nullptr;
    backward_partial_kernel<<<rg.grid, rg.block, 0, ctx.stream()>>>(
        dyp, xp, yp, rows, c, saved.mean.data<float>(), partial.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
    backward_finalize_kernel<<<channel_blocks(c), 256, 0, ctx.stream()>>>(
        partial.data<float>(), rg.row_blocks, rows, c, saved.invstd.data<float>(),
        dgamma.defined() ? dgamma.data<float>() : nullptr,
        dbeta.defined() ? dbeta.data<float>() : nullptr, accumulate, sums.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
    // SyncBN: dgamma/dbeta stay this rank's (data-parallel gradient averaging sums
    // them later); dx needs the global sums and count.
    if (training && args.reducer != nullptr) {
      args.reducer->all_reduce_sum(ctx, sums);
      if (sums.numel() != 2 * c + 1 || sums.dtype() != DType::f32)
        COHORT_FAIL(std::string(op) + ": the stats reducer returned " + sums.str() +
                    ", expected f32[" + std::to_string(2 * c + 1) + "]");
    }
    backward_dx_kernel<<<apply_grid(rows, c), dim3(kChanTile, kRowLanes), 0, ctx.stream()>>>(
        dyp, xp, yp, rows, c, saved.mean.data<float>(), saved.invstd.data<float>(),
        gamma.data<float>(), training ? sums.data<float>() : nullptr,
        static_cast<T*>(grads.dx.raw()),
        grads.dresidual.defined() ? static_cast<T*>(grads.dresidual.raw()) : nullptr);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return grads;
}

}  // namespace cohort::core::ops::cuda
