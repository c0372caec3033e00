// StreamInterval on a CUDA stream: the device time of the work between begin and
// end, read without synchronising (nothing until the device has passed end), and
// kept until read while the host runs ahead of the device.
#ifdef COHORT_WITH_CUDA
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <vector>

#include "core/stream_interval.hpp"
#include "core/tensor.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using Clock = std::chrono::steady_clock;

// 2 GiB of f32, zeroed `passes` times: each pass is a large cudaMemsetAsync the
// host queues in microseconds and the device runs in about a millisecond, so a
// few intervals of it leave the device well behind the host.
void device_work(Tensor& big, int passes) {
  for (int i = 0; i < passes; ++i)
    big.zero_(gpu().stream());
}

Tensor big_tensor() {
  return Tensor::zeros(Shape{int64_t{1} << 29}, DType::f32, gpu().device(), gpu().stream());
}

std::vector<double> read_all(core::StreamInterval& interval) {
  std::vector<double> values;
  while (const std::optional<double> s = interval.seconds())
    values.push_back(*s);
  return values;
}

TEST(GpuStreamInterval, MeasuresDeviceWorkWithoutBlocking) {
  core::StreamInterval interval(gpu().device());
  EXPECT_FALSE(interval.seconds().has_value());
  Tensor big = big_tensor();
  interval.begin(gpu().stream());
  device_work(big, 4);  // about 8 GB of memory traffic
  interval.end(gpu().stream());
  gpu().synchronize();
  const std::optional<double> s = interval.seconds();
  ASSERT_TRUE(s.has_value());
  EXPECT_GT(*s, 1e-5);
  EXPECT_LT(*s, 10.0);
  EXPECT_FALSE(interval.seconds().has_value()) << "a measurement is read once";
}

// The engines' pattern (DataParallel::finish_backward, read by the trainer once
// per step) with the host ahead of the device: each step's read comes before the
// device has passed the previous steps' ends. Every interval must still be read
// exactly once (a single event pair lost all but the last).
TEST(GpuStreamInterval, EveryIntervalSurvivesWhileTheDeviceLags) {
  core::StreamInterval interval(gpu().device());
  Tensor big = big_tensor();
  gpu().synchronize();
  constexpr int kSteps = core::StreamInterval::kSlots - 1;
  constexpr int kPasses = 20;  // tens of milliseconds of device work per interval
  std::vector<double> values;
  const auto host_start = Clock::now();
  for (int step = 0; step < kSteps; ++step) {
    if (const std::optional<double> s = interval.seconds()) values.push_back(*s);
    interval.begin(gpu().stream());
    device_work(big, kPasses);
    interval.end(gpu().stream());
  }
  const std::optional<double> early = interval.seconds();
  const double host_seconds = std::chrono::duration<double>(Clock::now() - host_start).count();
  if (early) values.push_back(*early);
  gpu().synchronize();
  const double total_seconds = std::chrono::duration<double>(Clock::now() - host_start).count();
  // The device really lagged (else this test would not test the lag): queueing
  // took a fraction of running, and the reads above did not wait for it.
  EXPECT_LT(host_seconds, 0.5 * total_seconds)
      << "reads must not wait for the device; queueing took " << host_seconds << " s of "
      << total_seconds << " s";
  EXPECT_LT(values.size(), static_cast<size_t>(kSteps)) << "the device was expected to lag";
  for (double v : read_all(interval))
    values.push_back(v);
  ASSERT_EQ(values.size(), static_cast<size_t>(kSteps)) << "every interval is read once";
  for (double v : values) {
    EXPECT_GT(v, 1e-4) << "each interval holds " << kPasses << " large memsets";
    EXPECT_LT(v, 10.0);
  }
  EXPECT_EQ(interval.dropped(), 0);
}

// More intervals than slots while the device lags: none is waited for, and
// every one is either read or counted as dropped.
TEST(GpuStreamInterval, FullRingNeverBlocksAndAccountsForEveryInterval) {
  core::StreamInterval interval(gpu().device());
  Tensor big = big_tensor();
  gpu().synchronize();
  constexpr int kIntervals = core::StreamInterval::kSlots + 2;
  const auto host_start = Clock::now();
  for (int i = 0; i < kIntervals; ++i) {
    interval.begin(gpu().stream());
    device_work(big, 10);
    interval.end(gpu().stream());
  }
  const double host_seconds = std::chrono::duration<double>(Clock::now() - host_start).count();
  gpu().synchronize();
  const double total_seconds = std::chrono::duration<double>(Clock::now() - host_start).count();
  EXPECT_LT(host_seconds, 0.5 * total_seconds) << "begin on a full ring must not wait";
  const std::vector<double> values = read_all(interval);
  EXPECT_LE(values.size(), static_cast<size_t>(core::StreamInterval::kSlots));
  EXPECT_EQ(static_cast<int64_t>(values.size()) + interval.dropped(), kIntervals);
  for (double v : values)
    EXPECT_GT(v, 1e-5);
  // Once drained the ring measures again.
  interval.begin(gpu().stream());
  device_work(big, 1);
  interval.end(gpu().stream());
  gpu().synchronize();
  EXPECT_TRUE(interval.seconds().has_value());
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
