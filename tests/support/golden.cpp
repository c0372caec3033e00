#include "tests/support/golden.hpp"

#include <fmt/format.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include "core/error.hpp"

namespace cohort::testing {

static_assert(sizeof(hid_t) == sizeof(int64_t), "GoldenFile stores hid_t as int64_t");

namespace {

// Closes an HDF5 identifier when it goes out of scope.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle(hid_t id, Closer closer) : m_id(id), m_closer(closer) {}
  ~Handle() {
    if (m_id >= 0) m_closer(m_id);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return m_id; }
  bool valid() const { return m_id >= 0; }

 private:
  hid_t m_id;
  Closer m_closer;
};

hid_t memory_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return H5T_NATIVE_FLOAT;
    case DType::f64:
      return H5T_NATIVE_DOUBLE;
    case DType::i64:
      return H5T_NATIVE_INT64;
    case DType::i32:
      return H5T_NATIVE_INT32;
    case DType::u8:
      return H5T_NATIVE_UINT8;
    default:
      break;
  }
  COHORT_FAIL(fmt::format("golden file: cannot read a dataset as {}", core::dtype_name(dtype)));
}

std::string executable_dir() {
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string(".") : exe.parent_path().string();
}

}  // namespace

std::string golden_path() {
  if (const char* env = std::getenv("COHORT_GOLDEN"); env != nullptr && *env != '\0') return env;
  return executable_dir() + "/golden.h5";
}

GoldenFile::GoldenFile(const std::string& path) : m_path(path) {
  COHORT_CHECK(std::filesystem::exists(path),
               fmt::format("golden file {} does not exist: run `ctest -L parity` (its fixture "
                           "parity_make_golden writes it) or `/usr/bin/python3 "
                           "tests/parity/make_golden.py {}`",
                           path, path));
  // Missing names are checked with H5Lexists first, so HDF5's own error stack
  // printing would only add noise.
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  m_file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  COHORT_CHECK(m_file >= 0, fmt::format("golden file {}: HDF5 cannot open it", path));
}

GoldenFile::~GoldenFile() {
  if (m_file >= 0) H5Fclose(m_file);
}

void GoldenFile::check_case(const std::string& case_name) const {
  COHORT_CHECK(H5Lexists(m_file, case_name.c_str(), H5P_DEFAULT) > 0,
               fmt::format("golden file {}: no case '{}' (regenerate it with make_golden.py)",
                           m_path, case_name));
}

bool GoldenFile::has(const std::string& case_name, const std::string& dataset) const {
  if (H5Lexists(m_file, case_name.c_str(), H5P_DEFAULT) <= 0) return false;
  const std::string full = case_name + "/" + dataset;
  return H5Lexists(m_file, full.c_str(), H5P_DEFAULT) > 0;
}

Tensor GoldenFile::read(const std::string& case_name, const std::string& dataset,
                        DType dtype) const {
  check_case(case_name);
  COHORT_CHECK(has(case_name, dataset), fmt::format("golden file {}: case '{}' has no dataset '{}'",
                                                    m_path, case_name, dataset));
  const std::string full = case_name + "/" + dataset;
  Handle ds(H5Dopen2(m_file, full.c_str(), H5P_DEFAULT), H5Dclose);
  COHORT_CHECK(ds.valid(), fmt::format("golden file {}: cannot open {}", m_path, full));
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  COHORT_CHECK(rank >= 0 && rank <= core::Shape::max_rank,
               fmt::format("golden file {}: {} has unsupported rank {}", m_path, full, rank));
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::vector<int64_t> shape_dims(dims.begin(), dims.end());
  if (shape_dims.empty()) shape_dims.push_back(1);  // scalars become 1-element tensors
  Tensor t = Tensor::empty(core::Shape(std::span<const int64_t>(shape_dims)), dtype);
  COHORT_CHECK(
      H5Dread(ds.get(), memory_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()) >= 0,
      fmt::format("golden file {}: cannot read {} as {}", m_path, full, core::dtype_name(dtype)));
  return t;
}

double GoldenFile::attribute(const std::string& case_name, const std::string& name) const {
  check_case(case_name);
  COHORT_CHECK(
      H5Aexists_by_name(m_file, case_name.c_str(), name.c_str(), H5P_DEFAULT) > 0,
      fmt::format("golden file {}: case '{}' has no attribute '{}'", m_path, case_name, name));
  Handle attr(H5Aopen_by_name(m_file, case_name.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  double value = 0;
  COHORT_CHECK(attr.valid() && H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) >= 0,
               fmt::format("golden file {}: cannot read attribute {} of case '{}'", m_path, name,
                           case_name));
  return value;
}

const GoldenFile& golden() {
  static const GoldenFile file(golden_path());
  return file;
}

int GoldenCase::attr_int(const std::string& name) const {
  const double v = attr(name);
  COHORT_CHECK(v == std::floor(v), fmt::format("golden case '{}': attribute {} = {} is not an "
                                               "integer",
                                               m_name, name, v));
  return static_cast<int>(v);
}

void expect_matches(const std::string& what, const Tensor& actual, const Tensor& expected,
                    DType expected_dtype, Tolerance tol) {
  ASSERT_TRUE(actual.defined()) << what << ": result is undefined";
  EXPECT_EQ(actual.dtype(), expected_dtype)
      << what << ": result is " << actual.str() << ", expected dtype "
      << core::dtype_name(expected_dtype);
  ASSERT_EQ(actual.shape(), expected.shape())
      << what << ": result " << actual.str() << ", expected shape " << expected.shape().str();
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  double scale = 0;
  for (const double v : e)
    scale = std::max(scale, std::abs(v));
  double worst_excess = 0, max_abs = 0, max_rel = 0;
  int64_t worst = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::abs(a[i] - e[i]);
    if (std::isnan(err)) {  // NaN in either: always a failure
      worst_excess = INFINITY;
      worst = static_cast<int64_t>(i);
      continue;
    }
    max_abs = std::max(max_abs, err);
    if (e[i] != 0) max_rel = std::max(max_rel, err / std::abs(e[i]));
    const double excess = err - (tol.rtol * std::abs(e[i]) + tol.atol * scale);
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = static_cast<int64_t>(i);
    }
  }
  // COHORT_PARITY_VERBOSE=1 prints every comparison's errors (to tune tolerances):
  // the largest error relative to the tensor's scale and to the element.
  if (const char* verbose = std::getenv("COHORT_PARITY_VERBOSE"); verbose && *verbose == '1') {
    fmt::print("  {:<48} {:<4} scale {:9.3g}  max abs/scale {:9.3g}  max rel {:9.3g}\n", what,
               core::dtype_name(actual.dtype()), scale, scale > 0 ? max_abs / scale : max_abs,
               max_rel);
  }
  if (worst >= 0) {
    const auto w = static_cast<size_t>(worst);
    ADD_FAILURE() << fmt::format(
        "{}: element {} of {} is {:.10g}, PyTorch {:.10g} (error {:.3g}; allowed rtol {:g} * "
        "|PyTorch| + atol {:g} * scale {:.3g})",
        what, worst, a.size(), a[w], e[w], std::abs(a[w] - e[w]), tol.rtol, tol.atol, scale);
  }
}

void expect_loss_matches(const std::string& what, const Tensor& loss, const Tensor& expected,
                         DType input_dtype) {
  ASSERT_TRUE(loss.defined()) << what << ": loss is undefined";
  ASSERT_TRUE(loss.dtype() == DType::f32 || loss.dtype() == input_dtype)
      << what << ": loss is " << loss.str() << " for " << core::dtype_name(input_dtype)
      << " input (expected f32)";
  expect_matches(what, loss, expected, loss.dtype(),
                 loss.dtype() == DType::f64 ? tol::f64 : tol::f32);
}

Tensor plus_constant(const Tensor& t, double c) {
  std::vector<double> v = t.to_vector();
  for (double& e : v)
    e += c;
  return Tensor::from_vector(v, t.shape(), DType::f64);
}

std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(core::dtype_name(info.param));
}

}  // namespace cohort::testing
