// The library's own message for an error code. CUDA-family libraries are asked
// directly when the backend is built; others (MPI) register a provider so that
// core does not depend on them.
#include <array>
#include <atomic>
#include <string>

#include "core/error.hpp"

#ifdef COHORT_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#endif

namespace cohort {
namespace {
using Provider = std::string (*)(long);
std::array<std::atomic<Provider>, 6> g_providers{};
}  // namespace

void set_error_text_provider(Library lib, std::string (*provider)(long)) {
  g_providers[static_cast<size_t>(lib)].store(provider);
}

std::string library_error_text(Library lib, long code) {
  if (Provider p = g_providers[static_cast<size_t>(lib)].load()) return p(code);
  switch (lib) {
#ifdef COHORT_WITH_CUDA
    case Library::cuda:
      return cudaGetErrorString(static_cast<cudaError_t>(code));
    case Library::cudnn:
      return cudnnGetErrorString(static_cast<cudnnStatus_t>(code));
    case Library::cublas:
      return cublasGetStatusString(static_cast<cublasStatus_t>(code));
    case Library::nccl:
      return ncclGetErrorString(static_cast<ncclResult_t>(code));
#endif
    default:
      return "no message available";
  }
}

}  // namespace cohort
