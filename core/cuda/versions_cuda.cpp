// CUDA, cuDNN and cuBLAS versions and the visible GPUs (core/versions.hpp).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <fmt/format.h>

#include "core/versions.hpp"

namespace cohort::core {
namespace {

// CUDA's integer versions: 1000 * major + 10 * minor.
std::string cuda_version_text(int v) {
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

}  // namespace

CudaVersions cuda_versions() {
  CudaVersions v;
  int driver = 0, runtime = 0;
  v.driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0 ? cuda_version_text(driver)
                                                                        : "no driver";
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) v.runtime = cuda_version_text(runtime);
  // cuDNN 9: major * 10000 + minor * 100 + patch; cuDNN 8: major * 1000 + minor * 100 + patch.
  const size_t cudnn = cudnnGetVersion();
  const size_t major_unit = cudnn >= 10000 ? 10000 : 1000;
  v.cudnn = fmt::format("{}.{}.{}", cudnn / major_unit, (cudnn % major_unit) / 100, cudnn % 100);
  int major = 0, minor = 0, patch = 0;
  if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
      cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
    v.cublas = fmt::format("{}.{}.{}", major, minor, patch);
  return v;
}

std::vector<GpuDescription> describe_gpus() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear it: no driver or no device is an answer, not an error
    return {};
  }
  std::vector<GpuDescription> gpus;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    GpuDescription g;
    g.index = i;
    g.name = prop.name;
    for (int b = 0; b < 16; ++b)
      g.uuid += fmt::format("{:02x}", static_cast<unsigned char>(prop.uuid.bytes[b]));
    g.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1 << 30);
    g.major = prop.major;
    g.minor = prop.minor;
    gpus.push_back(g);
  }
  return gpus;
}

}  // namespace cohort::core
