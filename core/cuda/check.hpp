#pragma once
// Check macros for the CUDA family. Usable from .cu files (no fmt here).
// COHORT_*_CHECK throws cohort::Error; COHORT_*_CHECK_PRINT only prints (for
// destructors and noexcept paths). With COHORT_DEBUG_SYNC, COHORT_CUDA_LAUNCH_CHECK
// synchronises so that an asynchronous fault is reported at the launch that caused it.
#include <cuda_runtime.h>

#include "core/error.hpp"

#define COHORT_LIB_CHECK_(lib, ok, call)                                                     \
  do {                                                                                       \
    auto cohort_status_ = (call);                                                            \
    if (cohort_status_ != (ok))                                                              \
      ::cohort::throw_library_error(lib, static_cast<long>(cohort_status_), #call, __FILE__, \
                                    __LINE__);                                               \
  } while (0)

#define COHORT_LIB_CHECK_PRINT_(lib, ok, call)                                               \
  do {                                                                                       \
    auto cohort_status_ = (call);                                                            \
    if (cohort_status_ != (ok))                                                              \
      ::cohort::print_library_error(lib, static_cast<long>(cohort_status_), #call, __FILE__, \
                                    __LINE__);                                               \
  } while (0)

#define COHORT_CUDA_CHECK(call) COHORT_LIB_CHECK_(::cohort::Library::cuda, cudaSuccess, call)
#define COHORT_CUDA_CHECK_PRINT(call) \
  COHORT_LIB_CHECK_PRINT_(::cohort::Library::cuda, cudaSuccess, call)
#define COHORT_CUDNN_CHECK(call) \
  COHORT_LIB_CHECK_(::cohort::Library::cudnn, CUDNN_STATUS_SUCCESS, call)
#define COHORT_CUDNN_CHECK_PRINT(call) \
  COHORT_LIB_CHECK_PRINT_(::cohort::Library::cudnn, CUDNN_STATUS_SUCCESS, call)
#define COHORT_CUBLAS_CHECK(call) \
  COHORT_LIB_CHECK_(::cohort::Library::cublas, CUBLAS_STATUS_SUCCESS, call)
#define COHORT_CUBLAS_CHECK_PRINT(call) \
  COHORT_LIB_CHECK_PRINT_(::cohort::Library::cublas, CUBLAS_STATUS_SUCCESS, call)
#define COHORT_NCCL_CHECK(call) COHORT_LIB_CHECK_(::cohort::Library::nccl, ncclSuccess, call)
#define COHORT_NCCL_CHECK_PRINT(call) \
  COHORT_LIB_CHECK_PRINT_(::cohort::Library::nccl, ncclSuccess, call)

#ifdef COHORT_DEBUG_SYNC
#define COHORT_CUDA_LAUNCH_CHECK()              \
  do {                                          \
    COHORT_CUDA_CHECK(cudaGetLastError());      \
    COHORT_CUDA_CHECK(cudaDeviceSynchronize()); \
  } while (0)
#else
#define COHORT_CUDA_LAUNCH_CHECK() COHORT_CUDA_CHECK(cudaGetLastError())
#endif
