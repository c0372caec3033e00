// Dispatchers for concatenating along, and splitting along, the last dim.
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/concat_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

// True when a and b agree in every dim but the last.
bool same_leading_dims(const Shape& a, const Shape& b) {
  if (a.rank() != b.rank()) return false;
  for (int i = 0; i + 1 < a.rank(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

}  // namespace

Tensor concat_channels(Context& ctx, const std::vector<Tensor>& xs) {
  constexpr const char* op = "concat_channels";
  COHORT_CHECK(!xs.empty(), fmt::format("{}: needs at least one tensor", op));
  const Tensor& first = xs.front();
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    COHORT_CHECK(x.defined(), fmt::format("{}: input {} is undefined", op, i));
    COHORT_CHECK(x.rank() >= 1, fmt::format("{}: input {} is a scalar {}", op, i, x.str()));
    COHORT_CHECK(same_leading_dims(x.shape(), first.shape()),
                 fmt::format("{}: input {} has shape {} but input 0 has shape {} (all dims but "
                             "the last must match)",
                             op, i, x.shape().str(), first.shape().str()));
    COHORT_CHECK(x.dtype() == first.dtype(),
                 fmt::format("{}: input {} is {} but input 0 is {}", op, i, x.str(), first.str()));
    check_device(op, ctx, {&x});
  }
  COHORT_RUN_ON_DEVICE(op, ctx, concat_channels(ctx, xs));
}

std::vector<Tensor> split_channels(Context& ctx, const Tensor& dy,
                                   const std::vector<int64_t>& channels) {
  constexpr const char* op = "split_channels";
  check_defined(op, "dy", dy);
  COHORT_CHECK(dy.rank() >= 1, fmt::format("{}: dy is a scalar {}", op, dy.str()));
  int64_t total = 0;
  bool positive = !channels.empty();
  for (int64_t c : channels) {
    positive = positive && c >= 1;
    total += c;
  }
  COHORT_CHECK(positive && total == dy.dim(-1),
               fmt::format("{}: channel counts [{}] must be positive and sum to the last dim of "
                           "dy {}",
                           op, fmt::join(channels, ", "), dy.shape().str()));
  check_device(op, ctx, {&dy});
  COHORT_RUN_ON_DEVICE(op, ctx, split_channels(ctx, dy, channels));
}

}  // namespace cohort::core::ops
