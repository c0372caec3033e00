#pragma once
// Fused optimizer and mixed-precision kernels over flat parameter/gradient
// buffers. One call updates every parameter of every group: the segment table
// carries each contiguous run's learning-rate multiplier and weight decay, so
// parameters with different hyper-parameters (no-decay for BN/bias, LR
// multipliers) need no separate launches. CPU implementation in kernels.cpp,
// CUDA in kernels_cuda.cu.
//
// `lr` (1-element f32 on the buffers' device): the base learning rate, read on
// the device; segment s updates with lr[0] * s.lr_scale (in f32). The schedule's
// value changes every step, and a kernel argument would freeze it into a
// captured CUDA graph.
//
// `skip` (optional, 1-element f32 on the buffers' device): when it holds a nonzero
// value the update is a no-op. This is how an fp16 step with overflowing
// gradients is skipped without the host reading the overflow flag.
//
// `applied` (1-element i64 on the buffers' device): how many updates were applied
// before this one. The kernels read it on the device (SGD's first step, AdamW's
// bias correction) and count_applied_step advances it after an update unless
// that was skipped: a skipped fp16 step leaves the optimizer exactly as it was,
// as with PyTorch's GradScaler, which does not call step() on an overflow. No
// host value changes from step to step (what capturing a step as a CUDA graph
// needs).
#include <cstdint>
#include <vector>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::optim {

struct UpdateSegment {
  int64_t offset = 0;  // first element in the flat buffers
  int64_t count = 0;
  float lr_scale = 1;  // multiplies the base learning rate (parameter groups)
  float weight_decay = 0;
};

struct SgdConfig {
  float momentum = 0;
  float dampening = 0;
  bool nesterov = false;
};

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// PyTorch's SGD: g += wd*p; buf = first_step ? g : momentum*buf + (1-dampening)*g;
// g = nesterov ? g + momentum*buf : buf; p -= lr*g. params/grads/momentum are f32;
// first_step: applied[0] == 0.
void sgd_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& momentum,
              const std::vector<UpdateSegment>& segments, const Tensor& lr, const SgdConfig& config,
              const Tensor& applied, const Tensor& skip);

// PyTorch's AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps), step = applied[0] + 1.
void adamw_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& m, Tensor& v,
                const std::vector<UpdateSegment>& segments, const Tensor& lr,
                const AdamWConfig& config, const Tensor& applied, const Tensor& skip);

// applied[0] += 1 unless skip[0] is nonzero (see above).
void count_applied_step(Context& ctx, Tensor& applied, const Tensor& skip);

// grads *= inv_scale[0]; found_non_finite[0] = 1 if any element of grads was inf or
// NaN before scaling (else left as it was). inv_scale, found_non_finite: 1-element f32.
void unscale_and_check(Context& ctx, Tensor& grads, const Tensor& inv_scale,
                       Tensor& found_non_finite);

// Dynamic loss scaling's update, on the buffers' device (no host read):
//   values (f32 [4]): scale, 1/scale, found_non_finite, last_step_skipped
//   counters (i64 [2]): clean steps since the last change, skipped steps
// On found_non_finite: scale *= backoff, tracker = 0, skipped += 1; otherwise the
// tracker counts up and scale *= growth once it reaches growth_interval. Then
// last_step_skipped = found_non_finite and found_non_finite = 0.
struct LossScaleRule {
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};
void update_loss_scale(Context& ctx, Tensor& values, Tensor& counters, const LossScaleRule& rule);

// Sum of squares of an f32 buffer as a 1-element f32 tensor (global grad-norm).
Tensor sum_of_squares(Context& ctx, const Tensor& x);

// Gradient clipping's factor from a sum of squares, on the buffers' device:
// norm[0] = sqrt(sum_squares[0]); factor[0] = max_norm / (norm + 1e-6) when
// norm > max_norm, else 1 (also for a NaN norm: those gradients are left alone).
// All three are 1-element f32.
void clip_factor(Context& ctx, const Tensor& sum_squares, double max_norm, Tensor& norm,
                 Tensor& factor);

// x *= factor[0] (gradient clipping by a device-computed factor).
void scale_by(Context& ctx, Tensor& x, const Tensor& factor);

// Gradient clipping on the device, without a host read: from the global sum of
// squares `sum_squares` (f32 [1]; summed over ranks by the caller where the
// gradients are sharded), scales `grads` by max_norm / (norm + 1e-6) when the
// norm exceeds max_norm (else by 1) and returns the norm (f32 [1]).
Tensor clip_to_max_norm(Context& ctx, Tensor& grads, const Tensor& sum_squares, double max_norm);

// Copies an f32 master buffer into a bf16/f16 compute copy (and back for grads).
void cast_into(Context& ctx, Tensor& dst, const Tensor& src);

}  // namespace cohort::core::optim
