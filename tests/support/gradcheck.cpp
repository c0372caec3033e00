#include "tests/support/gradcheck.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace cohort::testing {

Tensor random_tensor(const core::Shape& shape, uint64_t seed, double lo, double hi,
                     core::DType dtype) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& e : v)
    e = dist(rng);
  return Tensor::from_vector(v, shape, dtype);
}

double weighted_sum(const Tensor& r, const Tensor& y) {
  EXPECT_EQ(r.shape(), y.shape()) << "weighted_sum: " << r.str() << " vs " << y.str();
  const std::vector<double> a = r.to_vector(), b = y.to_vector();
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

namespace {
double get(const Tensor& t, int64_t i) {
  return t.dtype() == core::DType::f64 ? t.data<double>()[i] : t.data<float>()[i];
}
void set(Tensor& t, int64_t i, double v) {
  if (t.dtype() == core::DType::f64)
    t.data<double>()[i] = v;
  else
    t.data<float>()[i] = static_cast<float>(v);
}
}  // namespace

void expect_gradient(const std::string& what, const std::function<Tensor()>& forward, Tensor& x,
                     const Tensor& r, const Tensor& analytic, double eps, double rel_tol,
                     double abs_tol) {
  ASSERT_EQ(x.shape(), analytic.shape()) << what << ": gradient shape";
  const std::vector<double> grad = analytic.to_vector();
  int failures = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double saved = get(x, i);
    set(x, i, saved + eps);
    const double plus = weighted_sum(r, forward());
    set(x, i, saved - eps);
    const double minus = weighted_sum(r, forward());
    set(x, i, saved);
    const double numeric = (plus - minus) / (2 * eps);
    const double err = std::abs(numeric - grad[i]);
    if (err > abs_tol + rel_tol * std::abs(numeric)) {
      ADD_FAILURE() << fmt::format("{}: d/dx[{}] analytic {:.10g} numeric {:.10g} (error {:.3g})",
                                   what, i, grad[i], numeric, err);
      if (++failures >= 5) return;
    }
  }
}

void expect_resampling_gradients(
    std::initializer_list<ResampleCase> cases, uint64_t seed,
    const std::function<Tensor(const Tensor& x, int out_h, int out_w)>& forward,
    const std::function<Tensor(const Tensor& dy, const core::Shape& x_shape)>& backward) {
  for (const ResampleCase& c : cases) {
    SCOPED_TRACE(fmt::format("{} -> {}x{}", c.x.str(), c.out_h, c.out_w));
    Tensor x = random_tensor(c.x, seed);
    auto resampled = [&] { return forward(x, c.out_h, c.out_w); };
    const Tensor r = random_tensor(resampled().shape(), seed + 1);
    expect_gradient("dx", resampled, x, r, backward(r, x.shape()));
  }
}

void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                  double rtol, double atol) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what << ": shape";
  const std::vector<double> a = actual.to_vector(), b = expected.to_vector();
  double worst = 0;
  int64_t worst_index = -1;
  for (size_t i = 0; i < a.size(); ++i) {
    const double excess = std::abs(a[i] - b[i]) - (atol + rtol * std::abs(b[i]));
    if (excess > worst || std::isnan(a[i]) != std::isnan(b[i])) {
      worst = std::isnan(excess) ? INFINITY : excess;
      worst_index = static_cast<int64_t>(i);
    }
  }
  if (worst_index >= 0)
    ADD_FAILURE() << fmt::format("{}: element {} is {:.8g}, expected {:.8g} (rtol {}, atol {})",
                                 what, worst_index, a[worst_index], b[worst_index], rtol, atol);
}

}  // namespace cohort::testing
