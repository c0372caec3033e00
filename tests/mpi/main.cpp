// Entry point of the mpi suite (run as mpirun -np N cohort_mpi_tests). MPI comes
// up through comm's MpiSession on CPU ranks; every rank runs every test in the
// same order (collectives must match across ranks). Rank 0 prints GoogleTest's
// usual output; other ranks print only their failures, prefixed with the rank.
// The failure count is all-reduced, so every rank exits non-zero when any rank
// failed, and mpirun's exit code reflects the whole job.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>

#include "comm/abort.hpp"
#include "comm/mpi_session.hpp"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : m_rank(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", m_rank,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", m_rank, info.test_suite_name(), info.name());
  }

 private:
  int m_rank;
};

}  // namespace

int main(int argc, char** argv) {
  return cohort::comm::run_rank_main([&] {
    cohort::comm::MpiSession session(&argc, &argv, {.device = cohort::comm::DevicePolicy::cpu});
    ::testing::InitGoogleTest(&argc, argv);
    if (session.rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(session.rank()));
    }
    // RUN_ALL_TESTS's result is this rank's alone; the job's is the sum below.
    int failed = RUN_ALL_TESTS() != 0
                     ? std::max(1, ::testing::UnitTest::GetInstance()->failed_test_count())
                     : 0;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (session.rank() == 0)
      std::printf("[mpi] %d rank(s); failed tests summed over ranks: %d\n", session.size(), failed);
    return failed == 0 ? 0 : 1;
  });
}
