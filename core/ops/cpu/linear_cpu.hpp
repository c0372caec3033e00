#pragma once
// CPU linear layer (f32, f64) on BLAS GEMM. Called by core/ops/linear.cpp after
// argument checks; each function checks itself that its tensors share one dtype.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor linear(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor linear_backward_input(Context& ctx, const Tensor& dy, const Tensor& w);
void linear_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate);

}  // namespace cohort::core::ops::cpu
