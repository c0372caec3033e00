#pragma once
// CPU weighted loss sums and running loss sums (float and double), contract in
// core/ops/ops.hpp.
#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights);
std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights);
void accumulate_loss_sums(Context& ctx, const std::vector<Tensor>& losses, Tensor& sums);

}  // namespace cohort::core::ops::cpu
