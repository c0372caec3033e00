// CPU implementations of the fused optimizer kernels, and dispatch to CUDA.
#include "core/optim/kernels.hpp"

#include <fmt/format.h>

#include <cmath>

#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/optim/kernels_cuda.hpp"
#endif

namespace cohort::core::optim {
namespace {

void check_flat_f32(const char* op, const char* name, const Tensor& t, int64_t numel) {
  COHORT_CHECK(t.defined() && t.dtype() == DType::f32 && t.numel() == numel,
               fmt::format("{}: {} must be f32 with {} elements, got {}", op, name, numel,
                           t.defined() ? t.str() : std::string("undefined")));
}

void check_segments(const char* op, const std::vector<UpdateSegment>& segments, int64_t numel) {
  for (const UpdateSegment& s : segments)
    COHORT_CHECK(s.offset >= 0 && s.count >= 0 && s.offset + s.count <= numel,
                 fmt::format("{}: segment [{}, {}) outside the {}-element buffer", op, s.offset,
                             s.offset + s.count, numel));
}

bool skipped(const Tensor& skip) {
  return skip.defined() && skip.data<float>()[0] != 0.0f;
}

void check_applied(const char* op, const Tensor& applied, const Tensor& params) {
  COHORT_CHECK(applied.defined() && applied.dtype() == DType::i64 && applied.numel() == 1 &&
                   applied.device() == params.device(),
               fmt::format("{}: the applied-step count must be i64 with 1 element on {}, got {}",
                           op, params.device().str(),
                           applied.defined() ? applied.str() : std::string("undefined")));
}

// The base learning rate: f32 [1] on the parameters' device.
void check_lr(const char* op, const Tensor& lr, const Tensor& params) {
  COHORT_CHECK(
      lr.defined() && lr.dtype() == DType::f32 && lr.numel() == 1 && lr.device() == params.device(),
      fmt::format("{}: the learning rate must be f32 with 1 element on {}, got {}", op,
                  params.device().str(), lr.defined() ? lr.str() : std::string("undefined")));
}

}  // namespace

void sgd_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& momentum,
              const std::vector<UpdateSegment>& segments, const Tensor& lr, const SgdConfig& c,
              const Tensor& applied, const Tensor& skip) {
  const int64_t n = params.numel();
  check_flat_f32("sgd_step", "params", params, n);
  check_flat_f32("sgd_step", "grads", grads, n);
  if (c.momentum != 0) check_flat_f32("sgd_step", "momentum", momentum, n);
  check_segments("sgd_step", segments, n);
  check_applied("sgd_step", applied, params);
  check_lr("sgd_step", lr, params);
#ifdef COHORT_WITH_CUDA
  if (params.device().is_cuda())
    return cuda::sgd_step(ctx, params, grads, momentum, segments, lr, c, applied, skip);
#endif
  if (skipped(skip)) return;
  const float base_lr = lr.data<float>()[0];
  const bool first_step = applied.data<int64_t>()[0] == 0;
  float* p = params.data<float>();
  const float* g = grads.data<float>();
  float* buf = c.momentum != 0 ? momentum.data<float>() : nullptr;
  for (const UpdateSegment& s : segments) {
    const float step_lr = base_lr * s.lr_scale;
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      float d = g[i] + s.weight_decay * p[i];
      if (buf) {
        buf[i] = first_step ? d : c.momentum * buf[i] + (1.0f - c.dampening) * d;
        d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
      }
      p[i] -= step_lr * d;
    }
  }
}

void adamw_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& m, Tensor& v,
                const std::vector<UpdateSegment>& segments, const Tensor& lr, const AdamWConfig& c,
                const Tensor& applied, const Tensor& skip) {
  const int64_t n = params.numel();
  check_flat_f32("adamw_step", "params", params, n);
  check_flat_f32("adamw_step", "grads", grads, n);
  check_flat_f32("adamw_step", "exp_avg", m, n);
  check_flat_f32("adamw_step", "exp_avg_sq", v, n);
  check_segments("adamw_step", segments, n);
  check_applied("adamw_step", applied, params);
  check_lr("adamw_step", lr, params);
#ifdef COHORT_WITH_CUDA
  if (params.device().is_cuda())
    return cuda::adamw_step(ctx, params, grads, m, v, segments, lr, c, applied, skip);
#endif
  if (skipped(skip)) return;
  const float base_lr = lr.data<float>()[0];
  const int64_t step = applied.data<int64_t>()[0] + 1;
  float* p = params.data<float>();
  const float* g = grads.data<float>();
  float* mp = m.data<float>();
  float* vp = v.data<float>();
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(step));
  const float step_size_scale = static_cast<float>(1.0 / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  for (const UpdateSegment& s : segments) {
    const float step_lr = base_lr * s.lr_scale;
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      p[i] *= 1.0f - step_lr * s.weight_decay;
      mp[i] = c.beta1 * mp[i] + (1.0f - c.beta1) * g[i];
      vp[i] = c.beta2 * vp[i] + (1.0f - c.beta2) * g[i] * g[i];
      const float denom = std::sqrt(vp[i]) / bc2_sqrt + c.eps;
      p[i] -= step_lr * step_size_scale * mp[i] / denom;
    }
  }
}

void count_applied_step(Context& ctx, Tensor& applied, const Tensor& skip) {
  COHORT_CHECK(applied.defined() && applied.dtype() == DType::i64 && applied.numel() == 1,
               fmt::format("count_applied_step: the count must be i64 with 1 element, got {}",
                           applied.defined() ? applied.str() : std::string("undefined")));
#ifdef COHORT_WITH_CUDA
  if (applied.device().is_cuda()) return cuda::count_applied_step(ctx, applied, skip);
#endif
  if (!skipped(skip)) applied.data<int64_t>()[0] += 1;
}

void unscale_and_check(Context& ctx, Tensor& grads, const Tensor& inv_scale,
                       Tensor& found_non_finite) {
  check_flat_f32("unscale_and_check", "inv_scale", inv_scale, 1);
  check_flat_f32("unscale_and_check", "found_non_finite", found_non_finite, 1);
  COHORT_CHECK(grads.dtype() == DType::f32,
               fmt::format("unscale_and_check: grads must be f32, got {}", grads.str()));
#ifdef COHORT_WITH_CUDA
  if (grads.device().is_cuda())
    return cuda::unscale_and_check(ctx, grads, inv_scale, found_non_finite);
#endif
  float* g = grads.data<float>();
  const float s = inv_scale.data<float>()[0];
  bool bad = false;
  for (int64_t i = 0; i < grads.numel(); ++i) {
    bad = bad || !std::isfinite(g[i]);
    g[i] *= s;
  }
  if (bad) found_non_finite.data<float>()[0] = 1.0f;
}

namespace {
// The CPU twin of kernels_cuda.cu's loss_scale_kernel.
void apply_loss_scale_rule(float* values, int64_t* counters, const LossScaleRule& rule) {
  const bool overflow = values[2] != 0.0f;
  double scale = values[0];
  if (overflow) {
    scale *= rule.backoff_factor;
    counters[0] = 0;
    counters[1] += 1;
  } else if (++counters[0] >= rule.growth_interval) {
    scale *= rule.growth_factor;
    counters[0] = 0;
  }
  values[0] = static_cast<float>(scale);
  values[1] = static_cast<float>(1.0 / scale);
  values[3] = overflow ? 1.0f : 0.0f;
  values[2] = 0.0f;
}
}  // namespace

void update_loss_scale(Context& ctx, Tensor& values, Tensor& counters, const LossScaleRule& rule) {
  check_flat_f32("update_loss_scale", "values", values, 4);
  COHORT_CHECK(counters.dtype() == DType::i64 && counters.numel() == 2 &&
                   counters.device() == values.device(),
               fmt::format("update_loss_scale: counters must be i64[2] on {}, got {}",
                           values.device().str(), counters.str()));
#ifdef COHORT_WITH_CUDA
  if (values.device().is_cuda()) return cuda::update_loss_scale(ctx, values, counters, rule);
#endif
  apply_loss_scale_rule(values.data<float>(), counters.data<int64_t>(), rule);
}

Tensor sum_of_squares(Context& ctx, const Tensor& x) {
  COHORT_CHECK(x.dtype() == DType::f32,
               fmt::format("sum_of_squares: expects f32, got {}", x.str()));
#ifdef COHORT_WITH_CUDA
  if (x.device().is_cuda()) return cuda::sum_of_squares(ctx, x);
#endif
  const float* p = x.data<float>();
  double s = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    s += static_cast<double>(p[i]) * p[i];
  return Tensor::from_vector({s}, Shape{1}, DType::f32);
}

void clip_factor(Context& ctx, const Tensor& sum_squares, double max_norm, Tensor& norm,
                 Tensor& factor) {
  check_flat_f32("clip_factor", "sum_squares", sum_squares, 1);
  check_flat_f32("clip_factor", "norm", norm, 1);
  check_flat_f32("clip_factor", "factor", factor, 1);
  COHORT_CHECK(max_norm > 0, fmt::format("clip_factor: max_norm must be > 0, got {}", max_norm));
#ifdef COHORT_WITH_CUDA
  if (norm.device().is_cuda()) return cuda::clip_factor(ctx, sum_squares, max_norm, norm, factor);
#endif
  const double n = std::sqrt(static_cast<double>(sum_squares.data<float>()[0]));
  norm.data<float>()[0] = static_cast<float>(n);
  factor.data<float>()[0] = n > max_norm ? static_cast<float>(max_norm / (n + 1e-6)) : 1.0f;
}

void scale_by(Context& ctx, Tensor& x, const Tensor& factor) {
  check_flat_f32("scale_by", "factor", factor, 1);
  COHORT_CHECK(x.dtype() == DType::f32, fmt::format("scale_by: expects f32, got {}", x.str()));
#ifdef COHORT_WITH_CUDA
  if (x.device().is_cuda()) return cuda::scale_by(ctx, x, factor);
#endif
  const float f = factor.data<float>()[0];
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i)
    p[i] *= f;
}

Tensor clip_to_max_norm(Context& ctx, Tensor& grads, const Tensor& sum_squares, double max_norm) {
  COHORT_CHECK(max_norm > 0, fmt::format("clip_grad_norm: max_norm must be > 0, got {}", max_norm));
  Tensor norm = Tensor::empty(Shape{1}, DType::f32, ctx.device(), ctx.stream());
  Tensor factor = Tensor::empty(Shape{1}, DType::f32, ctx.device(), ctx.stream());
  clip_factor(ctx, sum_squares, max_norm, norm, factor);
  scale_by(ctx, grads, factor);
  return norm;
}

void cast_into(Context& ctx, Tensor& dst, const Tensor& src) {
  COHORT_CHECK(dst.numel() == src.numel() && dst.device() == src.device(),
               fmt::format("cast_into: {} cannot receive {}", dst.str(), src.str()));
#ifdef COHORT_WITH_CUDA
  if (dst.device().is_cuda()) return cuda::cast_into(ctx, dst, src);
#endif
  Tensor converted = src.cast_cpu(dst.dtype());
  dst.copy_from(converted.view(dst.shape()));
}

}  // namespace cohort::core::optim
