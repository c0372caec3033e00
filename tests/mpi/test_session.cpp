// The bootstrap: world and local ranks, identity, device on CPU ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "comm/mpi_check.hpp"
#include "core/device.hpp"
#include "core/error.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::mpitest {
namespace {

TEST(Session, WorldMatchesMpi) {
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(session().rank(), rank);
  EXPECT_EQ(session().size(), size);
  EXPECT_GE(session().thread_level(), MPI_THREAD_SERIALIZED);
  EXPECT_TRUE(comm::mpi_active());
  EXPECT_EQ(comm::MpiSession::current(), &session());
}

TEST(Session, IdentityNamesRankAndHost) {
  const std::string identity = process_identity();
  EXPECT_EQ(identity, "rank " + std::to_string(session().rank()) + " on " + session().host());
}

TEST(Session, CpuRanksGetTheCpu) {
  // The suite asks for DevicePolicy::cpu: CPU ranks with the MPI backend.
  EXPECT_TRUE(session().device().is_cpu());
}

TEST(Session, LocalRanksNumberEachNodeInWorldOrder) {
  struct Record {
    std::array<char, MPI_MAX_PROCESSOR_NAME> host;
    int world_rank, local_rank, local_size;
  };
  Record mine{};
  std::strncpy(mine.host.data(), session().host().c_str(), mine.host.size() - 1);
  mine.world_rank = session().rank();
  mine.local_rank = session().local_rank();
  mine.local_size = session().local_size();
  std::vector<Record> all(static_cast<size_t>(session().size()));
  COHORT_MPI_CHECK(MPI_Allgather(&mine, sizeof(Record), MPI_BYTE, all.data(), sizeof(Record),
                                 MPI_BYTE, MPI_COMM_WORLD));
  std::map<std::string, std::vector<Record>> by_host;
  for (const Record& r : all)
    by_host[r.host.data()].push_back(r);  // in world-rank order
  int total = 0;
  for (const auto& [host, records] : by_host) {
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].local_rank, static_cast<int>(i)) << host;
      EXPECT_EQ(records[i].local_size, static_cast<int>(records.size())) << host;
    }
    total += static_cast<int>(records.size());
  }
  EXPECT_EQ(total, session().size());
  int node_size = 0;
  MPI_Comm_size(session().node(), &node_size);
  EXPECT_EQ(node_size, session().local_size());
}

TEST(Session, MpiErrorsComeBackAsErrorsWithMpiText) {
  // MPI_ERRORS_RETURN on MPI_COMM_WORLD: a bad call returns a code, which
  // COHORT_MPI_CHECK turns into an Error carrying MPI's message.
  std::string message;
  try {
    int value = 0;
    COHORT_MPI_CHECK(MPI_Bcast(&value, 1, MPI_INT, session().size() + 5, MPI_COMM_WORLD));
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("MPI error"), std::string::npos) << message;
  EXPECT_NE(message.find("MPI_Bcast"), std::string::npos) << message;
  EXPECT_EQ(message.find("no message available"), std::string::npos) << message;
}

}  // namespace
}  // namespace cohort::mpitest
