// `cohort doctor` as the ranks of a job (CPU ranks): every rank is listed with its
// host and device, the MPI all-reduce gives the known sum, and the report says
// every check passed (exit status 0 on every rank).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>

#include "launch/doctor.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::launch {
namespace {

TEST(Doctor, EveryRankListedAndTheCollectiveSumsAreRight) {
  ::testing::internal::CaptureStdout();
  const int status = run_doctor(mpitest::session());
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(status, 0) << out;
  if (mpitest::world_rank() != 0) {
    EXPECT_EQ(out, "") << "only rank 0 prints the report";
    return;
  }
  const int world = mpitest::world_size();
  EXPECT_NE(out.find(fmt::format("all-reduce over MPI (host memory): ok ({} rank{}", world,
                                 world > 1 ? "s" : "")),
            std::string::npos)
      << out;
  for (int r = 0; r < world; ++r)
    EXPECT_NE(out.find(fmt::format("rank {:>3} on ", r)), std::string::npos) << out;
  EXPECT_NE(out.find("HDF5:     1."), std::string::npos) << out;
  EXPECT_NE(out.find("every check passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace cohort::launch
