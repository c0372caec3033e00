// Dispatchers for the evaluation metrics: validate, then accumulate on the
// context's device. Every check happens here, before any kernel runs, because
// the CUDA kernels cannot report a bad argument.
#include <fmt/format.h>

#include <limits>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/metrics_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

// The shape without its trailing size-1 dims: a depth head's [N,H,W,1] output
// then matches an [N,H,W] target.
Shape without_trailing_ones(const Shape& s) {
  auto dims = s.dims();
  while (!dims.empty() && dims.back() == 1)
    dims = dims.first(dims.size() - 1);
  return Shape(dims);
}

bool overlap(const Tensor& a, const Tensor& b) {
  if (!a.shares_storage_with(b)) return false;
  return a.byte_offset() < b.byte_offset() + b.nbytes() &&
         b.byte_offset() < a.byte_offset() + a.nbytes();
}

void check_dtype_is(const char* op, const char* name, const Tensor& t, DType dtype) {
  check_defined(op, name, t);
  COHORT_CHECK(t.dtype() == dtype,
               fmt::format("{}: {} must be {}, got {}", op, name, dtype_name(dtype), t.str()));
}

void check_confusion(const Context& ctx, const Tensor& predicted, const Tensor& truth,
                     const Tensor& confusion, const Tensor& out_of_range) {
  const char* op = "accumulate_confusion";
  check_dtype_is(op, "predicted", predicted, DType::i32);
  check_defined(op, "truth", truth);
  COHORT_CHECK(truth.dtype() == DType::u8 || truth.dtype() == DType::i32,
               fmt::format("{}: truth must be u8 or i32, got {} (predicted {})", op, truth.str(),
                           predicted.str()));
  check_same_shape(op, "predicted", predicted, "truth", truth);
  check_dtype_is(op, "confusion", confusion, DType::i64);
  // K beyond i32 could never match an i32 prediction, and K*K would not fit anyway.
  COHORT_CHECK(confusion.rank() == 2 && confusion.dim(0) == confusion.dim(1) &&
                   confusion.dim(0) > 0 && confusion.dim(0) <= std::numeric_limits<int32_t>::max(),
               fmt::format("{}: confusion must be i64 [K, K] with K > 0, got {} (predicted {})", op,
                           confusion.str(), predicted.str()));
  check_dtype_is(op, "out_of_range", out_of_range, DType::i64);
  COHORT_CHECK(out_of_range.shape() == Shape{1},
               fmt::format("{}: out_of_range must be i64 [1], got {}", op, out_of_range.str()));
  // Views of one buffer (read back in one copy) are fine as long as they are disjoint.
  COHORT_CHECK(!overlap(confusion, out_of_range),
               fmt::format("{}: confusion {} and out_of_range {} overlap in memory", op,
                           confusion.str(), out_of_range.str()));
  check_device(op, ctx, {&predicted, &truth, &confusion, &out_of_range});
}

void check_depth(const Context& ctx, const Tensor& predicted, const Tensor& target,
                 const Tensor& valid, const Tensor& sums) {
  const char* op = "accumulate_depth_errors";
  check_defined(op, "predicted", predicted);
  check_floating(op, "predicted", predicted);
  check_dtype_is(op, "target", target, DType::f32);
  check_dtype_is(op, "valid", valid, DType::u8);
  const Shape p = without_trailing_ones(predicted.shape());
  COHORT_CHECK(
      p == without_trailing_ones(target.shape()) && p == without_trailing_ones(valid.shape()),
      fmt::format("{}: predicted {}, target {} and valid {} must have the same shape "
                  "(up to trailing 1s)",
                  op, predicted.str(), target.str(), valid.str()));
  check_dtype_is(op, "sums", sums, DType::f64);
  COHORT_CHECK(sums.shape() == Shape{3},
               fmt::format("{}: sums must be f64 [3] (abs-rel sum, squared-error sum, count), "
                           "got {}",
                           op, sums.str()));
  check_device(op, ctx, {&predicted, &target, &valid, &sums});
}

}  // namespace

void accumulate_confusion(Context& ctx, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range) {
  check_confusion(ctx, predicted, truth, confusion, out_of_range);
  COHORT_RUN_ON_DEVICE(
      "accumulate_confusion", ctx,
      accumulate_confusion(ctx, predicted, truth, ignore_index, confusion, out_of_range));
}

void accumulate_depth_errors(Context& ctx, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums) {
  check_depth(ctx, predicted, target, valid, sums);
  COHORT_RUN_ON_DEVICE("accumulate_depth_errors", ctx,
                       accumulate_depth_errors(ctx, predicted, target, valid, sums));
}

}  // namespace cohort::core::ops
