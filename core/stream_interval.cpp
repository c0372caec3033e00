#include "core/stream_interval.hpp"

#include "core/stream_interval_impl.hpp"

namespace cohort::core {

StreamInterval::StreamInterval(Device device) {
#ifdef COHORT_WITH_CUDA
  if (device.is_cuda()) {
    m_impl = make_cuda_stream_interval(device);
    return;
  }
#endif
  m_impl = std::make_unique<Impl>();
}

StreamInterval::~StreamInterval() {
#ifdef COHORT_WITH_CUDA
  if (m_impl && m_impl->cuda) destroy_cuda_stream_interval(m_impl.get());
#endif
}

void StreamInterval::begin(StreamHandle stream) {
#ifdef COHORT_WITH_CUDA
  if (m_impl->cuda) return cuda_interval_record(*m_impl, true, stream);
#endif
  m_impl->start = std::chrono::steady_clock::now();
  m_impl->ended = false;
}

void StreamInterval::end(StreamHandle stream) {
#ifdef COHORT_WITH_CUDA
  if (m_impl->cuda) return cuda_interval_record(*m_impl, false, stream);
#endif
  m_impl->stop = std::chrono::steady_clock::now();
  m_impl->ended = true;
}

std::optional<double> StreamInterval::seconds() {
#ifdef COHORT_WITH_CUDA
  if (m_impl->cuda) return cuda_interval_seconds(*m_impl);
#endif
  if (!m_impl->ended) return std::nullopt;
  return std::chrono::duration<double>(m_impl->stop - m_impl->start).count();
}

}  // namespace cohort::core
