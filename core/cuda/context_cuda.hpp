#pragma once
// CUDA backend state of a Context: the library handles bound to the context's
// stream, a growable scratch workspace, the cuDNN convolution algorithm cache and
// the cuBLASLt heuristic cache. Created lazily by cuda_backend(ctx) on the first
// CUDA op, destroyed with the Context (before its stream).
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::cuda {

// Which cuDNN convolution routine a cached algorithm belongs to.
enum class ConvKind : int { forward = 0, backward_data = 1, backward_filter = 2 };

// Everything that determines cuDNN's choice of convolution algorithm. Shapes are
// those of the *convolution* (x, w, y), so conv-transpose reuses the same entries.
struct ConvAlgoKey {
  ConvKind kind = ConvKind::forward;
  int dtype = 0;
  std::array<int, 4> x{};         // N, H, W, C
  std::array<int, 4> w{};         // O, kh, kw, C
  std::array<int, 4> y{};         // N, Ho, Wo, O
  std::array<int, 6> geometry{};  // pad_h, pad_w, stride_h, stride_w, dilation_h, dilation_w
  bool deterministic = false;     // chosen among deterministic algorithms only
  auto operator<=>(const ConvAlgoKey&) const = default;
};

// The algorithm cudnnFind*AlgorithmEx chose, with what it needs to run it again.
struct ConvAlgoChoice {
  int algo = 0;  // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  size_t workspace_bytes = 0;
  cudnnMathType_t math_type = CUDNN_DEFAULT_MATH;
};

// cuBLASLt heuristic results are cached per problem (shapes, ops, dtype, alignments).
struct MatmulKey {
  int dtype = 0;
  bool trans_a = false, trans_b = false, accumulate = false;
  int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldd = 0;
  std::array<int, 3> alignment{};  // A, B, C/D pointer alignment in bytes
  auto operator<=>(const MatmulKey&) const = default;
};

class CudaBackend : public Context::BackendState {
 public:
  explicit CudaBackend(Context& ctx);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  cudaStream_t stream() const { return m_stream; }
  Device device() const { return m_device; }
  // Handles are created on first use (cudnnCreate alone takes a noticeable time).
  cudnnHandle_t cudnn();
  cublasLtHandle_t cublas_lt();

  // At least `bytes` of device scratch, valid until the next call to workspace()
  // (all users are on this context's stream, so reuse is stream-ordered).
  void* workspace(size_t bytes);
  size_t workspace_size() const { return m_workspace.defined() ? m_workspace.nbytes() : 0; }

  std::map<ConvAlgoKey, ConvAlgoChoice>& conv_algorithms() { return m_conv_algorithms; }
  std::map<MatmulKey, cublasLtMatmulAlgo_t>& matmul_algorithms() { return m_matmul_algorithms; }
  // What cuDNN answered the first time a problem of another routine (batch norm,
  // pooling) was tried, so that a declined configuration is not retried every step.
  // Key: the routine's own encoding of the problem; value: its own decision code.
  std::map<std::array<int64_t, 8>, int>& cudnn_decisions() { return m_cudnn_decisions; }

  // Multiprocessor count of the device (for sizing persistent grids).
  int sm_count() const { return m_sm_count; }

 private:
  Device m_device;
  cudaStream_t m_stream = nullptr;
  int m_sm_count = 1;
  cudnnHandle_t m_cudnn = nullptr;
  cublasLtHandle_t m_cublas_lt = nullptr;
  Tensor m_workspace;
  std::map<ConvAlgoKey, ConvAlgoChoice> m_conv_algorithms;
  std::map<MatmulKey, cublasLtMatmulAlgo_t> m_matmul_algorithms;
  std::map<std::array<int64_t, 8>, int> m_cudnn_decisions;
};

// The CUDA backend state of `ctx` (which must be a CUDA context), created on first use.
CudaBackend& cuda_backend(Context& ctx);

}  // namespace cohort::core::cuda
