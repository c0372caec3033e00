#pragma once
// CPU per-task gradient ops (f32; Gram sums and the small solves in double),
// contract in core/ops/ops.hpp, arguments validated by core/ops/task_gradients.cpp.
#include <cstdint>
#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits);
Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights);
void combine_task_gradients(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out);
void gradnorm_update(Context& ctx, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args);

}  // namespace cohort::core::ops::cpu
