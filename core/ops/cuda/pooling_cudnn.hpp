#pragma once
// cuDNN pooling (NHWC) for max/average forward and average backward, tried
// before the own kernels in pooling.cu. No CUDA headers: included from .cu files.
//
// Max-pool backward stays on the own kernels: PyTorch (and the CPU op) send each
// window's gradient to its first maximum, and after a ReLU many windows tie at
// zero; cuDNN's choice among tied maxima is not specified. COHORT_POOLING=kernels
// turns cuDNN pooling off (comparisons, benchmarks).
#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cuda {

// Whether pooling tries cuDNN first: true unless COHORT_POOLING=kernels (read
// once); tests switch it to compare both paths.
bool cudnn_pooling_enabled();
void set_cudnn_pooling_enabled(bool enabled);

// How many calls cuDNN has carried out in this process (tests assert the path).
struct CudnnPoolingCounts {
  int64_t forward = 0, avg_backward = 0;
};
CudnnPoolingCounts cudnn_pooling_counts();

// y = pool(x) on cuDNN, or an undefined tensor when cuDNN declines (remembered
// per problem). x is NHWC and validated by the caller; y_shape its pooled shape.
Tensor cudnn_pool_forward(Context& ctx, const Tensor& x, const PoolGeometry& g, bool max,
                          const Shape& y_shape);
// dx of average pooling on cuDNN, or an undefined tensor when cuDNN declines.
Tensor cudnn_avg_pool_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                               const PoolGeometry& g);

}  // namespace cohort::core::ops::cuda
