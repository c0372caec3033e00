// Pieces of comm that need no peers: option parsing, fingerprints, device
// planning and the watchdog (with a recording action instead of MPI_Abort).
// They run on every rank of the mpi suite; each rank checks the same thing.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/collective.hpp"
#include "comm/comm_options.hpp"
#include "comm/device_assignment.hpp"
#include "comm/watchdog.hpp"
#include "core/error.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::comm {
namespace {

using Action = FaultSpec::Action;

using testing::error_of;

TEST(FaultSpec, ParsesEntries) {
  const std::vector<FaultSpec> faults = parse_faults("1:3:hang,0:12:skip,2:1:exit,3:7:throw");
  ASSERT_EQ(faults.size(), 4u);
  EXPECT_EQ(faults[0], (FaultSpec{1, 3, Action::hang}));
  EXPECT_EQ(faults[1], (FaultSpec{0, 12, Action::skip}));
  EXPECT_EQ(faults[2], (FaultSpec{2, 1, Action::exit}));
  EXPECT_EQ(faults[3], (FaultSpec{3, 7, Action::throw_error}));
  EXPECT_TRUE(parse_faults("").empty());
}

TEST(FaultSpec, RejectsBadEntriesByName) {
  for (const char* bad : {"1:3", "x:3:hang", "1:0:hang", "1:3:explode", "1:-2:skip", "-1:2:exit"}) {
    const std::string message = error_of([&] { parse_faults(bad); });
    EXPECT_NE(message.find(std::string("'") + bad + "'"), std::string::npos) << message;
  }
}

TEST(CommOptions, FromEnvironment) {
  ::setenv("COHORT_COLLECTIVE_TIMEOUT", "2.5", 1);
  ::setenv("COHORT_COLLECTIVE_CHECK", "1", 1);
  ::setenv("COHORT_FAULT", "1:4:skip", 1);
  CommOptions options = CommOptions::from_env();
  EXPECT_DOUBLE_EQ(options.timeout_s, 2.5);
  EXPECT_TRUE(options.check);
  ASSERT_EQ(options.faults.size(), 1u);
  EXPECT_EQ(options.faults[0], (FaultSpec{1, 4, Action::skip}));
  ::setenv("COHORT_COLLECTIVE_CHECK", "0", 1);
  ::setenv("COHORT_COLLECTIVE_TIMEOUT", "soon", 1);
  EXPECT_NE(error_of([] { CommOptions::from_env(); }).find("COHORT_COLLECTIVE_TIMEOUT='soon'"),
            std::string::npos);
  ::unsetenv("COHORT_COLLECTIVE_TIMEOUT");
  ::unsetenv("COHORT_FAULT");
  options = CommOptions::from_env();
  EXPECT_DOUBLE_EQ(options.timeout_s, 600.0);
  EXPECT_FALSE(options.check);
  EXPECT_TRUE(options.faults.empty());
  ::unsetenv("COHORT_COLLECTIVE_CHECK");
}

TEST(Fingerprint, RoundTripsAndDescribesMismatches) {
  CollectiveInfo a{CollectiveOp::reduce_scatter, core::DType::bf16, 4096, ReduceOp::average};
  a.sequence = 17;
  EXPECT_EQ(a.str(), "reduce_scatter #17 (bf16, count 4096, average)");
  EXPECT_EQ(Fingerprint::of(a).info(), a);
  CollectiveInfo b = a;
  b.count = 4095;
  const std::vector<Fingerprint> same{Fingerprint::of(a), Fingerprint::of(a)};
  EXPECT_EQ(describe_mismatch(same), "");
  const std::vector<Fingerprint> prints{Fingerprint::of(a), Fingerprint::of(b), Fingerprint::of(a),
                                        Fingerprint::of(b)};
  EXPECT_EQ(describe_mismatch(prints),
            "ranks 0, 2 issued reduce_scatter #17 (bf16, count 4096, average) but ranks 1, 3 "
            "issued reduce_scatter #17 (bf16, count 4095, average)");
}

TEST(DevicePlan, CpuAndGpuLayouts) {
  const std::vector<int> none{0, 0, 0};
  EXPECT_EQ(plan_node_gpus("n1", none, DevicePolicy::automatic), (std::vector<int>{-1, -1, -1}));
  const std::vector<int> four{4, 4};
  EXPECT_EQ(plan_node_gpus("n1", four, DevicePolicy::automatic), (std::vector<int>{0, 1}));
  EXPECT_EQ(plan_node_gpus("n1", four, DevicePolicy::cpu), (std::vector<int>{-1, -1}));
  const std::vector<int> bound{1, 1, 1, 1};  // launcher gave each rank its own GPU
  EXPECT_EQ(plan_node_gpus("n1", bound, DevicePolicy::cuda), (std::vector<int>{0, 0, 0, 0}));
}

TEST(DevicePlan, RefusesMoreRanksThanGpus) {
  const std::vector<int> two{2, 2, 2, 2};
  const std::string message =
      error_of([&] { plan_node_gpus("gpu-node-7", two, DevicePolicy::automatic); });
  EXPECT_NE(message.find("gpu-node-7"), std::string::npos) << message;
  EXPECT_NE(message.find("4 ranks on this node but only 2 visible GPU"), std::string::npos)
      << message;
  const std::vector<int> mixed{2, 0};
  EXPECT_NE(error_of([&] { plan_node_gpus("n", mixed, DevicePolicy::automatic); }).find("disagree"),
            std::string::npos);
  const std::vector<int> none{0};
  EXPECT_NE(error_of([&] { plan_node_gpus("n", none, DevicePolicy::cuda); }).find("none of its"),
            std::string::npos);
}

TEST(DevicePlan, RefusesTwoRanksOnOneGpu) {
  const std::vector<int> ranks{8, 9, 10};
  const std::vector<std::string> uuids{"aa", "bb", "aa"};
  const std::string message = error_of([&] { check_distinct_gpus("n3", ranks, uuids); });
  EXPECT_NE(message.find("ranks 8 and 10 would share one GPU (UUID aa)"), std::string::npos)
      << message;
  const std::vector<std::string> distinct{"aa", "bb", "cc"};
  EXPECT_EQ(error_of([&] { check_distinct_gpus("n3", ranks, distinct); }), "");
}

class Recorder {
 public:
  Watchdog::Action action() {
    return [this](const std::string& m) {
      std::lock_guard lock(m_mutex);
      m_messages.push_back(m);
    };
  }
  std::vector<std::string> messages() {
    std::lock_guard lock(m_mutex);
    return m_messages;
  }

 private:
  std::mutex m_mutex;
  std::vector<std::string> m_messages;
};

TEST(Watchdog, ExpiredWatchFiresOnceWithItsName) {
  Recorder recorder;
  Watchdog dog(recorder.action(), std::chrono::milliseconds(5));
  auto late = dog.watch("all_reduce #9 (f32, count 3, sum)", 0.05);
  auto on_time = dog.watch("broadcast #10", 0.05);
  on_time->finish();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::vector<std::string> messages = recorder.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("all_reduce #9 (f32, count 3, sum) did not complete within 0.05 s"),
            std::string::npos)
      << messages[0];
  EXPECT_NE(messages[0].find("rank"), std::string::npos) << messages[0];
  EXPECT_EQ(dog.outstanding(), 0u);
}

TEST(Watchdog, ProbesFinishOrFailWatches) {
  Recorder recorder;
  Watchdog dog(recorder.action(), std::chrono::milliseconds(5));
  auto done = dog.watch("done by probe", 0.05, [] { return ProbeResult{true, ""}; });
  auto failed = dog.watch("failing", 100, [] { return ProbeResult{false, "link down"}; });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::vector<std::string> messages = recorder.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("failing failed: link down"), std::string::npos) << messages[0];
  EXPECT_TRUE(done->finished());
}

TEST(Watchdog, PendingWatchBeforeDeadlineDoesNotFire) {
  Recorder recorder;
  Watchdog dog(recorder.action(), std::chrono::milliseconds(5));
  auto pending = dog.watch("slow but fine", 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(recorder.messages().empty());
  EXPECT_EQ(dog.outstanding(), 1u);
  pending->finish();
  EXPECT_EQ(dog.outstanding(), 0u);
}

}  // namespace
}  // namespace cohort::comm
