#pragma once
// What this build runs on, read from the libraries themselves at run time (the
// versions loaded, not the headers compiled against): `cohort doctor` prints them
// and bug reports quote them.
#include <string>
#include <vector>

namespace cohort::core {

std::string hdf5_version();      // "1.10.8"
std::string blas_description();  // OpenBLAS's build configuration
// Empty strings in a CPU-only build.
struct CudaVersions {
  std::string driver, runtime, cudnn, cublas;
};
CudaVersions cuda_versions();

struct GpuDescription {
  int index = 0;  // as CUDA numbers the visible devices
  std::string name, uuid;
  double memory_gib = 0;
  int major = 0, minor = 0;  // compute capability
};
// The visible GPUs (none in a CPU-only build or without a driver).
std::vector<GpuDescription> describe_gpus();

}  // namespace cohort::core
