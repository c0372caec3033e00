#include "core/device.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

namespace cohort::core {

#ifdef COHORT_WITH_CUDA
int cuda_runtime_device_count();  // core/cuda/memory_cuda.cpp
#endif

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    const std::string index = text.substr(5);
    COHORT_CHECK(!index.empty() && index.find_first_not_of("0123456789") == std::string::npos,
                 fmt::format("device '{}': expected cpu, cuda or cuda:N", text));
    return cuda(std::stoi(index));
  }
  COHORT_FAIL(fmt::format("device '{}': expected cpu, cuda or cuda:N", text));
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

int cuda_device_count() {
#ifdef COHORT_WITH_CUDA
  static const int count = cuda_runtime_device_count();
  return count;
#else
  return 0;
#endif
}

bool cuda_available() {
  return cuda_device_count() > 0;
}

}  // namespace cohort::core
