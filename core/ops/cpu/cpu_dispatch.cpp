#include "core/ops/cpu/cpu_dispatch.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace cohort::core::ops::cpu {

void fail_unsupported_dtype(const char* op, const Tensor& t) {
  COHORT_FAIL(fmt::format("{}: the CPU backend supports f32 and f64 tensors, got {}", op, t.str()));
}

void check_cpu_float(const char* op,
                     std::initializer_list<std::pair<const char*, const Tensor*>> named_tensors) {
  const char* first_name = nullptr;
  const Tensor* first = nullptr;
  for (const auto& [name, t] : named_tensors) {
    if (t == nullptr || !t->defined()) continue;
    if (first == nullptr) {
      if (t->dtype() != DType::f32 && t->dtype() != DType::f64) fail_unsupported_dtype(op, *t);
      first_name = name;
      first = t;
      continue;
    }
    COHORT_CHECK(t->dtype() == first->dtype(),
                 fmt::format("{}: {} is {} but {} is {}; the CPU backend needs one dtype", op,
                             first_name, first->str(), name, t->str()));
  }
}

}  // namespace cohort::core::ops::cpu
