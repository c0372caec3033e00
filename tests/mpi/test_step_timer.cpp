// Step-time breakdown: compute / exposed communication / data wait per rank, and
// the slowest rank named.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <thread>

#include "comm/step_timer.hpp"

namespace cohort::comm {
namespace {

TEST(StepTimer, BreakdownSumsToTheStepAndNamesTheSlowestRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  StepTimer timer;
  const int slow = size - 1;
  for (int s = 0; s < 3; ++s) {
    timer.begin_step();
    std::this_thread::sleep_for(std::chrono::milliseconds(rank == slow ? 30 : 10));
    timer.add_data_wait(0.002);
    timer.add_exposed_comm(0.001);
    timer.end_step();
  }
  const StepBreakdown mine = timer.mean();
  EXPECT_DOUBLE_EQ(mine.data_s, 0.002);
  EXPECT_DOUBLE_EQ(mine.comm_s, 0.001);
  EXPECT_GE(mine.total_s(), rank == slow ? 0.030 : 0.010);
  const RankBreakdowns all = summarize(timer, MPI_COMM_WORLD);
  ASSERT_EQ(static_cast<int>(all.ranks.size()), size);
  EXPECT_EQ(all.slowest_rank, slow);
  EXPECT_NE(all.str().find("<- slowest"), std::string::npos) << all.str();
}

}  // namespace
}  // namespace cohort::comm
