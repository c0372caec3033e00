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
