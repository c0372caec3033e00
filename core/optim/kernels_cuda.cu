// CUDA optimizer and mixed-precision kernels (see kernels.hpp for the contract).
//
// The segment table travels in the kernel's parameter block (no upload, nothing to
// keep alive): up to kSegmentsPerLaunch segments per launch, so a model with a
// few parameter groups updates in one launch and a longer table takes a few. Each
// thread finds its segment by binary search over the launch's prefix sums.
// `skip` (a device flag) and `applied` (the device count of updates made) are
// read by the kernels, so skipping an overflowed fp16 step costs no host
// synchronisation and leaves the step count as it was.
#include <cmath>
#include <string>

#include "core/ops/cuda/reduce.cuh"
#include "core/optim/kernels_cuda.hpp"

namespace cohort::core::optim::cuda {
namespace {

using ops::cuda::kThreads;

constexpr int kSegmentsPerLaunch = 64;

struct SegmentTable {
  int count = 0;
  int64_t start[kSegmentsPerLaunch + 1];  // prefix sums of counts: this launch's index space
  int64_t offset[kSegmentsPerLaunch];     // first element in the flat buffers
  float lr_scale[kSegmentsPerLaunch];
  float weight_decay[kSegmentsPerLaunch];
};
static_assert(sizeof(SegmentTable) < 4000, "kernel parameters are limited to 4 KiB");

// Splits the non-empty segments into launch-sized tables.
std::vector<SegmentTable> make_tables(const std::vector<UpdateSegment>& segments) {
  std::vector<SegmentTable> tables;
  for (const UpdateSegment& s : segments) {
    if (s.count <= 0) continue;
    if (tables.empty() || tables.back().count == kSegmentsPerLaunch) {
      tables.emplace_back();
      tables.back().start[0] = 0;
    }
    SegmentTable& t = tables.back();
    t.offset[t.count] = s.offset;
    t.lr_scale[t.count] = s.lr_scale;
    t.weight_decay[t.count] = s.weight_decay;
    t.start[t.count + 1] = t.start[t.count] + s.count;
    ++t.count;
  }
  return tables;
}

// Segment holding launch index i: the last s with start[s] <= i.
__device__ __forceinline__ int find_segment(const SegmentTable& t, int64_t i) {
  int lo = 0, hi = t.count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (t.start[mid] <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__device__ __forceinline__ bool skip_step(const float* skip) {
  return skip != nullptr && *skip != 0.f;
}

// Same arithmetic, in the same order, as the CPU version in kernels.cpp.
__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ g,
                           float* __restrict__ buf, const SegmentTable t,
                           const float* __restrict__ base_lr, float momentum, float dampening,
                           bool nesterov, const int64_t* __restrict__ applied,
                           const float* __restrict__ skip) {
  if (skip_step(skip)) return;
  const bool first_step = *applied == 0;
  const float lr0 = *base_lr;
  const int64_t total = t.start[t.count];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int s = find_segment(t, i);
    const int64_t e = t.offset[s] + (i - t.start[s]);
    float d = g[e] + t.weight_decay[s] * p[e];
    if (buf != nullptr) {
      const float b = first_step ? d : momentum * buf[e] + (1.0f - dampening) * d;
      buf[e] = b;
      d = nesterov ? d + momentum * b : b;
    }
    p[e] -= lr0 * t.lr_scale[s] * d;
  }
}

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, const SegmentTable t,
                             const float* __restrict__ base_lr, float beta1, float beta2, float eps,
                             const int64_t* __restrict__ applied, const float* __restrict__ skip) {
  if (skip_step(skip)) return;  // the same for the whole grid: no thread misses the barrier
  const float lr0 = *base_lr;
  // Bias corrections of step t = applied + 1, in double as on the CPU, once per block.
  __shared__ float correction[2];  // 1 / (1 - b1^t), sqrt(1 - b2^t)
  if (threadIdx.x == 0) {
    const double t = static_cast<double>(*applied + 1);
    correction[0] = static_cast<float>(1.0 / (1.0 - pow(static_cast<double>(beta1), t)));
    correction[1] = static_cast<float>(sqrt(1.0 - pow(static_cast<double>(beta2), t)));
  }
  __syncthreads();
  const float step_size_scale = correction[0], bc2_sqrt = correction[1];
  const int64_t total = t.start[t.count];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int s = find_segment(t, i);
    const int64_t e = t.offset[s] + (i - t.start[s]);
    const float lr = lr0 * t.lr_scale[s];
    const float grad = g[e];
    float param = p[e] * (1.0f - lr * t.weight_decay[s]);
    const float mv = beta1 * m[e] + (1.0f - beta1) * grad;
    const float vv = beta2 * v[e] + (1.0f - beta2) * grad * grad;
    m[e] = mv;
    v[e] = vv;
    const float denom = sqrtf(vv) / bc2_sqrt + eps;
    param -= lr * step_size_scale * mv / denom;
    p[e] = param;
  }
}

__global__ void unscale_kernel(float* __restrict__ g, int64_t n,
                               const float* __restrict__ inv_scale, float* __restrict__ found) {
  const float s = inv_scale[0];
  bool bad = false;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = g[i];
    bad = bad || !isfinite(v);
    g[i] = v * s;
  }
  // Racing writers all store the same value; others leave the flag untouched.
  if (bad) *found = 1.0f;
}

__global__ void sum_squares_partial_kernel(const float* __restrict__ x, int64_t n,
                                           double* partial) {
  double s = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = x[i];
    s += v * v;
  }
  ops::cuda::store_block_pair(s, 0.0, partial);
}

__global__ void sum_squares_finalize_kernel(const double* partial, int blocks, float* out) {
  double a, b;
  ops::cuda::sum_block_pairs(partial, blocks, a, b);
  if (threadIdx.x == 0) out[0] = static_cast<float>(a);
}

__global__ void scale_kernel(float* __restrict__ x, int64_t n, const float* __restrict__ factor) {
  const float f = factor[0];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] *= f;
}

// ---- host-side checks (the dispatcher in kernels.cpp checks too; these keep the
// CUDA entry points safe when called directly) ---------------------------------------------
void check_f32(const char* op, const char* name, const Context& ctx, const Tensor& t,
               int64_t numel) {
  if (!t.defined() || t.dtype() != DType::f32 || t.numel() != numel || t.device() != ctx.device())
    COHORT_FAIL(std::string(op) + ": " + name + " must be f32 with " + std::to_string(numel) +
                " elements on " + ctx.device().str() + ", got " +
                (t.defined() ? t.str() : std::string("an undefined tensor")));
}

void check_segments(const char* op, const std::vector<UpdateSegment>& segments, int64_t numel) {
  for (const UpdateSegment& s : segments)
    if (s.offset < 0 || s.count < 0 || s.offset + s.count > numel)
      COHORT_FAIL(std::string(op) + ": segment [" + std::to_string(s.offset) + ", " +
                  std::to_string(s.offset + s.count) + ") is outside the " + std::to_string(numel) +
                  "-element buffer");
}

const float* skip_ptr(const char* op, const Context& ctx, const Tensor& skip) {
  if (!skip.defined()) return nullptr;
  check_f32(op, "skip", ctx, skip, 1);
  return skip.data<float>();
}

int64_t* applied_ptr(const char* op, const Context& ctx, const Tensor& applied) {
  if (!applied.defined() || applied.dtype() != DType::i64 || applied.numel() != 1 ||
      applied.device() != ctx.device())
    COHORT_FAIL(std::string(op) + ": the applied-step count must be i64 with 1 element on " +
                ctx.device().str() + ", got " +
                (applied.defined() ? applied.str() : std::string("an undefined tensor")));
  return const_cast<int64_t*>(applied.data<int64_t>());
}

__global__ void count_applied_kernel(int64_t* applied, const float* skip) {
  if (!skip_step(skip)) *applied += 1;
}

// One thread: the whole loss-scale update stays on the device (kernels.hpp).
__global__ void loss_scale_kernel(float* values, int64_t* counters, double growth, double backoff,
                                  int64_t interval) {
  const bool overflow = values[2] != 0.0f;
  double scale = values[0];
  if (overflow) {
    scale *= backoff;
    counters[0] = 0;
    counters[1] += 1;
  } else if (++counters[0] >= interval) {
    scale *= growth;
    counters[0] = 0;
  }
  values[0] = static_cast<float>(scale);
  values[1] = static_cast<float>(1.0 / scale);
  values[3] = overflow ? 1.0f : 0.0f;
  values[2] = 0.0f;
}

// One thread: the CPU twin is in kernels.cpp (same formula, in double).
__global__ void clip_factor_kernel(const float* sum_squares, double max_norm, float* norm,
                                   float* factor) {
  const double n = sqrt(static_cast<double>(sum_squares[0]));
  norm[0] = static_cast<float>(n);
  factor[0] = n > max_norm ? static_cast<float>(max_norm / (n + 1e-6)) : 1.0f;
}

unsigned blocks_for(int64_t n) {
  return ops::cuda::grid_for(n, kThreads);
}

}  // namespace

void sgd_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& momentum,
              const std::vector<UpdateSegment>& segments, const Tensor& lr, const SgdConfig& config,
              const Tensor& applied, const Tensor& skip) {
  const char* op = "sgd_step";
  const int64_t n = params.numel();
  check_f32(op, "params", ctx, params, n);
  check_f32(op, "grads", ctx, grads, n);
  check_f32(op, "lr", ctx, lr, 1);
  const bool use_momentum = config.momentum != 0.f;
  if (use_momentum) check_f32(op, "momentum", ctx, momentum, n);
  check_segments(op, segments, n);
  const float* skip_flag = skip_ptr(op, ctx, skip);
  const int64_t* applied_count = applied_ptr(op, ctx, applied);
  for (const SegmentTable& t : make_tables(segments)) {
    sgd_kernel<<<blocks_for(t.start[t.count]), kThreads, 0, ctx.stream()>>>(
        params.data<float>(), grads.data<float>(), use_momentum ? momentum.data<float>() : nullptr,
        t, lr.data<float>(), config.momentum, config.dampening, config.nesterov, applied_count,
        skip_flag);
    COHORT_CUDA_LAUNCH_CHECK();
  }
}

void adamw_step(Context& ctx, Tensor& params, const Tensor& grads, Tensor& m, Tensor& v,
                const std::vector<UpdateSegment>& segments, const Tensor& lr,
                const AdamWConfig& config, const Tensor& applied, const Tensor& skip) {
  const char* op = "adamw_step";
  const int64_t n = params.numel();
  check_f32(op, "params", ctx, params, n);
  check_f32(op, "grads", ctx, grads, n);
  check_f32(op, "lr", ctx, lr, 1);
  check_f32(op, "exp_avg", ctx, m, n);
  check_f32(op, "exp_avg_sq", ctx, v, n);
  check_segments(op, segments, n);
  const float* skip_flag = skip_ptr(op, ctx, skip);
  const int64_t* applied_count = applied_ptr(op, ctx, applied);
  for (const SegmentTable& t : make_tables(segments)) {
    adamw_kernel<<<blocks_for(t.start[t.count]), kThreads, 0, ctx.stream()>>>(
        params.data<float>(), grads.data<float>(), m.data<float>(), v.data<float>(), t,
        lr.data<float>(), config.beta1, config.beta2, config.eps, applied_count, skip_flag);
    COHORT_CUDA_LAUNCH_CHECK();
  }
}

void count_applied_step(Context& ctx, Tensor& applied, const Tensor& skip) {
  const char* op = "count_applied_step";
  const float* skip_flag = skip_ptr(op, ctx, skip);
  count_applied_kernel<<<1, 1, 0, ctx.stream()>>>(applied_ptr(op, ctx, applied), skip_flag);
  COHORT_CUDA_LAUNCH_CHECK();
}

void unscale_and_check(Context& ctx, Tensor& grads, const Tensor& inv_scale,
                       Tensor& found_non_finite) {
  const char* op = "unscale_and_check";
  const int64_t n = grads.numel();
  check_f32(op, "grads", ctx, grads, n);
  check_f32(op, "inv_scale", ctx, inv_scale, 1);
  check_f32(op, "found_non_finite", ctx, found_non_finite, 1);
  if (n == 0) return;
  unscale_kernel<<<blocks_for(n), kThreads, 0, ctx.stream()>>>(
      grads.data<float>(), n, inv_scale.data<float>(), found_non_finite.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
}

void update_loss_scale(Context& ctx, Tensor& values, Tensor& counters, const LossScaleRule& rule) {
  const char* op = "update_loss_scale";
  check_f32(op, "values", ctx, values, 4);
  ops::cuda::require_on_device(op, "counters", ctx, counters);
  loss_scale_kernel<<<1, 1, 0, ctx.stream()>>>(values.data<float>(), counters.data<int64_t>(),
                                               rule.growth_factor, rule.backoff_factor,
                                               rule.growth_interval);
  COHORT_CUDA_LAUNCH_CHECK();
}

Tensor sum_of_squares(Context& ctx, const Tensor& x) {
  const char* op = "sum_of_squares";
  const int64_t n = x.numel();
  check_f32(op, "x", ctx, x, n);
  Tensor out = ops::cuda::new_tensor(ctx, Shape{1}, DType::f32);
  const unsigned blocks = ops::cuda::reduction_blocks(n);
  Tensor partial = ops::cuda::new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  sum_squares_partial_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(x.data<float>(), n,
                                                                    partial.data<double>());
  COHORT_CUDA_LAUNCH_CHECK();
  sum_squares_finalize_kernel<<<1, kThreads, 0, ctx.stream()>>>(partial.data<double>(), blocks,
                                                                out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

void clip_factor(Context& ctx, const Tensor& sum_squares, double max_norm, Tensor& norm,
                 Tensor& factor) {
  const char* op = "clip_factor";
  check_f32(op, "sum_squares", ctx, sum_squares, 1);
  check_f32(op, "norm", ctx, norm, 1);
  check_f32(op, "factor", ctx, factor, 1);
  clip_factor_kernel<<<1, 1, 0, ctx.stream()>>>(sum_squares.data<float>(), max_norm,
                                                norm.data<float>(), factor.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
}

void scale_by(Context& ctx, Tensor& x, const Tensor& factor) {
  const char* op = "scale_by";
  const int64_t n = x.numel();
  check_f32(op, "x", ctx, x, n);
  check_f32(op, "factor", ctx, factor, 1);
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, ctx.stream()>>>(x.data<float>(), n,
                                                             factor.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
}

void cast_into(Context& ctx, Tensor& dst, const Tensor& src) {
  const char* op = "cast_into";
  ops::cuda::require_on_device(op, "dst", ctx, dst);
  ops::cuda::require_on_device(op, "src", ctx, src);
  ops::cuda::require_float(op, "dst", dst);
  ops::cuda::require_float(op, "src", src);
  if (dst.numel() != src.numel())
    COHORT_FAIL(std::string(op) + ": " + dst.str() + " cannot receive " + src.str());
  if (dst.dtype() == src.dtype()) {
    dst.copy_from(src.view(dst.shape()), ctx.stream());
    return;
  }
  ops::cuda::convert_into(ctx, src, dst, false);
}

}  // namespace cohort::core::optim::cuda
