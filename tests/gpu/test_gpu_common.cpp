#include "tests/gpu/test_gpu_common.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace cohort::gputest {

Context& cpu() {
  static Context ctx(Device::cpu());
  return ctx;
}

Context& gpu() {
  static Context ctx(Device::cuda(0));
  return ctx;
}

Tensor random_cpu(const Shape& shape, uint64_t seed, double lo, double hi, DType representable) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& e : v)
    e = dist(rng);
  Tensor t = Tensor::from_vector(v, shape, representable);
  return representable == DType::f32 ? t : t.cast_cpu(DType::f32);
}

Tensor to_gpu(const Tensor& cpu_tensor, DType dtype) {
  const Tensor converted = cpu_tensor.dtype() == dtype ? cpu_tensor : cpu_tensor.cast_cpu(dtype);
  Tensor out = converted.to(Device::cuda(0), gpu().stream());
  // Pageable host memory: make sure the copy finished before `converted` dies.
  gpu().synchronize();
  return out;
}

Tensor to_cpu_f32(const Tensor& t) {
  Tensor host = t;
  if (t.device().is_cuda()) {
    host = t.to(Device::cpu(), gpu().stream());
    gpu().synchronize();
  }
  return host.dtype() == DType::f32 ? host : host.cast_cpu(DType::f32);
}

std::vector<double> values(const Tensor& t) {
  return t.device().is_cuda() ? t.to_vector(gpu().stream()) : t.to_vector();
}

namespace {

std::string index_str(const Shape& s, int64_t flat) {
  std::vector<int64_t> idx(static_cast<size_t>(s.rank()));
  for (int d = s.rank() - 1; d >= 0; --d) {
    const int64_t n = std::max<int64_t>(s[d], 1);
    idx[static_cast<size_t>(d)] = flat % n;
    flat /= n;
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

}  // namespace

void expect_near(const std::string& what, const Tensor& actual, const Tensor& expected, double rtol,
                 double atol_frac) {
  ASSERT_TRUE(actual.defined()) << what << ": result is undefined";
  ASSERT_EQ(actual.numel(), expected.numel())
      << what << ": result " << actual.str() << " vs expected " << expected.str();
  EXPECT_EQ(actual.shape(), expected.shape())
      << what << ": result " << actual.str() << " vs expected " << expected.str();
  const std::vector<double> a = values(actual), b = values(expected);
  double scale = 0;
  for (double v : b)
    if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
  const double atol = atol_frac * scale;
  int64_t bad = 0, worst = -1;
  double worst_excess = 0, max_abs = 0;
  std::string first;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(b[i]);
    if (both_nan) continue;
    const double diff = std::abs(a[i] - b[i]);
    const double excess = diff - (atol + rtol * std::abs(b[i]));
    if (std::isfinite(diff)) max_abs = std::max(max_abs, diff);
    if (!(excess <= 0) && !(a[i] == b[i])) {  // NaN-safe; equal infinities pass
      if (bad < 5)
        first += fmt::format("\n    {} {}: got {:.9g}, expected {:.9g}", i,
                             index_str(expected.shape(), static_cast<int64_t>(i)), a[i], b[i]);
      ++bad;
      const double e = std::isnan(excess) ? INFINITY : excess;
      if (worst < 0 || e > worst_excess) {
        worst_excess = e;
        worst = static_cast<int64_t>(i);
      }
    }
  }
  if (bad > 0)
    ADD_FAILURE() << fmt::format(
        "{}: {} of {} elements differ (rtol {}, atol {:.3g} = {} x max|expected| {:.4g}); max "
        "|diff| {:.4g}; worst at {} {}: got {:.9g}, expected {:.9g}; first mismatches:{}",
        what, bad, a.size(), rtol, atol, atol_frac, scale, max_abs, worst,
        index_str(expected.shape(), worst), a[static_cast<size_t>(worst)],
        b[static_cast<size_t>(worst)], first);
}

void expect_equal(const std::string& what, const Tensor& actual, const Tensor& expected) {
  ASSERT_TRUE(actual.defined()) << what << ": result is undefined";
  ASSERT_EQ(actual.numel(), expected.numel())
      << what << ": result " << actual.str() << " vs expected " << expected.str();
  const std::vector<double> a = values(actual), b = values(expected);
  int64_t bad = 0;
  std::string first;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))) continue;
    if (bad < 5)
      first += fmt::format("\n    {} {}: got {:.9g}, expected {:.9g}", i,
                           index_str(expected.shape(), static_cast<int64_t>(i)), a[i], b[i]);
    ++bad;
  }
  if (bad > 0)
    ADD_FAILURE() << fmt::format("{}: {} of {} elements differ (exact comparison):{}", what, bad,
                                 a.size(), first);
}

}  // namespace cohort::gputest
