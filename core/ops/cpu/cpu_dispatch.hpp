#pragma once
// Helpers shared by the op dispatchers and the CPU implementations of the
// convolution, linear, pooling, resize and concat ops.
#include <initializer_list>
#include <utility>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cpu {

// Throws "<op>: the CPU backend supports f32 and f64, got <tensor>".
[[noreturn]] void fail_unsupported_dtype(const char* op, const Tensor& t);
// Throws "<op>: <tensor> is on CUDA but this build has no CUDA backend".
[[noreturn]] void fail_no_cuda(const char* op, const Tensor& t);

// The CPU kernels are written for one element type per call: every defined
// tensor must share the dtype of the first, which must be f32 or f64.
void check_cpu_float(const char* op,
                     std::initializer_list<std::pair<const char*, const Tensor*>> named_tensors);

// Calls f(float{}) or f(double{}) according to t's dtype.
template <typename F>
decltype(auto) dispatch_float(const char* op, const Tensor& t, F&& f) {
  switch (t.dtype()) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    default:
      fail_unsupported_dtype(op, t);
  }
}

}  // namespace cohort::core::ops::cpu
