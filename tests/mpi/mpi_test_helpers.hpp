#pragma once
// Helpers shared by the mpi suite's test files.
#include <memory>
#include <vector>

#include "comm/communicator.hpp"
#include "comm/mpi_session.hpp"

namespace cohort::mpitest {

comm::MpiSession& session();
// A deadline long enough for a loaded CI machine, no check mode, no faults.
comm::CommOptions default_options();
// An MPI communicator over MPI_COMM_WORLD.
std::unique_ptr<comm::Communicator> make_comm(comm::CommOptions options = default_options());

// Values as a host tensor of `dtype`, and back.
core::Tensor host_tensor(const std::vector<double>& values, core::DType dtype);

}  // namespace cohort::mpitest
