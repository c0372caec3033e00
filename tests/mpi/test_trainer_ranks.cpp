// `cohort train` as the ranks of a job (ZeRO-2 on CPU ranks, real Fashion-MNIST
// shards): a run stopped and resumed twice ends bitwise equal to one that never
// stopped, and a stop signal that reaches one rank only stops every rank at the
// same step with one checkpoint (no rank left waiting in a collective).
#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "core/io/checkpoint.hpp"
#include "data/convert.hpp"
#include "launch/trainer.hpp"
#include "tests/mpi/mpi_test_helpers.hpp"

namespace cohort::launch {
namespace {

namespace fs = std::filesystem;
const std::string kFashionMnist = "/usr/share/datasets/fashion-mnist";

// A directory every rank sees (made by rank 0, name broadcast), removed at exit.
class SharedDir {
 public:
  SharedDir() {
    std::string name;
    if (mpitest::world_rank() == 0) {
      std::string pattern = (fs::temp_directory_path() / "cohort-train-ranks-XXXXXX").string();
      if (::mkdtemp(pattern.data()) != nullptr) name = pattern;
    }
    int length = static_cast<int>(name.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
    name.resize(static_cast<size_t>(length));
    MPI_Bcast(name.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
    m_path = name;
    m_rank = mpitest::world_rank();
  }
  ~SharedDir() {
    // The shard set is a function-local static, destroyed after MPI_Finalize.
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Barrier(MPI_COMM_WORLD);
    if (m_rank == 0 && !m_path.empty()) {
      std::error_code ec;
      fs::remove_all(m_path, ec);
    }
  }
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  bool ok() const { return !m_path.empty(); }
  std::string file(const std::string& name) const { return (m_path / name).string(); }

 private:
  fs::path m_path;
  int m_rank = 0;
};

// Converts Fashion-MNIST's training set once per process (rank 0 writes).
const SharedDir& shards() {
  static SharedDir dir;
  static const bool converted = [] {
    int status = 0;
    if (mpitest::world_rank() == 0)
      status = data::run_convert({"fashion-mnist", "--dir", kFashionMnist, "--split", "train",
                                  "--out", dir.file("fmnist"), "--quiet", "--threads", "1"});
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return status == 0;
  }();
  EXPECT_TRUE(converted);
  return dir;
}

bool have_data() {
  int present = fs::exists(kFashionMnist + "/train-images-idx3-ubyte.gz") ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &present, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return present == 1;
}

TrainConfig config(const SharedDir& runs, const std::string& run) {
  TrainConfig c;
  c.train_shards = shards().file("fmnist");
  c.out_dir = runs.file(run);
  c.batch = 32;  // 32, 16 or 8 per rank
  c.threads = 1;
  c.max_steps = 8;
  c.warmup_steps = 2;
  c.log_every = 4;
  c.zero_stage = 2;
  return c;
}

struct Ranks {
  std::unique_ptr<comm::Communicator> grads = mpitest::make_comm();
  std::unique_ptr<comm::Communicator> control = mpitest::make_comm();
  TrainRanks get() { return {grads.get(), control.get()}; }
};

TEST(TrainRanks, AStoppedAndResumedZero2RunEndsBitwiseEqualToAnUninterruptedOne) {
  if (!have_data()) GTEST_SKIP() << kFashionMnist << " is missing";
  SharedDir runs;
  Ranks ranks;
  const TrainResult straight =
      run_training(config(runs, "straight"), core::Device::cpu(), ranks.get());
  EXPECT_EQ(straight.steps, 8);
  TrainConfig sliced = config(runs, "sliced");
  sliced.stop_after_steps = 3;
  TrainResult r;
  for (int64_t want : {3, 6, 8}) {
    r = run_training(sliced, core::Device::cpu(), ranks.get());
    EXPECT_EQ(r.steps, want);
    EXPECT_EQ(r.stopped, want < 8);
  }
  if (mpitest::world_rank() == 0) {
    const core::io::CheckpointData a = core::io::read_checkpoint(straight.checkpoint);
    const core::io::CheckpointData b = core::io::read_checkpoint(r.checkpoint);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& [name, t] : a.tensors)
      EXPECT_EQ(t.to_vector(), b.tensors.at(name).to_vector()) << name;
    EXPECT_EQ(a.integers.at("rng_offset"), b.integers.at("rng_offset"));
  }
}

TEST(TrainRanks, AStopSignalOnOneRankStopsEveryRankAtTheSameStep) {
  if (!have_data()) GTEST_SKIP() << kFashionMnist << " is missing";
  SharedDir runs;
  Ranks ranks;
  TrainConfig c = config(runs, "signal");
  c.max_steps = 100000;
  const int signalled = mpitest::world_size() - 1;  // the last rank only
  std::thread signaller;
  if (mpitest::world_rank() == signalled)
    signaller = std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      std::raise(SIGUSR1);
    });
  const TrainResult r = run_training(c, core::Device::cpu(), ranks.get());
  if (signaller.joinable()) signaller.join();
  EXPECT_TRUE(r.stopped);
  EXPECT_LT(r.steps, 100000);
  std::vector<double> steps(static_cast<size_t>(mpitest::world_size()));
  const double mine = static_cast<double>(r.steps);
  MPI_Allgather(&mine, 1, MPI_DOUBLE, steps.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD);
  for (double s : steps)
    EXPECT_EQ(s, mine) << "every rank stops at the same step";
  if (mpitest::world_rank() == 0) {
    EXPECT_EQ(core::io::read_checkpoint(r.checkpoint).integers.at("step"), r.steps);
  }
}

}  // namespace
}  // namespace cohort::launch
