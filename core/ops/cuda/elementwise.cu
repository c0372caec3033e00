// Element-wise CUDA ops: relu, add, mul, scale, add_inplace, cast, fill, dropout,
// and the bias/conversion launchers used by the cuDNN/cuBLASLt code. Arithmetic is
// f32 whatever the storage type; results are rounded once when stored.
#include <cstring>

#include "core/dtype.hpp"
#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/philox.hpp"

namespace cohort::core::ops::cuda {
namespace {

// ---- functors (no extended lambdas in this build) ----------------------------------------
// `v < 0 ? 0 : v` as the CPU: NaN stays NaN (PyTorch's relu).
struct ReluOp {
  __device__ float operator()(float v) const { return v < 0.f ? 0.f : v; }
};
struct ScaleOp {
  float alpha;
  __device__ float operator()(float v) const { return v * alpha; }
};
struct ReluBackwardOp {  // (dy, y) -> 0 where y <= 0 (PyTorch's threshold_backward)
  __device__ float operator()(float dy, float y) const { return y <= 0.f ? 0.f : dy; }
};
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MulOp {
  __device__ float operator()(float a, float b) const { return a * b; }
};

template <typename T, typename Op>
__global__ void map1_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, Op op) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = from_f32<T>(op(to_f32(x[i])));
}

// `out` may alias `a` (add_inplace); no __restrict__ on purpose.
template <typename T, typename Op>
__global__ void map2_kernel(const T* a, const T* b, T* out, int64_t n, Op op) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(op(to_f32(a[i]), to_f32(b[i])));
}

template <typename Op>
Tensor unary(Context& ctx, const char* op_name, const Tensor& x, Op op) {
  Tensor y = new_tensor(ctx, x.shape(), x.dtype());
  const int64_t n = x.numel();
  if (n == 0) return y;
  dispatch_float(op_name, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    map1_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(static_cast<const T*>(x.raw()),
                                                            static_cast<T*>(y.raw()), n, op);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

template <typename Op>
void binary_into(Context& ctx, const char* op_name, const Tensor& a, const Tensor& b, Tensor& out,
                 Op op) {
  const int64_t n = out.numel();
  if (n == 0) return;
  if (a.dtype() != b.dtype() || a.dtype() != out.dtype() || a.numel() != n || b.numel() != n)
    COHORT_FAIL(std::string(op_name) + ": operands " + a.str() + " and " + b.str() +
                " must match the output " + out.str() + " in dtype and size");
  dispatch_float(op_name, "a", a, [&](auto tag) {
    using T = typename decltype(tag)::type;
    map2_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(static_cast<const T*>(a.raw()),
                                                            static_cast<const T*>(b.raw()),
                                                            static_cast<T*>(out.raw()), n, op);
    COHORT_CUDA_LAUNCH_CHECK();
  });
}

// ---- cast between any two of f32, f16, bf16, i32, i64, u8 ----------------------------------
template <typename T>
constexpr bool is_float_storage =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

template <typename D, typename S>
__device__ __forceinline__ D convert_value(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else if constexpr (is_float_storage<D>) {
    if constexpr (std::is_same_v<S, int64_t> || std::is_same_v<S, int32_t>)
      return from_f32<D>(static_cast<float>(static_cast<double>(v)));  // as the CPU (via double)
    else
      return from_f32<D>(to_f32(v));
  } else if constexpr (is_float_storage<S>) {
    return static_cast<D>(to_f32(v));  // truncation toward zero, as static_cast on the CPU
  } else {
    return static_cast<D>(v);
  }
}

template <typename D, typename S>
__global__ void cast_kernel(const S* __restrict__ x, D* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = convert_value<D>(x[i]);
}

template <typename F>
void dispatch_castable(const char* op, const char* name, const Tensor& t, DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      f(TypeTag<float>{});
      return;
    case DType::f16:
      f(TypeTag<__half>{});
      return;
    case DType::bf16:
      f(TypeTag<__nv_bfloat16>{});
      return;
    case DType::i32:
      f(TypeTag<int32_t>{});
      return;
    case DType::i64:
      f(TypeTag<int64_t>{});
      return;
    case DType::u8:
      f(TypeTag<uint8_t>{});
      return;
    case DType::f64:
      break;
  }
  fail_dtype(op, name, t, "f32, bf16, f16, i32, i64 or u8");
}

// ---- accumulate/convert between float storage types ---------------------------------------
template <typename D, typename S>
__global__ void convert_into_kernel(const S* __restrict__ x, D* __restrict__ y, int64_t n,
                                    bool accumulate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = to_f32(x[i]);
    y[i] = from_f32<D>(accumulate ? to_f32(y[i]) + v : v);
  }
}

// ---- bias over rows: 32 channels x 8 rows per block, no per-element modulo -----------------
template <typename T, typename B>
__global__ void bias_rows_kernel(T* __restrict__ y, const B* __restrict__ bias, int64_t rows,
                                 int64_t c) {
  const int64_t ch = blockIdx.x * 32LL + threadIdx.x;
  if (ch >= c) return;
  const float b = to_f32(bias[ch]);
  for (int64_t r = blockIdx.y * 8LL + threadIdx.y; r < rows; r += gridDim.y * 8LL) {
    T* p = y + r * c + ch;
    *p = from_f32<T>(to_f32(*p) + b);
  }
}

// ---- fill by bit pattern -----------------------------------------------------------------
template <typename U>
__global__ void fill_kernel(U* __restrict__ y, int64_t n, U value) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = value;
}

// ---- dropout -----------------------------------------------------------------------------
template <typename T>
__global__ void dropout_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, uint64_t seed,
                               uint64_t offset, float p, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool keep = dropout_keep(seed, offset, static_cast<uint64_t>(i), p);
    y[i] = from_f32<T>(keep ? to_f32(x[i]) * scale : 0.f);
  }
}

Tensor dropout_impl(Context& ctx, const char* op, const Tensor& x, double p, uint64_t offset) {
  Tensor y = new_tensor(ctx, x.shape(), x.dtype());
  const int64_t n = x.numel();
  if (n == 0) return y;
  const float pf = static_cast<float>(p);
  // Same factor as the CPU: 1/(1-p) computed in double, rounded once.
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.f;
  dispatch_float(op, "x", x, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(y.raw()), n, ctx.seed(), offset, pf, scale);
    COHORT_CUDA_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace

Tensor relu(Context& ctx, const Tensor& x) {
  return unary(ctx, "relu", x, ReluOp{});
}

Tensor relu_backward(Context& ctx, const Tensor& dy, const Tensor& y) {
  Tensor dx = new_tensor(ctx, dy.shape(), dy.dtype());
  binary_into(ctx, "relu_backward", dy, y, dx, ReluBackwardOp{});
  return dx;
}

Tensor add(Context& ctx, const Tensor& a, const Tensor& b) {
  Tensor out = new_tensor(ctx, a.shape(), a.dtype());
  binary_into(ctx, "add", a, b, out, AddOp{});
  return out;
}

Tensor mul(Context& ctx, const Tensor& a, const Tensor& b) {
  Tensor out = new_tensor(ctx, a.shape(), a.dtype());
  binary_into(ctx, "mul", a, b, out, MulOp{});
  return out;
}

Tensor scale(Context& ctx, const Tensor& x, double alpha) {
  return unary(ctx, "scale", x, ScaleOp{static_cast<float>(alpha)});
}

void add_inplace(Context& ctx, Tensor& acc, const Tensor& x) {
  binary_into(ctx, "add_inplace", acc, x, acc, AddOp{});
}

Tensor cast(Context& ctx, const Tensor& x, DType dtype) {
  Tensor y = new_tensor(ctx, x.shape(), dtype);
  const int64_t n = x.numel();
  if (n == 0) return y;
  if (dtype == x.dtype()) {
    dispatch_castable("cast", "x", x, x.dtype(), [](auto) {});  // rejects f64
    y.copy_from(x, ctx.stream());
    return y;
  }
  dispatch_castable("cast", "x", x, x.dtype(), [&](auto stag) {
    using S = typename decltype(stag)::type;
    dispatch_castable("cast", "target dtype of", y, dtype, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      cast_kernel<D, S><<<grid_for(n), kThreads, 0, ctx.stream()>>>(static_cast<const S*>(x.raw()),
                                                                    static_cast<D*>(y.raw()), n);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
  return y;
}

void fill(Context& ctx, Tensor& t, double value) {
  const int64_t n = t.numel();
  if (n == 0) return;
  // The bit pattern is made on the host with the same conversions as the CPU.
  uint64_t bits = 0;
  switch (t.dtype()) {
    case DType::f32: {
      const float v = static_cast<float>(value);
      uint32_t u;
      std::memcpy(&u, &v, 4);
      bits = u;
      break;
    }
    case DType::f16:
      bits = Half(static_cast<float>(value)).bits;
      break;
    case DType::bf16:
      bits = BFloat16(static_cast<float>(value)).bits;
      break;
    case DType::i32:
      bits = static_cast<uint32_t>(static_cast<int32_t>(value));
      break;
    case DType::i64:
      bits = static_cast<uint64_t>(static_cast<int64_t>(value));
      break;
    case DType::u8:
      bits = static_cast<uint8_t>(value);
      break;
    case DType::f64:
      fail_dtype("fill", "t", t, "f32, bf16, f16, i32, i64 or u8");
  }
  const unsigned grid = grid_for(n);
  switch (dtype_size(t.dtype())) {
    case 1:
      fill_kernel<<<grid, kThreads, 0, ctx.stream()>>>(static_cast<uint8_t*>(t.raw()), n,
                                                       static_cast<uint8_t>(bits));
      break;
    case 2:
      fill_kernel<<<grid, kThreads, 0, ctx.stream()>>>(static_cast<uint16_t*>(t.raw()), n,
                                                       static_cast<uint16_t>(bits));
      break;
    case 4:
      fill_kernel<<<grid, kThreads, 0, ctx.stream()>>>(static_cast<uint32_t*>(t.raw()), n,
                                                       static_cast<uint32_t>(bits));
      break;
    default:
      fill_kernel<<<grid, kThreads, 0, ctx.stream()>>>(static_cast<uint64_t*>(t.raw()), n, bits);
      break;
  }
  COHORT_CUDA_LAUNCH_CHECK();
}

Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset) {
  return dropout_impl(ctx, "dropout", x, p, offset);
}

Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset) {
  // The mask is recomputed from (seed, offset, index): dx = mask * dy / (1 - p).
  return dropout_impl(ctx, "dropout_backward", dy, p, offset);
}

void add_bias_rows(Context& ctx, Tensor& y, const Tensor& bias) {
  const int64_t c = channels_of(y), rows = rows_of(y);
  if (y.numel() == 0) return;
  if (bias.numel() != c)
    COHORT_FAIL("bias add: bias " + bias.str() + " does not match the channels of " + y.str());
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((c + 31) / 32),
                  static_cast<unsigned>(std::min<int64_t>((rows + 7) / 8, 4096)));
  dispatch_float("bias add", "output", y, [&](auto ytag) {
    using T = typename decltype(ytag)::type;
    dispatch_float("bias add", "bias", bias, [&](auto btag) {
      using B = typename decltype(btag)::type;
      bias_rows_kernel<<<grid, block, 0, ctx.stream()>>>(
          static_cast<T*>(y.raw()), static_cast<const B*>(bias.raw()), rows, c);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
}

void convert_into(Context& ctx, const Tensor& src, Tensor& dst, bool accumulate) {
  const int64_t n = dst.numel();
  if (src.numel() != n)
    COHORT_FAIL("convert_into: source " + src.str() + " and destination " + dst.str() +
                " differ in size");
  if (n == 0) return;
  dispatch_float("convert_into", "source", src, [&](auto stag) {
    using S = typename decltype(stag)::type;
    dispatch_float("convert_into", "destination", dst, [&](auto dtag) {
      using D = typename decltype(dtag)::type;
      convert_into_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(
          static_cast<const S*>(src.raw()), static_cast<D*>(dst.raw()), n, accumulate);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
}

}  // namespace cohort::core::ops::cuda
