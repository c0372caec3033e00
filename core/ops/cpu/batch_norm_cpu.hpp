#pragma once
// CPU batch normalisation (float and double), same contract as core/ops/ops.hpp.
// The dispatcher (core/ops/batch_norm.cpp) has validated shapes, dtypes and devices.
//
// Precision: statistics are accumulated in double. For f32 input the forward
// normalises with exactly the f32 values stored in `saved`, so backward (which
// reads `saved`) differentiates the function that was computed. For f64 input
// (gradient checks) the training forward normalises with the double statistics
// and the training backward recomputes them in double from x (calling the
// reducer again when there is one) instead of trusting the f32-rounded `saved`.
// Evaluation mode always normalises with the f32 `saved` values: they do not
// depend on x, so the double gradient stays exact.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        Tensor& running_mean, Tensor& running_var, const BatchNormArgs& args,
                        BatchNormSaved& saved);
Tensor batch_norm_eval(Context& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                       const Tensor& running_mean, const Tensor& running_var,
                       const BatchNormArgs& args, BatchNormSaved& saved);
BatchNormGrads batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                                   const Tensor& gamma, const BatchNormSaved& saved,
                                   const BatchNormArgs& args, bool training, Tensor& dgamma,
                                   Tensor& dbeta, bool accumulate);

}  // namespace cohort::core::ops::cpu
