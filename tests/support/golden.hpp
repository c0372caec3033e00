#pragma once
// Reader for the parity golden file written by tests/parity/make_golden.py.
//
// The file holds one HDF5 group per case ("conv2d", "batch_norm_train", ...) with
// the case's inputs, PyTorch's outputs and gradients as datasets (already in
// cohort's layouts) and its settings (stride, padding, ...) as group attributes.
// Datasets are read into CPU tensors of the dtype the test asks for; HDF5
// converts on read, so one stored case serves both the f32 and the f64 run.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <string>

#include "core/tensor.hpp"

namespace cohort::core {
// Lets GoogleTest print a DType parameter as "f32" rather than as raw bytes.
inline void PrintTo(DType dtype, std::ostream* os) {
  *os << dtype_name(dtype);
}
}  // namespace cohort::core

namespace cohort::testing {

using core::DType;
using core::Tensor;

// $COHORT_GOLDEN when set (CTest sets it for the parity suite), otherwise
// golden.h5 next to the running test executable.
std::string golden_path();

class GoldenFile {
 public:
  explicit GoldenFile(const std::string& path);  // throws cohort::Error naming the path
  ~GoldenFile();
  GoldenFile(const GoldenFile&) = delete;
  GoldenFile& operator=(const GoldenFile&) = delete;

  const std::string& path() const { return m_path; }
  bool has(const std::string& case_name, const std::string& dataset) const;
  // A dataset as a CPU tensor of `dtype` (f32, f64, i64, u8 or i32) with the
  // dataset's shape. Throws cohort::Error naming the case and dataset if missing.
  Tensor read(const std::string& case_name, const std::string& dataset, DType dtype) const;
  // A numeric attribute of the case's group, as double.
  double attribute(const std::string& case_name, const std::string& name) const;

 private:
  void check_case(const std::string& case_name) const;

  std::string m_path;
  int64_t m_file = -1;  // hid_t
};

// The golden file at golden_path(), opened on first use and kept for the process.
const GoldenFile& golden();

// One case of golden(): tensors and attributes by name.
class GoldenCase {
 public:
  explicit GoldenCase(std::string name) : m_name(std::move(name)) {}
  const std::string& name() const { return m_name; }
  bool has(const std::string& dataset) const { return golden().has(m_name, dataset); }
  Tensor tensor(const std::string& dataset, DType dtype) const {
    return golden().read(m_name, dataset, dtype);
  }
  double attr(const std::string& name) const { return golden().attribute(m_name, name); }
  int attr_int(const std::string& name) const;

 private:
  std::string m_name;
};

// Element by element, |actual - expected| <= rtol * |expected| + atol * scale,
// where scale = max |expected| over the tensor. Making atol relative to the
// tensor's magnitude keeps one tolerance meaningful for tensors of O(1) values
// and for gradients of O(1e-3) alike; rtol bounds the error of large elements.
struct Tolerance {
  double rtol;
  double atol;
};

// The tolerances of the parity suite; tests/parity/README.md says why.
namespace tol {
// f64 against PyTorch's f64: only summation order differs.
inline constexpr Tolerance f64{1e-10, 1e-12};
// f32, a few roundings per element (relu, add, mul, scale, pooling, resize).
inline constexpr Tolerance f32_elementwise{1e-5, 2e-6};
// f32 results of reductions (conv/linear forward and input gradients, batch
// norm, losses, sums) and values the op contract keeps in f32 (batch-norm
// statistics and parameter gradients) even in an f64 run.
inline constexpr Tolerance f32{1e-4, 1e-5};
// f32 weight gradients: sums of N*Ho*Wo products with cancellation.
inline constexpr Tolerance f32_weight_grad{1e-4, 3e-5};
// f64 activations computed from f32 batch-norm statistics (eval mode uses the
// f32 running statistics; the saved statistics are f32 in training too).
inline constexpr Tolerance f64_from_f32_stats{1e-5, 1e-6};
}  // namespace tol

// Compares a result with its golden reference (always read as f64) and also
// checks that the result has the dtype the op should produce.
void expect_matches(const std::string& what, const Tensor& actual, const Tensor& expected,
                    DType expected_dtype, Tolerance tol);

// Loss values: ops.hpp says losses return 1-element f32 tensors, while sum/mean
// return the input's dtype. Both are accepted (f32, or `input_dtype`), each held
// to its own precision: f64 results tightly, f32 results to tol::f32.
void expect_loss_matches(const std::string& what, const Tensor& loss, const Tensor& expected,
                         DType input_dtype);

// A host-side f64 copy of `t` with `c` added to every element: the reference for
// a gradient accumulated onto a buffer that held `c`.
Tensor plus_constant(const Tensor& t, double c);

// Test suites parameterised by the compute dtype (f32 and f64).
class DTypeParityTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  Tolerance pick(Tolerance f32, Tolerance f64) const { return dt() == DType::f64 ? f64 : f32; }
};
std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info);

}  // namespace cohort::testing

// Instantiates a DTypeParityTest subclass for f32 and f64 ("Suite/Test/f32").
#define COHORT_PARITY_DTYPES(suite)                                                             \
  INSTANTIATE_TEST_SUITE_P(                                                                     \
      Dtypes, suite, ::testing::Values(::cohort::core::DType::f32, ::cohort::core::DType::f64), \
      ::cohort::testing::dtype_param_name)
