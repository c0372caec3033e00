// Evaluation metrics on CUDA against the CPU ops: confusion matrices counted
// exactly (19 classes with ignore 255 and predictions from a bf16 argmax, the
// largest shared-memory histogram, 1000 classes that take the global-atomic
// path, u8 and i32 truth, out-of-range truth and predictions, accumulation over
// two calls) and depth error sums (f32/bf16/f16 predictions, invalid pixels,
// non-positive targets) within 1e-6 relative.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

// A small deterministic generator (the same numbers on every run and machine).
class Lcg {
 public:
  explicit Lcg(uint64_t seed) : m_state(seed * 2654435761u + 1) {}
  uint64_t next() {
    m_state = m_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return m_state >> 33;
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t m_state;
};

// Truth in [0, classes); every `ignore_every`-th element is `ignore` and every
// `outside_every`-th (not ignored) is `outside` (out of range).
Tensor truth_cpu(const Shape& shape, int64_t classes, int64_t ignore, int ignore_every,
                 int64_t outside, int outside_every, DType dtype, uint64_t seed) {
  Lcg rng(seed);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<double>(rng.below(classes));
    if (i % static_cast<size_t>(outside_every) == 3) v[i] = static_cast<double>(outside);
    if (i % static_cast<size_t>(ignore_every) == 0) v[i] = static_cast<double>(ignore);
  }
  return Tensor::from_vector(v, shape, dtype);
}

// Predictions in [0, classes) with every `outside_every`-th one at -1 or `classes`.
Tensor predictions_cpu(const Shape& shape, int64_t classes, int outside_every, uint64_t seed) {
  Lcg rng(seed);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = static_cast<double>(rng.below(classes));
    if (i % static_cast<size_t>(outside_every) == 5)
      v[i] = (i / static_cast<size_t>(outside_every)) % 2 ? -1.0 : static_cast<double>(classes);
  }
  return Tensor::from_vector(v, shape, DType::i32);
}

Tensor gpu_zeros(const Shape& shape, DType dtype) {
  return Tensor::zeros(shape, dtype, Device::cuda(0), gpu().stream());
}

// Accumulates `calls` times on both devices and compares the counts exactly.
void expect_same_confusion(const std::string& what, const Tensor& predicted, const Tensor& truth,
                           int64_t ignore, int64_t classes, int calls = 2) {
  SCOPED_TRACE(what);
  Tensor conf_cpu = Tensor::zeros(Shape{classes, classes}, DType::i64);
  Tensor oor_cpu = Tensor::zeros(Shape{1}, DType::i64);
  Tensor conf_gpu = gpu_zeros(Shape{classes, classes}, DType::i64);
  Tensor oor_gpu = gpu_zeros(Shape{1}, DType::i64);
  const Tensor pg = to_gpu(predicted), tg = to_gpu(truth);
  for (int i = 0; i < calls; ++i) {
    core::ops::accumulate_confusion(cpu(), predicted, truth, ignore, conf_cpu, oor_cpu);
    core::ops::accumulate_confusion(gpu(), pg, tg, ignore, conf_gpu, oor_gpu);
  }
  expect_equal("confusion", conf_gpu, conf_cpu);
  expect_equal("out_of_range", oor_gpu, oor_cpu);
  // The fixtures must exercise the paths they claim to: something counted and
  // something out of range.
  double total = 0;
  for (double v : values(conf_cpu))
    total += v;
  EXPECT_GT(total, 0.0);
  EXPECT_GT(oor_cpu.item(), 0.0);
}

TEST(GpuMetrics, ConfusionSegmentationFromBf16Argmax) {
  const Shape logits_shape{2, 33, 47, 19};
  const Shape pixel_shape{2, 33, 47};
  const Tensor logits = random_cpu(logits_shape, 71, -4, 4, DType::bf16);
  // argmax on each device from the same bf16 values; the CPU result is the reference.
  const Tensor pred_gpu_dev = core::ops::argmax_channels(gpu(), to_gpu(logits, DType::bf16));
  const Tensor pred_cpu = core::ops::argmax_channels(cpu(), logits);
  expect_equal("argmax", pred_gpu_dev, pred_cpu);
  for (DType td : {DType::u8, DType::i32}) {
    const Tensor truth = truth_cpu(pixel_shape, 19, 255, 7, 19, 11, td, 72);
    expect_same_confusion(fmt::format("K=19 truth {}", core::dtype_name(td)), pred_cpu, truth, 255,
                          19);
    // Also fed straight from the device argmax (no host round trip of predictions).
    Tensor conf_gpu = gpu_zeros(Shape{19, 19}, DType::i64);
    Tensor oor_gpu = gpu_zeros(Shape{1}, DType::i64);
    core::ops::accumulate_confusion(gpu(), pred_gpu_dev, to_gpu(truth), 255, conf_gpu, oor_gpu);
    Tensor conf_cpu = Tensor::zeros(Shape{19, 19}, DType::i64);
    Tensor oor_cpu = Tensor::zeros(Shape{1}, DType::i64);
    core::ops::accumulate_confusion(cpu(), pred_cpu, truth, 255, conf_cpu, oor_cpu);
    expect_equal("confusion from device argmax", conf_gpu, conf_cpu);
    expect_equal("out_of_range from device argmax", oor_gpu, oor_cpu);
  }
}

TEST(GpuMetrics, ConfusionOutOfRangePredictions) {
  const Shape s{3, 40, 50};
  for (DType td : {DType::u8, DType::i32}) {
    const Tensor truth = truth_cpu(s, 19, 255, 9, 250, 13, td, 73);
    expect_same_confusion(fmt::format("K=19 truth {}", core::dtype_name(td)),
                          predictions_cpu(s, 19, 17, 74), truth, 255, 19, 3);
  }
}

// 64 x 64 = 4096 entries: the largest shared histogram, over many blocks.
TEST(GpuMetrics, ConfusionLargestSharedHistogram) {
  const Shape s{4, 256, 256};
  expect_same_confusion("K=64", predictions_cpu(s, 64, 101, 75),
                        truth_cpu(s, 64, -1, 97, 64, 89, DType::i32, 76), -1, 64);
}

// 1000 classes (classification): 10^6 entries, far past any shared histogram.
TEST(GpuMetrics, ConfusionThousandClassesGlobalAtomics) {
  const Shape s{50000};
  expect_same_confusion("K=1000 truth i32", predictions_cpu(s, 1000, 37, 77),
                        truth_cpu(s, 1000, -100, 41, 1000, 43, DType::i32, 78), -100, 1000);
  // u8 truth with K > 256: every value is a valid class, 255 is ignored.
  expect_same_confusion("K=1000 truth u8", predictions_cpu(s, 1000, 37, 79),
                        truth_cpu(s, 255, 255, 41, 254, 1 << 30, DType::u8, 80), 255, 1000);
}

TEST(GpuMetrics, ConfusionEmptyInputAddsNothing) {
  Tensor conf = gpu_zeros(Shape{3, 3}, DType::i64);
  Tensor oor = gpu_zeros(Shape{1}, DType::i64);
  core::ops::accumulate_confusion(gpu(), gpu_zeros(Shape{0}, DType::i32),
                                  gpu_zeros(Shape{0}, DType::u8), 255, conf, oor);
  EXPECT_EQ(values(conf), std::vector<double>(9, 0.0));
  EXPECT_EQ(values(oor), std::vector<double>(1, 0.0));
}

// Targets in [-1, 10) (about a tenth non-positive), valid ~85% of pixels.
void depth_fixture(const Shape& pixels, uint64_t seed, Tensor& target, Tensor& valid) {
  target = random_cpu(pixels, seed, -1.0, 10.0);
  Lcg rng(seed + 1);
  std::vector<double> v(static_cast<size_t>(pixels.numel()));
  for (double& x : v)
    x = rng.below(100) < 85 ? static_cast<double>(1 + rng.below(255)) : 0.0;
  valid = Tensor::from_vector(v, pixels, DType::u8);
}

TEST(GpuMetrics, DepthErrorsMatchCpu) {
  const Shape pixels{4, 96, 131};
  const Shape pred_shape{4, 96, 131, 1};
  Tensor target, valid;
  depth_fixture(pixels, 81, target, valid);
  const Tensor tg = to_gpu(target), vg = to_gpu(valid);
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(fmt::format("predicted {}", name_of(d)));
    // Values representable in d, so both devices see the same numbers.
    const Tensor pred = random_cpu(pred_shape, 82, 0.0, 12.0, d);
    Tensor sums_cpu = Tensor::zeros(Shape{3}, DType::f64);
    Tensor sums_gpu = gpu_zeros(Shape{3}, DType::f64);
    const Tensor pg = to_gpu(pred, d);
    for (int i = 0; i < 2; ++i) {
      core::ops::accumulate_depth_errors(cpu(), pred, target, valid, sums_cpu);
      core::ops::accumulate_depth_errors(gpu(), pg, tg, vg, sums_gpu);
    }
    const std::vector<double> c = values(sums_cpu), g = values(sums_gpu);
    EXPECT_EQ(g[2], c[2]) << "count";
    EXPECT_GT(c[2], 0.0);
    EXPECT_LT(c[2], 2.0 * static_cast<double>(pixels.numel()));  // some pixels were skipped
    for (int i = 0; i < 2; ++i)
      EXPECT_NEAR(g[static_cast<size_t>(i)], c[static_cast<size_t>(i)],
                  1e-6 * std::abs(c[static_cast<size_t>(i)]))
          << "sum " << i;
  }
}

TEST(GpuMetrics, DepthErrorsAddOntoExistingSums) {
  const Shape pixels{1, 8, 9};
  Tensor target, valid;
  depth_fixture(pixels, 83, target, valid);
  const Tensor pred = random_cpu(pixels, 84, 0.0, 12.0);
  const Tensor start = Tensor::from_vector({10.0, 20.0, 30.0}, Shape{3}, DType::f64);
  Tensor sums_cpu = start.clone();
  Tensor sums_gpu = to_gpu(start);
  core::ops::accumulate_depth_errors(cpu(), pred, target, valid, sums_cpu);
  core::ops::accumulate_depth_errors(gpu(), to_gpu(pred), to_gpu(target), to_gpu(valid), sums_gpu);
  expect_near("sums", sums_gpu, sums_cpu, 1e-6, 0.0);
  EXPECT_GT(values(sums_cpu)[2], 30.0);
}

TEST(GpuMetrics, RejectsMixedDevicesAndF64OnCuda) {
  Tensor conf = gpu_zeros(Shape{3, 3}, DType::i64);
  Tensor oor = Tensor::zeros(Shape{1}, DType::i64);  // on the CPU: refused
  EXPECT_THROW(core::ops::accumulate_confusion(gpu(), gpu_zeros(Shape{4}, DType::i32),
                                               gpu_zeros(Shape{4}, DType::u8), 255, conf, oor),
               Error);
  Tensor sums = gpu_zeros(Shape{3}, DType::f64);
  EXPECT_THROW(core::ops::accumulate_depth_errors(gpu(), gpu_zeros(Shape{4}, DType::f64),
                                                  gpu_zeros(Shape{4}, DType::f32),
                                                  gpu_zeros(Shape{4}, DType::u8), sums),
               Error);
}

}  // namespace
}  // namespace cohort::gputest
