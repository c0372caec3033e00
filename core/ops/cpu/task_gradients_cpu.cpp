// CPU per-task gradient ops. The Gram matrix is summed in double; the PCGrad and
// GradNorm solves are the ones the CUDA kernels run too
// (core/ops/task_gradients_math.hpp).
#include "core/ops/cpu/task_gradients_cpu.hpp"

#include <array>

#include "core/ops/task_gradients_math.hpp"

namespace cohort::core::ops::cpu {
namespace {

constexpr int kMaxT = kMaxBalancedLosses;

bool selected(uint8_t mask, uint8_t bits) {
  return (mask & bits) != 0;
}

std::array<const float*, kMaxT> pointers_of(const std::vector<Tensor>& grads) {
  std::array<const float*, kMaxT> p{};
  for (size_t t = 0; t < grads.size(); ++t)
    p[t] = grads[t].data<float>();
  return p;
}

}  // namespace

Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits) {
  const int tasks = static_cast<int>(grads.size());
  const int64_t n = mask.numel();
  const std::array<const float*, kMaxT> g = pointers_of(grads);
  const uint8_t* m = mask.data<uint8_t>();
  // Upper triangle only: the matrix is symmetric.
  std::array<double, kMaxT * kMaxT> sums{};
  std::array<double, kMaxT> v{};
  for (int64_t e = 0; e < n; ++e) {
    if (!selected(m[e], bits)) continue;
    for (int t = 0; t < tasks; ++t)
      v[t] = g[t][e];
    for (int i = 0; i < tasks; ++i)
      for (int j = i; j < tasks; ++j)
        sums[i * tasks + j] += v[i] * v[j];
  }
  Tensor gram =
      Tensor::empty(Shape{int64_t{tasks} * tasks}, DType::f32, ctx.device(), ctx.stream());
  float* out = gram.data<float>();
  for (int i = 0; i < tasks; ++i)
    for (int j = i; j < tasks; ++j)
      out[i * tasks + j] = out[j * tasks + i] = static_cast<float>(sums[i * tasks + j]);
  return gram;
}

Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights) {
  const int tasks = static_cast<int>(weights.numel());
  Tensor coeff = Tensor::empty(Shape{tasks}, DType::f32, ctx.device(), ctx.stream());
  detail::pcgrad_solve(gram.data<float>(), weights.data<float>(), tasks, coeff.data<float>());
  return coeff;
}

void combine_task_gradients(Context&, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out) {
  const int tasks = static_cast<int>(grads.size());
  const int64_t n = mask.numel();
  const std::array<const float*, kMaxT> g = pointers_of(grads);
  const uint8_t* m = mask.data<uint8_t>();
  const float* in_c = in_set.data<float>();
  const float* out_c = out_of_set.data<float>();
  float* y = out.data<float>();  // may be one of g: element e is read before it is written
  for (int64_t e = 0; e < n; ++e) {
    const float* c = selected(m[e], bits) ? in_c : out_c;
    double s = 0;
    for (int t = 0; t < tasks; ++t)
      s += static_cast<double>(c[t]) * g[t][e];
    y[e] = static_cast<float>(s);
  }
}

void gradnorm_update(Context&, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args) {
  if (skip.defined() && skip.data<float>()[0] != 0.f) return;
  detail::gradnorm_solve(weights.data<float>(), state.data<float>(), gram.data<float>(),
                         loss_sums.data<float>(),
                         scale.defined() ? static_cast<double>(scale.data<float>()[0]) : 1.0,
                         static_cast<int>(weights.numel()), args);
}

}  // namespace cohort::core::ops::cpu
