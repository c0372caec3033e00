#include "core/ops/cuda/cuda_common.hpp"

#include <fmt/format.h>

namespace cohort::core::ops::cuda {

void fail_dtype(const char* op, const char* name, const Tensor& t, const char* accepted) {
  const char* hint = t.dtype() == DType::f64
                         ? " (f64 is CPU-only, for gradient checks; the CUDA backend refuses it)"
                         : "";
  COHORT_FAIL(fmt::format("{}: {} is {}, but the CUDA backend accepts {} here{}", op, name, t.str(),
                          accepted, hint));
}

void require_float(const char* op, const char* name, const Tensor& t) {
  const DType d = t.dtype();
  if (d != DType::f32 && d != DType::bf16 && d != DType::f16)
    fail_dtype(op, name, t, "f32, bf16 or f16");
}

void require_f32(const char* op, const char* name, const Tensor& t) {
  if (t.dtype() != DType::f32) fail_dtype(op, name, t, "f32 only");
}

void require_on_device(const char* op, const char* name, const Context& ctx, const Tensor& t) {
  COHORT_CHECK(t.defined(), fmt::format("{}: {} is undefined", op, name));
  COHORT_CHECK(t.device() == ctx.device(), fmt::format("{}: {} is {} but the op runs on {}", op,
                                                       name, t.str(), ctx.device().str()));
}

Tensor new_tensor(Context& ctx, const Shape& shape, DType dtype) {
  return Tensor::empty(shape, dtype, ctx.device(), ctx.stream());
}

bool is_aligned16(const Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0;
}

Tensor aligned16_input(Context& ctx, const Tensor& t) {
  if (t.numel() == 0 || is_aligned16(t)) return t;
  Tensor copy = new_tensor(ctx, t.shape(), t.dtype());
  copy.copy_from(t, ctx.stream());
  return copy;
}

}  // namespace cohort::core::ops::cuda
