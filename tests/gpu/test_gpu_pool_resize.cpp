// Pooling and bilinear resize on CUDA against the CPU ops, forward and backward,
// including padding, count_include_pad both ways, overlapping adaptive bins,
// max-pool ties (the gradient must go to the same first maximum) and bf16/f16.
// Pooling runs twice: with cuDNN enabled and with the own kernels only.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <vector>

#include "core/determinism.hpp"
#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/pooling_cudnn.hpp"
#endif
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using core::ops::PoolGeometry;

PoolGeometry pool(int k, int s, int p, bool include_pad = true) {
  PoolGeometry g;
  g.kernel_h = g.kernel_w = k;
  g.stride_h = g.stride_w = s;
  g.pad_h = g.pad_w = p;
  g.count_include_pad = include_pad;
  return g;
}

std::vector<PoolGeometry> geometries() {
  PoolGeometry rect = pool(3, 2, 1);
  rect.kernel_w = 2;
  rect.stride_w = 1;
  rect.pad_w = 0;
  return {pool(2, 2, 0), pool(3, 2, 1), pool(3, 1, 1, false), pool(3, 2, 1, false), rect};
}

std::string geometry_str(const PoolGeometry& g) {
  return fmt::format("kernel {}x{} stride {}x{} pad {}x{} include_pad {}", g.kernel_h, g.kernel_w,
                     g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.count_include_pad);
}

// The switch exists in CUDA builds only (elsewhere these tests report skipped).
#ifdef COHORT_WITH_CUDA
bool cudnn_pool_enabled() {
  return core::ops::cuda::cudnn_pooling_enabled();
}
void set_cudnn_pool(bool use) {
  core::ops::cuda::set_cudnn_pooling_enabled(use);
}
#else
bool cudnn_pool_enabled() {
  return false;
}
void set_cudnn_pool(bool) {}
#endif

// Sets whether pooling tries cuDNN, restoring the setting on exit.
class CudnnPooling {
 public:
  explicit CudnnPooling(bool use) : m_before(cudnn_pool_enabled()) { set_cudnn_pool(use); }
  ~CudnnPooling() { set_cudnn_pool(m_before); }
  CudnnPooling(const CudnnPooling&) = delete;
  CudnnPooling& operator=(const CudnnPooling&) = delete;

 private:
  bool m_before;
};

void check_pools_once(const Tensor& x, DType d, uint64_t seed) {
  for (const PoolGeometry& g : geometries()) {
    SCOPED_TRACE(fmt::format("{} x {} {}", geometry_str(g), x.shape().str(), name_of(d)));
    const Tensor xg = to_gpu(x, d);
    const Tol tol = tol_for(d, kTightF32);
    const Tensor ym_cpu = core::ops::max_pool2d(cpu(), x, g);
    const Tensor ym_gpu = core::ops::max_pool2d(gpu(), xg, g);
    expect_equal("max_pool2d", ym_gpu, ym_cpu);  // a selection: exact
    const Tensor dy = random_cpu(ym_cpu.shape(), seed++, -1, 1, d);
    expect_near("max_pool2d_backward",
                core::ops::max_pool2d_backward(gpu(), to_gpu(dy, d), xg, ym_gpu, g),
                core::ops::max_pool2d_backward(cpu(), dy, x, ym_cpu, g), tol);

    const Tensor ya_cpu = core::ops::avg_pool2d(cpu(), x, g);
    expect_near("avg_pool2d", core::ops::avg_pool2d(gpu(), xg, g), ya_cpu, tol);
    expect_near("avg_pool2d_backward",
                core::ops::avg_pool2d_backward(gpu(), to_gpu(dy, d), x.shape(), g),
                core::ops::avg_pool2d_backward(cpu(), dy, x.shape(), g), tol);
  }
}

void check_pools(const Tensor& x, DType d, uint64_t seed) {
  for (bool use_cudnn : {true, false}) {
    SCOPED_TRACE(use_cudnn ? "cuDNN enabled" : "cuDNN disabled");
    CudnnPooling setting(use_cudnn);
    check_pools_once(x, d, seed);
  }
}

// A NaN inside a max or average window makes that output NaN on every path
// (PyTorch propagates it).
TEST(GpuPool, MaxPoolPropagatesNan) {
  std::vector<double> v(1 * 4 * 4 * 2, 1.0);
  v[2 * 5] = std::nan("");  // (h 1, w 1, c 0)
  const Tensor x = Tensor::from_vector(v, Shape{1, 4, 4, 2}, DType::f32);
  for (bool use_cudnn : {true, false}) {
    SCOPED_TRACE(use_cudnn ? "cuDNN enabled" : "cuDNN disabled");
    CudnnPooling setting(use_cudnn);
    const std::vector<double> y =
        to_cpu_f32(core::ops::max_pool2d(gpu(), to_gpu(x), pool(2, 2, 0))).to_vector();
    ASSERT_EQ(y.size(), 8u);
    EXPECT_TRUE(std::isnan(y[0])) << "window (0, 0) channel 0 holds the NaN";
    EXPECT_EQ(y[1], 1.0);
    const std::vector<double> a =
        to_cpu_f32(core::ops::avg_pool2d(gpu(), to_gpu(x), pool(2, 2, 0))).to_vector();
    EXPECT_TRUE(std::isnan(a[0])) << "average pooling";
    EXPECT_EQ(a[1], 1.0);
  }
}

// The cuDNN path is really taken (a decline falls back silently by design): in
// f32 with a ResNet stem's geometry, max and average forward and the average
// backward each run on cuDNN once.
TEST(GpuPool, CudnnCarriesWhatItAccepts) {
#ifdef COHORT_WITH_CUDA
  CudnnPooling setting(true);
  const Tensor x = to_gpu(random_cpu(Shape{2, 16, 16, 8}, 3, -1, 1));
  for (bool include_pad : {true, false}) {
    SCOPED_TRACE(include_pad ? "count_include_pad" : "count_exclude_pad");
    const PoolGeometry g = pool(3, 2, 1, include_pad);
    const auto before = core::ops::cuda::cudnn_pooling_counts();
    const Tensor ym = core::ops::max_pool2d(gpu(), x, g);
    const Tensor ya = core::ops::avg_pool2d(gpu(), x, g);
    core::ops::avg_pool2d_backward(gpu(), ya, x.shape(), g);
    const auto after = core::ops::cuda::cudnn_pooling_counts();
    EXPECT_EQ(after.forward - before.forward, 2) << "max and average forward on cuDNN";
    EXPECT_EQ(after.avg_backward - before.avg_backward, 1) << "average backward on cuDNN";
  }
#endif
}

TEST(GpuPool, MaxAndAvgMatchCpu) {
  for (DType d : float_dtypes())
    check_pools(random_cpu(Shape{2, 9, 8, 5}, 1, -1, 1, d), d, 10);
}

// Few distinct values: many ties inside each window. The gradient must reach the
// first maximum in row-major window order on both devices.
TEST(GpuPool, MaxPoolTiesGoToTheFirstMaximum) {
  std::vector<double> v;
  for (int i = 0; i < 2 * 7 * 6 * 3; ++i)
    v.push_back(static_cast<double>((i * 7) % 3));
  const Tensor x = Tensor::from_vector(v, Shape{2, 7, 6, 3}, DType::f32);
  for (DType d : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(name_of(d));
    check_pools(x, d, 20);
  }
}

TEST(GpuPool, AdaptiveAvgMatchesCpu) {
  const std::vector<std::pair<int, int>> outs{{1, 1}, {3, 2}, {2, 3}, {7, 5}, {4, 4}};
  for (DType d : float_dtypes()) {
    const Tensor x = random_cpu(Shape{2, 7, 5, 6}, 30, -1, 1, d);
    for (auto [oh, ow] : outs) {
      SCOPED_TRACE(
          fmt::format("adaptive {}x{} from {} in {}", oh, ow, x.shape().str(), name_of(d)));
      const Tol tol = tol_for(d, kTightF32);
      const Tensor y_cpu = core::ops::adaptive_avg_pool2d(cpu(), x, oh, ow);
      expect_near("adaptive_avg_pool2d",
                  core::ops::adaptive_avg_pool2d(gpu(), to_gpu(x, d), oh, ow), y_cpu, tol);
      const Tensor dy = random_cpu(y_cpu.shape(), 31, -1, 1, d);
      expect_near("adaptive_avg_pool2d_backward",
                  core::ops::adaptive_avg_pool2d_backward(gpu(), to_gpu(dy, d), x.shape()),
                  core::ops::adaptive_avg_pool2d_backward(cpu(), dy, x.shape()), tol);
    }
  }
}

TEST(GpuResize, BilinearMatchesCpu) {
  const std::vector<std::pair<int, int>> outs{{11, 9}, {4, 3}, {5, 4}, {1, 1}, {16, 2}};
  for (DType d : float_dtypes()) {
    const Tensor x = random_cpu(Shape{2, 5, 4, 3}, 40, -1, 1, d);
    for (auto [oh, ow] : outs) {
      SCOPED_TRACE(fmt::format("resize {} to {}x{} in {}", x.shape().str(), oh, ow, name_of(d)));
      const Tol tol = tol_for(d, kTightF32);
      const Tensor y_cpu = core::ops::resize_bilinear(cpu(), x, oh, ow);
      expect_near("resize_bilinear", core::ops::resize_bilinear(gpu(), to_gpu(x, d), oh, ow), y_cpu,
                  tol);
      const Tensor dy = random_cpu(y_cpu.shape(), 41, -1, 1, d);
      expect_near("resize_bilinear_backward",
                  core::ops::resize_bilinear_backward(gpu(), to_gpu(dy, d), x.shape()),
                  core::ops::resize_bilinear_backward(cpu(), dy, x.shape()), tol);
    }
  }
}

// The 8x upsampling of a segmentation head: many outputs per input in backward.
TEST(GpuResize, LargeUpsampleBackwardMatchesCpu) {
  const Tensor x = random_cpu(Shape{2, 8, 8, 19}, 50);
  const Tensor dy = random_cpu(Shape{2, 64, 64, 19}, 51);
  expect_near("resize 8x8 -> 64x64", core::ops::resize_bilinear(gpu(), to_gpu(x), 64, 64),
              core::ops::resize_bilinear(cpu(), x, 64, 64), kTightF32);
  expect_near("resize backward 64x64 -> 8x8",
              core::ops::resize_bilinear_backward(gpu(), to_gpu(dy), x.shape()),
              core::ops::resize_bilinear_backward(cpu(), dy, x.shape()), {1e-4, 1e-5});
}

// run.deterministic: the gathering backward gives the same bits every run, in
// every dtype, and the CPU's values (up-, down- and odd-ratio resizes).
TEST(GpuResize, DeterministicBackwardRepeatsBitwiseAndMatchesCpu) {
  const core::DeterministicAlgorithms deterministic(true);
  const std::vector<std::array<int64_t, 4>> cases{{8, 8, 64, 64}, {5, 4, 11, 9},
                                                  {16, 2, 5, 4},  {9, 13, 4, 3},
                                                  {1, 1, 7, 5},   {32, 64, 128, 256}};
  for (DType d : float_dtypes()) {
    for (const auto& [h, w, oh, ow] : cases) {
      SCOPED_TRACE(fmt::format("backward of {}x{} -> {}x{} in {}", h, w, oh, ow, name_of(d)));
      const Shape x_shape{2, h, w, 19};
      const Tensor dy = random_cpu(Shape{2, oh, ow, 19}, 60, -1, 1, d);
      const Tensor dy_gpu = to_gpu(dy, d);
      const Tensor first = core::ops::resize_bilinear_backward(gpu(), dy_gpu, x_shape);
      const Tensor again = core::ops::resize_bilinear_backward(gpu(), dy_gpu, x_shape);
      expect_equal("the same backward twice", again, first);
      expect_near("resize_bilinear_backward", first,
                  core::ops::resize_bilinear_backward(cpu(), dy, x_shape),
                  tol_for(d, {1e-4, 1e-5}));
    }
  }
}

}  // namespace
}  // namespace cohort::gputest
