#pragma once
// Device-side helpers for the CUDA kernels: f32 load/store of the 16-bit types,
// dtype dispatch for host launch code, launch sizing, and deterministic block
// reductions. Included only by .cu files (no fmt here).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/cuda/check.hpp"
#include "core/ops/cuda/cuda_common.hpp"

namespace cohort::core::ops::cuda {

// ---- element conversion through f32 -------------------------------------------------
__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_f32(int32_t v) {
  return static_cast<float>(v);
}
__device__ __forceinline__ float to_f32(int64_t v) {
  return static_cast<float>(v);
}
__device__ __forceinline__ float to_f32(uint8_t v) {
  return static_cast<float>(v);
}

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// ---- dtype dispatch (host) -------------------------------------------------------------
template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the storage type of `t` (float, __half, __nv_bfloat16);
// any other dtype is an error naming the op and the tensor.
template <typename F>
void dispatch_float(const char* op, const char* name, const Tensor& t, F&& f) {
  switch (t.dtype()) {
    case DType::f32:
      f(TypeTag<float>{});
      return;
    case DType::f16:
      f(TypeTag<__half>{});
      return;
    case DType::bf16:
      f(TypeTag<__nv_bfloat16>{});
      return;
    default:
      fail_dtype(op, name, t, "f32, bf16 or f16");
  }
}

// ---- launch sizing ---------------------------------------------------------------------
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (n > 0).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65535LL * 8));
}

// ---- reductions ------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid
// in thread 0. `shared` holds 32 T. Deterministic for a fixed launch shape.
template <typename T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? shared[threadIdx.x] : T(0);
  if (warp == 0) v = warp_sum(v);
  return v;
}

}  // namespace cohort::core::ops::cuda
