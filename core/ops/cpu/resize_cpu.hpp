#pragma once
// CPU bilinear resize (f32, f64), align_corners=false as PyTorch. Called by
// core/ops/resize.cpp after argument checks; each function checks its dtype.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor resize_bilinear(Context& ctx, const Tensor& x, int out_h, int out_w);
Tensor resize_bilinear_backward(Context& ctx, const Tensor& dy, const Shape& x_shape);

}  // namespace cohort::core::ops::cpu
