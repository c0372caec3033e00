#include "core/ops/cpu/batch_norm_cpu.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/error.hpp"
#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

// Per-channel statistics of the whole batch (every rank's, with a reducer).
struct BatchStats {
  std::vector<double> mean;
  std::vector<double> var;  // biased (population) variance: what normalisation uses
  double count = 0;         // values per channel
};

Tensor f32_vector(Context& ctx, const std::vector<double>& values) {
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::f32, ctx.device(),
                           ctx.stream());
  float* p = t.data<float>();
  for (size_t i = 0; i < values.size(); ++i)
    p[i] = static_cast<float>(values[i]);
  return t;
}

// Sums `values` over the data-parallel ranks through ONE f32 tensor (one
// collective per call); without a reducer this rank's values are the batch's.
void all_reduce(const char* op, Context& ctx, StatsReducer* reducer, std::vector<double>& values) {
  if (reducer == nullptr) return;
  Tensor packed = f32_vector(ctx, values);
  const Shape expected = packed.shape();
  reducer->all_reduce_sum(ctx, packed);
  COHORT_CHECK(
      packed.defined() && packed.shape() == expected && packed.dtype() == DType::f32 &&
          packed.device() == ctx.device(),
      fmt::format("{}: the StatsReducer must return f32{} on {}, got {}", op, expected.str(),
                  ctx.device().str(), packed.defined() ? packed.str() : "an undefined tensor"));
  values = packed.to_vector();
}

// Layout shared with the CUDA backend: [sum(x) per channel, sum(x^2) per channel, count].
template <typename T>
BatchStats batch_stats(const char* op, Context& ctx, const Tensor& x, StatsReducer* reducer) {
  const int64_t channels = x.dim(-1), rows = x.numel() / channels;
  const T* px = x.data<T>();
  std::vector<double> packed(static_cast<size_t>(2 * channels + 1), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const double v = px[r * channels + c];
      packed[c] += v;
      packed[channels + c] += v * v;
    }
  packed[2 * channels] = static_cast<double>(rows);
  all_reduce(op, ctx, reducer, packed);

  BatchStats s;
  s.count = packed[2 * channels];
  // PyTorch refuses this too: the unbiased variance of a single value is 0/0.
  COHORT_CHECK(s.count > 1,
               fmt::format("{}: training needs more than one value per channel, got {} for x {}",
                           op, s.count, x.str()));
  s.mean.resize(static_cast<size_t>(channels));
  s.var.resize(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    s.mean[c] = packed[c] / s.count;
    // Rounding can push E[x^2] - E[x]^2 slightly below zero for constant channels.
    s.var[c] = std::max(packed[channels + c] / s.count - s.mean[c] * s.mean[c], 0.0);
  }
  return s;
}

std::vector<double> inverse_std(const std::vector<double>& var, double eps) {
  std::vector<double> out(var.size());
  for (size_t c = 0; c < var.size(); ++c)
    out[c] = 1.0 / std::sqrt(var[c] + eps);
  return out;
}

// y = relu?((x - mean) * invstd * gamma + beta [+ residual]), computed in double.
template <typename T>
Tensor normalise(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                 const std::vector<double>& mean, const std::vector<double>& invstd,
                 const BatchNormArgs& args) {
  const int64_t channels = x.dim(-1), n = x.numel();
  const float* g = gamma.data<float>();
  const float* b = beta.data<float>();
  std::vector<double> mul(static_cast<size_t>(channels)), add(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    mul[c] = g[c] * invstd[c];
    add[c] = b[c] - mean[c] * mul[c];
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), ctx.device(), ctx.stream());
  const T* px = x.data<T>();
  const T* residual = args.residual.defined() ? args.residual.data<T>() : nullptr;
  T* py = y.data<T>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % channels;
    double v = px[i] * mul[c] + add[c];
    if (residual != nullptr) v += residual[i];
    if (args.relu && v < 0) v = 0;  // `v < 0` keeps NaN visible, as PyTorch's relu does
    py[i] = static_cast<T>(v);
  }
  return y;
}

void write_param_grad(Tensor& dst, const std::vector<double>& values, bool accumulate) {
  if (!dst.defined()) return;  // frozen parameter: nobody wants this gradient
  float* p = dst.data<float>();
  for (size_t c = 0; c < values.size(); ++c)
    p[c] = static_cast<float>(accumulate ? p[c] + values[c] : values[c]);
}

}  // namespace

Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved) {
  return dispatch_float("batch_norm_train", x, [&](auto tag) {
    using T = decltype(tag);
    const BatchStats s = batch_stats<T>("batch_norm_train", ctx, x, args.reducer);
    const std::vector<double> invstd = inverse_std(s.var, args.eps);

    // PyTorch convention: running = (1 - m) * running + m * batch, where the
    // running variance tracks the unbiased estimate n/(n-1) * var.
    const double m = args.momentum, unbias = s.count / (s.count - 1);
    float* rm = running_mean.data<float>();
    float* rv = running_var.data<float>();
    for (size_t c = 0; c < s.mean.size(); ++c) {
      rm[c] = static_cast<float>((1 - m) * rm[c] + m * s.mean[c]);
      rv[c] = static_cast<float>((1 - m) * rv[c] + m * s.var[c] * unbias);
    }

    saved.mean = f32_vector(ctx, s.mean);
    saved.invstd = f32_vector(ctx, invstd);
    if constexpr (std::is_same_v<T, float>)
      return normalise<T>(ctx, x, gamma, beta, saved.mean.to_vector(), saved.invstd.to_vector(),
                          args);
    else
      return normalise<T>(ctx, x, gamma, beta, s.mean, invstd, args);
  });
}

Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved) {
  return dispatch_float("batch_norm_eval", x, [&](auto tag) {
    using T = decltype(tag);
    // Copies, not views: a later training step must not change what backward sees.
    saved.mean = f32_vector(ctx, running_mean.to_vector());
    saved.invstd = f32_vector(ctx, inverse_std(running_var.to_vector(), args.eps));
    return normalise<T>(ctx, x, gamma, beta, saved.mean.to_vector(), saved.invstd.to_vector(),
                        args);
  });
}

BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate) {
  const char* op = "batch_norm_backward";
  return dispatch_float(op, x, [&](auto tag) {
    using T = decltype(tag);
    const int64_t channels = x.dim(-1), n = x.numel();
    std::vector<double> mean, invstd;
    if (std::is_same_v<T, double> && training) {
      // See batch_norm_cpu.hpp: exact statistics for the double gradient checks.
      const BatchStats s = batch_stats<T>(op, ctx, x, args.reducer);
      mean = s.mean;
      invstd = inverse_std(s.var, args.eps);
    } else {
      mean = saved.mean.to_vector();
      invstd = saved.invstd.to_vector();
    }

    const T* pdy = dy.data<T>();
    const T* px = x.data<T>();
    const T* py = args.relu ? y.data<T>() : nullptr;
    // Gradient reaching the affine output: relu passes it where the output is
    // positive (PyTorch's threshold_backward: zero where y <= 0).
    auto masked = [&](int64_t i) -> double { return py != nullptr && py[i] <= 0 ? 0.0 : pdy[i]; };
    auto xhat = [&](int64_t i, int64_t c) { return (px[i] - mean[c]) * invstd[c]; };

    // [sum(dy) per channel, sum(dy * xhat) per channel, count]: the same layout
    // as the forward statistics. The count travels too because BatchNormSaved
    // does not keep the global count and backward must not wait for the host.
    std::vector<double> packed(static_cast<size_t>(2 * channels + 1), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i % channels;
      const double g = masked(i);
      packed[c] += g;
      packed[channels + c] += g * xhat(i, c);
    }
    packed[2 * channels] = static_cast<double>(n / channels);
    // Parameter gradients are this rank's share; data parallelism sums them later.
    write_param_grad(dbeta, {packed.begin(), packed.begin() + channels}, accumulate);
    write_param_grad(dgamma, {packed.begin() + channels, packed.begin() + 2 * channels},
                     accumulate);

    BatchNormGrads grads;
    grads.dx = Tensor::empty(x.shape(), x.dtype(), ctx.device(), ctx.stream());
    T* pdx = grads.dx.data<T>();
    T* pdr = nullptr;
    if (args.residual.defined()) {
      grads.dresidual = Tensor::empty(x.shape(), x.dtype(), ctx.device(), ctx.stream());
      pdr = grads.dresidual.data<T>();
    }
    const float* pg = gamma.data<float>();
    if (training) all_reduce(op, ctx, args.reducer, packed);
    const double count = packed[2 * channels];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = i % channels;
      const double g = masked(i);
      if (pdr != nullptr) pdr[i] = static_cast<T>(g);
      double d = g;
      // Batch statistics depend on x: subtract the mean gradient and its
      // projection on xhat (the standard batch-norm backward).
      if (training) d -= (packed[c] + xhat(i, c) * packed[channels + c]) / count;
      pdx[i] = static_cast<T>(pg[c] * invstd[c] * d);
    }
    return grads;
  });
}

}  // namespace cohort::core::ops::cpu
