#include "core/ops/checks.hpp"

#include <fmt/format.h>

#include "core/context.hpp"

namespace cohort::core::ops {

void check_same_shape(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b) {
  COHORT_CHECK(a.shape() == b.shape(),
               fmt::format("{}: {} has shape {} but {} has shape {}", op, a_name, a.shape().str(),
                           b_name, b.shape().str()));
}

void check_device(const char* op, const Context& ctx,
                  std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t == nullptr || !t->defined()) continue;
    COHORT_CHECK(t->device() == ctx.device(),
                 fmt::format("{}: tensor {} is on {} but the op runs on {}", op, t->str(),
                             t->device().str(), ctx.device().str()));
  }
}

void check_defined(const char* op, const char* name, const Tensor& t) {
  COHORT_CHECK(t.defined(), fmt::format("{}: {} is undefined", op, name));
}

void check_float_input(const char* op, const Context& ctx, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  check_floating(op, name, t);
  check_device(op, ctx, {&t});
}

void check_rank(const char* op, const char* name, const Tensor& t, int rank) {
  check_defined(op, name, t);
  COHORT_CHECK(t.rank() == rank, fmt::format("{}: {} must have {} dims, got shape {}", op, name,
                                             rank, t.shape().str()));
}

void check_floating(const char* op, const char* name, const Tensor& t) {
  COHORT_CHECK(is_floating(t.dtype()),
               fmt::format("{}: {} must be floating point, got {}", op, name, t.str()));
}

void check_same_dtype(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b) {
  COHORT_CHECK(a.dtype() == b.dtype(),
               fmt::format("{}: {} is {} but {} is {}", op, a_name, a.str(), b_name, b.str()));
}

void check_shape_is(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  check_defined(op, name, t);
  COHORT_CHECK(t.shape() == expected, fmt::format("{}: {} must have shape {}, got {}", op, name,
                                                  expected.str(), t.shape().str()));
}

void check_resample_sizes(const char* op, const Shape& x, int64_t out_h, int64_t out_w) {
  COHORT_CHECK(x[1] >= 1 && x[2] >= 1 && out_h >= 1 && out_w >= 1,
               fmt::format("{}: input and output sizes must be positive, got x {} and output "
                           "{}x{}",
                           op, x.str(), out_h, out_w));
}

void check_same_batch_and_channels(const char* op, const Tensor& dy, const Shape& x_shape) {
  COHORT_CHECK(dy.dim(0) == x_shape[0] && dy.dim(3) == x_shape[3],
               fmt::format("{}: dy {} does not match x {} (need the same N and C)", op,
                           dy.shape().str(), x_shape.str()));
}

void fail_no_cuda(const char* op, const Context& ctx) {
  COHORT_FAIL(
      fmt::format("{}: context is on {} but this build has no CUDA backend "
                  "(configure with -DCOHORT_WITH_CUDA=ON)",
                  op, ctx.device().str()));
}

}  // namespace cohort::core::ops
