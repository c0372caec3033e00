#include "tests/mpi/mpi_test_helpers.hpp"

#include "core/error.hpp"

namespace cohort::mpitest {

comm::MpiSession& session() {
  comm::MpiSession* s = comm::MpiSession::current();
  COHORT_CHECK(s != nullptr, "mpi suite: no MpiSession (tests/mpi/main.cpp makes one)");
  return *s;
}

comm::CommOptions default_options() {
  comm::CommOptions options;
  options.timeout_s = 120;  // a real hang ends the run with a message instead of ctest's kill
  return options;
}

std::unique_ptr<comm::Communicator> make_comm(comm::CommOptions options) {
  return comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu(), options);
}

core::Tensor host_tensor(const std::vector<double>& values, core::DType dtype) {
  return core::Tensor::from_vector(values, core::Shape{static_cast<int64_t>(values.size())}, dtype);
}

}  // namespace cohort::mpitest
