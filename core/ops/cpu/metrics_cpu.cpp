#include "core/ops/cpu/metrics_cpu.hpp"

#include <cmath>

#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

template <typename L>
void count_pairs(const int32_t* predicted, const L* truth, int64_t n, int64_t ignore_index,
                 int64_t k, int64_t* confusion, int64_t* out_of_range) {
  int64_t outside = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = static_cast<int64_t>(truth[i]);
    if (t == ignore_index) continue;
    const int64_t p = predicted[i];
    if (t < 0 || t >= k || p < 0 || p >= k) {
      ++outside;
      continue;
    }
    ++confusion[t * k + p];
  }
  *out_of_range += outside;
}

}  // namespace

void accumulate_confusion(Context&, const Tensor& predicted, const Tensor& truth,
                          int64_t ignore_index, Tensor& confusion, Tensor& out_of_range) {
  const int64_t n = predicted.numel(), k = confusion.dim(0);
  const int32_t* p = predicted.data<int32_t>();
  int64_t* c = confusion.data<int64_t>();
  int64_t* o = out_of_range.data<int64_t>();
  if (truth.dtype() == DType::u8)
    count_pairs(p, truth.data<uint8_t>(), n, ignore_index, k, c, o);
  else
    count_pairs(p, truth.data<int32_t>(), n, ignore_index, k, c, o);
}

void accumulate_depth_errors(Context&, const Tensor& predicted, const Tensor& target,
                             const Tensor& valid, Tensor& sums) {
  dispatch_float("accumulate_depth_errors", predicted, [&](auto tag) {
    using T = decltype(tag);
    const T* d = predicted.data<T>();
    const float* t = target.data<float>();
    const uint8_t* v = valid.data<uint8_t>();
    double abs_rel = 0, squared = 0, count = 0;
    for (int64_t i = 0, n = predicted.numel(); i < n; ++i) {
      if (v[i] == 0 || !(t[i] > 0.0f)) continue;
      const double target_i = t[i], diff = static_cast<double>(d[i]) - target_i;
      abs_rel += std::abs(diff) / target_i;
      squared += diff * diff;
      count += 1;
    }
    double* s = sums.data<double>();
    s[0] += abs_rel;
    s[1] += squared;
    s[2] += count;
  });
}

}  // namespace cohort::core::ops::cpu
