#pragma once
// Helpers for the gpu suite: shared CPU and CUDA contexts, random inputs that are
// exactly representable in the dtype under test (so the CPU reference sees the
// same values as the GPU), uploads/downloads on the CUDA context's stream, and
// comparisons that print where and by how much results differ.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "core/tensor.hpp"

namespace cohort::gputest {

using core::Context;
using core::Device;
using core::DType;
using core::Shape;
using core::Tensor;

// One CPU and one CUDA context for the whole suite (cuDNN handles are slow to make).
Context& cpu();
Context& gpu();

// Uniform values in [lo, hi) as a CPU f32 tensor, rounded through `representable`
// (f32, bf16 or f16) so that the same numbers can be given to both devices.
Tensor random_cpu(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                  DType representable = DType::f32);

// A CPU f32 tensor -> a CUDA tensor of dtype `dtype` (converted on the CPU first).
Tensor to_gpu(const Tensor& cpu_tensor, DType dtype);
inline Tensor to_gpu(const Tensor& cpu_tensor) {
  return to_gpu(cpu_tensor, cpu_tensor.dtype());
}
// Any tensor -> a CPU f32 copy (waits for the CUDA context's stream).
Tensor to_cpu_f32(const Tensor& t);
std::vector<double> values(const Tensor& t);  // host values (waits for the stream)

// Element-wise |actual - expected| <= atol_frac * max|expected| + rtol * |expected|.
// On failure prints how many elements differ, the worst one (flat index and
// multi-index), the largest absolute difference and the first few mismatches.
void expect_near(const std::string& what, const Tensor& actual, const Tensor& expected, double rtol,
                 double atol_frac);
// Exact equality of every element (as doubles), NaN equal to NaN.
void expect_equal(const std::string& what, const Tensor& actual, const Tensor& expected);

// Tolerances used throughout (also listed in the suite's report).
struct Tol {
  double rtol, atol_frac;
};
constexpr Tol kTightF32{1e-5, 1e-6};      // element-wise, pooling, resize, reductions, BN
constexpr Tol kConvF32{1e-4, 1e-5};       // cuDNN/cuBLASLt f32 (other summation orders)
constexpr Tol kLowPrecision{2e-2, 1e-2};  // bf16/f16 storage (8/11-bit mantissa outputs)

inline Tol tol_for(DType dtype, Tol f32_tol) {
  return dtype == DType::f32 ? f32_tol : kLowPrecision;
}
inline void expect_near(const std::string& what, const Tensor& actual, const Tensor& expected,
                        Tol tol) {
  expect_near(what, actual, expected, tol.rtol, tol.atol_frac);
}

// The dtype's name ("f32", "bf16", "f16", ...) for traces.
inline std::string_view name_of(DType d) {
  return core::dtype_name(d);
}

// The dtypes the CUDA backend computes in.
inline std::vector<DType> float_dtypes() {
  return {DType::f32, DType::bf16, DType::f16};
}

}  // namespace cohort::gputest
