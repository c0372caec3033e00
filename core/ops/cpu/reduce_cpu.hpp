#pragma once
// CPU reductions (float and double), same contract as core/ops/ops.hpp. Sums
// accumulate in double; the 1-element result is f32 for f32 input, f64 for f64.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor sum(Context& ctx, const Tensor& x);
Tensor mean(Context& ctx, const Tensor& x);
Tensor sum_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
Tensor mean_backward(Context& ctx, const Tensor& dloss, const Shape& x_shape, DType dtype);
// NaN counts as the largest value (as torch.argmax); ties go to the first index.
Tensor argmax_channels(Context& ctx, const Tensor& x);

}  // namespace cohort::core::ops::cpu
