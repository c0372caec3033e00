#include "tests/support/tensor_helpers.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/error.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::testing {

Tensor values(const std::vector<double>& v, const core::Shape& shape, core::DType dtype) {
  return Tensor::from_vector(v, shape, dtype);
}

Tensor random_bytes(const core::Shape& shape, core::DType dtype, uint32_t seed) {
  Tensor t = Tensor::empty(shape, dtype);
  std::mt19937 rng(seed);
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i)
    p[i] = static_cast<unsigned char>(rng());
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  // Empty tensors may have no storage: memcmp of a null pointer is undefined.
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    for (const std::string& f : fragments)
      EXPECT_NE(what.find(f), std::string::npos) << "missing '" << f << "' in: " << what;
    return;
  }
  ADD_FAILURE() << "expected cohort::Error";
}

Tensor expect_accumulates(const std::string& what, const Tensor& prior,
                          const std::function<void(Tensor&, bool)>& backward, double junk,
                          double rtol, double atol) {
  Tensor fresh = Tensor::full(prior.shape(), junk, prior.dtype());
  backward(fresh, false);
  Tensor accumulated = prior.clone();
  backward(accumulated, true);
  std::vector<double> expected = prior.to_vector();
  const std::vector<double> grad = fresh.to_vector();
  for (size_t i = 0; i < expected.size(); ++i)
    expected[i] += grad[i];
  expect_close(what + " accumulated", accumulated, values(expected, prior.shape()), rtol, atol);
  return fresh;
}

}  // namespace cohort::testing
