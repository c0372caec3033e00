#pragma once
// CPU multi-task loss balancing (float and double), contract in core/ops/ops.hpp.
#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars);
std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate);

}  // namespace cohort::core::ops::cpu
