// Training batch normalisation on cuDNN's legacy Ex routines
// (cudnnBatchNormalizationForwardTrainingEx / BackwardEx) with NHWC tensors in
// CUDNN_BATCHNORM_SPATIAL_PERSISTENT mode, as frameworks use for training.
//
// Semantics match the own kernels and the CPU: saved mean and 1/sqrt(var + eps)
// of the biased batch variance, running variance updated with the unbiased one,
// running = (1 - momentum) * running + momentum * batch.
//
// Paths, decided the first time a problem (dtype, N, H, W, C, ops) is seen and
// remembered in the context's CudaBackend:
//   cudnn_fused  batch norm [+ add] + ReLU in one cuDNN pass (BN_ACTIVATION,
//                BN_ADD_ACTIVATION; cuDNN offers these for some dtypes/shapes only)
//   cudnn        cuDNN's plain batch norm, then an own add/ReLU epilogue kernel
//   declined     the own kernels (batch_norm.cu) do all of it
// "Declined" means cuDNN answered BAD_PARAM or NOT_SUPPORTED when called, which
// happens before anything runs; any other failure is an error.
#include "core/ops/cuda/batch_norm_cudnn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/cuda/check.hpp"
#include "core/cuda/context_cuda.hpp"
#include "core/cuda/cudnn_descriptors.hpp"
#include "core/ops/cuda/cuda_common.hpp"
#include "core/ops/cuda/cuda_ops.hpp"

namespace cohort::core::ops::cuda {
namespace {

using core::cuda::ActivationDescriptor;
using core::cuda::CudaBackend;
using core::cuda::TensorDescriptor;

constexpr cudnnBatchNormMode_t kMode = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
constexpr int64_t kRoutineBatchNormTrain = 1;

enum Decision : int { untried = 0, fused_ok = 1, plain_ok = 2, declined = 3 };

using core::cuda::cudnn_declined;

// COHORT_CUDNN_VERBOSE=1: say once per problem what cuDNN declined and why.
void report_declined(const char* what, const Tensor& x, cudnnStatus_t status) {
  if (core::cuda::cudnn_verbose())
    std::fprintf(stderr, "cudnn batch norm: %s declined for x %s (%s): %s\n", what, x.str().c_str(),
                 cudnnGetErrorString(status), "using the next path");
}

void check_status(cudnnStatus_t status, const char* call) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw_library_error(Library::cudnn, static_cast<long>(status), call, __FILE__, __LINE__);
}

// x as cuDNN's [n, h, w, c]: NHWC 4-d tensors as they are, anything else as
// [rows, 1, 1, C] (the same per-channel statistics over every other dim).
struct BnShape {
  int n = 0, h = 1, w = 1, c = 0;
  bool fits = false;
};

BnShape bn_shape(const Tensor& x) {
  BnShape s;
  if (x.numel() > INT_MAX || x.rank() < 2) return s;
  const Shape& d = x.shape();
  if (x.rank() == 4) {
    s.n = static_cast<int>(d[0]);
    s.h = static_cast<int>(d[1]);
    s.w = static_cast<int>(d[2]);
  } else if (d[0] > 0) {
    // Keep N the batch: cuDNN limits N (not H) for its persistent kernels.
    s.n = static_cast<int>(d[0]);
    s.h = static_cast<int>(rows_of(x) / d[0]);
  }
  s.c = static_cast<int>(channels_of(x));
  s.fits = s.n > 0 && s.c > 0;
  return s;
}

cudnnBatchNormOps_t fused_ops(const BatchNormArgs& args) {
  return args.residual.defined() ? CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION
                                 : CUDNN_BATCHNORM_OPS_BN_ACTIVATION;
}

std::array<int64_t, 8> problem_key(const Tensor& x, const BnShape& s, const BatchNormArgs& args) {
  const int64_t ops = args.relu ? static_cast<int64_t>(fused_ops(args)) : 0;
  return {kRoutineBatchNormTrain,         static_cast<int64_t>(x.dtype()), s.n, s.h, s.w, s.c, ops,
          args.residual.defined() ? 1 : 0};
}

// The descriptors every call of one problem needs.
struct BnDescriptors {
  TensorDescriptor x, channel;
  ActivationDescriptor relu;
  cudnnStatus_t derived = CUDNN_STATUS_SUCCESS;  // of the per-channel descriptor
  BnDescriptors(const Tensor& t, const BnShape& s, const char* op) {
    x.set_nhwc(core::cuda::cudnn_data_type(t.dtype(), op), s.n, s.h, s.w, s.c);
    derived = channel.derive_batch_norm(x, kMode);
    relu.set_relu();
  }
};

// How often cuDNN did the work (tests assert the path each routine took).
std::atomic<int64_t> g_forward_count{0}, g_forward_fused_count{0}, g_backward_count{0};

// An f32 [C] vector cuDNN reads and writes in place: views into flat buffers can
// be misaligned for cuDNN's vector loads, so those go through an aligned copy.
class AlignedInOut {
 public:
  AlignedInOut(Context& ctx, Tensor& t) : m_ctx(ctx), m_target(t) {
    m_work = aligned16_input(ctx, t);
  }
  void* data() { return m_work.raw(); }
  // Copies the result back (only if a copy was made); call after success.
  void commit() {
    if (m_work.raw() != m_target.raw()) m_target.copy_from(m_work, m_ctx.stream());
  }

 private:
  Context& m_ctx;
  Tensor& m_target;
  Tensor m_work;
};

// cuDNN runs the Ex routines like the plain ones (no fused ReLU/add!) when given a
// null workspace of size 0, so the fused ops always get at least a small one.
void* workspace_for(CudaBackend& be, size_t bytes, cudnnBatchNormOps_t ops) {
  if (ops != CUDNN_BATCHNORM_OPS_BN) bytes = std::max<size_t>(bytes, 256);
  return bytes == 0 ? nullptr : be.workspace(bytes);
}

struct ForwardCall {
  Context& ctx;
  CudaBackend& be;
  BnDescriptors& d;
  const Tensor& x;
  const Tensor& residual;  // z: only with BN_ADD_ACTIVATION
  Tensor& y;
  const Tensor& gamma;
  const Tensor& beta;
  AlignedInOut& running_mean;
  AlignedInOut& running_var;
  const BatchNormArgs& args;
  BatchNormSaved& saved;

  cudnnStatus_t run(cudnnBatchNormOps_t ops) {
    cudnnHandle_t handle = be.cudnn();
    const bool act = ops != CUDNN_BATCHNORM_OPS_BN;
    const bool add = ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
    cudnnActivationDescriptor_t relu = act ? d.relu.get() : nullptr;
    size_t ws_bytes = 0, reserve_bytes = 0;
    // The size queries get x's descriptor for z and y whatever the ops (as other
    // frameworks call them); only the routine itself gets null for an absent z.
    cudnnStatus_t st = cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(
        handle, kMode, ops, d.x.get(), d.x.get(), d.x.get(), d.channel.get(), relu, &ws_bytes);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    st = cudnnGetBatchNormalizationTrainingExReserveSpaceSize(handle, kMode, ops, relu, d.x.get(),
                                                              &reserve_bytes);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (act) reserve_bytes = std::max<size_t>(reserve_bytes, 256);  // never null (as above)
    Tensor reserve;
    if (reserve_bytes > 0)
      reserve = new_tensor(ctx, Shape{static_cast<int64_t>(reserve_bytes)}, DType::u8);
    if (act) ws_bytes = std::max<size_t>(ws_bytes, 256);
    void* ws = workspace_for(be, ws_bytes, ops);
    const float one = 1.f, zero = 0.f;
    st = cudnnBatchNormalizationForwardTrainingEx(
        handle, kMode, ops, &one, &zero, d.x.get(), x.raw(), add ? d.x.get() : nullptr,
        add ? residual.raw() : nullptr, d.x.get(), y.raw(), d.channel.get(), gamma.raw(),
        beta.raw(), args.momentum, running_mean.data(), running_var.data(), args.eps,
        saved.mean.raw(), saved.invstd.raw(), relu, ws, ws_bytes,
        reserve_bytes > 0 ? reserve.raw() : nullptr, reserve_bytes);
    if (st == CUDNN_STATUS_SUCCESS) saved.reserve = reserve;
    return st;
  }
};

}  // namespace

namespace {
std::atomic<bool>& cudnn_batch_norm_flag() {
  static std::atomic<bool> enabled = [] {
    const char* v = std::getenv("COHORT_BATCHNORM");
    return v == nullptr || std::strcmp(v, "kernels") != 0;
  }();
  return enabled;
}
}  // namespace

CudnnBatchNormCounts cudnn_batch_norm_counts() {
  return {g_forward_count.load(), g_forward_fused_count.load(), g_backward_count.load()};
}

bool cudnn_batch_norm_enabled() {
  return cudnn_batch_norm_flag().load();
}
void set_cudnn_batch_norm_enabled(bool enabled) {
  cudnn_batch_norm_flag().store(enabled);
}

Tensor cudnn_batch_norm_train(Context& ctx, const Tensor& x_in, const Tensor& gamma_in,
                              const Tensor& beta_in, Tensor& running_mean_t, Tensor& running_var_t,
                              const BatchNormArgs& args, BatchNormSaved& saved) {
  const char* op = "batch_norm_train";
  const BnShape s = bn_shape(x_in);
  if (!s.fits || args.reducer != nullptr) return Tensor();
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  int& decision = be.cudnn_decisions()[problem_key(x_in, s, args)];
  if (decision == declined) return Tensor();

  const Tensor x = aligned16_input(ctx, x_in);
  const Tensor residual = args.residual.defined() ? aligned16_input(ctx, args.residual) : Tensor();
  const Tensor gamma = aligned16_input(ctx, gamma_in);
  const Tensor beta = aligned16_input(ctx, beta_in);
  AlignedInOut running_mean(ctx, running_mean_t), running_var(ctx, running_var_t);
  BnDescriptors d(x, s, op);
  if (d.derived != CUDNN_STATUS_SUCCESS) {
    if (!cudnn_declined(d.derived)) check_status(d.derived, "cudnnDeriveBNTensorDescriptor");
    report_declined("batch norm (parameter descriptor)", x, d.derived);
    decision = declined;
    return Tensor();
  }
  Tensor y = new_tensor(ctx, x.shape(), x.dtype());
  BatchNormSaved out;
  out.mean = new_tensor(ctx, Shape{s.c}, DType::f32);
  out.invstd = new_tensor(ctx, Shape{s.c}, DType::f32);
  ForwardCall call{ctx, be, d, x, residual, y, gamma, beta, running_mean, running_var, args, out};

  if (args.relu && (decision == untried || decision == fused_ok)) {
    const cudnnStatus_t st = call.run(fused_ops(args));
    if (st == CUDNN_STATUS_SUCCESS) {
      decision = fused_ok;
      out.path = BatchNormPath::cudnn_fused;
      out.beta = beta;
      ++g_forward_fused_count;
    } else if (cudnn_declined(st)) {
      report_declined("fused batch norm + relu", x, st);
    } else {
      check_status(st, "cudnnBatchNormalizationForwardTrainingEx (fused)");
    }
  }
  if (out.path == BatchNormPath::kernels) {
    const cudnnStatus_t st = call.run(CUDNN_BATCHNORM_OPS_BN);
    if (cudnn_declined(st)) {
      report_declined("batch norm", x, st);
      decision = declined;
      return Tensor();
    }
    check_status(st, "cudnnBatchNormalizationForwardTrainingEx");
    decision = plain_ok;
    out.path = BatchNormPath::cudnn;
    ++g_forward_count;
    if (args.relu || residual.defined()) batch_norm_epilogue(ctx, y, residual, args.relu);
  }
  running_mean.commit();
  running_var.commit();
  saved = out;
  return y;
}

bool cudnn_batch_norm_backward(Context& ctx, const Tensor& dy_in, const Tensor& x_in,
                               const Tensor& y_in, const Tensor& gamma_in,
                               const BatchNormSaved& saved, const BatchNormArgs& args,
                               Tensor& dgamma, Tensor& dbeta, bool accumulate,
                               BatchNormGrads& result) {
  const char* op = "batch_norm_backward";
  const BnShape s = bn_shape(x_in);
  COHORT_CHECK(s.fits,
               fmt::format("{}: x {} does not fit the cuDNN forward it came from", op, x_in.str()));
  const bool fused = saved.path == BatchNormPath::cudnn_fused;
  COHORT_CHECK(!fused || saved.beta.defined(),
               fmt::format("{}: the fused cuDNN forward saved no beta (x {})", op, x_in.str()));
  CudaBackend& be = core::cuda::cuda_backend(ctx);
  const Tensor x = aligned16_input(ctx, x_in);
  const Tensor gamma = aligned16_input(ctx, gamma_in);
  BnDescriptors d(x, s, op);
  check_status(d.derived, "cudnnDeriveBNTensorDescriptor");  // the forward derived it too

  BatchNormGrads grads;
  Tensor dy = aligned16_input(ctx, dy_in);
  Tensor y;
  cudnnBatchNormOps_t ops = CUDNN_BATCHNORM_OPS_BN;
  if (fused) {
    ops = fused_ops(args);
    y = aligned16_input(ctx, y_in);
    if (args.residual.defined()) grads.dresidual = new_tensor(ctx, x.shape(), x.dtype());
  } else {
    // The epilogue's backward: through the ReLU mask, and the residual's gradient
    // is the masked gradient itself.
    if (args.relu) dy = relu_backward(ctx, dy, y_in);
    if (args.residual.defined()) {
      if (args.relu) {
        grads.dresidual = dy;
      } else {
        grads.dresidual = new_tensor(ctx, x.shape(), x.dtype());
        grads.dresidual.copy_from(dy, ctx.stream());
      }
    }
  }
  grads.dx = new_tensor(ctx, x.shape(), x.dtype());

  // Parameter gradients straight into dgamma/dbeta (cuDNN blends with beta = 1 to
  // accumulate) when they are usable as they are, else into scratch.
  const bool direct =
      dgamma.defined() && dbeta.defined() && is_aligned16(dgamma) && is_aligned16(dbeta);
  Tensor dg = direct ? dgamma : new_tensor(ctx, Shape{s.c}, DType::f32);
  Tensor db = direct ? dbeta : new_tensor(ctx, Shape{s.c}, DType::f32);
  const float one = 1.f, zero = 0.f;
  const float* param_blend = (direct && accumulate) ? &one : &zero;

  cudnnHandle_t handle = be.cudnn();
  cudnnActivationDescriptor_t relu = fused ? d.relu.get() : nullptr;
  const bool add = ops == CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION;
  size_t ws_bytes = 0;
  cudnnStatus_t st = cudnnGetBatchNormalizationBackwardExWorkspaceSize(
      handle, kMode, ops, d.x.get(), d.x.get(), d.x.get(), add ? d.x.get() : nullptr, d.x.get(),
      d.channel.get(), relu, &ws_bytes);
  if (cudnn_declined(st)) {
    report_declined("batch norm backward", x, st);
    return false;
  }
  check_status(st, "cudnnGetBatchNormalizationBackwardExWorkspaceSize");
  if (fused) ws_bytes = std::max<size_t>(ws_bytes, 256);
  void* ws = workspace_for(be, ws_bytes, ops);
  const Tensor& reserve = saved.reserve;
  st = cudnnBatchNormalizationBackwardEx(
      handle, kMode, ops, &one, &zero, &one, param_blend, d.x.get(), x.raw(),
      fused ? d.x.get() : nullptr, fused ? y.raw() : nullptr, d.x.get(), dy.raw(),
      add ? d.x.get() : nullptr, add ? grads.dresidual.raw() : nullptr, d.x.get(), grads.dx.raw(),
      d.channel.get(), gamma.raw(), fused ? saved.beta.raw() : nullptr, dg.raw(), db.raw(),
      args.eps, saved.mean.raw(), saved.invstd.raw(), relu, ws, ws_bytes,
      reserve.defined() ? reserve.raw() : nullptr, reserve.defined() ? reserve.nbytes() : 0);
  // Declined here (before anything ran): the own kernels take the same saved
  // statistics and y, so the caller falls back to them.
  if (cudnn_declined(st)) {
    report_declined("batch norm backward", x, st);
    return false;
  }
  check_status(st, "cudnnBatchNormalizationBackwardEx");
  ++g_backward_count;
  if (!direct) {
    if (dgamma.defined()) convert_into(ctx, dg, dgamma, accumulate);
    if (dbeta.defined()) convert_into(ctx, db, dbeta, accumulate);
  }
  result = std::move(grads);
  return true;
}

}  // namespace cohort::core::ops::cuda
