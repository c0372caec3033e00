// `cohort train` as the ranks of a job (ZeRO-2 on CPU ranks, real Fashion-MNIST
// shards): a run stopped and resumed twice ends bitwise equal to one that never
// stopped (and every rank kept its own log), and a stop signal that reaches one rank only stops
// every rank at the same step with one checkpoint (no rank left waiting in a collective).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <stdlib.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/io/checkpoint.hpp"
#include "data/convert.hpp"
#include "launch/eval_command.hpp"
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
  // With ranks, each rank keeps its own log: one header per invocation and a
  // line per logged step (steps 4 and 8) with its own loss and step time.
  if (mpitest::world_size() > 1) {
    std::ifstream log(runs.file("sliced") +
                      fmt::format("/logs/rank-{:05d}.log", mpitest::world_rank()));
    int headers = 0, steps = 0;
    for (std::string line; std::getline(log, line);) {
      headers += line.rfind("--- rank ", 0) == 0 ? 1 : 0;
      steps += line.find("(this rank's value), per step: data wait") != std::string::npos ? 1 : 0;
    }
    EXPECT_EQ(headers, 3) << "rank " << mpitest::world_rank();
    EXPECT_EQ(steps, 2) << "rank " << mpitest::world_rank();
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

// Gradient accumulation (one communication per step at stages 0/1, a
// reduce-scatter per micro-batch at 2/3) and global-norm clipping (over the
// gradient shards of every rank at 2/3) through `cohort train`: every ZeRO stage
// ends with the weights of plain data parallelism.
TEST(TrainRanks, MicroBatchesAndClippingGiveTheSameWeightsAtEveryZeroStage) {
  if (!have_data()) GTEST_SKIP() << kFashionMnist << " is missing";
  SharedDir runs;
  Ranks ranks;
  std::map<std::string, core::Tensor> reference;
  for (int stage : {0, 1, 2, 3}) {
    TrainConfig c = config(runs, "micro-stage" + std::to_string(stage));
    c.zero_stage = stage;
    c.micro_batches = 2;
    c.grad_clip_norm = 0.5;
    const TrainResult r = run_training(c, core::Device::cpu(), ranks.get());
    EXPECT_EQ(r.steps, 8);
    if (mpitest::world_rank() != 0) continue;
    std::map<std::string, core::Tensor> model;
    for (const auto& [name, t] : core::io::read_checkpoint(r.checkpoint).tensors)
      if (name.rfind("model/", 0) == 0) model[name] = t;
    if (stage == 0) {
      reference = model;
      continue;
    }
    ASSERT_EQ(model.size(), reference.size());
    for (const auto& [name, t] : model) {
      const std::vector<double> a = t.to_vector(), b = reference.at(name).to_vector();
      double worst = 0;
      for (size_t i = 0; i < a.size(); ++i)
        worst = std::max(worst, std::abs(a[i] - b[i]));
      EXPECT_LT(worst, 1e-4) << name << " at ZeRO stage " << stage;
    }
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

// Multi-task loss balancing with state (DWA, GradNorm) as ranks (ZeRO-2): the
// values it updates from are reduced over the ranks on the device every step
// (DWA's epoch loss sums; GradNorm's gradient norms and losses), so every rank
// holds the same state and rank 0's checkpoint holds what every rank needs; a
// run stopped after step 2 (DWA: right after epoch 1's boundary, weights computed
// next) and resumed ends bitwise equal to an uninterrupted one, and the weights
// have moved from 1. Returns rank 0's final checkpoint (empty elsewhere).
core::io::CheckpointData balancing_resumes_bitwise(const std::string& balancing) {
  SharedDir runs;
  int status = 0;
  if (mpitest::world_rank() == 0)
    status =
        data::run_convert({"synthetic-scenes", "--kind", "multitask", "--count", "8", "--width",
                           "96", "--height", "48", "--out", runs.file("train"), "--quiet"});
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  EXPECT_EQ(status, 0);
  if (status != 0) return {};
  auto config = [&](const std::string& run) {
    TrainConfig c;
    c.model = "deeplabv3plus";
    c.num_classes = 19;
    c.depth_head = true;
    c.loss_balancing = balancing;
    c.train_shards = runs.file("train");
    c.out_dir = runs.file(run);
    c.batch = 8;  // one step per epoch; 2 samples per rank at 4 ranks (image-pooling BN)
    c.crop_height = 48;
    c.crop_width = 48;
    c.threads = 1;
    c.epochs = 4;
    c.warmup_steps = 0;
    c.lr = 0.01;
    c.zero_stage = 2;
    return c;
  };
  Ranks ranks;
  const TrainResult straight = run_training(config("straight"), core::Device::cpu(), ranks.get());
  EXPECT_EQ(straight.steps, 4);
  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 2;
  EXPECT_TRUE(run_training(sliced, core::Device::cpu(), ranks.get()).stopped);
  sliced.stop_after_steps = 0;
  const TrainResult resumed = run_training(sliced, core::Device::cpu(), ranks.get());
  EXPECT_EQ(resumed.steps, 4);
  if (mpitest::world_rank() != 0) return {};
  core::io::CheckpointData a = core::io::read_checkpoint(straight.checkpoint);
  const core::io::CheckpointData b = core::io::read_checkpoint(resumed.checkpoint);
  EXPECT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    if (!b.tensors.count(name)) {
      ADD_FAILURE() << name << " missing after the resume";
      continue;
    }
    EXPECT_EQ(t.to_vector(), b.tensors.at(name).to_vector()) << name;
  }
  const std::vector<double> w = a.tensors.at("model/loss.weights").to_vector();
  EXPECT_EQ(w.size(), 2u);
  if (w.size() == 2) {
    EXPECT_NE(w[0], 1.0) << balancing << " moved the weights";
    EXPECT_NEAR(w[0] + w[1], 2.0, 1e-5) << "K weights sum to K";
  }
  return a;
}

TEST(TrainRanks, DwaLossBalancingResumesBitwiseAcrossAnEpochBoundary) {
  const core::io::CheckpointData a = balancing_resumes_bitwise("dwa");
  if (mpitest::world_rank() == 0 && a.tensors.count("model/loss.dwa_stats")) {
    // Each epoch's count is its steps times the ranks (one loss per rank per step).
    const std::vector<double> stats = a.tensors.at("model/loss.dwa_stats").to_vector();
    EXPECT_EQ(stats[5], static_cast<double>(mpitest::world_size()));
  }
}

TEST(TrainRanks, GradNormLossBalancingResumesBitwise) {
  const core::io::CheckpointData a = balancing_resumes_bitwise("gradnorm");
  if (mpitest::world_rank() == 0) {
    ASSERT_TRUE(a.tensors.count("model/loss.gradnorm"));
    EXPECT_EQ(a.tensors.at("model/loss.gradnorm").to_vector().at(6), 4.0) << "four updates";
  }
}

// `cohort eval` as ranks: each image is scored once across the ranks (5 images do
// not split evenly over 2 or 4), so the summed confusion matrix, the scores and
// the prediction files equal those of one process evaluating the same checkpoint.
TEST(TrainRanks, EvaluationAcrossRanksEqualsOneProcess) {
  SharedDir runs;
  int status = 0;
  if (mpitest::world_rank() == 0)
    for (const char* split : {"train", "val"})
      status |= data::run_convert({"synthetic-scenes", "--kind", "segmentation", "--split", split,
                                   "--count", split == std::string("train") ? "8" : "5", "--width",
                                   "96", "--height", "48", "--out", runs.file(split), "--quiet"});
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  ASSERT_EQ(status, 0);
  TrainConfig c;
  c.model = "deeplabv3plus";
  c.num_classes = 19;
  c.train_shards = runs.file("train");
  c.eval_shards = runs.file("val");
  c.out_dir = runs.file("run");
  c.batch = 8;  // 2 per rank at 4 ranks: the image-pooling BatchNorm needs two
  c.crop_height = 48;
  c.crop_width = 48;
  c.threads = 1;
  c.max_steps = 2;
  c.warmup_steps = 0;
  c.lr = 0.01;
  Ranks ranks;
  const TrainResult trained = run_training(c, core::Device::cpu(), ranks.get());

  EvalCommandOptions o;
  o.checkpoint = trained.checkpoint;
  o.verbose = false;
  o.predictions = runs.file("predictions-ranks");
  const EvalResult together =
      run_checkpoint_eval(o, core::Device::cpu(), {nullptr, ranks.control.get()});
  int written = static_cast<int>(together.predictions_written);
  MPI_Allreduce(MPI_IN_PLACE, &written, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(written, 5) << "each image written by exactly one rank";
  EXPECT_EQ(together.samples, 5);
  EXPECT_EQ(together.miou, trained.eval_miou) << "the trainer's evaluation at the end";
  if (mpitest::world_rank() == 0) {
    o.predictions = runs.file("predictions-alone");
    const EvalResult alone = run_checkpoint_eval(o, core::Device::cpu());
    EXPECT_EQ(alone.confusion, together.confusion);
    EXPECT_EQ(alone.miou, together.miou);
    EXPECT_EQ(alone.accuracy, together.accuracy);
    auto bytes = [](const fs::path& p) {
      std::ifstream f(p, std::ios::binary);
      return std::string((std::istreambuf_iterator<char>(f)), {});
    };
    int files = 0;
    for (const auto& e : fs::directory_iterator(runs.file("predictions-alone"))) {
      ++files;
      const fs::path other = fs::path(runs.file("predictions-ranks")) / e.path().filename();
      ASSERT_TRUE(fs::exists(other)) << other;
      EXPECT_EQ(bytes(e.path()), bytes(other)) << e.path().filename();
    }
    EXPECT_EQ(files, 5);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace cohort::launch
