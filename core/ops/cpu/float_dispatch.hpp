#pragma once
// The CPU backend computes in float and double only (double exists for the
// gradient checks); dispatch_float picks the template instantiation from a
// tensor's dtype and rejects every other dtype with an error naming the op.
// No fmt here: the header stays usable from any translation unit.
#include <string>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cpu {

[[noreturn]] inline void reject_cpu_dtype(const char* op, const Tensor& t) {
  COHORT_FAIL(std::string(op) + ": the CPU backend computes in f32 or f64, got " + t.str());
}

// Calls f(float{}) or f(double{}) according to t's dtype.
template <typename F>
auto dispatch_float(const char* op, const Tensor& t, F&& f) {
  if (t.dtype() == DType::f32) return f(float{});
  if (t.dtype() == DType::f64) return f(double{});
  reject_cpu_dtype(op, t);
}

}  // namespace cohort::core::ops::cpu
