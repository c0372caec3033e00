#include "core/context.hpp"

#include "core/error.hpp"

namespace cohort::core {

#ifdef COHORT_WITH_CUDA
StreamHandle cuda_create_stream(int device);  // core/cuda/memory_cuda.cpp
void cuda_destroy_stream(StreamHandle stream) noexcept;
void cuda_stream_synchronize(StreamHandle stream);
#endif

Context::Context(Device device, StreamHandle stream) : m_device(device), m_stream(stream) {
  if (device.is_cuda()) {
#ifdef COHORT_WITH_CUDA
    if (m_stream == nullptr) {
      m_stream = cuda_create_stream(device.index);
      m_owns_stream = true;
    }
#else
    COHORT_FAIL("Context: " + device.str() + " requested in a build without CUDA");
#endif
  }
}

Context::~Context() {
  m_backend.reset();  // library handles go before the stream they are bound to
#ifdef COHORT_WITH_CUDA
  if (m_owns_stream) cuda_destroy_stream(m_stream);
#endif
}

void Context::synchronize() const {
#ifdef COHORT_WITH_CUDA
  if (m_device.is_cuda()) cuda_stream_synchronize(m_stream);
#endif
}

}  // namespace cohort::core
