#include "core/versions.hpp"

#include <cblas.h>
#include <fmt/format.h>
#include <hdf5.h>

namespace cohort::core {

std::string hdf5_version() {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) return "unknown";
  return fmt::format("{}.{}.{}", major, minor, release);
}

std::string blas_description() {
  const char* config = openblas_get_config();
  return fmt::format("{}, {} threads", config != nullptr ? config : "OpenBLAS",
                     openblas_get_num_threads());
}

#ifndef COHORT_WITH_CUDA
CudaVersions cuda_versions() {
  return {};
}

std::vector<GpuDescription> describe_gpus() {
  return {};
}
#endif

}  // namespace cohort::core
