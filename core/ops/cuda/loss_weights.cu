// Weighted loss sums and running loss sums on CUDA (f32): a handful of scalars,
// so one thread does it all; the point is that weights and sums stay on the
// device and a step never waits for the host.
#include <string>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

struct LossPointers {
  const float* in[kMaxBalancedLosses];
};
struct GradPointers {
  float* out[kMaxBalancedLosses];
};

__global__ void weighted_loss_sum_kernel(LossPointers losses, const float* weights, int n,
                                         float* total) {
  float sum = 0.f;
  for (int i = 0; i < n; ++i)
    sum += weights[i] * losses.in[i][0];
  total[0] = sum;
}

__global__ void weighted_loss_sum_backward_kernel(const float* dtotal, const float* weights, int n,
                                                  GradPointers dlosses) {
  const float g = dtotal[0];
  for (int i = 0; i < n; ++i)
    dlosses.out[i][0] = weights[i] * g;
}

__global__ void accumulate_loss_sums_kernel(LossPointers losses, int n, float* sums) {
  for (int i = 0; i < n; ++i)
    sums[i] += losses.in[i][0];
  sums[n] += 1.f;
}

LossPointers pointers_of(const char* op, const std::vector<Tensor>& losses) {
  LossPointers p{};
  for (size_t i = 0; i < losses.size(); ++i) {
    require_f32(op, "loss", losses[i]);
    p.in[i] = losses[i].data<float>();
  }
  return p;
}

}  // namespace

Tensor weighted_loss_sum(Context& ctx, const std::vector<Tensor>& losses, const Tensor& weights) {
  const char* op = "weighted_loss_sum";
  require_f32(op, "weights", weights);
  Tensor total = new_tensor(ctx, Shape{1}, DType::f32);
  weighted_loss_sum_kernel<<<1, 1, 0, ctx.stream()>>>(
      pointers_of(op, losses), weights.data<float>(), static_cast<int>(losses.size()),
      total.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return total;
}

std::vector<Tensor> weighted_loss_sum_backward(Context& ctx, const Tensor& dtotal,
                                               const Tensor& weights) {
  const char* op = "weighted_loss_sum_backward";
  require_f32(op, "weights", weights);
  std::vector<Tensor> dlosses;
  GradPointers out{};
  for (int64_t i = 0; i < weights.numel(); ++i) {
    dlosses.push_back(new_tensor(ctx, Shape{1}, DType::f32));
    out.out[i] = dlosses.back().data<float>();
  }
  weighted_loss_sum_backward_kernel<<<1, 1, 0, ctx.stream()>>>(
      dtotal.data<float>(), weights.data<float>(), static_cast<int>(weights.numel()), out);
  COHORT_CUDA_LAUNCH_CHECK();
  return dlosses;
}

void accumulate_loss_sums(Context& ctx, const std::vector<Tensor>& losses, Tensor& sums) {
  const char* op = "accumulate_loss_sums";
  require_f32(op, "sums", sums);
  accumulate_loss_sums_kernel<<<1, 1, 0, ctx.stream()>>>(
      pointers_of(op, losses), static_cast<int>(losses.size()), sums.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
}

}  // namespace cohort::core::ops::cuda
