// make_communicator: picks the backend. The NCCL backend exists only in CUDA
// builds (comm/cuda/); asking for it elsewhere is a clear error.
#include <fmt/format.h>

#include "comm/communicator.hpp"
#include "comm/mpi_communicator.hpp"
#include "core/error.hpp"

#ifdef COHORT_WITH_CUDA
#include "comm/cuda/nccl_communicator.hpp"
#endif

namespace cohort::comm {

bool nccl_compiled() {
#ifdef COHORT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "unknown";
  std::string version(text, static_cast<size_t>(length));
  // Open MPI's text runs over several lines (repository, release date): the first
  // says it.
  version = version.substr(0, version.find('\n'));
  while (!version.empty() && (version.back() == '\0' || version.back() == ' '))
    version.pop_back();
  return version;
}

std::string nccl_version() {
#ifdef COHORT_WITH_CUDA
  return nccl_library_version();
#else
  return "";
#endif
}

std::unique_ptr<Communicator> make_communicator(Backend backend, MPI_Comm parent,
                                                core::Device device, const CommOptions& options) {
  if (backend == Backend::mpi) {
    COHORT_CHECK(device.is_cpu(),
                 fmt::format("make_communicator: the mpi backend works on host tensors, not {} "
                             "(use nccl for GPU tensors)",
                             device.str()));
    return std::make_unique<MpiCommunicator>(parent, options);
  }
  COHORT_CHECK(
      device.is_cuda(),
      fmt::format("make_communicator: the nccl backend needs a GPU device, not {}", device.str()));
#ifdef COHORT_WITH_CUDA
  return make_nccl_communicator(parent, device, options);
#else
  COHORT_FAIL("make_communicator: this build has no NCCL backend (CPU-only build)");
#endif
}

}  // namespace cohort::comm
