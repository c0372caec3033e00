// Per-task gradient ops on CUDA (f32): the Gram matrix of the task gradients
// (a deterministic two-stage reduction), PCGrad's coefficients and GradNorm's
// weight update (one thread each: at most kMaxBalancedLosses values, kept on the
// device so that a step never waits for the host), and the element-wise
// combination of the task gradients. The one-thread kernels run the CPU's own
// solves (core/ops/task_gradients_math.hpp), in double.
#include <string>
#include <type_traits>

#include "core/ops/cuda/common.cuh"
#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/cuda/reduce.cuh"
#include "core/ops/task_gradients_math.hpp"

namespace cohort::core::ops::cuda {
namespace {

constexpr int kMaxT = kMaxBalancedLosses;
constexpr int kWarps = kThreads / 32;

struct TaskPointers {
  const float* g[kMaxT];
};

TaskPointers pointers_of(const char* op, const std::vector<Tensor>& grads) {
  TaskPointers p{};
  for (size_t t = 0; t < grads.size(); ++t) {
    require_f32(op, "task gradient", grads[t]);
    p.g[t] = grads[t].data<float>();
  }
  return p;
}

// Calls f(std::integral_constant<int, tasks>{}) so that kernels can keep one
// accumulator per task pair in registers.
template <typename F>
void with_task_count(const char* op, int tasks, F&& f) {
  switch (tasks) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
    default:
      COHORT_FAIL(std::string(op) + ": needs 1 to 8 tasks, got " + std::to_string(tasks));
  }
}
static_assert(kMaxT == 8, "with_task_count lists every task count");

constexpr int pair_count(int tasks) {
  return tasks * (tasks + 1) / 2;
}

// ---- task_gram ----------------------------------------------------------------------
// Stage 1: every thread sums the products of its elements for all pairs i <= j in
// float; the block adds its threads' sums (warp shuffles, then the warps in order)
// and writes partial[block * P + pair].
template <int T>
__global__ void __launch_bounds__(kThreads)
    gram_partial_kernel(TaskPointers p, const uint8_t* __restrict__ mask, uint8_t bits, int64_t n,
                        float* __restrict__ partial) {
  constexpr int P = pair_count(T);
  float acc[P];
#pragma unroll
  for (int k = 0; k < P; ++k)
    acc[k] = 0.f;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if ((mask[e] & bits) == 0) continue;
    float v[T];
#pragma unroll
    for (int t = 0; t < T; ++t)
      v[t] = p.g[t][e];
    int k = 0;
#pragma unroll
    for (int i = 0; i < T; ++i)
#pragma unroll
      for (int j = i; j < T; ++j) {
        acc[k] = fmaf(v[i], v[j], acc[k]);
        ++k;
      }
  }
  __shared__ float warp_sums[kWarps][P];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < P; ++k) {
    const float s = warp_sum(acc[k]);
    if (lane == 0) warp_sums[warp][k] = s;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < P; k += blockDim.x) {
    float s = 0.f;
    for (int w = 0; w < kWarps; ++w)
      s += warp_sums[w][k];
    partial[blockIdx.x * P + k] = s;
  }
}

// Stage 2 (one block of kThreads): warp w adds pairs w, w + kWarps, ... over the
// blocks in a fixed order (in double) and writes both symmetric entries.
__global__ void gram_finalize_kernel(const float* __restrict__ partial, int blocks, int tasks,
                                     float* __restrict__ gram) {
  const int pairs = pair_count(tasks);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int k = warp; k < pairs; k += kWarps) {
    double s = 0;
    for (int b = lane; b < blocks; b += 32)
      s += partial[b * pairs + k];
    s = warp_sum(s);
    if (lane != 0) continue;
    int i = 0, first = 0;  // pairs of row i are first .. first + tasks - i - 1
    while (k >= first + tasks - i) {
      first += tasks - i;
      ++i;
    }
    const int j = i + (k - first);
    gram[i * tasks + j] = gram[j * tasks + i] = static_cast<float>(s);
  }
}

// ---- pcgrad_coefficients --------------------------------------------------------------
__global__ void pcgrad_kernel(const float* __restrict__ g, const float* __restrict__ w, int tasks,
                              float* __restrict__ c) {
  detail::pcgrad_solve(g, w, tasks, c);
}

// ---- combine_task_gradients ------------------------------------------------------------
// out may alias one of the gradients: each thread reads all of its element's
// task values before writing it, and no other thread touches that element.
template <int T>
__global__ void combine_kernel(TaskPointers p, const uint8_t* __restrict__ mask, uint8_t bits,
                               const float* __restrict__ in_set,
                               const float* __restrict__ out_of_set, int64_t n, float* out) {
  float ci[T], co[T];
#pragma unroll
  for (int t = 0; t < T; ++t) {
    ci[t] = in_set[t];
    co[t] = out_of_set[t];
  }
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool in = (mask[e] & bits) != 0;
    float s = 0.f;
#pragma unroll
    for (int t = 0; t < T; ++t)
      s = fmaf(in ? ci[t] : co[t], p.g[t][e], s);
    out[e] = s;
  }
}

// ---- gradnorm_update -------------------------------------------------------------------
// state rows: L(0), m, v, [count]; see ops.hpp. scale and skip may be null.
__global__ void gradnorm_kernel(float* w, float* state, const float* __restrict__ gram,
                                const float* __restrict__ loss_sums,
                                const float* __restrict__ scale, const float* __restrict__ skip,
                                int tasks, GradNormArgs args) {
  if (skip != nullptr && skip[0] != 0.f) return;
  detail::gradnorm_solve(w, state, gram, loss_sums,
                         scale != nullptr ? static_cast<double>(scale[0]) : 1.0, tasks, args);
}

const float* optional_scalar(const char* op, const char* name, const Tensor& t) {
  if (!t.defined()) return nullptr;
  require_f32(op, name, t);
  return t.data<float>();
}

}  // namespace

Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits) {
  const char* op = "task_gram";
  const int tasks = static_cast<int>(grads.size());
  const TaskPointers p = pointers_of(op, grads);
  const int64_t n = mask.numel();
  const int pairs = pair_count(tasks);
  // The grid depends only on n, so the same inputs always give the same bits.
  const unsigned blocks = reduction_blocks(n);
  Tensor partial = new_tensor(ctx, Shape{int64_t{blocks} * pairs}, DType::f32);
  with_task_count(op, tasks, [&](auto tag) {
    constexpr int T = decltype(tag)::value;
    gram_partial_kernel<T><<<blocks, kThreads, 0, ctx.stream()>>>(p, mask.data<uint8_t>(), bits, n,
                                                                  partial.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
  Tensor gram = new_tensor(ctx, Shape{int64_t{tasks} * tasks}, DType::f32);
  gram_finalize_kernel<<<1, kThreads, 0, ctx.stream()>>>(
      partial.data<float>(), static_cast<int>(blocks), tasks, gram.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return gram;
}

Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights) {
  const char* op = "pcgrad_coefficients";
  require_f32(op, "gram", gram);
  require_f32(op, "weights", weights);
  const int tasks = static_cast<int>(weights.numel());
  Tensor coeff = new_tensor(ctx, Shape{tasks}, DType::f32);
  pcgrad_kernel<<<1, 1, 0, ctx.stream()>>>(gram.data<float>(), weights.data<float>(), tasks,
                                           coeff.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return coeff;
}

void combine_task_gradients(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out) {
  const char* op = "combine_task_gradients";
  const TaskPointers p = pointers_of(op, grads);
  require_f32(op, "in_set", in_set);
  require_f32(op, "out_of_set", out_of_set);
  require_f32(op, "out", out);
  const int64_t n = out.numel();
  if (n == 0) return;
  with_task_count(op, static_cast<int>(grads.size()), [&](auto tag) {
    constexpr int T = decltype(tag)::value;
    combine_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream()>>>(
        p, mask.data<uint8_t>(), bits, in_set.data<float>(), out_of_set.data<float>(), n,
        out.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
  });
}

void gradnorm_update(Context& ctx, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args) {
  const char* op = "gradnorm_update";
  require_f32(op, "weights", weights);
  require_f32(op, "state", state);
  require_f32(op, "gram", gram);
  require_f32(op, "loss_sums", loss_sums);
  gradnorm_kernel<<<1, 1, 0, ctx.stream()>>>(
      weights.data<float>(), state.data<float>(), gram.data<float>(), loss_sums.data<float>(),
      optional_scalar(op, "scale", scale), optional_scalar(op, "skip", skip),
      static_cast<int>(weights.numel()), args);
  COHORT_CUDA_LAUNCH_CHECK();
}

}  // namespace cohort::core::ops::cuda
