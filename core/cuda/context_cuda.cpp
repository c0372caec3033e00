#include "core/cuda/context_cuda.hpp"

#include <fmt/format.h>

#include "core/cuda/check.hpp"

namespace cohort::core::cuda {

CudaBackend::CudaBackend(Context& ctx) : m_device(ctx.device()), m_stream(ctx.stream()) {
  COHORT_CHECK(m_device.is_cuda(),
               fmt::format("cuda_backend: context is on {}, not a CUDA device", m_device.str()));
  COHORT_CUDA_CHECK(
      cudaDeviceGetAttribute(&m_sm_count, cudaDevAttrMultiProcessorCount, m_device.index));
  if (m_sm_count < 1) m_sm_count = 1;
}

CudaBackend::~CudaBackend() {
  // Work queued on the stream may still use the workspace or the handles; the
  // workspace is freed stream-ordered, the handles only after the stream drained.
  if (m_cudnn || m_cublas_lt) COHORT_CUDA_CHECK_PRINT(cudaStreamSynchronize(m_stream));
  m_workspace = Tensor();
  if (m_cudnn) COHORT_CUDNN_CHECK_PRINT(cudnnDestroy(m_cudnn));
  if (m_cublas_lt) COHORT_CUBLAS_CHECK_PRINT(cublasLtDestroy(m_cublas_lt));
}

cudnnHandle_t CudaBackend::cudnn() {
  if (m_cudnn == nullptr) {
    COHORT_CUDA_CHECK(cudaSetDevice(m_device.index));
    cudnnHandle_t handle = nullptr;
    COHORT_CUDNN_CHECK(cudnnCreate(&handle));
    const cudnnStatus_t status = cudnnSetStream(handle, m_stream);
    if (status != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(handle);
      COHORT_CUDNN_CHECK(status);
    }
    m_cudnn = handle;
  }
  return m_cudnn;
}

cublasLtHandle_t CudaBackend::cublas_lt() {
  if (m_cublas_lt == nullptr) {
    COHORT_CUDA_CHECK(cudaSetDevice(m_device.index));
    COHORT_CUBLAS_CHECK(cublasLtCreate(&m_cublas_lt));
  }
  return m_cublas_lt;
}

void* CudaBackend::workspace(size_t bytes) {
  if (bytes == 0) return nullptr;
  if (workspace_size() < bytes) {
    // Grow geometrically so that a sequence of slightly larger requests does not
    // reallocate every time. The old block is released stream-ordered first.
    const size_t grown = std::max(bytes, workspace_size() + workspace_size() / 2);
    m_workspace = Tensor();
    try {
      m_workspace =
          Tensor::empty(Shape{static_cast<int64_t>(grown)}, DType::u8, m_device, m_stream);
    } catch (const OutOfMemoryError&) {
      if (grown == bytes) throw;
      m_workspace =
          Tensor::empty(Shape{static_cast<int64_t>(bytes)}, DType::u8, m_device, m_stream);
    }
  }
  return m_workspace.raw();
}

CudaBackend& cuda_backend(Context& ctx) {
  if (ctx.backend_state() == nullptr) ctx.set_backend_state(std::make_unique<CudaBackend>(ctx));
  auto* backend = dynamic_cast<CudaBackend*>(ctx.backend_state());
  COHORT_CHECK(backend != nullptr,
               fmt::format("cuda_backend: the context on {} holds another backend's state",
                           ctx.device().str()));
  return *backend;
}

}  // namespace cohort::core::cuda
