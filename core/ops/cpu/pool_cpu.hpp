#pragma once
// CPU pooling (f32, f64) over NHWC tensors: channels are innermost, so every
// kernel walks a window pixel by pixel and updates C contiguous values at once.
// Called by core/ops/pool.cpp after argument checks; each function checks itself
// that its tensors share one dtype, f32 or f64.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor max_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
// y (the forward output) is only checked: the argmax is recomputed from x.
Tensor max_pool2d_backward(Context& ctx, const Tensor& dy, const Tensor& x, const Tensor& y,
                           const PoolGeometry& g);
Tensor avg_pool2d(Context& ctx, const Tensor& x, const PoolGeometry& g);
Tensor avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape,
                           const PoolGeometry& g);
Tensor adaptive_avg_pool2d(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor adaptive_avg_pool2d_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);

}  // namespace cohort::core::ops::cpu
