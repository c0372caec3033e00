#pragma once
// CPU losses (float and double), same contract as core/ops/ops.hpp. The
// dispatcher (core/ops/loss.cpp) has validated shapes, dtypes and devices; label
// values are checked here because only the implementation reads them.
// The scalar loss is f32 for f32 input and f64 for f64 input (the double
// gradient checks need the loss in double).
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index);
Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index);
Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta);
Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta);
Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index);
Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel);
Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor);

}  // namespace cohort::core::ops::cpu
