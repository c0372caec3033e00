// StreamInterval on the CPU: nothing before the first end, then the host time
// between begin and end; a new begin hides the old value until its end.
#include <gtest/gtest.h>

#include <chrono>
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
  ASSERT_TRUE(interval.seconds().has_value());
  EXPECT_GE(*interval.seconds(), 0.019);
  EXPECT_LT(*interval.seconds(), 5.0);
  interval.begin(nullptr);
  EXPECT_FALSE(interval.seconds().has_value()) << "a new interval replaces the old";
  interval.end(nullptr);
  EXPECT_LT(*interval.seconds(), 0.019);
}

}  // namespace
}  // namespace cohort::core
