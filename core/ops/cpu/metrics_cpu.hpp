#pragma once
// CPU evaluation metrics, same contract as core/ops/ops.hpp; the dispatcher in
// core/ops/metrics.cpp has validated every argument.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

void accumulate_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range);
// Sums in double; predicted f32 or f64.
void accumulate_depth_errors(Context& ctx, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums);

}  // namespace cohort::core::ops::cpu
