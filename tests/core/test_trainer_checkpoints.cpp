// `cohort train`'s checkpoint history: the newest checkpoint.keep_last files are
// kept (checkpoint-<step>.h5, with checkpoint.h5 a link to the newest), and a
// damaged newest checkpoint never costs the run: resuming falls back to the newest
// good one (setting the damaged ones aside, by name), and ends bitwise where an
// undisturbed run ends. With no good checkpoint left the run refuses to start
// afresh over them.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/io/checkpoint.hpp"
#include "data/convert.hpp"
#include "launch/trainer.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tensor_helpers.hpp"
#include "tests/support/tfevents_reader.hpp"

namespace cohort::launch {
namespace {

namespace fs = std::filesystem;
using cohort::testing::error_of;
const std::string kFashionMnist = "/usr/share/datasets/fashion-mnist";

class TrainerCheckpoints : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kFashionMnist + "/t10k-images-idx3-ubyte.gz")) return;
    s_dir = std::make_unique<cohort::testing::TempDir>("cohort-ckpt-data");
    ASSERT_EQ(data::run_convert({"fashion-mnist", "--dir", kFashionMnist, "--split", "test",
                                 "--out", s_dir->file("fmnist"), "--quiet"}),
              0);
  }
  static void TearDownTestSuite() { s_dir.reset(); }
  void SetUp() override {
    if (!s_dir)
      GTEST_SKIP() << kFashionMnist << " is missing: apt-get install dataset-fashion-mnist";
  }

  TrainConfig config(const std::string& run) const {
    TrainConfig c;
    c.train_shards = s_dir->file("fmnist");
    c.out_dir = (m_runs.path() / run).string();
    c.batch = 32;
    c.threads = 2;
    c.max_steps = 6;
    c.warmup_steps = 1;
    c.log_every = 3;
    c.checkpoint_every = 1;
    c.keep_last = 2;
    return c;
  }
  static std::vector<std::string> names(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() != ".jsonl" &&
          !e.path().filename().string().starts_with("events.out.tfevents."))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  static std::unique_ptr<cohort::testing::TempDir> s_dir;
  cohort::testing::TempDir m_runs{"cohort-ckpt-runs"};
};
std::unique_ptr<cohort::testing::TempDir> TrainerCheckpoints::s_dir;

void expect_same_tensors(const std::string& a_path, const std::string& b_path) {
  const core::io::CheckpointData a = core::io::read_checkpoint(a_path);
  const core::io::CheckpointData b = core::io::read_checkpoint(b_path);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors)
    EXPECT_EQ(t.to_vector(), b.tensors.at(name).to_vector()) << name;
  EXPECT_EQ(a.integers.at("step"), b.integers.at("step"));
  EXPECT_EQ(a.integers.at("rng_offset"), b.integers.at("rng_offset"));
}

// Flips bytes in the middle of a file: HDF5 opens it, the checksums catch it.
void damage(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(fs::file_size(path) / 2));
  const char junk[64] = {1, 2, 3, 4, 5, 6, 7, 8};
  f.write(junk, sizeof junk);
}

TEST_F(TrainerCheckpoints, KeepsTheNewestAndLinksTheLast) {
  const TrainResult r = run_training(config("run"), core::Device::cpu());
  const std::string dir = config("run").out_dir;
  EXPECT_EQ(names(dir), (std::vector<std::string>{"checkpoint-00000005.h5",
                                                  "checkpoint-00000006.h5", "checkpoint.h5"}));
  EXPECT_TRUE(fs::is_symlink(dir + "/checkpoint.h5"));
  EXPECT_EQ(fs::read_symlink(dir + "/checkpoint.h5"), "checkpoint-00000006.h5");
  EXPECT_EQ(core::io::read_checkpoint(dir + "/checkpoint.h5").integers.at("step"), 6);
  EXPECT_EQ(r.checkpoint, dir + "/checkpoint-00000006.h5");
}

TEST_F(TrainerCheckpoints, ADamagedNewestCheckpointFallsBackToTheLastGoodOne) {
  const TrainResult straight = run_training(config("straight"), core::Device::cpu());
  TrainConfig sliced = config("sliced");
  sliced.stop_after_steps = 4;
  ASSERT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  // The newest (step 4) is damaged, as by a failing disk or a torn copy.
  damage(sliced.out_dir + "/checkpoint-00000004.h5");
  const TrainResult resumed = run_training(sliced, core::Device::cpu());
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.steps, 6);
  EXPECT_EQ(resumed.steps_this_run, 3) << "resumed at step 3, the newest good checkpoint";
  EXPECT_TRUE(fs::exists(sliced.out_dir + "/checkpoint-00000004.h5.damaged"))
      << "set aside by name, not deleted";
  expect_same_tensors(straight.checkpoint, resumed.checkpoint);
}

// A run that resumes before steps it had already logged (here the damaged
// checkpoint of step 4; in practice a crash after the last checkpoint) logs each
// step once: metrics.jsonl equals an undisturbed run's, and TensorBoard's reader
// is told to drop the orphaned step 4 (a SessionLog START at step 4 in the
// resumed run's file, after which it logs steps 4 to 6 again).
TEST_F(TrainerCheckpoints, AResumedRunLogsEachStepOnce) {
  TrainConfig straight_config = config("straight");
  straight_config.log_every = 1;
  run_training(straight_config, core::Device::cpu());
  TrainConfig sliced = config("sliced");
  sliced.log_every = 1;
  sliced.stop_after_steps = 4;
  ASSERT_TRUE(run_training(sliced, core::Device::cpu()).stopped);
  damage(sliced.out_dir + "/checkpoint-00000004.h5");
  ASSERT_EQ(run_training(sliced, core::Device::cpu()).steps_this_run, 3);

  // Step and loss of each line (samples/s differs between runs).
  auto steps_and_losses = [](const std::string& dir) {
    std::vector<std::string> out;
    std::ifstream in(dir + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);)
      out.push_back(line.substr(0, line.find(", \"lr\"")));
    return out;
  };
  const std::vector<std::string> expected = steps_and_losses(straight_config.out_dir);
  ASSERT_EQ(expected.size(), 6u);
  EXPECT_EQ(steps_and_losses(sliced.out_dir), expected);

  const std::vector<std::string> files = cohort::testing::tfevents_files(sliced.out_dir);
  ASSERT_EQ(files.size(), 2u);  // in name order, the order TensorBoard reads them
  std::vector<std::vector<cohort::testing::TfEvent>> runs;
  for (const std::string& f : files)
    runs.push_back(cohort::testing::read_tfevents(f));
  auto steps = [](const std::vector<cohort::testing::TfEvent>& events) {
    std::vector<int64_t> out;
    for (const auto& e : events)
      if (!e.scalars.empty()) out.push_back(e.step);
    return out;
  };
  EXPECT_EQ(steps(runs[0]), (std::vector<int64_t>{1, 2, 3, 4}));
  ASSERT_GE(runs[1].size(), 2u);
  EXPECT_EQ(runs[1][1].session_status, 1) << "SessionLog START right after the file version";
  EXPECT_EQ(runs[1][1].step, 4);
  EXPECT_EQ(steps(runs[1]), (std::vector<int64_t>{4, 5, 6}));
}

TEST_F(TrainerCheckpoints, NoGoodCheckpointIsAnErrorNotAFreshStart) {
  TrainConfig c = config("bad");
  c.stop_after_steps = 2;
  ASSERT_TRUE(run_training(c, core::Device::cpu()).stopped);
  for (const char* name : {"checkpoint-00000001.h5", "checkpoint-00000002.h5"})
    damage(c.out_dir + "/" + std::string(name));
  const std::string message = error_of([&] { run_training(c, core::Device::cpu()); });
  EXPECT_NE(message.find("checkpoint-00000002.h5"), std::string::npos) << message;
  EXPECT_NE(message.find("checkpoint-00000001.h5"), std::string::npos) << message;
  EXPECT_NE(message.find("Move them away"), std::string::npos) << message;
  EXPECT_TRUE(fs::exists(c.out_dir + "/checkpoint-00000001.h5")) << "nothing removed";
  EXPECT_TRUE(fs::exists(c.out_dir + "/checkpoint-00000002.h5"));
}

// A run directory from before the history (one regular checkpoint.h5) resumes.
TEST_F(TrainerCheckpoints, ASingleCheckpointFileOfAnOlderRunResumes) {
  TrainConfig c = config("old");
  c.stop_after_steps = 3;
  ASSERT_TRUE(run_training(c, core::Device::cpu()).stopped);
  const std::string link = c.out_dir + "/checkpoint.h5";
  const fs::path newest = fs::path(c.out_dir) / fs::read_symlink(link);
  fs::remove(link);
  fs::rename(newest, link);
  for (const std::string& n : names(c.out_dir))
    if (n != "checkpoint.h5") fs::remove(c.out_dir + "/" + n);
  const TrainResult r = run_training(c, core::Device::cpu());
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(r.steps_this_run, 3);
  EXPECT_EQ(r.steps, 6);
}

// checkpoint.resume=false over a directory with checkpoints would prune them away.
TEST_F(TrainerCheckpoints, AFreshStartOverCheckpointsIsRefused) {
  TrainConfig c = config("fresh");
  c.stop_after_steps = 2;
  ASSERT_TRUE(run_training(c, core::Device::cpu()).stopped);
  c.resume = false;
  const std::string message = error_of([&] { run_training(c, core::Device::cpu()); });
  EXPECT_NE(message.find("checkpoint-00000002.h5"), std::string::npos) << message;
  EXPECT_NE(message.find("another run.out_dir"), std::string::npos) << message;
  EXPECT_TRUE(std::filesystem::exists(c.out_dir + "/checkpoint-00000001.h5"));
}

// The link follows the set-aside at once: it never names a file that is gone,
// even when the resumed run then fails before its first save.
TEST_F(TrainerCheckpoints, TheLinkNamesTheGoodCheckpointAfterASetAside) {
  TrainConfig c = config("relink");
  c.stop_after_steps = 3;
  ASSERT_TRUE(run_training(c, core::Device::cpu()).stopped);
  damage(c.out_dir + "/checkpoint-00000003.h5");
  c.train_shards = c.out_dir + "/no-such-shards";  // fails after choosing the checkpoint
  EXPECT_NE(error_of([&] { run_training(c, core::Device::cpu()); }), "");
  EXPECT_EQ(std::filesystem::read_symlink(c.out_dir + "/checkpoint.h5"), "checkpoint-00000002.h5");
  EXPECT_TRUE(std::filesystem::exists(c.out_dir + "/checkpoint-00000003.h5.damaged"));
}

// A disk that fills up while a checkpoint is being written ends the run with an
// error naming the file, and loses nothing: the previous checkpoints and the link
// stay as they were, no temporary file is left behind, and the next run (with
// space again) resumes from the last good step. The full disk is RLIMIT_FSIZE in
// a child process: its writes past the limit fail with EFBIG, as they would with
// ENOSPC.
TEST_F(TrainerCheckpoints, AFullDiskEndsTheRunAndLosesNoCheckpoint) {
  TrainConfig c = config("full");
  c.stop_after_steps = 3;
  ASSERT_TRUE(run_training(c, core::Device::cpu()).stopped);
  const std::vector<std::string> before = names(c.out_dir);
  ASSERT_EQ(before, (std::vector<std::string>{"checkpoint-00000002.h5", "checkpoint-00000003.h5",
                                              "checkpoint.h5"}));
  const auto limit = static_cast<rlim_t>(fs::file_size(c.out_dir + "/checkpoint-00000003.h5") / 2);

  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the child: train on with a disk that is "full" half-way into a checkpoint
    ::close(pipe_fds[0]);
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{limit, limit};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    TrainConfig more = c;
    more.stop_after_steps = 0;
    std::string message = "the run did not fail";
    int code = 0;
    try {
      run_training(more, core::Device::cpu());
    } catch (const std::exception& e) {
      message = e.what();
      code = 7;
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(code);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0;)
    message.append(buffer, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << message;
  EXPECT_EQ(WEXITSTATUS(status), 7) << message;
  EXPECT_NE(message.find("checkpoint-00000004.h5"), std::string::npos) << message;
  // The operating system's reason comes first, not only deep in HDF5's stack.
  EXPECT_NE(message.find("HDF5 error -1 (File too large; "), std::string::npos) << message;

  EXPECT_EQ(names(c.out_dir), before) << "no new, partial or temporary file";
  EXPECT_EQ(fs::read_symlink(c.out_dir + "/checkpoint.h5"), "checkpoint-00000003.h5");
  EXPECT_EQ(core::io::read_checkpoint(c.out_dir + "/checkpoint.h5").integers.at("step"), 3);

  TrainConfig next = c;
  next.stop_after_steps = 0;
  const TrainResult resumed = run_training(next, core::Device::cpu());
  EXPECT_TRUE(resumed.resumed);
  EXPECT_EQ(resumed.steps, 6);
  EXPECT_EQ(resumed.steps_this_run, 3);
  expect_same_tensors(run_training(config("straight"), core::Device::cpu()).checkpoint,
                      resumed.checkpoint);
}

TEST_F(TrainerCheckpoints, KeepLastBelowOneIsRefused) {
  TrainConfig c = config("keep0");
  c.keep_last = 0;
  EXPECT_NE(error_of([&] { run_training(c, core::Device::cpu()); }).find("checkpoint.keep_last"),
            std::string::npos);
}

}  // namespace
}  // namespace cohort::launch
