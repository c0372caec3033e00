#pragma once
// Host-side helpers shared by the CUDA op implementations (.cpp and .cu): dtype
// checks with clear messages, output allocation on the context's stream, and the
// launchers that .cpp files (cuDNN/cuBLASLt code) need from the .cu kernels.
// No CUDA headers here, so it can be included anywhere.
#include <cstdint>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops::cuda {

// Throws unless `t` is f32, bf16 or f16 (f64 is CPU-only: gradient checks).
void require_float(const char* op, const char* name, const Tensor& t);
// Throws unless `t` is f32 (BN parameters and statistics, losses, optimizer buffers).
void require_f32(const char* op, const char* name, const Tensor& t);
// Throws unless `t` lives on ctx's CUDA device.
void require_on_device(const char* op, const char* name, const Context& ctx, const Tensor& t);
// A dtype error naming the op, the tensor and what would have been accepted.
[[noreturn]] void fail_dtype(const char* op, const char* name, const Tensor& t,
                             const char* accepted);

// A new tensor on ctx's device, allocated stream-ordered on ctx's stream.
Tensor new_tensor(Context& ctx, const Shape& shape, DType dtype);

// Number of channels (last dim) and rows (all other dims) of an NHWC-like tensor.
inline int64_t channels_of(const Tensor& t) {
  return t.rank() == 0 ? 1 : t.shape().dim(-1);
}
inline int64_t rows_of(const Tensor& t) {
  const int64_t c = channels_of(t);
  return c == 0 ? 0 : t.numel() / c;
}

// Library kernels (cuDNN, cuBLASLt) may use vector loads, and views into flat
// parameter/gradient buffers can start at any element: operands that are not
// 16-byte aligned are copied (stream-ordered) to fresh, aligned memory.
bool is_aligned16(const Tensor& t);
Tensor aligned16_input(Context& ctx, const Tensor& t);

// y[m, c] += bias[c] for y viewed as [rows, C]; bias any float dtype (read as f32).
void add_bias_rows(Context& ctx, Tensor& y, const Tensor& bias);
// dst = src (accumulate: dst += src), element-wise with dtype conversion; same numel.
void convert_into(Context& ctx, const Tensor& src, Tensor& dst, bool accumulate);

}  // namespace cohort::core::ops::cuda
