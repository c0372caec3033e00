#pragma once
// CPU dropout (float and double). The keep mask comes from core/ops/philox.hpp,
// so the CPU and CUDA backends drop the same elements for the same
// (ctx.seed(), offset, element index).
#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset);
Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset);

}  // namespace cohort::core::ops::cpu
