#pragma once
// CPU element-wise ops (float and double; cast and fill take every dtype).
// Same contract as core/ops/ops.hpp; the dispatcher (core/ops/elementwise.cpp)
// has validated shapes, dtypes and devices.
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor relu(Context& ctx, const Tensor& x);
Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y);
Tensor add(Context& ctx, const Tensor& a, const Tensor& b);
Tensor mul(Context& ctx, const Tensor& a, const Tensor& b);
Tensor scale(Context& ctx, const Tensor& x, double alpha);
void add_inplace(Context& ctx, Tensor& acc, const Tensor& x);
Tensor cast(Context& ctx, const Tensor& x, DType dtype);
void fill(Context& ctx, Tensor& t, double value);

}  // namespace cohort::core::ops::cpu
