// StreamInterval on a CUDA stream: the device time of the work between begin and
// end, read without synchronising (nothing until the device has passed end).
#ifdef COHORT_WITH_CUDA
#include <gtest/gtest.h>

#include "core/stream_interval.hpp"
#include "core/tensor.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

TEST(GpuStreamInterval, MeasuresDeviceWorkWithoutBlocking) {
  core::StreamInterval interval(gpu().device());
  EXPECT_FALSE(interval.seconds().has_value());
  interval.begin(gpu().stream());
  // About 4 GB of memory traffic: long enough to be seen, short enough for a test.
  Tensor big = Tensor::zeros(Shape{int64_t{1} << 29}, DType::f32, gpu().device(), gpu().stream());
  for (int i = 0; i < 4; ++i)
    big.zero_(gpu().stream());
  interval.end(gpu().stream());
  gpu().synchronize();
  ASSERT_TRUE(interval.seconds().has_value());
  EXPECT_GT(*interval.seconds(), 1e-5);
  EXPECT_LT(*interval.seconds(), 10.0);
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
