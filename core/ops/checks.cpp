#include "core/ops/checks.hpp"

#include <fmt/format.h>

#include "core/context.hpp"

namespace cohort::core::ops {

void check_same_shape(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b) {
  COHORT_CHECK(a.shape() == b.shape(), fmt::format("{}: {} has shape {} but {} has shape {}", op,
                                                   a_name, a.shape().str(), b_name,
                                                   b.shape().str()));
}

void check_device(const char* op, const Context& ctx, std::initializer_list<const Tensor*> tensors) {
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
  COHORT_CHECK(a.dtype() == b.dtype(), fmt::format("{}: {} is {} but {} is {}", op, a_name,
                                                   a.str(), b_name, b.str()));
}

void check_shape_is(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  check_defined(op, name, t);
  COHORT_CHECK(t.shape() == expected, fmt::format("{}: {} must have shape {}, got {}", op, name,
                                                  expected.str(), t.shape().str()));
}

}  // namespace cohort::core::ops
