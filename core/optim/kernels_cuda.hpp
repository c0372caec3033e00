#pragma once
// CUDA implementations of the fused optimizer and mixed-precision kernels in
// core/optim/kernels.hpp, same signatures and semantics (see that header). Only in
// builds with COHORT_WITH_CUDA; the dispatch in kernels.cpp calls these for CUDA
// tensors. Every kernel runs on ctx.stream() and never synchronises it.
#include <vector>

#include "core/optim/kernels.hpp"

namespace cohort::core::optim::cuda {

void sgd_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& momentum,
              const std::vector<UpdateSegment>& segments, const Tensor& lr, const SgdConfig& config,
              const Tensor& applied, const Tensor& skip);

void adamw_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& m, Tensor& v,
                const std::vector<UpdateSegment>& segments, const Tensor& lr,
                const AdamWConfig& config, const Tensor& applied, const Tensor& skip);
void count_applied_step(Context& ctx, Tensor& applied, const Tensor& skip);

void unscale_and_check(Context& ctx, Tensor& grads, const Tensor& inv_scale,
                       Tensor& found_non_finite);

void update_loss_scale(Context& ctx, Tensor& values, Tensor& counters, const LossScaleRule& rule);

Tensor sum_of_squares(Context& ctx, const Tensor& x);

void clip_factor(Context& ctx, const Tensor& sum_squares, double max_norm, Tensor& norm,
                 Tensor& factor);

void scale_by(Context& ctx, Tensor& x, const Tensor& factor);

void cast_into(Context& ctx, Tensor& dst, const Tensor& src);

}  // namespace cohort::core::optim::cuda
