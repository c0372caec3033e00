// cohort_mpi_fault: a small rank program for the fault tests. It runs a fixed
// sequence of all_reduce calls on CPU ranks with the options from the
// environment (COHORT_FAULT, COHORT_COLLECTIVE_TIMEOUT, COHORT_COLLECTIVE_CHECK),
// so that tests/mpi/fault_driver.sh can check how the whole job ends.
//   cohort_mpi_fault            6 all_reduce (f32, count 1000); rank 0 prints
//                               "fault helper: all 6 collectives completed"
//   cohort_mpi_fault mismatch   as above, but rank 1 passes count 999 at #2
#include <cstdio>
#include <string>

#include "comm/abort.hpp"
#include "comm/communicator.hpp"
#include "comm/mpi_session.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"

int main(int argc, char** argv) {
  using namespace cohort;
  return comm::run_rank_main([&] {
    comm::MpiSession session(&argc, &argv, {.device = comm::DevicePolicy::cpu});
    const std::string scenario = argc > 1 ? argv[1] : "loop";
    COHORT_CHECK(scenario == "loop" || scenario == "mismatch",
                 "cohort_mpi_fault: unknown scenario '" + scenario + "' (loop, mismatch)");
    auto comm = comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu(),
                                        comm::CommOptions::from_env());
    constexpr int kCollectives = 6;
    for (int step = 1; step <= kCollectives; ++step) {
      const int64_t count = scenario == "mismatch" && step == 2 && session.rank() == 1 ? 999 : 1000;
      core::Tensor t = core::Tensor::full(core::Shape{count}, 1.0, core::DType::f32);
      comm->all_reduce(t, comm::ReduceOp::sum)->wait();
    }
    if (session.rank() == 0) {
      std::printf("fault helper: all %d collectives completed on %d ranks\n", kCollectives,
                  session.size());
      std::fflush(stdout);
    }
    return 0;
  });
}
