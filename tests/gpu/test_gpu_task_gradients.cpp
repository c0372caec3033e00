// Per-task gradient ops (loss.balancing pcgrad | gradnorm) on CUDA against the
// CPU: Gram matrices for each mask-bit selection and task count (and the same
// bits on every run), PCGrad's coefficients, the combination written in place
// into one of the gradients, and GradNorm's update over successive steps with
// a loss scale, a skipped step and a non-finite loss.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/ops/ops.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

namespace ops = core::ops;

std::vector<Tensor> random_grads(int tasks, int64_t n, uint64_t seed) {
  std::vector<Tensor> grads;
  for (int t = 0; t < tasks; ++t)
    grads.push_back(random_cpu(Shape{n}, seed + static_cast<uint64_t>(t)));
  return grads;
}

std::vector<Tensor> on_gpu(const std::vector<Tensor>& cpu_tensors) {
  std::vector<Tensor> out;
  for (const Tensor& t : cpu_tensors)
    out.push_back(to_gpu(t));
  return out;
}

// Mask bytes 0..3 in a scrambled, fixed pattern (bit 0 and bit 1 both in use).
Tensor mixed_mask(int64_t n) {
  std::vector<double> m;
  for (int64_t e = 0; e < n; ++e)
    m.push_back(static_cast<double>((e * 7 + e / 5) % 4));
  return Tensor::from_vector(m, Shape{n}, DType::u8);
}

Tensor f32(const std::vector<double>& v) {
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}, DType::f32);
}

TEST(GpuTaskGradients, GramMatchesCpu) {
  const int64_t n = 5003;
  const Tensor mask = mixed_mask(n);
  const Tensor mask_gpu = to_gpu(mask);
  for (int tasks : {1, 2, 5, 8}) {
    const std::vector<Tensor> grads = random_grads(tasks, n, 100 * tasks);
    const std::vector<Tensor> grads_gpu = on_gpu(grads);
    for (uint8_t bits : {1, 2, 3}) {
      SCOPED_TRACE("tasks " + std::to_string(tasks) + ", bits " + std::to_string(bits));
      expect_near("gram", ops::task_gram(gpu(), grads_gpu, mask_gpu, bits),
                  ops::task_gram(cpu(), grads, mask, bits), kTightF32);
    }
  }
}

TEST(GpuTaskGradients, GramIsRepeatableBitForBit) {
  // Many blocks, and views that start at an odd element (flat buffers' slices).
  const int64_t n = (1 << 20) + 37;
  const Tensor mask = mixed_mask(n + 3);
  const std::vector<Tensor> grads = random_grads(4, n + 3, 7);
  std::vector<Tensor> views, views_gpu;
  for (const Tensor& g : grads) {
    views.push_back(g.flat(3, n));
    views_gpu.push_back(to_gpu(g).flat(3, n));
  }
  const Tensor mask_gpu = to_gpu(mask).flat(3, n);
  const Tensor first = ops::task_gram(gpu(), views_gpu, mask_gpu, 1);
  const Tensor second = ops::task_gram(gpu(), views_gpu, mask_gpu, 1);
  expect_equal("second run", second, first);
  expect_near("gram", first, ops::task_gram(cpu(), views, mask.flat(3, n), 1), kTightF32);
}

TEST(GpuTaskGradients, PcGradCoefficientsMatchCpu) {
  const int64_t n = 3000;
  const Tensor mask = mixed_mask(n);
  for (int tasks : {2, 3, 6}) {
    SCOPED_TRACE("tasks " + std::to_string(tasks));
    // Opposing pairs (g and -0.6 g + noise) so that several projections happen.
    std::vector<Tensor> grads = random_grads(tasks, n, 300 + tasks);
    std::vector<double> base = values(grads[0]);
    for (int t = 1; t < tasks; t += 2) {
      std::vector<double> g = values(grads[t]);
      for (int64_t e = 0; e < n; ++e)
        g[e] = -0.6 * base[e] + 0.4 * g[e];
      grads[t] = f32(g);
    }
    const Tensor gram = ops::task_gram(cpu(), grads, mask, 1);
    std::vector<double> w;
    for (int t = 0; t < tasks; ++t)
      w.push_back(0.5 + 0.25 * t);
    const Tensor coeff_cpu = ops::pcgrad_coefficients(cpu(), gram, f32(w));
    expect_near("coefficients", ops::pcgrad_coefficients(gpu(), to_gpu(gram), to_gpu(f32(w))),
                coeff_cpu, kTightF32);
    EXPECT_NE(values(coeff_cpu), w) << "no projection happened";
  }
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor coeff =
      ops::pcgrad_coefficients(gpu(), to_gpu(f32({1, 2, 2, inf})), to_gpu(f32({1, 1})));
  for (double c : values(coeff))
    EXPECT_TRUE(std::isnan(c)) << "an overflowed Gram matrix gives NaN coefficients";
}

TEST(GpuTaskGradients, CombineMatchesCpuInPlace) {
  const int64_t n = 4001;
  const Tensor mask = mixed_mask(n);
  for (int tasks : {1, 3, 8}) {
    SCOPED_TRACE("tasks " + std::to_string(tasks));
    const std::vector<Tensor> grads = random_grads(tasks, n, 500 + tasks);
    const std::vector<Tensor> grads_gpu = on_gpu(grads);
    const Tensor in_set = random_cpu(Shape{tasks}, 600 + tasks, -2.0, 2.0);
    const Tensor out_of_set = random_cpu(Shape{tasks}, 700 + tasks, -2.0, 2.0);
    Tensor expected = Tensor::zeros(Shape{n}, DType::f32);
    ops::combine_task_gradients(cpu(), grads, mask, 2, in_set, out_of_set, expected);
    // The combination replaces the last task's gradient, as a train step does.
    Tensor out = grads_gpu.back();
    ops::combine_task_gradients(gpu(), grads_gpu, to_gpu(mask), 2, to_gpu(in_set),
                                to_gpu(out_of_set), out);
    expect_near("combined", grads_gpu.back(), expected, kTightF32);
  }
}

TEST(GpuTaskGradients, GradNormUpdatesMatchCpu) {
  const int tasks = 4;
  Tensor w_cpu = Tensor::full(Shape{tasks}, 1.0, DType::f32);
  Tensor state_cpu = Tensor::zeros(Shape{4, tasks}, DType::f32);
  Tensor w_gpu = to_gpu(w_cpu), state_gpu = to_gpu(state_cpu);
  ops::GradNormArgs args;
  args.lr = 0.05;
  const double nan = std::nan("");
  for (int step = 0; step < 8; ++step) {
    SCOPED_TRACE("update " + std::to_string(step));
    const double scale = step % 2 == 0 ? 1.0 : 512.0;
    const Tensor grads_scaled = random_cpu(Shape{tasks, 64}, 800 + step, -scale, scale);
    std::vector<Tensor> grads;
    for (int t = 0; t < tasks; ++t)
      grads.push_back(grads_scaled.flat(t * 64, 64));
    const Tensor gram = ops::task_gram(cpu(), grads, Tensor::full(Shape{64}, 2.0, DType::u8), 2);
    std::vector<double> sums;
    for (int t = 0; t < tasks; ++t)
      sums.push_back(2.0 * (1.0 + t) * std::pow(0.8 + 0.05 * t, step));
    sums.push_back(2.0);
    if (step == 5) sums[1] = nan;  // must change nothing
    const Tensor skip = f32({step == 3 ? 1.0 : 0.0});
    const Tensor scale_t = scale == 1.0 ? Tensor() : f32({scale});
    const Tensor w_before = to_cpu_f32(w_gpu), state_before = to_cpu_f32(state_gpu);

    ops::gradnorm_update(cpu(), w_cpu, state_cpu, gram, f32(sums), scale_t, skip, args);
    ops::gradnorm_update(gpu(), w_gpu, state_gpu, to_gpu(gram), to_gpu(f32(sums)),
                         scale_t.defined() ? to_gpu(scale_t) : Tensor(), to_gpu(skip), args);
    expect_near("weights", w_gpu, w_cpu, kTightF32);
    expect_near("state", state_gpu, state_cpu, kTightF32);
    if (step == 3 || step == 5) {
      expect_equal("weights kept", w_gpu, w_before);
      expect_equal("state kept", state_gpu, state_before);
    }
  }
  EXPECT_EQ(values(state_gpu)[3 * tasks], 6.0) << "two of eight updates change nothing";
}

}  // namespace
}  // namespace cohort::gputest
