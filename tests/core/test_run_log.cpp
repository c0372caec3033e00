// TensorBoard event files and the run log (metrics.jsonl + events) of `cohort
// train`: the records read back through an independent decoder with both CRCs
// checked, and a resumed run's log holds each step once.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/io/tensorboard_events.hpp"
#include "launch/run_log.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/tfevents_reader.hpp"

namespace cohort {
namespace {

using cohort::testing::read_tfevents;
using cohort::testing::tfevents_files;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Crc32c, MatchesTheCastagnoliCheckValues) {
  // The standard check value of CRC-32C, and RFC 3720's 32 zero bytes.
  EXPECT_EQ(core::io::crc32c("123456789", 9), 0xe3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(core::io::crc32c(zeros.data(), zeros.size()), 0x8a9136aau);
  const uint32_t c = 0xe3069283u;
  EXPECT_EQ(core::io::masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoardWriter, ScalarsAndSessionStartReadBack) {
  cohort::testing::TempDir dir("cohort-tb");
  std::string path;
  {
    core::io::TensorBoardWriter w(dir.file("logs"));
    path = w.path();
    w.add_scalars(7, {{"train/loss", 1.25}, {"train/lr", 0.1}});
    w.add_session_start(300);  // steps this large need multi-byte varints
    w.add_scalars(1ll << 40, {{"eval/miou", -3.5}});
  }
  EXPECT_EQ(std::filesystem::path(path).parent_path(), dir.path() / "logs");
  EXPECT_EQ(tfevents_files(dir.file("logs")), std::vector<std::string>{path});
  const auto events = read_tfevents(path);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1.7e9) << "seconds since 1970";
  EXPECT_EQ(events[1].step, 7);
  ASSERT_EQ(events[1].scalars.size(), 2u);
  EXPECT_EQ(events[1].scalars[0], (std::pair<std::string, float>{"train/loss", 1.25f}));
  EXPECT_EQ(events[1].scalars[1], (std::pair<std::string, float>{"train/lr", 0.1f}));
  EXPECT_EQ(events[1].session_status, 0);
  EXPECT_EQ(events[2].step, 300);
  EXPECT_EQ(events[2].session_status, 1) << "SessionLog.START";
  EXPECT_TRUE(events[2].scalars.empty());
  EXPECT_EQ(events[3].step, 1ll << 40);
  EXPECT_EQ(events[3].scalars.at(0).second, -3.5f);
}

TEST(TensorBoardWriter, AFlippedByteFailsTheRecordCheck) {
  cohort::testing::TempDir dir("cohort-tb");
  std::string path;
  {
    core::io::TensorBoardWriter w(dir.path().string());
    path = w.path();
    w.add_scalars(1, {{"train/loss", 2.0}});
  }
  ASSERT_EQ(read_tfevents(path).size(), 2u);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-6, std::ios::end);  // inside the last record's payload
  f.put('\x7f');
  f.close();
  EXPECT_THROW(read_tfevents(path), std::runtime_error);
}

TEST(TensorBoardWriter, AnUnwritableDirectoryIsNamed) {
  try {
    core::io::TensorBoardWriter w("/proc/cohort-no-such-dir");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/cohort-no-such-dir/events.out.tfevents."),
              std::string::npos)
        << e.what();
  }
}

TEST(RunLog, MetricsUpToAStepDropsOnlyLaterSteps) {
  const std::string text =
      "{\"step\": 9, \"loss\": 1}\n{\"step\": 10, \"eval_miou\": 0.5}\n"
      "{\"note\": 1}\n{\"step\": 11, \"loss\": 2}\n{\"step\": 100, \"loss\": 3}\n";
  EXPECT_EQ(launch::metrics_up_to_step(text, 10),
            "{\"step\": 9, \"loss\": 1}\n{\"step\": 10, \"eval_miou\": 0.5}\n{\"note\": 1}\n");
  EXPECT_EQ(launch::metrics_up_to_step(text, 100), text);
  // A torn last line (no newline: a kill or a full disk mid-write) goes too,
  // whatever its step reads as.
  EXPECT_EQ(launch::metrics_up_to_step("{\"step\": 1}\n{\"step\": 12", 100), "{\"step\": 1}\n");
  EXPECT_EQ(launch::metrics_up_to_step("{\"step\": 1}\n{\"st", 100), "{\"step\": 1}\n");
}

TEST(RunLog, WritesJsonLinesAndTensorBoardScalars) {
  cohort::testing::TempDir dir("cohort-runlog");
  {
    launch::RunLog log(dir.path().string(), true, 0);
    log.write(5, {{"epoch", {0}, {}}, {"loss", {0.5}, {}}, {"lr", {0.01}, {}}});
    log.write(6, {{"eval_miou", {NAN}, {}}, {"loss_weights", {0.75, 1.25}, {"seg", "depth"}}});
  }
  EXPECT_EQ(read_text(dir.file("metrics.jsonl")),
            "{\"step\": 5, \"epoch\": 0, \"loss\": 0.5, \"lr\": 0.01}\n"
            "{\"step\": 6, \"eval_miou\": null, \"loss_weights\": [0.75, 1.25]}\n");
  const auto files = tfevents_files(dir.path().string());
  ASSERT_EQ(files.size(), 1u);
  const auto events = read_tfevents(files[0]);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].session_status, 1) << "a fresh start drops what an earlier run logged";
  EXPECT_EQ(events[1].step, 1);
  EXPECT_EQ(events[2].step, 5);
  ASSERT_EQ(events[2].scalars.size(), 2u) << "the epoch is not a scalar";
  EXPECT_EQ(events[2].scalars[0].first, "train/loss");
  EXPECT_EQ(events[2].scalars[1].first, "train/lr");
  ASSERT_EQ(events[3].scalars.size(), 3u);
  EXPECT_EQ(events[3].scalars[0].first, "eval/miou");
  EXPECT_TRUE(std::isnan(events[3].scalars[0].second));
  EXPECT_EQ(events[3].scalars[1], (std::pair<std::string, float>{"train/loss_weights/seg", 0.75f}));
  EXPECT_EQ(events[3].scalars[2],
            (std::pair<std::string, float>{"train/loss_weights/depth", 1.25f}));
}

TEST(RunLog, AResumedRunForgetsTheStepsAfterItsCheckpoint) {
  cohort::testing::TempDir dir("cohort-runlog");
  {
    launch::RunLog first(dir.path().string(), true, 0);
    for (int step = 1; step <= 4; ++step)
      first.write(step, {{"loss", {1.0 * step}, {}}});
  }
  {
    launch::RunLog resumed(dir.path().string(), true, 2);  // the checkpoint of step 2
    resumed.write(3, {{"loss", {30}, {}}});
  }
  EXPECT_EQ(
      read_text(dir.file("metrics.jsonl")),
      "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 2}\n{\"step\": 3, \"loss\": 30}\n");
  const auto files = tfevents_files(dir.path().string());
  ASSERT_EQ(files.size(), 2u) << "one file per invocation";
  std::vector<int64_t> starts;
  for (const std::string& f : files)
    for (const auto& e : read_tfevents(f))
      if (e.session_status == 1) starts.push_back(e.step);
  EXPECT_EQ(starts, (std::vector<int64_t>{1, 3})) << "TensorBoard drops steps >= 3 read before it";
}

// A run that found no checkpoint (it died before its first) starts afresh, and
// what the dead run logged goes: each step shows once.
TEST(RunLog, AFreshStartForgetsAnEarlierRunsRecords) {
  cohort::testing::TempDir dir("cohort-runlog");
  for (double loss : {1.0, 9.0}) {
    launch::RunLog run(dir.path().string(), false, 0);
    run.write(1, {{"loss", {loss}, {}}});
    run.write(2, {{"loss", {loss}, {}}});
  }
  EXPECT_EQ(read_text(dir.file("metrics.jsonl")),
            "{\"step\": 1, \"loss\": 9}\n{\"step\": 2, \"loss\": 9}\n");
}

// Logging never ends a run: a directory where nothing can be written (/proc
// takes no new files) gives warnings, not errors.
TEST(RunLog, AnUnwritableLogIsAWarningNotAnError) {
  EXPECT_NO_THROW({
    launch::RunLog log("/proc/cohort-no-such-dir", true, 0);
    log.write(1, {{"loss", {1}, {}}});
  });
}

TEST(RunLog, NoTensorBoardFilesWhenDisabledOrNotRankZero) {
  cohort::testing::TempDir dir("cohort-runlog");
  {
    launch::RunLog log(dir.path().string(), false, -1);
    log.write(1, {{"loss", {1}, {}}});
    launch::RunLog other_rank("", true, -1);
    other_rank.write(1, {{"loss", {1}, {}}});
  }
  EXPECT_TRUE(tfevents_files(dir.path().string()).empty());
  EXPECT_EQ(read_text(dir.file("metrics.jsonl")), "{\"step\": 1, \"loss\": 1}\n");
}

}  // namespace
}  // namespace cohort
