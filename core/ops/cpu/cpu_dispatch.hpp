#pragma once
// The CPU backend computes in float and double only (double exists for the
// gradient checks). dispatch_float picks a kernel's template instantiation from
// a tensor's dtype; check_cpu_float guards kernels that read several tensors
// with one element type. Every rejection names the op and the tensor.
#include <initializer_list>
#include <utility>

#include "core/context.hpp"
#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cpu {

// Throws "<op>: the CPU backend supports f32 and f64 tensors, got <tensor>".
[[noreturn]] void fail_unsupported_dtype(const char* op, const Tensor& t);

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

// A new tensor of out_shape and in's dtype on ctx, filled by kernel(in's data,
// out's data) called with in's element type (f32 or f64).
template <typename Kernel>
Tensor dispatch_into_new(const char* op, Context& ctx, const Tensor& in, const Shape& out_shape,
                         Kernel&& kernel) {
  Tensor out = Tensor::empty(out_shape, in.dtype(), ctx.device(), ctx.stream());
  dispatch_float(op, in, [&](auto tag) {
    using T = decltype(tag);
    kernel(static_cast<const T*>(in.data<T>()), out.data<T>());
  });
  return out;
}

}  // namespace cohort::core::ops::cpu
