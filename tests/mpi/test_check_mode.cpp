// Check mode (COHORT_COLLECTIVE_CHECK) across real ranks. A fingerprint
// mismatch is found before any rank issues the collective, and every rank sees
// the same gathered fingerprints, so all ranks throw together and the job can
// go on: that makes the failure testable in-process. (Faults that leave ranks
// waiting are tested end to end by the fault tests, see tests/CMakeLists.txt.)
#include <gtest/gtest.h>

#include <string>

#include "comm/communicator.hpp"
#include "core/error.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::mpitest {
namespace {

using comm::ReduceOp;
using core::DType;
using core::Tensor;

comm::CommOptions checked() {
  comm::CommOptions options = default_options();
  options.check = true;
  return options;
}

TEST(CheckMode, MatchingCollectivesPass) {
  auto comm = make_comm(checked());
  const int n = comm->size(), r = comm->rank();
  Tensor t = Tensor::full(core::Shape{8}, r + 1.0, DType::f32);
  comm->all_reduce(t, ReduceOp::sum)->wait();
  EXPECT_EQ(t.to_vector()[0], n * (n + 1) / 2.0);
  Tensor out = Tensor::zeros(core::Shape{n * 8}, DType::f32);
  comm->all_gather(t, out)->wait();
  comm->broadcast(t, 0)->wait();
  comm->barrier()->wait();
  comm->reduce(t, n - 1, ReduceOp::average)->wait();
  EXPECT_EQ(comm->sequence(), 5u);
}

TEST(CheckMode, ReduceRootMismatchIsNamed) {
  auto comm = make_comm(checked());
  const int n = comm->size(), r = comm->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Tensor t = Tensor::zeros(core::Shape{8}, DType::f32);
  std::string message;
  try {
    comm->reduce(t, r == 1 ? 1 : 0, ReduceOp::sum);
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "rank " << r << " did not detect the mismatch";
  EXPECT_NE(message.find("reduce #1 (f32, count 8, sum, root 0)"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 issued reduce #1 (f32, count 8, sum, root 1)"), std::string::npos)
      << message;
}

TEST(CheckMode, CountMismatchNamesBothFingerprintsAndRanks) {
  auto comm = make_comm(checked());
  const int n = comm->size(), r = comm->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Tensor t = Tensor::zeros(core::Shape{r == 1 ? 999 : 1000}, DType::f32);
  std::string message;
  try {
    comm->all_reduce(t, ReduceOp::sum);
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "rank " << r << " did not detect the mismatch";
  EXPECT_NE(message.find("all_reduce #1 (f32, count 1000, sum)"), std::string::npos) << message;
  EXPECT_NE(message.find("all_reduce #1 (f32, count 999, sum)"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 issued"), std::string::npos) << message;
  EXPECT_NE(message.find(n == 2 ? "rank 0 issued" : "ranks 0, 2"), std::string::npos) << message;
}

TEST(CheckMode, OpAndDtypeMismatchesAreFound) {
  auto comm = make_comm(checked());
  const int n = comm->size(), r = comm->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Tensor t = Tensor::zeros(core::Shape{4}, r == 0 ? DType::bf16 : DType::f32);
  std::string message;
  try {
    if (r == 0)
      comm->all_reduce(t);
    else
      comm->broadcast(t, 0);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("all_reduce #1 (bf16"), std::string::npos) << message;
  EXPECT_NE(message.find("broadcast #1 (f32, count 4, root 0)"), std::string::npos) << message;
}

TEST(CheckMode, SkippedCollectiveIsCaughtAtTheNextOne) {
  // Fault "skip" on rank 1 at collective #2: rank 1's next fingerprint carries
  // #3 while the others' carry #2.
  comm::CommOptions options = checked();
  options.faults = {{1, 2, comm::FaultSpec::Action::skip}};
  auto comm = make_comm(options);
  const int n = comm->size(), r = comm->rank();
  if (n < 2) GTEST_SKIP() << "needs two ranks";
  Tensor t = Tensor::zeros(core::Shape{16}, DType::f32);
  comm->all_reduce(t)->wait();  // #1 on every rank
  std::string message;
  try {
    comm->all_reduce(t)->wait();              // #2: skipped on rank 1
    if (r == 1) comm->all_reduce(t)->wait();  // rank 1's #3 meets the others' #2
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("all_reduce #2 (f32, count 16, sum)"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 issued all_reduce #3"), std::string::npos) << message;
}

}  // namespace
}  // namespace cohort::mpitest
