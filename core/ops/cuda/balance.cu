// Multi-task loss balancing on CUDA (f32): a handful of scalars, so one thread
// does it all; the point is to keep the step free of host reads.
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

struct Scalars {
  const float* in[kMaxBalancedLosses];
};
struct Outputs {
  float* out[kMaxBalancedLosses];
};

__global__ void weighted_sum_kernel(Scalars losses, const float* log_vars, int n, float* total) {
  float sum = 0.f;
  for (int i = 0; i < n; ++i)
    sum += 0.5f * expf(-log_vars[i]) * losses.in[i][0] + 0.5f * log_vars[i];
  total[0] = sum;
}

__global__ void weighted_sum_backward_kernel(const float* dtotal, Scalars losses,
                                             const float* log_vars, int n, Outputs dlosses,
                                             float* dlog_vars, bool accumulate) {
  const float g = dtotal[0];
  for (int i = 0; i < n; ++i) {
    const float w = 0.5f * expf(-log_vars[i]);
    dlosses.out[i][0] = g * w;
    if (dlog_vars != nullptr) {
      const float ds = g * (0.5f - w * losses.in[i][0]);
      dlog_vars[i] = accumulate ? dlog_vars[i] + ds : ds;
    }
  }
}

Scalars pointers_of(const std::vector<Tensor>& losses) {
  Scalars s{};
  for (size_t i = 0; i < losses.size(); ++i)
    s.in[i] = losses[i].data<float>();
  return s;
}

}  // namespace

Tensor uncertainty_weighted_sum(Context& ctx, const std::vector<Tensor>& losses,
                                const Tensor& log_vars) {
  const char* op = "uncertainty_weighted_sum";
  require_f32(op, "log_vars", log_vars);
  Tensor total = new_tensor(ctx, Shape{1}, DType::f32);
  weighted_sum_kernel<<<1, 1, 0, ctx.stream()>>>(pointers_of(losses), log_vars.data<float>(),
                                                 static_cast<int>(losses.size()),
                                                 total.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return total;
}

std::vector<Tensor> uncertainty_weighted_sum_backward(Context& ctx, const Tensor& dtotal,
                                                      const std::vector<Tensor>& losses,
                                                      const Tensor& log_vars, Tensor& dlog_vars,
                                                      bool accumulate) {
  const char* op = "uncertainty_weighted_sum_backward";
  require_f32(op, "log_vars", log_vars);
  std::vector<Tensor> dlosses;
  Outputs out{};
  for (size_t i = 0; i < losses.size(); ++i) {
    dlosses.push_back(new_tensor(ctx, Shape{1}, DType::f32));
    out.out[i] = dlosses.back().data<float>();
  }
  weighted_sum_backward_kernel<<<1, 1, 0, ctx.stream()>>>(
      dtotal.data<float>(), pointers_of(losses), log_vars.data<float>(),
      static_cast<int>(losses.size()), out, dlog_vars.defined() ? dlog_vars.data<float>() : nullptr,
      accumulate);
  COHORT_CUDA_LAUNCH_CHECK();
  return dlosses;
}

}  // namespace cohort::core::ops::cuda
