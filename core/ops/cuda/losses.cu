// Losses as device scalars: softmax cross entropy (ignore index, class weights)
// and masked L1 / smooth-L1. Forward: per-row (or per-element) terms summed into
// block partials, then one block divides. Backward first recomputes the
// normaliser (total weight or valid count) on the device, then writes gradients.
// Nothing here reads a value back to the host.
#include <limits>
#include <string>

#include "core/ops/cuda/cuda_ops.hpp"
#include "core/ops/cuda/reduce.cuh"

namespace cohort::core::ops::cuda {
namespace {

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_allsum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Row softmax statistics computed by one warp: max and sum of exp(x - max).
template <typename T>
__device__ __forceinline__ void row_softmax_stats(const T* row, int64_t c, int lane, float& m,
                                                  float& s) {
  m = -INFINITY;
  for (int64_t j = lane; j < c; j += 32)
    m = fmaxf(m, to_f32(row[j]));
  m = warp_max(m);
  s = 0.f;
  for (int64_t j = lane; j < c; j += 32)
    s += expf(to_f32(row[j]) - m);
  s = warp_allsum(s);
}

// Warp-per-row loop bounds (blockDim.x a multiple of 32).
__device__ __forceinline__ int64_t global_warp() {
  return (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
}
__device__ __forceinline__ int64_t warp_count() {
  return (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
}

// Per block: sum of w[label] * (logsumexp - logit[label]) and of w[label] over
// non-ignored rows; an out-of-range label contributes NaN.
template <typename T, typename L>
__global__ void ce_forward_kernel(const T* __restrict__ logits, const L* __restrict__ labels,
                                  const float* __restrict__ weights, int64_t rows, int64_t c,
                                  int64_t ignore_index, double* partial) {
  const int lane = threadIdx.x & 31;
  double loss = 0, weight = 0;
  for (int64_t r = global_warp(); r < rows; r += warp_count()) {
    const int64_t label = static_cast<int64_t>(labels[r]);
    if (label == ignore_index) continue;
    if (label < 0 || label >= c) {
      if (lane == 0) loss += NAN;
      continue;
    }
    const T* row = logits + r * c;
    float m, s;
    row_softmax_stats(row, c, lane, m, s);
    if (lane == 0) {
      const double w = weights ? weights[label] : 1.0;
      loss += w * (static_cast<double>(logf(s)) + m - to_f32(row[label]));
      weight += w;
    }
  }
  store_block_pair(loss, weight, partial);
}

__global__ void ce_forward_finalize_kernel(const double* partial, int blocks, float* out) {
  double loss, weight;
  sum_block_pairs(partial, blocks, loss, weight);
  if (threadIdx.x == 0)
    out[0] = isnan(loss) ? NAN : (weight == 0 ? 0.f : static_cast<float>(loss / weight));
}

// Per block: total class weight of the non-ignored rows (NaN for a bad label).
template <typename L>
__global__ void ce_weight_kernel(const L* __restrict__ labels, const float* __restrict__ weights,
                                 int64_t rows, int64_t c, int64_t ignore_index, double* partial) {
  double weight = 0;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t label = static_cast<int64_t>(labels[r]);
    if (label == ignore_index) continue;
    if (label < 0 || label >= c)
      weight += NAN;
    else
      weight += weights ? weights[label] : 1.0;
  }
  store_block_pair(weight, 0.0, partial);
}

// factor = dloss / total (0 when nothing counts; NaN stays NaN).
__global__ void normaliser_factor_kernel(const double* partial, int blocks,
                                         const float* __restrict__ dloss, float* factor) {
  double total, unused;
  sum_block_pairs(partial, blocks, total, unused);
  if (threadIdx.x == 0)
    factor[0] = isnan(total) ? NAN : (total == 0 ? 0.f : static_cast<float>(dloss[0] / total));
}

template <typename T, typename L>
__global__ void ce_backward_kernel(const T* __restrict__ logits, const L* __restrict__ labels,
                                   const float* __restrict__ weights, int64_t rows, int64_t c,
                                   int64_t ignore_index, const float* __restrict__ factor,
                                   T* __restrict__ dlogits) {
  const int lane = threadIdx.x & 31;
  const float f = factor[0];
  for (int64_t r = global_warp(); r < rows; r += warp_count()) {
    const int64_t label = static_cast<int64_t>(labels[r]);
    T* out = dlogits + r * c;
    if (label == ignore_index || label < 0 || label >= c) {
      const float v = label == ignore_index ? 0.f : NAN;
      for (int64_t j = lane; j < c; j += 32)
        out[j] = from_f32<T>(v);
      continue;
    }
    const T* row = logits + r * c;
    float m, s;
    row_softmax_stats(row, c, lane, m, s);
    const float k = f * (weights ? weights[label] : 1.f);
    const float inv_s = 1.f / s;
    for (int64_t j = lane; j < c; j += 32) {
      const float p = expf(to_f32(row[j]) - m) * inv_s;
      out[j] = from_f32<T>(k * (p - (j == label ? 1.f : 0.f)));
    }
  }
}

template <typename F>
void dispatch_labels(const char* op, const Tensor& labels, F&& f) {
  switch (labels.dtype()) {
    case DType::u8:
      f(TypeTag<uint8_t>{});
      return;
    case DType::i32:
      f(TypeTag<int32_t>{});
      return;
    case DType::i64:
      f(TypeTag<int64_t>{});
      return;
    default:
      fail_dtype(op, "labels", labels, "u8, i32 or i64");
  }
}

void check_ce(const char* op, const Context& ctx, const Tensor& logits, const Tensor& labels,
              const Tensor& class_weights) {
  require_float(op, "logits", logits);
  require_on_device(op, "labels", ctx, labels);
  if (logits.rank() < 1 || labels.numel() != rows_of(logits))
    COHORT_FAIL(std::string(op) + ": labels " + labels.str() + " do not match the rows of logits " +
                logits.str());
  if (class_weights.defined()) {
    require_on_device(op, "class_weights", ctx, class_weights);
    require_f32(op, "class_weights", class_weights);
    if (class_weights.numel() != channels_of(logits))
      COHORT_FAIL(std::string(op) + ": class_weights " + class_weights.str() +
                  " must have one entry per class of logits " + logits.str());
  }
}

unsigned warp_row_blocks(int64_t rows) {
  const int64_t warps_per_block = kThreads / 32;
  return static_cast<unsigned>(
      std::clamp<int64_t>((rows + warps_per_block - 1) / warps_per_block, 1, 8192));
}

// ---- regression ------------------------------------------------------------------------
__device__ __forceinline__ float regression_term(int kind, float d, float beta) {
  const float a = fabsf(d);
  if (kind == 0) return a;
  return a < beta ? 0.5f * d * d / beta : a - 0.5f * beta;
}
__device__ __forceinline__ float regression_grad(int kind, float d, float beta) {
  const float sign = d > 0.f ? 1.f : (d < 0.f ? -1.f : 0.f);
  if (kind == 0) return sign;
  return fabsf(d) < beta ? d / beta : sign;
}

template <typename M>
__device__ __forceinline__ bool is_valid(const M* mask, int64_t i) {
  return mask == nullptr || to_f32(mask[i]) != 0.f;
}

template <typename T, typename M>
__global__ void regression_forward_kernel(const T* __restrict__ pred, const T* __restrict__ target,
                                          const M* __restrict__ mask, int64_t n, int kind,
                                          float beta, double* partial) {
  double loss = 0, count = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!is_valid(mask, i)) continue;
    loss += regression_term(kind, to_f32(pred[i]) - to_f32(target[i]), beta);
    count += 1;
  }
  store_block_pair(loss, count, partial);
}

__global__ void regression_finalize_kernel(const double* partial, int blocks, float* out) {
  double loss, count;
  sum_block_pairs(partial, blocks, loss, count);
  if (threadIdx.x == 0) out[0] = count > 0 ? static_cast<float>(loss / count) : 0.f;
}

template <typename M>
__global__ void count_valid_kernel(const M* __restrict__ mask, int64_t n, double* partial) {
  double count = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    count += is_valid(mask, i) ? 1.0 : 0.0;
  store_block_pair(count, 0.0, partial);
}

// The block partials' first sums as one f32 total (a normaliser; NaN stays NaN).
__global__ void normaliser_total_kernel(const double* partial, int blocks, float* out) {
  double total, unused;
  sum_block_pairs(partial, blocks, total, unused);
  if (threadIdx.x == 0) out[0] = static_cast<float>(total);
}

__global__ void normaliser_share_kernel(const float* local, const float* total, double factor,
                                        float* out) {
  const double l = local[0], t = total[0];
  out[0] = isnan(l) || isnan(t) ? NAN : (t == 0 ? 0.f : static_cast<float>(factor * l / t));
}

template <typename T, typename M>
__global__ void regression_backward_kernel(const T* __restrict__ pred, const T* __restrict__ target,
                                           const M* __restrict__ mask, int64_t n, int kind,
                                           float beta, const float* __restrict__ factor,
                                           T* __restrict__ dpred) {
  const float f = factor[0];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = is_valid(mask, i)
                        ? f * regression_grad(kind, to_f32(pred[i]) - to_f32(target[i]), beta)
                        : 0.f;
    dpred[i] = from_f32<T>(g);
  }
}

// Calls f(TypeTag<M>{}) for the mask's storage type; an undefined mask is u8 with
// a null pointer (everything valid).
template <typename F>
void dispatch_mask(const char* op, const Tensor& mask, F&& f) {
  if (!mask.defined()) {
    f(TypeTag<uint8_t>{});
    return;
  }
  switch (mask.dtype()) {
    case DType::u8:
      f(TypeTag<uint8_t>{});
      return;
    case DType::f32:
      f(TypeTag<float>{});
      return;
    case DType::f16:
      f(TypeTag<__half>{});
      return;
    case DType::bf16:
      f(TypeTag<__nv_bfloat16>{});
      return;
    default:
      fail_dtype(op, "mask", mask, "u8, f32, bf16 or f16");
  }
}

void check_regression(const char* op, const Context& ctx, const Tensor& pred, const Tensor& target,
                      const Tensor& mask) {
  require_float(op, "pred", pred);
  require_on_device(op, "target", ctx, target);
  if (target.shape() != pred.shape() || target.dtype() != pred.dtype())
    COHORT_FAIL(std::string(op) + ": target " + target.str() + " must match pred " + pred.str());
  if (mask.defined()) {
    require_on_device(op, "mask", ctx, mask);
    if (mask.numel() != pred.numel())
      COHORT_FAIL(std::string(op) + ": mask " + mask.str() + " must match pred " + pred.str());
  }
}

void check_dloss(const char* op, const Context& ctx, const Tensor& dloss) {
  require_on_device(op, "dloss", ctx, dloss);
  require_f32(op, "dloss", dloss);
  if (dloss.numel() != 1)
    COHORT_FAIL(std::string(op) + ": dloss " + dloss.str() + " must hold one element");
}

template <typename M>
const M* mask_ptr(const Tensor& mask) {
  return mask.defined() ? static_cast<const M*>(mask.raw()) : nullptr;
}

}  // namespace

Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index) {
  const char* op = "softmax_cross_entropy";
  check_ce(op, ctx, logits, labels, class_weights);
  const int64_t c = channels_of(logits), rows = rows_of(logits);
  Tensor out = new_tensor(ctx, Shape{1}, DType::f32);
  const unsigned blocks = warp_row_blocks(rows);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  const float* w = class_weights.defined() ? class_weights.data<float>() : nullptr;
  dispatch_float(op, "logits", logits, [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    dispatch_labels(op, labels, [&](auto ltag) {
      using L = typename decltype(ltag)::type;
      ce_forward_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(logits.raw()), static_cast<const L*>(labels.raw()), w, rows, c,
          ignore_index, partial.data<double>());
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
  ce_forward_finalize_kernel<<<1, kThreads, 0, ctx.stream()>>>(partial.data<double>(), blocks,
                                                               out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index) {
  const char* op = "softmax_cross_entropy_backward";
  check_ce(op, ctx, logits, labels, class_weights);
  check_dloss(op, ctx, dloss);
  const int64_t c = channels_of(logits), rows = rows_of(logits);
  Tensor dlogits = new_tensor(ctx, logits.shape(), logits.dtype());
  const unsigned weight_blocks = reduction_blocks(rows);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(weight_blocks)}, DType::f64);
  Tensor factor = new_tensor(ctx, Shape{1}, DType::f32);
  const float* w = class_weights.defined() ? class_weights.data<float>() : nullptr;
  dispatch_labels(op, labels, [&](auto ltag) {
    using L = typename decltype(ltag)::type;
    const L* lp = static_cast<const L*>(labels.raw());
    ce_weight_kernel<<<weight_blocks, kThreads, 0, ctx.stream()>>>(lp, w, rows, c, ignore_index,
                                                                   partial.data<double>());
    COHORT_CUDA_LAUNCH_CHECK();
    normaliser_factor_kernel<<<1, kThreads, 0, ctx.stream()>>>(
        partial.data<double>(), weight_blocks, dloss.data<float>(), factor.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
    if (rows == 0) return;
    dispatch_float(op, "logits", logits, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      ce_backward_kernel<<<warp_row_blocks(rows), kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(logits.raw()), lp, w, rows, c, ignore_index, factor.data<float>(),
          static_cast<T*>(dlogits.raw()));
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
  return dlogits;
}

Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta) {
  const char* op = "regression_loss";
  check_regression(op, ctx, pred, target, mask);
  const int64_t n = pred.numel();
  Tensor out = new_tensor(ctx, Shape{1}, DType::f32);
  const unsigned blocks = reduction_blocks(n);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  const int k = kind == RegressionLoss::l1 ? 0 : 1;
  dispatch_float(op, "pred", pred, [&](auto ttag) {
    using T = typename decltype(ttag)::type;
    dispatch_mask(op, mask, [&](auto mtag) {
      using M = typename decltype(mtag)::type;
      regression_forward_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(pred.raw()), static_cast<const T*>(target.raw()), mask_ptr<M>(mask),
          n, k, static_cast<float>(beta), partial.data<double>());
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
  regression_finalize_kernel<<<1, kThreads, 0, ctx.stream()>>>(partial.data<double>(), blocks,
                                                               out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta) {
  const char* op = "regression_loss_backward";
  check_regression(op, ctx, pred, target, mask);
  check_dloss(op, ctx, dloss);
  const int64_t n = pred.numel();
  Tensor dpred = new_tensor(ctx, pred.shape(), pred.dtype());
  const unsigned blocks = reduction_blocks(n);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  Tensor factor = new_tensor(ctx, Shape{1}, DType::f32);
  const int k = kind == RegressionLoss::l1 ? 0 : 1;
  dispatch_mask(op, mask, [&](auto mtag) {
    using M = typename decltype(mtag)::type;
    const M* mp = mask_ptr<M>(mask);
    count_valid_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(mp, n, partial.data<double>());
    COHORT_CUDA_LAUNCH_CHECK();
    normaliser_factor_kernel<<<1, kThreads, 0, ctx.stream()>>>(
        partial.data<double>(), blocks, dloss.data<float>(), factor.data<float>());
    COHORT_CUDA_LAUNCH_CHECK();
    if (n == 0) return;
    dispatch_float(op, "pred", pred, [&](auto ttag) {
      using T = typename decltype(ttag)::type;
      regression_backward_kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(
          static_cast<const T*>(pred.raw()), static_cast<const T*>(target.raw()), mp, n, k,
          static_cast<float>(beta), factor.data<float>(), static_cast<T*>(dpred.raw()));
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
  return dpred;
}

namespace {

// A normaliser of n items: `partials(blocks, partial)` launches the per-block
// sums, one more kernel adds them into an f32 [1].
template <typename F>
Tensor normaliser_of(Context& ctx, int64_t n, F&& partials) {
  const unsigned blocks = reduction_blocks(n);
  Tensor partial = new_tensor(ctx, Shape{2 * static_cast<int64_t>(blocks)}, DType::f64);
  partials(blocks, partial.data<double>());
  Tensor out = new_tensor(ctx, Shape{1}, DType::f32);
  normaliser_total_kernel<<<1, kThreads, 0, ctx.stream()>>>(partial.data<double>(), blocks,
                                                            out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

}  // namespace

Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index) {
  const char* op = "cross_entropy_normaliser";
  require_on_device(op, "labels", ctx, labels);
  if (class_weights.defined()) require_on_device(op, "class_weights", ctx, class_weights);
  const int64_t rows = labels.numel();
  // Without class weights every label but ignore_index counts (none is out of range).
  const int64_t classes =
      class_weights.defined() ? class_weights.numel() : std::numeric_limits<int64_t>::max();
  const float* w = class_weights.defined() ? class_weights.data<float>() : nullptr;
  return normaliser_of(ctx, rows, [&](unsigned blocks, double* partial) {
    dispatch_labels(op, labels, [&](auto ltag) {
      using L = typename decltype(ltag)::type;
      ce_weight_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(
          static_cast<const L*>(labels.raw()), w, rows, classes, ignore_index, partial);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
}

Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel) {
  const char* op = "valid_count";
  if (mask.defined()) require_on_device(op, "mask", ctx, mask);
  return normaliser_of(ctx, numel, [&](unsigned blocks, double* partial) {
    dispatch_mask(op, mask, [&](auto mtag) {
      using M = typename decltype(mtag)::type;
      count_valid_kernel<<<blocks, kThreads, 0, ctx.stream()>>>(mask_ptr<M>(mask), numel, partial);
      COHORT_CUDA_LAUNCH_CHECK();
    });
  });
}

Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor) {
  const char* op = "normaliser_share";
  require_on_device(op, "local", ctx, local);
  require_on_device(op, "total", ctx, total);
  Tensor out = new_tensor(ctx, Shape{1}, DType::f32);
  normaliser_share_kernel<<<1, 1, 0, ctx.stream()>>>(local.data<float>(), total.data<float>(),
                                                     factor, out.data<float>());
  COHORT_CUDA_LAUNCH_CHECK();
  return out;
}

}  // namespace cohort::core::ops::cuda
