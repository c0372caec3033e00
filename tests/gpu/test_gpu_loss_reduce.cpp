// Losses and reductions on CUDA against the CPU ops: softmax cross entropy with
// ignored pixels, class weights and every label dtype, the all-ignored and
// invalid-label cases, masked L1/smooth-L1, sum/mean and their backward, argmax
// with ties, and a large reduction against a host sum; the loss normalisers and
// shares of whole-batch means.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

constexpr Tol kLoss{1e-5, 1e-6};

// Labels in [0, classes) with every `ignore_every`-th one set to `ignore`.
Tensor labels_cpu(const Shape& shape, int classes, int ignore, int ignore_every, DType dtype,
                  uint64_t seed) {
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  uint64_t state = seed * 2654435761u + 1;
  for (size_t i = 0; i < v.size(); ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    v[i] = static_cast<double>((state >> 33) % static_cast<uint64_t>(classes));
    if (ignore_every > 0 && i % static_cast<size_t>(ignore_every) == 0) v[i] = ignore;
  }
  return Tensor::from_vector(v, shape, dtype);
}

Tensor gpu_labels(const Tensor& labels) {
  return labels.to(Device::cuda(0), gpu().stream());
}

Tensor ce_forward_gpu(const Tensor& logits, const Tensor& labels, const Tensor& weights,
                      int ignore) {
  return core::ops::softmax_cross_entropy(gpu(), logits, labels, weights, ignore);
}

// Multi-task loss balancing: the CUDA kernels against the CPU (f32), forward,
// loss gradients, and log_vars' gradient overwritten and accumulated.
TEST(GpuUncertaintyWeighting, MatchesCpu) {
  const std::vector<double> loss_values = {2.5, 0.25, 1.0};
  const Tensor s = Tensor::from_vector({0.3, -1.2, 0.0}, Shape{3}, DType::f32);
  std::vector<Tensor> cpu_losses, gpu_losses;
  for (double v : loss_values) {
    cpu_losses.push_back(Tensor::from_vector({v}, Shape{1}, DType::f32));
    gpu_losses.push_back(to_gpu(cpu_losses.back()));
  }
  const Tensor sg = to_gpu(s);
  expect_near("total", core::ops::uncertainty_weighted_sum(gpu(), gpu_losses, sg),
              core::ops::uncertainty_weighted_sum(cpu(), cpu_losses, s), kTightF32);
  for (bool accumulate : {false, true}) {
    const Tensor d0 = Tensor::from_vector({1.0, 2.0, 3.0}, Shape{3}, DType::f32);
    Tensor dc = d0.clone(), dg = to_gpu(d0);
    const Tensor g = Tensor::from_vector({0.7}, Shape{1}, DType::f32);
    const std::vector<Tensor> lc =
        core::ops::uncertainty_weighted_sum_backward(cpu(), g, cpu_losses, s, dc, accumulate);
    const std::vector<Tensor> lg = core::ops::uncertainty_weighted_sum_backward(
        gpu(), to_gpu(g), gpu_losses, sg, dg, accumulate);
    expect_near("dlog_vars", dg, dc, kTightF32);
    for (size_t i = 0; i < lc.size(); ++i)
      expect_near("dloss", lg[i], lc[i], kTightF32);
  }
}

TEST(GpuCrossEntropy, MatchesCpuWithIgnoreAndWeights) {
  const Shape ls{2, 5, 4, 19};
  const Shape label_shape{2, 5, 4};
  const Tensor weights = random_cpu(Shape{19}, 60, 0.2, 2.0);
  for (DType ld : {DType::u8, DType::i32, DType::i64}) {
    for (DType d : float_dtypes()) {
      for (bool weighted : {false, true}) {
        SCOPED_TRACE(fmt::format("labels {} logits {} {}", core::dtype_name(ld), name_of(d),
                                 weighted ? "weighted" : "unweighted"));
        const Tensor logits = random_cpu(ls, 61, -4, 4, d);
        const Tensor labels = labels_cpu(label_shape, 19, 255, 7, ld, 62);
        const Tensor w = weighted ? weights : Tensor();
        const Tensor wg = weighted ? to_gpu(weights) : Tensor();
        const Tensor loss_cpu = core::ops::softmax_cross_entropy(cpu(), logits, labels, w, 255);
        const Tensor loss_gpu = ce_forward_gpu(to_gpu(logits, d), gpu_labels(labels), wg, 255);
        EXPECT_EQ(loss_gpu.dtype(), DType::f32);
        EXPECT_EQ(loss_gpu.numel(), 1);
        expect_near("cross entropy loss", loss_gpu, loss_cpu, kLoss);

        const Tensor dloss = Tensor::from_vector({0.75}, Shape{1}, DType::f32);
        const Tensor grad_cpu =
            core::ops::softmax_cross_entropy_backward(cpu(), dloss, logits, labels, w, 255);
        const Tensor grad_gpu = core::ops::softmax_cross_entropy_backward(
            gpu(), to_gpu(dloss), to_gpu(logits, d), gpu_labels(labels), wg, 255);
        expect_near("cross entropy dlogits", grad_gpu, grad_cpu, tol_for(d, kTightF32));
      }
    }
  }
}

TEST(GpuCrossEntropy, ClassificationShapeAndCustomIgnoreIndex) {
  const Tensor logits = random_cpu(Shape{33, 1000}, 63, -3, 3);
  const Tensor labels = labels_cpu(Shape{33}, 1000, -100, 5, DType::i64, 64);
  expect_near("loss [N, 1000], ignore -100",
              ce_forward_gpu(to_gpu(logits), gpu_labels(labels), Tensor(), -100),
              core::ops::softmax_cross_entropy(cpu(), logits, labels, Tensor(), -100), kLoss);
  const Tensor dloss = Tensor::from_vector({1.0}, Shape{1}, DType::f32);
  expect_near(
      "dlogits [N, 1000]",
      core::ops::softmax_cross_entropy_backward(gpu(), to_gpu(dloss), to_gpu(logits),
                                                gpu_labels(labels), Tensor(), -100),
      core::ops::softmax_cross_entropy_backward(cpu(), dloss, logits, labels, Tensor(), -100),
      kTightF32);
}

// 81920 rows: more than one grid of warps, so the row loops run more than once.
TEST(GpuCrossEntropy, LargeSegmentationBatchMatchesCpu) {
  const Tensor logits = random_cpu(Shape{4, 160, 128, 19}, 67, -4, 4);
  const Tensor labels = labels_cpu(Shape{4, 160, 128}, 19, 255, 11, DType::u8, 68);
  const Tensor weights = random_cpu(Shape{19}, 69, 0.2, 2.0);
  expect_near("large cross entropy loss",
              ce_forward_gpu(to_gpu(logits), gpu_labels(labels), to_gpu(weights), 255),
              core::ops::softmax_cross_entropy(cpu(), logits, labels, weights, 255), {1e-5, 1e-6});
  const Tensor dloss = Tensor::from_vector({1.0}, Shape{1}, DType::f32);
  expect_near("large cross entropy dlogits",
              core::ops::softmax_cross_entropy_backward(gpu(), to_gpu(dloss), to_gpu(logits),
                                                        gpu_labels(labels), to_gpu(weights), 255),
              core::ops::softmax_cross_entropy_backward(cpu(), dloss, logits, labels, weights, 255),
              kTightF32);
}

TEST(GpuCrossEntropy, AllIgnoredGivesZeroLossAndGradient) {
  const Tensor logits = to_gpu(random_cpu(Shape{2, 3, 3, 5}, 65));
  const Tensor labels = gpu_labels(Tensor::full(Shape{2, 3, 3}, 255, DType::u8));
  EXPECT_EQ(values(ce_forward_gpu(logits, labels, Tensor(), 255))[0], 0.0);
  const Tensor dloss = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  for (double g : values(
           core::ops::softmax_cross_entropy_backward(gpu(), dloss, logits, labels, Tensor(), 255)))
    ASSERT_EQ(g, 0.0);
}

TEST(GpuCrossEntropy, InvalidLabelGivesNaNWithoutThrowing) {
  const Tensor logits = to_gpu(random_cpu(Shape{4, 5}, 66));
  const Tensor labels =
      gpu_labels(Tensor::from_vector({0, 1, 7, 2}, Shape{4}, DType::i32));  // 7 >= C
  const std::vector<double> loss = values(ce_forward_gpu(logits, labels, Tensor(), 255));
  EXPECT_TRUE(std::isnan(loss[0])) << "got " << loss[0];
  const Tensor dloss = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  const std::vector<double> g = values(
      core::ops::softmax_cross_entropy_backward(gpu(), dloss, logits, labels, Tensor(), 255));
  EXPECT_TRUE(std::isnan(g[2 * 5])) << "the bad row's gradient should be NaN";
  const Tensor neg = gpu_labels(Tensor::from_vector({0, -1, 1, 2}, Shape{4}, DType::i64));
  EXPECT_TRUE(std::isnan(values(ce_forward_gpu(logits, neg, Tensor(), 255))[0]));
}

TEST(GpuRegressionLoss, MatchesCpuWithMasks) {
  using core::ops::RegressionLoss;
  const Shape s{2, 6, 5, 3};
  for (DType d : float_dtypes()) {
    const Tensor pred = random_cpu(s, 70, -2, 2, d);
    const Tensor target = random_cpu(s, 71, -2, 2, d);
    const Tensor mask_f = random_cpu(s, 72, 0, 1);
    std::vector<double> mv = mask_f.to_vector();
    for (double& m : mv)
      m = m > 0.4 ? 1.0 : 0.0;
    const Tensor mask_u8 = Tensor::from_vector(mv, s, DType::u8);
    const Tensor mask_f32 = Tensor::from_vector(mv, s, DType::f32);
    for (RegressionLoss kind : {RegressionLoss::l1, RegressionLoss::smooth_l1}) {
      for (double beta : {1.0, 0.3, 0.0}) {
        if (kind == RegressionLoss::l1 && beta != 1.0) continue;
        for (int m = 0; m < 3; ++m) {
          const Tensor mask = m == 0 ? Tensor() : (m == 1 ? mask_u8 : mask_f32);
          SCOPED_TRACE(fmt::format("{} beta {} mask {} {}",
                                   kind == RegressionLoss::l1 ? "l1" : "smooth_l1", beta,
                                   m == 0 ? "none" : (m == 1 ? "u8" : "f32"), name_of(d)));
          const Tensor mask_g =
              mask.defined() ? mask.to(Device::cuda(0), gpu().stream()) : Tensor();
          expect_near("regression loss",
                      core::ops::regression_loss(gpu(), kind, to_gpu(pred, d), to_gpu(target, d),
                                                 mask_g, beta),
                      core::ops::regression_loss(cpu(), kind, pred, target, mask, beta), kLoss);
          const Tensor dloss = Tensor::from_vector({1.5}, Shape{1}, DType::f32);
          expect_near(
              "regression loss backward",
              core::ops::regression_loss_backward(gpu(), kind, to_gpu(dloss), to_gpu(pred, d),
                                                  to_gpu(target, d), mask_g, beta),
              core::ops::regression_loss_backward(cpu(), kind, dloss, pred, target, mask, beta),
              tol_for(d, kTightF32));
        }
      }
    }
  }
}

TEST(GpuRegressionLoss, NoValidElementGivesZero) {
  using core::ops::RegressionLoss;
  const Shape s{3, 4};
  const Tensor pred = to_gpu(random_cpu(s, 73)), target = to_gpu(random_cpu(s, 74));
  const Tensor mask = Tensor::zeros(s, DType::u8).to(Device::cuda(0), gpu().stream());
  EXPECT_EQ(values(core::ops::regression_loss(gpu(), RegressionLoss::smooth_l1, pred, target, mask,
                                              1.0))[0],
            0.0);
  const Tensor dloss = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  for (double g : values(core::ops::regression_loss_backward(gpu(), RegressionLoss::l1, dloss, pred,
                                                             target, mask, 1.0)))
    ASSERT_EQ(g, 0.0);
}

TEST(GpuReduce, SumMeanAndBackwardMatchCpu) {
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(name_of(d));
    const Tensor x = random_cpu(Shape{3, 7, 11, 5}, 80, -1, 1, d);
    const Tensor s = core::ops::sum(gpu(), to_gpu(x, d));
    EXPECT_EQ(s.dtype(), DType::f32);
    EXPECT_EQ(s.numel(), 1);
    expect_near("sum", s, core::ops::sum(cpu(), x), {1e-5, 1e-6});
    expect_near("mean", core::ops::mean(gpu(), to_gpu(x, d)), core::ops::mean(cpu(), x),
                {1e-5, 1e-6});
    const Tensor dloss = Tensor::from_vector({-2.5}, Shape{1}, DType::f32);
    expect_equal("sum_backward", core::ops::sum_backward(gpu(), to_gpu(dloss), x.shape(), d),
                 core::ops::sum_backward(cpu(), dloss, x.shape(), DType::f32));
    expect_near("mean_backward", core::ops::mean_backward(gpu(), to_gpu(dloss), x.shape(), d),
                core::ops::mean_backward(cpu(), dloss, x.shape(), DType::f32),
                tol_for(d, kTightF32));
  }
}

// Millions of elements: many partial blocks; compared with a host sum in double.
TEST(GpuReduce, LargeSumIsAccurateAndDeterministic) {
  const int64_t n = 3'000'001;
  std::vector<double> v(static_cast<size_t>(n));
  double exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    v[static_cast<size_t>(i)] = 1.0 + static_cast<double>(i % 1000) / 1024.0;  // exact in f32
    exact += v[static_cast<size_t>(i)];
  }
  const Tensor x = to_gpu(Tensor::from_vector(v, Shape{n}, DType::f32));
  const double s1 = values(core::ops::sum(gpu(), x))[0];
  const double s2 = values(core::ops::sum(gpu(), x))[0];
  EXPECT_NEAR(s1, exact, std::abs(exact) * 1e-7);
  EXPECT_EQ(s1, s2) << "the same input must give the same bits";
  EXPECT_NEAR(values(core::ops::mean(gpu(), x))[0], exact / static_cast<double>(n),
              1e-7 * exact / static_cast<double>(n));
}

TEST(GpuReduce, ArgmaxMatchesCpuIncludingTies) {
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(name_of(d));
    const Tensor x = random_cpu(Shape{2, 5, 6, 21}, 90, -1, 1, d);
    expect_equal("argmax_channels", core::ops::argmax_channels(gpu(), to_gpu(x, d)),
                 core::ops::argmax_channels(cpu(), x));
  }
  // Ties: the first index wins.
  const Tensor t = Tensor::from_vector({1, 3, 3, 0, 5, 5, 5, 5}, Shape{2, 4}, DType::f32);
  const std::vector<double> idx = values(core::ops::argmax_channels(gpu(), to_gpu(t)));
  EXPECT_EQ(idx[0], 1.0);
  EXPECT_EQ(idx[1], 0.0);
}

// The denominators of the losses' means and a part's share, as the trainer uses
// them for whole-batch means (counts are exact in f32 up to 2^24).
TEST(GpuLossNormaliser, MatchesCpu) {
  const Shape shape{4, 33, 65};
  for (DType dtype : {DType::u8, DType::i32, DType::i64}) {
    SCOPED_TRACE(name_of(dtype));
    const Tensor labels = labels_cpu(shape, 19, 255, 5, dtype, 71);
    const Tensor weights = random_cpu(Shape{19}, 72, 0.1, 2.0).cast_cpu(DType::f32);
    expect_equal("cross entropy count",
                 core::ops::cross_entropy_normaliser(gpu(), to_gpu(labels), Tensor()),
                 core::ops::cross_entropy_normaliser(cpu(), labels, Tensor()));
    expect_near("cross entropy total weight",
                core::ops::cross_entropy_normaliser(gpu(), to_gpu(labels), to_gpu(weights)),
                core::ops::cross_entropy_normaliser(cpu(), labels, weights), kTightF32);
  }
  const Tensor mask = labels_cpu(Shape{3, 40, 50}, 2, 0, 0, DType::u8, 73);
  expect_equal("valid count (u8 mask)", core::ops::valid_count(gpu(), to_gpu(mask), mask.numel()),
               core::ops::valid_count(cpu(), mask, mask.numel()));
  const Tensor fmask = mask.cast_cpu(DType::f32);
  expect_equal("valid count (f32 mask)",
               core::ops::valid_count(gpu(), to_gpu(fmask), fmask.numel()),
               core::ops::valid_count(cpu(), fmask, fmask.numel()));
  expect_equal("valid count (no mask)", core::ops::valid_count(gpu(), Tensor(), 12345),
               core::ops::valid_count(cpu(), Tensor(), 12345));
  auto f32 = [](double v) { return Tensor::from_vector({v}, Shape{1}, DType::f32); };
  for (const auto& [local, total] : std::vector<std::pair<double, double>>{{3, 12}, {0, 0}, {5, 7}})
    expect_near(fmt::format("share {} of {}", local, total),
                core::ops::normaliser_share(gpu(), to_gpu(f32(local)), to_gpu(f32(total)), 8),
                core::ops::normaliser_share(cpu(), f32(local), f32(total), 8), kTightF32);
}

}  // namespace
}  // namespace cohort::gputest
