#pragma once
// The NCCL backend (CUDA builds only): collectives on device tensors of one GPU
// per rank. Declared without CUDA or NCCL headers so that comm/backends.cpp can
// include it.
#include <mpi.h>

#include <memory>
#include <string>

#include "comm/communicator.hpp"

namespace cohort::comm {

// The loaded NCCL's version, "2.28.3".
std::string nccl_library_version();

// Collective over `parent`: rank 0 makes the NCCL unique id and MPI broadcasts
// it; every rank then joins with ncclCommInitRank on `device`.
std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm parent, core::Device device,
                                                     const CommOptions& options);

}  // namespace cohort::comm
