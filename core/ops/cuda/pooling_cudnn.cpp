// Pooling on cuDNN's legacy API with NHWC descriptors. Semantics as the CPU op
// and PyTorch: max ignores padding and propagates NaN; average divides by the
// full window (count_include_pad) or by the part inside the image.
// "Declined" (BAD_PARAM / NOT_SUPPORTED when called, before anything runs) is
// remembered per problem in the context's CudaBackend and sends that problem to
// the own kernels from then on; any other failure is an error.
#include "core/ops/cuda/pooling_cudnn.hpp"

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "core/cuda/check.hpp"
#include "core/cuda/context_cuda.hpp"
#include "core/cuda/cudnn_descriptors.hpp"
#include "core/ops/cuda/cuda_common.hpp"

namespace cohort::core::ops::cuda {
namespace {

using core::cuda::CudaBackend;
using core::cuda::PoolingDescriptor;
using core::cuda::TensorDescriptor;

enum Routine : int64_t { max_forward = 2, avg_forward = 3, avg_backward = 4 };
enum Decision : int { untried = 0, accepted = 1, declined = 2 };

std::atomic<bool>& pooling_flag() {
  static std::atomic<bool> enabled = [] {
    const char* v = std::getenv("COHORT_POOLING");
    return v == nullptr || std::strcmp(v, "kernels") != 0;
  }();
  return enabled;
}

bool fits_int(const Shape& s) {
  if (s.numel() > INT_MAX) return false;
  for (int i = 0; i < s.rank(); ++i)
    if (s[i] > INT_MAX) return false;
  return true;
}

// Geometry packed into one key slot; windows beyond 255 are left to the own kernels.
bool pack_geometry(const PoolGeometry& g, int64_t& packed) {
  const int v[6] = {g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w};
  packed = g.count_include_pad ? 1 : 0;
  for (int i = 0; i < 6; ++i) {
    if (v[i] < 0 || v[i] > 255) return false;
    packed = (packed << 8) | v[i];
  }
  return true;
}

cudnnPoolingMode_t mode_of(bool max, const PoolGeometry& g) {
  if (max) return CUDNN_POOLING_MAX;
  return g.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                             : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
}

// The decision slot for this problem, or nullptr when cuDNN cannot be asked.
int* decision_for(Context& ctx, Routine routine, DType dtype, const Shape& x, const Shape& y,
                  const PoolGeometry& g) {
  int64_t geometry = 0;
  if (!pooling_flag().load() || x.rank() != 4 || !fits_int(x) || !fits_int(y) ||
      !pack_geometry(g, geometry))
    return nullptr;
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  int& d = be.cudnn_decisions()[{routine, static_cast<int64_t>(dtype), x[0], x[1], x[2], x[3],
                                 geometry, 0}];
  return d == declined ? nullptr : &d;
}

struct PoolDescriptors {
  TensorDescriptor x, y;
  PoolingDescriptor pool;
  PoolDescriptors(DType dtype, const Shape& xs, const Shape& ys, const PoolGeometry& g, bool max,
                  const char* op) {
    const cudnnDataType_t type = core::cuda::cudnn_data_type(dtype, op);
    x.set_nhwc(type, static_cast<int>(xs[0]), static_cast<int>(xs[1]), static_cast<int>(xs[2]),
               static_cast<int>(xs[3]));
    y.set_nhwc(type, static_cast<int>(ys[0]), static_cast<int>(ys[1]), static_cast<int>(ys[2]),
               static_cast<int>(ys[3]));
    pool.set_2d(mode_of(max, g), /*propagate_nan=*/true, g.kernel_h, g.kernel_w, g.pad_h, g.pad_w,
                g.stride_h, g.stride_w);
  }
};

std::atomic<int64_t> g_forward_count{0}, g_avg_backward_count{0};

// Records the outcome; returns whether cuDNN did the work.
bool settle(int& decision, cudnnStatus_t status, const char* call, std::atomic<int64_t>& count) {
  if (status == CUDNN_STATUS_SUCCESS) {
    decision = accepted;
    ++count;
    return true;
  }
  if (core::cuda::cudnn_declined(status)) {
    decision = declined;
    return false;
  }
  throw_library_error(Library::cudnn, static_cast<long>(status), call, __FILE__, __LINE__);
}

}  // namespace

CudnnPoolingCounts cudnn_pooling_counts() {
  return {g_forward_count.load(), g_avg_backward_count.load()};
}

bool cudnn_pooling_enabled() {
  return pooling_flag().load();
}
void set_cudnn_pooling_enabled(bool enabled) {
  pooling_flag().store(enabled);
}

Tensor cudnn_pool_forward(Context& ctx, const Tensor& x_in, const PoolGeometry& g, bool max,
                          const Shape& y_shape) {
  const char* op = max ? "max_pool2d" : "avg_pool2d";
  int* decision =
      decision_for(ctx, max ? max_forward : avg_forward, x_in.dtype(), x_in.shape(), y_shape, g);
  if (decision == nullptr) return Tensor();
  const Tensor x = aligned16_input(ctx, x_in);
  PoolDescriptors d(x.dtype(), x.shape(), y_shape, g, max, op);
  Tensor y = new_tensor(ctx, y_shape, x.dtype());
  const float one = 1.f, zero = 0.f;
  const cudnnStatus_t st = cudnnPoolingForward(core::cuda::cuda_backend(ctx).cudnn(), d.pool.get(),
                                               &one, d.x.get(), x.raw(), &zero, d.y.get(), y.raw());
  return settle(*decision, st, "cudnnPoolingForward", g_forward_count) ? y : Tensor();
}

Tensor cudnn_avg_pool_backward(Context& ctx, const Tensor& dy_in, const Shape& x_shape,
                               const PoolGeometry& g) {
  const char* op = "avg_pool2d_backward";
  int* decision = decision_for(ctx, avg_backward, dy_in.dtype(), x_shape, dy_in.shape(), g);
  if (decision == nullptr) return Tensor();
  const Tensor dy = aligned16_input(ctx, dy_in);
  PoolDescriptors d(dy.dtype(), x_shape, dy.shape(), g, false, op);
  Tensor dx = new_tensor(ctx, x_shape, dy.dtype());
  // Average pooling's backward reads neither y nor x; cuDNN's signature still
  // wants them, so dy stands in for y (same shape) and dx for x.
  const float one = 1.f, zero = 0.f;
  const cudnnStatus_t st = cudnnPoolingBackward(core::cuda::cuda_backend(ctx).cudnn(), d.pool.get(),
                                                &one, d.y.get(), dy.raw(), d.y.get(), dy.raw(),
                                                d.x.get(), dx.raw(), &zero, d.x.get(), dx.raw());
  return settle(*decision, st, "cudnnPoolingBackward", g_avg_backward_count) ? dx : Tensor();
}

}  // namespace cohort::core::ops::cuda
