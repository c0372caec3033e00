#pragma once
// CPU concat/split along the last dim. Pure data movement, so every dtype works.
// Called by core/ops/concat.cpp after argument checks.
#include <cstdint>
#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::core::ops::cpu {

Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs);
std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels);

}  // namespace cohort::core::ops::cpu
