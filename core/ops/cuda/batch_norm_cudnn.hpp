#pragma once
// cuDNN's batch normalisation for training (forward and backward), used by the
// CUDA batch_norm_train / batch_norm_backward in front of the own kernels
// (batch_norm.cu). No CUDA headers here: included from .cu and .cpp files.
//
// Why both exist: cuDNN's persistent NHWC kernels (with batch norm + add + ReLU
// fused into one pass where cuDNN offers it) are the fast path for a rank's own
// statistics; the own kernels remain for what cuDNN cannot express: SyncBN's
// cross-rank statistics, evaluation with a fused add+ReLU, residual without
// ReLU, and any configuration cuDNN declines. COHORT_BATCHNORM=kernels turns
// the cuDNN path off (comparisons, benchmarks).
#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cuda {

// Whether training tries cuDNN first: true unless COHORT_BATCHNORM=kernels (read
// once); tests switch it to compare both paths.
bool cudnn_batch_norm_enabled();
void set_cudnn_batch_norm_enabled(bool enabled);

// How many calls cuDNN has carried out in this process (tests assert which path
// a forward and its backward took; a decline is otherwise silent by design).
struct CudnnBatchNormCounts {
  int64_t forward = 0, forward_fused = 0, backward = 0;
};
CudnnBatchNormCounts cudnn_batch_norm_counts();

// Training forward on cuDNN. Returns an undefined tensor, with nothing changed,
// when cuDNN declines the configuration (remembered per problem); otherwise y,
// with running statistics updated and saved.{mean, invstd, path, reserve} set.
// Callers have validated the arguments; args.reducer must be null.
Tensor cudnn_batch_norm_train(Context& ctx, const Tensor& x, const Tensor& gamma,
                              const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                              const BatchNormArgs& args, BatchNormSaved& saved);

// Training backward for a forward that ran on cuDNN (saved.path != kernels) into
// `result`. False, with dgamma/dbeta untouched, when cuDNN declines: the own
// kernels then take over (same saved statistics, same y).
bool cudnn_batch_norm_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                               const Tensor& gamma, const BatchNormSaved& saved,
                               const BatchNormArgs& args, Tensor& dgamma, Tensor& dbeta,
                               bool accumulate, BatchNormGrads& result);

// Own kernels around cuDNN's plain batch norm (batch_norm.cu):
// y = relu(y [+ residual]) in place (relu false: y += residual).
void batch_norm_epilogue(Context& ctx, Tensor& y, const Tensor& residual, bool relu);

}  // namespace cohort::core::ops::cuda
