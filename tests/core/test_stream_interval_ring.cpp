// StreamInterval keeps up to kSlots measurements until they are read (the host
// may run ahead of the device by a few steps): several begin/end pairs before any
// read are all returned, oldest first; once the ring is full the oldest completed
// one is dropped (counted), never waited for.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "core/stream_interval.hpp"

namespace cohort::core {
namespace {

constexpr double kSleepSeconds = 0.03;

// An interval that lasts at least kSleepSeconds when `slow`, next to nothing else.
void measure(StreamInterval& interval, bool slow) {
  interval.begin(nullptr);
  if (slow) std::this_thread::sleep_for(std::chrono::duration<double>(kSleepSeconds));
  interval.end(nullptr);
}

std::vector<double> read_all(StreamInterval& interval) {
  std::vector<double> values;
  while (const std::optional<double> s = interval.seconds())
    values.push_back(*s);
  return values;
}

// Slow intervals read >= kSleepSeconds, fast ones far less: the pattern of the
// values shows which intervals were returned, and in which order.
std::vector<bool> slow_pattern(const std::vector<double>& values) {
  std::vector<bool> slow;
  for (double v : values)
    slow.push_back(v >= kSleepSeconds * 0.95);
  return slow;
}

TEST(StreamIntervalRing, KeepsEveryMeasurementUntilReadOldestFirst) {
  StreamInterval interval(Device::cpu());
  const std::vector<bool> pattern{true, false, false, true};
  static_assert(StreamInterval::kSlots == 4);
  for (bool slow : pattern)
    measure(interval, slow);
  const std::vector<double> values = read_all(interval);
  ASSERT_EQ(values.size(), pattern.size()) << "no measurement lost before the first read";
  EXPECT_EQ(slow_pattern(values), pattern) << "read in the order the intervals ended";
  EXPECT_EQ(interval.dropped(), 0);
}

TEST(StreamIntervalRing, LaggingReaderSeesEveryInterval) {
  // The engines' pattern: each step measures, and the caller reads once per step
  // but (on a device) only after a lag. Here the reads start two steps late and
  // still see each interval exactly once.
  StreamInterval interval(Device::cpu());
  const std::vector<bool> pattern{true, false, true, true, false, false, true};
  std::vector<double> values;
  for (size_t step = 0; step < pattern.size(); ++step) {
    measure(interval, pattern[step]);
    if (step >= 2)
      if (const std::optional<double> s = interval.seconds()) values.push_back(*s);
  }
  for (double v : read_all(interval))
    values.push_back(v);
  EXPECT_EQ(slow_pattern(values), pattern);
  EXPECT_EQ(interval.dropped(), 0);
}

TEST(StreamIntervalRing, FullRingDropsTheOldestCompletedWithoutBlocking) {
  StreamInterval interval(Device::cpu());
  const std::vector<bool> pattern{true, true, false, true, false, true};
  for (bool slow : pattern)
    measure(interval, slow);
  const auto started = std::chrono::steady_clock::now();
  const std::vector<double> values = read_all(interval);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
            kSleepSeconds)
      << "reading never waits";
  const std::vector<bool> newest(pattern.end() - StreamInterval::kSlots, pattern.end());
  EXPECT_EQ(slow_pattern(values), newest) << "the newest kSlots measurements survive";
  EXPECT_EQ(interval.dropped(), static_cast<int64_t>(pattern.size()) - StreamInterval::kSlots);
  // The ring works on after a drop.
  measure(interval, true);
  EXPECT_EQ(slow_pattern(read_all(interval)), std::vector<bool>{true});
}

}  // namespace
}  // namespace cohort::core
