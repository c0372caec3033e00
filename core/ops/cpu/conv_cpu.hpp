#pragma once
// CPU convolution (f32, f64): im2col + BLAS GEMM over NHWC tensors. The
// dispatchers in core/ops/conv.cpp validate arguments before calling these;
// each function checks itself that its tensors share one dtype, f32 or f64.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor conv2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
              const ConvGeometry& g);
Tensor conv2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                             const ConvGeometry& g);
void conv2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                            bool accumulate, const ConvGeometry& g);
void bias_backward(Context& ctx, const Tensor& dy, Tensor& db, bool accumulate);

Tensor conv_transpose2d(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& bias,
                        const ConvGeometry& g);
Tensor conv_transpose2d_backward_input(Context& ctx, const Tensor& dy, const Tensor& w,
                                       const Shape& x_shape, const ConvGeometry& g);
void conv_transpose2d_backward_weight(Context& ctx, const Tensor& dy, const Tensor& x, Tensor& dw,
                                      bool accumulate, const ConvGeometry& g);

}  // namespace cohort::core::ops::cpu
