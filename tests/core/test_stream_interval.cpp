// StreamInterval on the CPU: nothing before the first end, then the host time
// between begin and end, returned once; a begin without end restarts, an end
// without begin does nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <thread>

#include "core/stream_interval.hpp"

namespace cohort::core {
namespace {

TEST(StreamInterval, CpuMeasuresBeginToEnd) {
  StreamInterval interval(Device::cpu());
  EXPECT_FALSE(interval.seconds().has_value()) << "no interval yet";
  interval.begin(nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(interval.seconds().has_value()) << "begun, not ended";
  interval.end(nullptr);
  const std::optional<double> s = interval.seconds();
  ASSERT_TRUE(s.has_value());
  EXPECT_GE(*s, 0.019);
  EXPECT_LT(*s, 5.0);
  EXPECT_FALSE(interval.seconds().has_value()) << "a measurement is read once";
  interval.begin(nullptr);
  EXPECT_FALSE(interval.seconds().has_value()) << "the new interval has not ended";
  interval.end(nullptr);
  const std::optional<double> next = interval.seconds();
  ASSERT_TRUE(next.has_value());
  EXPECT_LT(*next, 0.019);
  EXPECT_EQ(interval.dropped(), 0);
}

TEST(StreamInterval, CpuBeginWithoutEndRestartsAndEndWithoutBeginIsIgnored) {
  StreamInterval interval(Device::cpu());
  interval.end(nullptr);
  EXPECT_FALSE(interval.seconds().has_value()) << "an end without a begin measures nothing";
  interval.begin(nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  interval.begin(nullptr);  // the first begin is abandoned (as after an exception)
  interval.end(nullptr);
  interval.end(nullptr);  // a second end has no begin
  const std::optional<double> s = interval.seconds();
  ASSERT_TRUE(s.has_value());
  EXPECT_LT(*s, 0.029) << "measured from the second begin";
  EXPECT_FALSE(interval.seconds().has_value()) << "one interval, one measurement";
  EXPECT_EQ(interval.dropped(), 0);
}

}  // namespace
}  // namespace cohort::core
