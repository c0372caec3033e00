// GPU identity for device assignment (CUDA builds only).
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <string>

#include "core/cuda/check.hpp"

namespace cohort::comm {

// The device's UUID as hex text: the same physical GPU gives the same text in
// every process, whatever CUDA_VISIBLE_DEVICES calls it.
std::string cuda_device_uuid(int index) {
  cudaDeviceProp prop{};
  COHORT_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  std::string text;
  for (int i = 0; i < 16; ++i)
    text += fmt::format("{:02x}", static_cast<unsigned char>(prop.uuid.bytes[i]));
  return text;
}

void cuda_select_device(int index) {
  COHORT_CUDA_CHECK(cudaSetDevice(index));
}

}  // namespace cohort::comm
